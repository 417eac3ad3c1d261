//! The server's counters, gauges and histograms, rendered as Prometheus text at `/metrics`.
//! The HTTP side counts requests by endpoint and status; the engine thread counts tokens,
//! queue and slot occupancy, cancellations and the latency histograms.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the time-to-first-token buckets.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds (seconds) of the inter-token latency buckets.
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram: one count per bucket (not cumulative; summed when rendered), the
/// sum in microseconds, the count.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {}", self.count());
    }
}

pub struct Metrics {
    slots: usize,
    /// (endpoint, status) → requests answered.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens whose KV an idle slot held (prompt caching): not prefilled again.
    pub prompt_tokens_cached: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Batched decode passes (several sequences' decode steps in one pass), and the sequence
    /// rows in them.
    pub decode_passes: AtomicU64,
    pub decode_pass_rows: AtomicU64,
    /// Speculative decoding (`serve --lookup` / `--draft`), summed over the finished
    /// generations: verification forwards, drafted tokens scored, drafted tokens kept.
    pub spec_verifications: AtomicU64,
    pub spec_drafted: AtomicU64,
    pub spec_accepted: AtomicU64,
    /// Requests accepted but not yet in a slot.
    pub queue_depth: AtomicU64,
    /// Sequences in a slot now.
    pub active: AtomicU64,
    /// The most sequences ever in slots at once.
    pub active_peak: AtomicU64,
    /// Generations ended because their client went away.
    pub cancelled: AtomicU64,
    /// Generations ended by the per-request timeout.
    pub timed_out: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
}

impl Metrics {
    pub fn new(slots: usize) -> Self {
        Metrics {
            slots,
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            prompt_tokens_cached: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            decode_passes: AtomicU64::new(0),
            decode_pass_rows: AtomicU64::new(0),
            spec_verifications: AtomicU64::new(0),
            spec_drafted: AtomicU64::new(0),
            spec_accepted: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            active: AtomicU64::new(0),
            active_peak: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
        }
    }

    /// Counts one answered request; `endpoint` is one of the routes or `other` (so that
    /// arbitrary paths do not grow the label set).
    pub fn count_request(&self, endpoint: &'static str, status: u16) {
        let mut r = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *r.entry((endpoint, status)).or_default() += 1;
    }

    pub fn set_active(&self, n: usize) {
        self.active.store(n as u64, Relaxed);
        self.active_peak.fetch_max(n as u64, Relaxed);
    }

    /// Prometheus text exposition format.
    /// Adds a finished generation's speculation counts.
    pub fn add_speculation(&self, s: &crate::speculative::SpecStats) {
        self.spec_verifications
            .fetch_add(s.verifications as u64, Relaxed);
        self.spec_drafted.fetch_add(s.drafted as u64, Relaxed);
        self.spec_accepted.fetch_add(s.accepted as u64, Relaxed);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP wavefront_requests_total HTTP requests answered, by endpoint and status code.\n\
             # TYPE wavefront_requests_total counter\n",
        );
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((endpoint, status), n) in requests {
            let _ = writeln!(
                out,
                "wavefront_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        // (type, name, help, value) of each single-valued metric.
        let scalars: [(&str, &str, &str, u64); 14] = [
            (
                "counter",
                "wavefront_prompt_tokens_total",
                "Prompt tokens of the requests admitted to a slot.",
                self.prompt_tokens.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_prompt_tokens_cached_total",
                "Prompt tokens whose KV an idle slot already held (not prefilled again).",
                self.prompt_tokens_cached.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_generated_tokens_total",
                "Tokens generated.",
                self.generated_tokens.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_decode_passes_total",
                "Batched decode passes: several sequences' decode steps in one pass over the weights.",
                self.decode_passes.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_decode_pass_rows_total",
                "Sequences decoded in batched passes (summed over the passes).",
                self.decode_pass_rows.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_speculative_verifications_total",
                "Speculative verification forwards (each scores the drafts and gives one token more), over finished generations.",
                self.spec_verifications.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_speculative_drafted_tokens_total",
                "Drafted tokens scored by the verifications, over finished generations.",
                self.spec_drafted.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_speculative_accepted_tokens_total",
                "Drafted tokens kept by the verifications, over finished generations.",
                self.spec_accepted.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_requests_cancelled_total",
                "Generations cancelled because the client went away.",
                self.cancelled.load(Relaxed),
            ),
            (
                "counter",
                "wavefront_requests_timed_out_total",
                "Generations cancelled by the per-request timeout.",
                self.timed_out.load(Relaxed),
            ),
            (
                "gauge",
                "wavefront_queue_depth",
                "Requests accepted and waiting for a slot.",
                self.queue_depth.load(Relaxed),
            ),
            (
                "gauge",
                "wavefront_slots",
                "Sequences the engine runs at once (--slots).",
                self.slots as u64,
            ),
            (
                "gauge",
                "wavefront_slots_active",
                "Sequences generating now.",
                self.active.load(Relaxed),
            ),
            (
                "gauge",
                "wavefront_slots_active_peak",
                "The most sequences generating at once since the server started.",
                self.active_peak.load(Relaxed),
            ),
        ];
        for (kind, name, help, v) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        self.ttft.render(
            &mut out,
            "wavefront_time_to_first_token_seconds",
            "From a request's arrival to its first generated token.",
        );
        self.itl.render(
            &mut out,
            "wavefront_inter_token_latency_seconds",
            "Between consecutive generated tokens of a sequence.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_render_cumulative_buckets() {
        let m = Metrics::new(2);
        m.ttft.observe(Duration::from_millis(5));
        m.ttft.observe(Duration::from_millis(70));
        m.ttft.observe(Duration::from_secs(100));
        m.count_request("/v1/completions", 200);
        m.count_request("/v1/completions", 200);
        m.set_active(2);
        m.set_active(1);
        let text = m.render();
        for line in [
            "wavefront_time_to_first_token_seconds_bucket{le=\"0.01\"} 1",
            "wavefront_time_to_first_token_seconds_bucket{le=\"0.05\"} 1",
            "wavefront_time_to_first_token_seconds_bucket{le=\"0.1\"} 2",
            "wavefront_time_to_first_token_seconds_bucket{le=\"60\"} 2",
            "wavefront_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3",
            "wavefront_time_to_first_token_seconds_sum 100.075",
            "wavefront_time_to_first_token_seconds_count 3",
            "wavefront_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2",
            "wavefront_slots_active 1",
            "wavefront_slots_active_peak 2",
            "wavefront_slots 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
