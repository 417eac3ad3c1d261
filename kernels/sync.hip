// Grid-wide synchronisation inside one launch (common.h's grid barriers: the phase boundary of
// a persistent decode kernel, issue 8) against the kernel-to-kernel transition it would
// replace, as two probes that `wavefront bench --sync` times and the engine's device tests
// (engine/src/backend/gpu/tests.rs, `sync_*`) check:
//   sync_barrier_probe: `rounds` grid barriers of the kind `mode` names (0 counted, 1
//     generation, 2 none: every block arrives and nobody waits, the planted bug the check
//     must catch). Before barrier i (i = 1 … rounds) block b writes i into its mark of parity
//     i mod 2, marks[(i mod 2) · blocks + b]; after it, it reads the mark of block
//     (b + i) mod blocks of that parity and counts a value other than i in errors[0]. A barrier
//     that lets a block through before every block arrived shows as an error; the parity keeps
//     a block running ahead to round i + 1 from overwriting a mark still being read.
//   sync_chain_probe: one link of a chain of launches, launched overlapped (common.h) or
//     plainly: it lets the next link start and waits for the one ahead (as the GEMVs do), then
//     block b reads the mark of block (b + 1) mod blocks that link − 1 wrote (parity
//     (link − 1) mod 2; link 0 reads none), counts a value other than link − 1 in errors[0],
//     and writes link into its own mark of parity link mod 2.
//
// Shapes: bar (4 ints: the counted barrier's two, then the generation barrier's two; zero
//         before the first launch, and each kind leaves its own zeroed or reusable); marks
//         (2 · blocks ints); errors (1 int).
// Launch: grid (blocks); block SYNC_BLOCK = 256 (8 waves at WAVE=32, 4 at 64); no dynamic shared
//   memory. sync_barrier_probe: every block resident at once (blocks ≤ multiprocessors × the
//   blocks one holds, the host's check; a larger grid would never get past its first barrier).
// Indexing: thread 0 of each block does the marks and the device-scope work; every thread
//   reaches every block barrier (block-uniform).
// Paths (WF_PATH; slot 0 sync_barrier_probe, 1 sync_chain_probe):
//   counted:    mode 0, wf_grid_barrier_counted (and wf_grid_exit at the end)
//   generation: mode 1, wf_grid_barrier
//   none:       mode 2, arrive without waiting (a broken barrier)
//   main:       sync_chain_probe's link

#include "common.h"

constexpr int SYNC_BLOCK = 256;
enum SyncPath { PATH_COUNTED, PATH_GENERATION, PATH_NONE, PATH_MAIN };

extern "C" __global__ void __launch_bounds__(SYNC_BLOCK)
    sync_barrier_probe(int* bar, int* marks, int* errors, int blocks, int rounds, int mode) {
  const int b = block_index_x();
  const bool lead = thread_index() == 0;
  WF_PATH(0, mode == 0 ? PATH_COUNTED : mode == 1 ? PATH_GENERATION : PATH_NONE);
  for (int i = 1; i <= rounds; ++i) {
    int* m = marks + (i & 1) * blocks;
    if (lead) m[b] = i;
    if (mode == 0) {
      wf_grid_barrier_counted(bar, i * blocks);
    } else if (mode == 1) {
      wf_grid_barrier(bar + 2, blocks);
    } else {
      block_sync();
      if (lead) {
        wf_fence_device();
        wf_atomic_add(bar, 1);
      }
      block_sync();
    }
    if (lead && wf_load_coherent_int(m + (b + i) % blocks) != i) wf_atomic_add(errors, 1);
  }
  // The counted barrier's (and the broken one's) arrivals zeroed for the next launch.
  if (mode != 1) wf_grid_exit(bar, blocks);
}

extern "C" __global__ void __launch_bounds__(SYNC_BLOCK)
    sync_chain_probe(int* marks, int* errors, int blocks, int link) {
  wf_allow_dependents();
  wf_dependency_wait();
  const int b = block_index_x();
  if (thread_index() == 0) {
    WF_PATH(1, PATH_MAIN);
    if (link > 0) {
      const int* prev = marks + ((link - 1) & 1) * blocks;
      if (wf_load_coherent_int(prev + (b + 1) % blocks) != link - 1) wf_atomic_add(errors, 1);
    }
    marks[(link & 1) * blocks + b] = link;
  }
}
