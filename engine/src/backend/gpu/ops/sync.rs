//! The grid-synchronisation probes (`kernels/sync.hip`): a grid barrier inside one launch (the
//! phase boundary of a persistent decode kernel) against a transition between two launches (the
//! phase boundary of today's decode step), for `wavefront bench --sync` and the device tests.
//! Not an op of the `Backend` trait: nothing the model runs launches them.

use crate::backend::gpu::vendor::{KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, GpuBackend, GpuBuffer, GpuTensor};
use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::DType;

/// The blocks of `name` the device holds at once (`ops::resident_grid`), or an error where the
/// runtime cannot say: a grid barrier over blocks that are not all resident never returns.
fn resident_grid_known(b: &GpuBackend, name: &str, block: u32, shared: u32) -> Result<u32> {
    super::resident_grid(b, name, block, shared)?.ok_or_else(|| {
        bad(
            name,
            "the runtime cannot say how many blocks a multiprocessor holds".into(),
        )
    })
}

/// Threads per block of both probes (ABI: `SYNC_BLOCK`).
const SYNC_BLOCK: u32 = 256;

/// Which grid barrier `sync_barrier_probe` runs (the kernel's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarrierKind {
    /// common.h `wf_grid_barrier_counted`: one atomic, then polls of the same word.
    Counted,
    /// common.h `wf_grid_barrier`: the last block to arrive bumps a generation the others poll.
    Generation,
    /// Every block arrives and nobody waits: a broken barrier (the planted bug a check of the
    /// probe must catch; timed, the cost of the arrival alone).
    None,
}

impl BarrierKind {
    fn mode(self) -> i32 {
        match self {
            BarrierKind::Counted => 0,
            BarrierKind::Generation => 1,
            BarrierKind::None => 2,
        }
    }
}

/// The probes' device state for one grid size: the barriers' words, the blocks' marks, the
/// error count (all zero when made).
pub struct SyncProbe {
    blocks: u32,
    /// The grid the device holds at once (`GpuBackend::sync_resident_blocks`).
    resident: u32,
    bar: GpuBuffer,
    marks: GpuBuffer,
    errors: GpuBuffer,
}

impl GpuBackend {
    /// Blocks of the probes the device holds at once: multiprocessors × the blocks one holds
    /// (the runtime's occupancy calculator). An error where the runtime cannot say: a grid
    /// barrier over blocks that are not all resident never returns.
    pub fn sync_resident_blocks(&self) -> Result<u32> {
        resident_grid_known(self, "sync_barrier_probe", SYNC_BLOCK, 0)
    }

    /// The probes' state for a grid of `blocks` (1 ..= `sync_resident_blocks`), zeroed.
    pub fn sync_probe(&self, blocks: u32) -> Result<SyncProbe> {
        let resident = self.sync_resident_blocks()?;
        if blocks == 0 || blocks > resident {
            return Err(bad(
                "sync_barrier_probe",
                format!("{blocks} blocks: the device holds 1 to {resident} at once"),
            ));
        }
        let zeroed = |bytes: usize| -> Result<GpuBuffer> {
            let buf = GpuBuffer::new(&self.vendor, bytes)?;
            self.vendor.memset(buf.ptr, 0, bytes)?;
            Ok(buf)
        };
        Ok(SyncProbe {
            blocks,
            resident,
            bar: zeroed(4 * 4)?,
            marks: zeroed(2 * 4 * blocks as usize)?,
            errors: zeroed(4)?,
        })
    }
}

impl SyncProbe {
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid: (self.blocks, 1, 1),
            block: (SYNC_BLOCK, 1, 1),
            shared_bytes: 0,
        }
    }

    /// Queues one launch of `sync_barrier_probe`: `rounds` barriers of `kind`.
    pub fn barrier(&self, b: &GpuBackend, kind: BarrierKind, rounds: u32) -> Result<()> {
        // The counted barrier's word reaches rounds · blocks.
        let max = i32::MAX as u64 / u64::from(self.blocks);
        if u64::from(rounds) > max {
            return Err(bad(
                "sync_barrier_probe",
                format!("{rounds} rounds over {} blocks: at most {max}", self.blocks),
            ));
        }
        debug_assert!(self.blocks <= self.resident);
        let args = [
            KernelArg::Ptr(self.bar.ptr),
            KernelArg::Ptr(self.marks.ptr),
            KernelArg::Ptr(self.errors.ptr),
            KernelArg::I32(self.blocks as i32),
            KernelArg::I32(rounds as i32),
            KernelArg::I32(kind.mode()),
        ];
        // SAFETY: bar holds 4 ints, marks 2 · blocks, errors 1; blocks ≤ the resident grid
        // (sync_probe checked), so every barrier is passed.
        unsafe { b.launch("sync_barrier_probe", self.config(), &args) }
    }

    /// Queues links `first .. first + n` of `sync_chain_probe`, each launched overlapped (as
    /// the decode step's GEMVs are) or plainly. A chain starts at link 0 (which checks
    /// nothing); link i checks the marks link i − 1 wrote.
    pub fn chain(&self, b: &GpuBackend, first: u32, n: u32, overlapped: bool) -> Result<()> {
        for link in first..first.saturating_add(n) {
            let args = [
                KernelArg::Ptr(self.marks.ptr),
                KernelArg::Ptr(self.errors.ptr),
                KernelArg::I32(self.blocks as i32),
                KernelArg::I32(
                    i32::try_from(link)
                        .map_err(|_| bad("sync_chain_probe", format!("link {link} past i32")))?,
                ),
            ];
            // SAFETY: marks holds 2 · blocks ints, errors 1.
            unsafe {
                if overlapped {
                    b.launch_overlapped("sync_chain_probe", self.config(), &args)?;
                } else {
                    b.launch("sync_chain_probe", self.config(), &args)?;
                }
            }
        }
        Ok(())
    }

    /// The errors counted since the probe was made or last cleared (waits for the device).
    pub fn errors(&self, b: &GpuBackend) -> Result<i32> {
        let mut w = [0u8; 4];
        b.vendor.dtoh(&mut w, self.errors.ptr)?;
        Ok(i32::from_le_bytes(w))
    }

    /// The barriers' words: the counted barrier's arrivals and exits (zero after every
    /// launch), the generation barrier's arrivals (zero between launches) and generation.
    pub fn barrier_words(&self, b: &GpuBackend) -> Result<[i32; 4]> {
        let mut w = [0u8; 16];
        b.vendor.dtoh(&mut w, self.bar.ptr)?;
        Ok(std::array::from_fn(|i| {
            i32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
        }))
    }

    /// Zeroes the error count.
    pub fn clear_errors(&self, b: &GpuBackend) -> Result<()> {
        b.vendor.memset(self.errors.ptr, 0, 4)
    }
}

/// A chain of `layers` square bf16 GEMVs (k × k), layer l's input the output of layer l − 1,
/// each with an RMSNorm prologue: run as one persistent launch (`gemv_chain_bf16`: a grid
/// barrier between layers) or as `layers` launches of `gemv_bf16` (overlapped, as the decode
/// step launches them). Both give the same bits.
pub struct GemvChain {
    k: usize,
    layers: usize,
    /// The persistent launch's grid: the blocks the device holds at once, at most the row
    /// groups.
    blocks: u32,
    w: GpuTensor,
    /// (layers + 1, k) f32: the input, then each layer's output.
    x: GpuTensor,
    norm: GpuTensor,
    bar: GpuBuffer,
}

impl GpuBackend {
    /// A chain over `w` (layers · k · k bf16 values as bytes), input `x0` (k) and the norm's
    /// weights `norm` (k, shared by the layers).
    pub fn gemv_chain(&self, k: usize, w: &[u8], x0: &[f32], norm: &[f32]) -> Result<GemvChain> {
        const OP: &str = "gemv_chain";
        let per_layer = 2 * k * k;
        if k == 0 || k > i32::MAX as usize || x0.len() != k || norm.len() != k {
            return Err(bad(
                OP,
                format!("k {k}, x0 {}, norm {}", x0.len(), norm.len()),
            ));
        }
        if w.is_empty() || !w.len().is_multiple_of(per_layer) {
            return Err(bad(
                OP,
                format!("{} weight bytes: not whole layers of {per_layer}", w.len()),
            ));
        }
        let layers = w.len() / per_layer;
        let groups = k.div_ceil((super::gemv::GEMV_BLOCK / self.wave) as usize);
        let shared = super::gemv::gemv_shared_bytes(k);
        let resident =
            resident_grid_known(self, "gemv_chain_bf16", super::gemv::GEMV_BLOCK, shared)?;
        let blocks = resident.min(u32::try_from(groups).unwrap_or(u32::MAX));
        let mut x = x0.to_vec();
        x.resize(k * (layers + 1), 0.0);
        let bar = GpuBuffer::new(&self.vendor, 8)?;
        self.vendor.memset(bar.ptr, 0, 8)?;
        Ok(GemvChain {
            k,
            layers,
            blocks,
            w: self.upload(DType::BF16, w)?,
            x: self.upload_f32(&x)?,
            norm: self.upload_f32(norm)?,
            bar,
        })
    }
}

/// The norm's epsilon of both forms of the chain.
const CHAIN_EPS: f32 = 1e-5;

impl GemvChain {
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// The persistent launch's grid.
    pub fn blocks(&self) -> u32 {
        self.blocks
    }

    /// Weight bytes of the whole chain.
    pub fn weight_bytes(&self) -> usize {
        2 * self.k * self.k * self.layers
    }

    /// Queues the chain as one persistent launch.
    pub fn persistent(&self, b: &GpuBackend) -> Result<()> {
        let cfg = LaunchConfig {
            grid: (self.blocks, 1, 1),
            block: (super::gemv::GEMV_BLOCK, 1, 1),
            shared_bytes: super::gemv::gemv_shared_bytes(self.k),
        };
        let args = [
            KernelArg::Ptr(self.w.ptr()),
            KernelArg::Ptr(self.x.ptr()),
            KernelArg::Ptr(self.norm.ptr()),
            KernelArg::F32(CHAIN_EPS),
            KernelArg::I32(self.k as i32),
            KernelArg::I32(self.layers as i32),
            KernelArg::I32(self.blocks as i32),
            KernelArg::Ptr(self.bar.ptr),
        ];
        // SAFETY: w holds layers·k·k bf16, x (layers + 1)·k f32, norm k, bar 2 ints (zero, and
        // left zero by the kernel); blocks ≤ what the device holds at once (gemv_chain).
        unsafe { b.launch("gemv_chain_bf16", cfg, &args) }
    }

    /// Queues the chain as `layers` launches of `gemv_bf16`, overlapped.
    pub fn launched(&self, b: &GpuBackend) -> Result<()> {
        let k = self.k as i32;
        for l in 0..self.layers {
            let g = super::gemv::Gemv {
                dtype: DType::BF16,
                w: self.w.ptr() + (2 * self.k * self.k * l) as u64,
                x: self.x.ptr() + (4 * self.k * l) as u64,
                norm: Some(super::gemv::NormPrologue {
                    w: self.norm.ptr(),
                    eps: CHAIN_EPS,
                }),
                bias: None,
                outs: [self.x.ptr() + (4 * self.k * (l + 1)) as u64, 0, 0],
                parts: [k, 0, 0],
                k,
                residual: false,
                n_in: 1,
            };
            super::gemv::launch_gemv(b, "gemv_chain", &g)?;
        }
        Ok(())
    }

    /// Every layer's output, (layers, k) (waits for the device).
    pub fn outputs(&self, b: &GpuBackend) -> Result<Vec<f32>> {
        b.download_range_f32(&self.x, self.k, self.k * self.layers)
    }

    /// Zeroes the outputs (so that a form that wrote nothing cannot pass for the other).
    pub fn clear_outputs(&self, b: &GpuBackend) -> Result<()> {
        b.vendor.memset(
            self.x.ptr() + (4 * self.k) as u64,
            0,
            4 * self.k * self.layers,
        )
    }
}
