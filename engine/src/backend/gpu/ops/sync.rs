//! The grid-synchronisation probes (`kernels/sync.hip`): a grid barrier inside one launch (the
//! phase boundary of a persistent decode kernel) against a transition between two launches (the
//! phase boundary of today's decode step), for `wavefront bench --sync` and the device tests.
//! Not an op of the `Backend` trait: nothing the model runs launches them.

use crate::backend::gpu::vendor::{KernelArg, LaunchConfig};
use crate::backend::gpu::{bad, GpuBackend, GpuBuffer};
use crate::error::Result;

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
        let per_mp = self
            .resident_blocks("sync_barrier_probe", SYNC_BLOCK, 0)?
            .ok_or_else(|| {
                bad(
                    "sync_barrier_probe",
                    "the runtime cannot say how many blocks a multiprocessor holds".into(),
                )
            })?;
        Ok(self.info().multiprocessors.max(1).saturating_mul(per_mp))
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
