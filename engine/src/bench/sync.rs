//! `wavefront bench --sync`: what a phase boundary of the decode step costs, two ways
//! (`kernels/sync.hip`). Today every phase (a GEMV, the attention) is its own launch, the
//! launches chained in a captured graph with programmatic dependent launch; a persistent decode
//! kernel (issue 8) would run every phase in one launch with a grid barrier between them. This
//! measures both boundaries on the device, over grids of resident blocks:
//!
//! - a grid barrier: one launch of `rounds` barriers, less one launch of none, over `rounds`
//!   (the counted and the generation barrier of common.h, and the arrival alone);
//! - a launch transition: a captured graph of `links` launches of a probe that does what a
//!   decode-step GEMV does at its ends (lets the next launch start, waits for the one ahead,
//!   reads a word another block of the launch ahead wrote, writes its own), over `links`;
//!   launched overlapped as the step's GEMVs are, and plainly as its attention is.
//!
//! Each figure is a median over `reps` samples after one warm-up. The probes count a block
//! that got past a boundary before the others had written: a non-zero count for the real
//! barriers or the chain fails the bench (a broken barrier is not a measurement).

use serde::Serialize;

use super::median;
use crate::backend::gpu::{BarrierKind, GpuBackend, SyncProbe};
use crate::backend::{Backend, KernelSource};
use crate::error::{Error, Result};

/// Timed repetitions at least (after one warm-up).
pub const MIN_REPS: usize = 20;
/// Barriers a timed launch runs.
pub const ROUNDS: u32 = 1000;
/// Launches a timed graph chains.
pub const LINKS: u32 = 400;

/// The boundaries' costs at one grid size, µs each.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRow {
    pub blocks: u32,
    /// Blocks a multiprocessor runs at once in this grid (blocks / multiprocessors, rounded up).
    pub per_mp: u32,
    pub counted_us: f64,
    pub generation_us: f64,
    /// The arrival without the wait (no barrier: the atomic's own cost).
    pub arrive_us: f64,
    /// One launch of the probe with no barrier, alone (launch and drain).
    pub launch_us: f64,
    /// A link of the captured chain, launched overlapped (the decode step's GEMVs).
    pub link_overlapped_us: f64,
    /// A link of the captured chain, launched plainly.
    pub link_plain_us: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub backend: String,
    pub device: String,
    pub reps: usize,
    pub rounds: u32,
    pub links: u32,
    /// The grid the device holds at once (multiprocessors × blocks a multiprocessor holds).
    pub resident: u32,
    pub multiprocessors: u32,
    pub rows: Vec<SyncRow>,
    /// The chained GEMVs, persistent against launched.
    pub chains: Vec<ChainRow>,
    pub kernels: Vec<KernelSource>,
}

/// A chain of square bf16 GEMVs with the norm prologue (`GemvChain`), µs a layer each way.
#[derive(Debug, Clone, Serialize)]
pub struct ChainRow {
    /// The side of the square matrices (the hidden size of the shape it stands for).
    pub k: usize,
    pub layers: usize,
    /// The persistent launch's grid.
    pub blocks: u32,
    /// One launch, a grid barrier between layers.
    pub persistent_us: f64,
    /// A captured graph of one `gemv_bf16` launch a layer, overlapped.
    pub launched_us: f64,
    /// Weight bytes a layer / the persistent form's time a layer.
    pub persistent_gb_s: f64,
    pub launched_gb_s: f64,
}

impl SyncReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Phase boundaries, µs each | backend: {} | device: {} | {} multiprocessors, {} blocks of 256 threads resident at most | median of {} reps after a warm-up | barrier: (one launch of {} grid barriers − one launch of none) / {}; link: a captured graph of {} launches / {}, each launch letting the next start and waiting for the one ahead, then reading a word the launch ahead wrote\n\n",
            self.backend,
            self.device,
            self.multiprocessors,
            self.resident,
            self.reps,
            self.rounds,
            self.rounds,
            self.links,
            self.links
        );
        if let Some(k) = crate::backend::describe_kernels(&self.kernels) {
            s.push_str(&format!("kernels: {k}\n\n"));
        }
        s.push_str(
            "| blocks | per MP | counted barrier | generation barrier | arrival only | link, overlapped | link, plain | one launch alone |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                r.blocks,
                r.per_mp,
                r.counted_us,
                r.generation_us,
                r.arrive_us,
                r.link_overlapped_us,
                r.link_plain_us,
                r.launch_us
            ));
        }
        s.push_str(
            "\nChained square bf16 GEMVs with the RMSNorm prologue (layer l's input: layer l − 1's output; weights past the L2), µs a layer: persistent (`gemv_chain_bf16`, one launch, a counted grid barrier between layers, each layer's first weight loads issued before it) against launched (a captured graph of one overlapped `gemv_bf16` a layer); the same bits\n\n\
             | k | layers | persistent grid | persistent µs | GB/s | launched µs | GB/s | launched / persistent |\n\
             |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for c in &self.chains {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} |\n",
                c.k,
                c.layers,
                c.blocks,
                c.persistent_us,
                c.persistent_gb_s,
                c.launched_us,
                c.launched_gb_s,
                c.launched_us / c.persistent_us
            ));
        }
        s
    }
}

/// The grids measured: one block a multiprocessor, three (the decode step's 16-bit GEMVs), and
/// every block the device holds; each at most `resident`, without repeats.
pub fn grids(multiprocessors: u32, resident: u32) -> Vec<u32> {
    let mut g: Vec<u32> = [multiprocessors, 3 * multiprocessors, resident]
        .into_iter()
        .map(|n| n.clamp(1, resident.max(1)))
        .collect();
    g.sort_unstable();
    g.dedup();
    g
}

/// Median device time (ms) of what `f` queues, over `reps` samples after one warm-up.
fn time(b: &GpuBackend, reps: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        samples.push(Backend::time_ms(b, &mut *f)?);
    }
    Ok(median(samples))
}

/// A failure of the probe's own check: a boundary let a block through early.
fn check(p: &SyncProbe, b: &GpuBackend, what: &str) -> Result<()> {
    let errors = p.errors(b)?;
    if errors != 0 {
        return Err(Error::Backend {
            backend: "gpu",
            op: "bench --sync".into(),
            detail: format!(
                "{what} over {} blocks let {errors} reads through before the writes they wait for",
                p.blocks()
            ),
        });
    }
    Ok(())
}

fn row(b: &GpuBackend, blocks: u32, reps: usize) -> Result<SyncRow> {
    let p = b.sync_probe(blocks)?;
    let mps = b.info().multiprocessors.max(1);
    let launch_ms = time(b, reps, &mut || p.barrier(b, BarrierKind::Counted, 0))?;
    let per_barrier = |kind: BarrierKind| -> Result<f64> {
        let ms = time(b, reps, &mut || p.barrier(b, kind, ROUNDS))?;
        Ok(1e3 * (ms - launch_ms) / f64::from(ROUNDS))
    };
    let counted_us = per_barrier(BarrierKind::Counted)?;
    check(&p, b, "the counted barrier")?;
    let generation_us = per_barrier(BarrierKind::Generation)?;
    check(&p, b, "the generation barrier")?;
    let arrive_us = per_barrier(BarrierKind::None)?;
    p.clear_errors(b)?; // the arrival alone lets blocks through: errors expected
    let link = |overlapped: bool| -> Result<f64> {
        let g = b.capture(|b| p.chain(b, 0, LINKS, overlapped))?;
        let ms = time(b, reps, &mut || b.replay(&g))?;
        Ok(1e3 * ms / f64::from(LINKS))
    };
    let link_overlapped_us = link(true)?;
    let link_plain_us = link(false)?;
    check(&p, b, "the chain of launches")?;
    Ok(SyncRow {
        blocks,
        per_mp: blocks.div_ceil(mps),
        counted_us,
        generation_us,
        arrive_us,
        launch_us: 1e3 * launch_ms,
        link_overlapped_us,
        link_plain_us,
    })
}

/// The chains' sides: SmolLM2-135M's hidden size and Llama-3.2-1B's.
pub const CHAIN_KS: [usize; 2] = [576, 2048];

/// Layers of a chain of side `k`: weights of at least [`super::gemv::STREAM_BYTES`] (past the
/// L2), 32 to 512.
pub fn chain_layers(k: usize) -> usize {
    super::gemv::STREAM_BYTES.div_ceil(2 * k * k).clamp(32, 512)
}

fn chain_row(b: &GpuBackend, k: usize, reps: usize) -> Result<ChainRow> {
    let layers = chain_layers(k);
    let w = super::gemv::random_16bit_bytes(layers * k * k, 17, |r| {
        (r & 0x8000) | 0x3c00 | (r & 0x007f)
    });
    let x0 = crate::formats::random::values(k, 18);
    let c = b.gemv_chain(k, &w, &x0, &vec![1.0; k])?;
    let g = b.capture(|b| c.launched(b))?;
    let launched_ms = time(b, reps, &mut || b.replay(&g))?;
    let launched = c.outputs(b)?;
    c.clear_outputs(b)?;
    let persistent_ms = time(b, reps, &mut || c.persistent(b))?;
    let persistent = c.outputs(b)?;
    let same = launched
        .iter()
        .zip(&persistent)
        .all(|(a, p)| a.to_bits() == p.to_bits());
    if !same {
        return Err(Error::Backend {
            backend: "gpu",
            op: "bench --sync".into(),
            detail: format!(
                "the persistent chain of {layers} GEMVs of {k} differs from the launched one"
            ),
        });
    }
    let per_layer = |ms: f64| 1e3 * ms / layers as f64;
    let gb_s = |ms: f64| (c.weight_bytes() as f64) / (ms * 1e-3) / 1e9;
    Ok(ChainRow {
        k,
        layers,
        blocks: c.blocks(),
        persistent_us: per_layer(persistent_ms),
        launched_us: per_layer(launched_ms),
        persistent_gb_s: gb_s(persistent_ms),
        launched_gb_s: gb_s(launched_ms),
    })
}

pub fn run(b: &GpuBackend, reps: usize) -> Result<SyncReport> {
    let reps = reps.max(MIN_REPS);
    let resident = b.sync_resident_blocks()?;
    let mps = b.info().multiprocessors;
    let rows = grids(mps, resident)
        .into_iter()
        .map(|n| row(b, n, reps))
        .collect::<Result<Vec<_>>>()?;
    let chains = CHAIN_KS
        .iter()
        .map(|&k| chain_row(b, k, reps))
        .collect::<Result<Vec<_>>>()?;
    Ok(SyncReport {
        backend: b.name().to_string(),
        device: b.device(),
        reps,
        rounds: ROUNDS,
        links: LINKS,
        resident,
        multiprocessors: mps,
        rows,
        chains,
        kernels: b.kernel_sources(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_one_and_three_a_multiprocessor_and_all_resident() {
        assert_eq!(grids(132, 1056), [132, 396, 1056]);
        // the GEMVs' three a multiprocessor past what the device holds: clamped, no repeat
        assert_eq!(grids(132, 264), [132, 264]);
        assert_eq!(grids(132, 132), [132]);
        assert_eq!(grids(0, 8), [1, 8]);
    }

    #[test]
    fn chains_stream_past_the_l2() {
        assert_eq!(chain_layers(576), 227); // 150 MB / 663,552 bytes a layer
        assert_eq!(chain_layers(2048), 32); // 18 would do: at least 32
        assert_eq!(chain_layers(16), 512);
        for k in CHAIN_KS {
            assert!(2 * k * k * chain_layers(k) >= super::super::gemv::STREAM_BYTES);
        }
    }

    #[test]
    fn the_table_has_a_row_per_grid() {
        let r = SyncReport {
            backend: "gpu".into(),
            device: "test".into(),
            reps: 20,
            rounds: ROUNDS,
            links: LINKS,
            resident: 1056,
            multiprocessors: 132,
            rows: vec![SyncRow {
                blocks: 396,
                per_mp: 3,
                counted_us: 1.234,
                generation_us: 2.5,
                arrive_us: 0.4,
                launch_us: 3.0,
                link_overlapped_us: 2.25,
                link_plain_us: 4.0,
            }],
            chains: vec![ChainRow {
                k: 576,
                layers: 227,
                blocks: 72,
                persistent_us: 2.0,
                launched_us: 5.0,
                persistent_gb_s: 331.8,
                launched_gb_s: 132.7,
            }],
            kernels: vec![],
        };
        let md = r.markdown();
        assert!(
            md.contains("| 396 | 3 | 1.23 | 2.50 | 0.40 | 2.25 | 4.00 | 3.00 |"),
            "{md}"
        );
        assert!(md.contains("1056 blocks of 256 threads resident"), "{md}");
        assert!(
            md.contains("| 576 | 227 | 72 | 2.00 | 332 | 5.00 | 133 | 2.50 |"),
            "{md}"
        );
    }
}
