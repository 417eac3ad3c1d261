//! How many positions a sequence's KV cache gets (DESIGN.md "KV cache"): the model's context,
//! capped to what fits in the backend's free memory after the weights, less a stated reserve;
//! or exactly what the caller asks for, refused with a clear error before any allocation when
//! it cannot fit.

use crate::error::{Error, Result};

/// Bytes kept free beyond the KV cache and the working memory: BLAS workspaces, kernel code
/// objects, graphs, the allocator's slack, the host side of a unified-memory device.
pub const RESERVE_BYTES: usize = 1 << 30;

/// What a context plan is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextBudget {
    /// The model's context length (`max_position_embeddings`).
    pub model_context: usize,
    /// KV bytes per position (all layers, K and V).
    pub kv_bytes_per_position: usize,
    /// The sequence's working memory (activations, logits), whatever the capacity.
    pub scratch_bytes: usize,
    /// Free memory of the backend now, weights already loaded; `None` when it cannot tell.
    pub free_bytes: Option<usize>,
    pub reserve_bytes: usize,
}

/// Why the capacity is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSource {
    /// The model's context, which fits.
    Model,
    /// The model's context capped to the free memory.
    CappedToMemory,
    /// What the caller asked for.
    Requested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextPlan {
    pub capacity: usize,
    pub source: ContextSource,
    pub budget: ContextBudget,
}

const GIB: f64 = (1u64 << 30) as f64;

impl ContextBudget {
    /// Positions whose KV fits in the free memory after the scratch and the reserve (`None`:
    /// unknown, no limit applied).
    pub fn positions_that_fit(&self) -> Option<usize> {
        let free = self.free_bytes?;
        let room = free.saturating_sub(self.scratch_bytes + self.reserve_bytes);
        Some(room / self.kv_bytes_per_position.max(1))
    }

    /// The capacity for `requested` positions, or the default (the model's, capped).
    pub fn plan(&self, requested: Option<usize>) -> Result<ContextPlan> {
        let fit = self.positions_that_fit();
        let (capacity, source) = match requested {
            Some(n) => {
                if fit.is_some_and(|f| n > f) {
                    return Err(Error::InvalidRequest(format!(
                        "a context of {n} tokens needs {:.2} GiB of KV cache, and {}",
                        (n as f64 * self.kv_bytes_per_position as f64) / GIB,
                        self.room_text()
                    )));
                }
                (n, ContextSource::Requested)
            }
            None => match fit {
                Some(f) if f < self.model_context => (f, ContextSource::CappedToMemory),
                _ => (self.model_context, ContextSource::Model),
            },
        };
        if capacity < 2 {
            return Err(Error::InvalidRequest(format!(
                "a context of {capacity} tokens leaves no room for a prompt and a reply; {}",
                self.room_text()
            )));
        }
        Ok(ContextPlan {
            capacity,
            source,
            budget: *self,
        })
    }

    fn room_text(&self) -> String {
        match (self.free_bytes, self.positions_that_fit()) {
            (Some(free), Some(fit)) => format!(
                "{:.2} GiB are free after the weights: with {:.2} GiB of working memory and a \
                 {:.2} GiB reserve, at most {fit} positions fit ({} bytes each)",
                free as f64 / GIB,
                self.scratch_bytes as f64 / GIB,
                self.reserve_bytes as f64 / GIB,
                self.kv_bytes_per_position
            ),
            _ => "the backend cannot tell its free memory".to_string(),
        }
    }
}

impl ContextPlan {
    /// The one line a CLI prints about it.
    pub fn describe(&self) -> String {
        let b = &self.budget;
        let kv = self.capacity as f64 * b.kv_bytes_per_position as f64 / GIB;
        match self.source {
            ContextSource::Model => format!(
                "context {} tokens (the model's), KV cache {kv:.2} GiB",
                self.capacity
            ),
            ContextSource::CappedToMemory => format!(
                "context {} tokens: the model's {} capped to the free memory, KV cache {kv:.2} GiB \
                 ({:.2} GiB free after the weights, {:.2} GiB reserved; --context overrides)",
                self.capacity,
                b.model_context,
                b.free_bytes.unwrap_or(0) as f64 / GIB,
                b.reserve_bytes as f64 / GIB
            ),
            ContextSource::Requested => format!(
                "context {} tokens (--context), KV cache {kv:.2} GiB",
                self.capacity
            ),
        }
    }
}

/// `MemAvailable` of `/proc/meminfo` in bytes: what the CPU backend can still allocate.
pub fn host_available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

fn parse_mem_available(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(free: Option<usize>) -> ContextBudget {
        ContextBudget {
            model_context: 131072,
            kv_bytes_per_position: 32768,
            scratch_bytes: 100 << 20,
            free_bytes: free,
            reserve_bytes: RESERVE_BYTES,
        }
    }

    #[test]
    fn the_model_context_when_it_fits() {
        let p = budget(Some(80 << 30)).plan(None).unwrap();
        assert_eq!((p.capacity, p.source), (131072, ContextSource::Model));
        assert!(p
            .describe()
            .starts_with("context 131072 tokens (the model's)"));
        // A backend that cannot tell its memory gets the model's context too.
        let p = budget(None).plan(None).unwrap();
        assert_eq!((p.capacity, p.source), (131072, ContextSource::Model));
    }

    #[test]
    fn capped_to_what_fits_after_scratch_and_reserve() {
        let free = 3usize << 30;
        let p = budget(Some(free)).plan(None).unwrap();
        let want = (free - (100 << 20) - RESERVE_BYTES) / 32768;
        assert_eq!(
            (p.capacity, p.source),
            (want, ContextSource::CappedToMemory)
        );
        assert!(p.capacity < 131072);
        let line = p.describe();
        assert!(
            line.contains("capped to the free memory") && line.contains("--context"),
            "{line}"
        );
    }

    #[test]
    fn a_request_that_cannot_fit_is_refused_before_allocating() {
        let b = budget(Some(3usize << 30));
        let fit = b.positions_that_fit().unwrap();
        assert_eq!(b.plan(Some(fit)).unwrap().capacity, fit);
        let e = b.plan(Some(fit + 1)).unwrap_err().to_string();
        assert!(
            e.contains(&format!("a context of {} tokens needs", fit + 1))
                && e.contains(&format!("at most {fit} positions fit")),
            "{e}"
        );
        // Explicit requests past the model's context are the caller's choice (RoPE
        // extrapolates); they are only refused when they do not fit.
        assert_eq!(budget(None).plan(Some(200_000)).unwrap().capacity, 200_000);
    }

    #[test]
    fn no_room_at_all_is_an_error_not_a_zero_capacity() {
        let e = budget(Some(512 << 20)).plan(None).unwrap_err().to_string();
        assert!(e.contains("leaves no room"), "{e}");
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert!(host_available_memory().is_some_and(|b| b > 0));
    }
}
