//! The KV cache: one contiguous arena per sequence (DESIGN.md "KV cache").

use crate::backend::{Backend, TensorInfo};
use crate::error::{Error, Result};
use crate::tensor::DType;

/// Shape of a KV arena.
///
/// **Layout invariant.** The arena is one buffer of `2 · n_layers · n_kv_heads · capacity ·
/// head_dim` elements of `dtype`, indexed as `[layer][kv][head][position][dim]` with `kv` 0 for K
/// and 1 for V:
/// `offset(layer, kv, head, pos, d) = (((layer · 2 + kv) · n_kv_heads + head) · capacity + pos) · head_dim + d`.
/// Within one (layer, kv, head) the positions are contiguous rows of `head_dim` elements, so a
/// wave of 64 lanes reading 16-byte vectors covers `64·16 / (head_dim·sizeof)` consecutive
/// positions in one coalesced sweep (8 positions for head_dim 64 in f16), for any wave size.
/// The decode kernel (`kernels/decode_attention.hip`) reads a position's row as `head_dim / 8`
/// 16-byte vectors (8 f16/bf16 each), one per lane: a key takes the next power of two of lanes
/// (8 for head_dim 64, 16 for 128, 32 for 256; lanes past `head_dim / 8` idle for 80, 96), so a
/// wave32 reads 32 / that many consecutive positions per instruction (1 at head_dim 256, 2 at
/// 128, 4 at 64) and a wave64 twice as many, each row one aligned run of `head_dim · 2` bytes
/// (rows start on 16 bytes when the arena does and head_dim is a multiple of 8; no padding is
/// needed). The prefill kernel (`kernels/flash_attention.hip`, 16-bit K/V, head_dim a multiple
/// of 16 up to 256) copies tiles of 32 positions (16 at head_dim 256) of one (layer, kv, head)
/// into shared memory, each thread 16-byte pieces of the rows (`head_dim / 8` a row; a
/// 256-thread block fetches a whole tile in one or two instructions a thread, at either wave
/// size);
/// the tile rows are padded there by 8 elements so the matrix-fragment reads hit distinct
/// banks. Positions past the block's last query are never fetched (their tile rows are zeros).
/// Positions `len..capacity` hold stale or unwritten data and are never read.
///
/// **Q8_0** (`DType::Q8_0Kv`, [`crate::kv_quant`]): the same element order, each run of 32
/// elements of a row one Q8_0 block (f16 scale, 32 int8), stored in 256-element superblocks of
/// 272 bytes (the quants, then the 8 scales), so `head_dim` must be a multiple of 32 and a row
/// is `head_dim / 32` whole blocks: 34 bytes a block against 64 in f16 (0.53×). A row's quants
/// are one aligned run of `head_dim` bytes except where the row crosses a superblock (head_dim
/// 96, 160, …: two runs, each a multiple of 16 bytes, aligned); the decode kernel reads 8 quants
/// (8 bytes) a lane where it reads 8 f16 (16 bytes) for the 16-bit types, and the block's scale
/// beside them (4 lanes share it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLayout {
    pub n_layers: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub capacity: usize,
    pub dtype: DType,
}

impl KvLayout {
    /// Elements in the whole arena.
    pub fn elems(&self) -> usize {
        2 * self.n_layers * self.n_kv_heads * self.capacity * self.head_dim
    }

    /// Bytes of K and V of one position over all layers: what attention reads per position
    /// (Q8_0: 34 bytes a block of 32).
    pub fn bytes_per_position(&self) -> usize {
        let n = 2 * self.n_layers * self.n_kv_heads * self.head_dim;
        match self.dtype {
            DType::Q8_0Kv => n / 32 * 34,
            d => n * d.block_bytes(),
        }
    }

    /// Bytes of the whole arena: `2 · layers · kv_heads · head_dim · capacity · sizeof(dtype)`
    /// (Q8_0: whole superblocks).
    pub fn bytes(&self) -> usize {
        self.dtype.bytes_for(self.elems())
    }

    /// Element offset of `(layer, kv, head, pos, 0)`; `kv` is 0 for K, 1 for V.
    pub fn offset(&self, layer: usize, kv: usize, head: usize, pos: usize) -> usize {
        (((layer * 2 + kv) * self.n_kv_heads + head) * self.capacity + pos) * self.head_dim
    }
}

/// The `--kv-type` spelling of a KV cache dtype (`q8_0` for the cache's Q8_0).
pub fn kv_type_name(dtype: DType) -> String {
    match dtype {
        DType::Q8_0Kv => "q8_0".into(),
        d => d.name().to_lowercase(),
    }
}

/// A point to roll back to (speculative decoding, shared prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvSnapshot {
    len: usize,
}

impl KvSnapshot {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A KV arena of backend tensor type `T` (`KvCache<B::Tensor>`).
pub struct KvCache<T> {
    arena: T,
    layout: KvLayout,
    len: usize,
}

fn check_layout(layout: &KvLayout) -> Result<()> {
    if !matches!(
        layout.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::Q8_0Kv
    ) {
        return Err(Error::InvalidRequest(format!(
            "KV cache dtype {} is not supported",
            layout.dtype
        )));
    }
    if layout.dtype == DType::Q8_0Kv && !layout.head_dim.is_multiple_of(crate::kv_quant::BLOCK) {
        return Err(Error::InvalidRequest(format!(
            "a Q8_0 KV cache needs a head_dim that is a multiple of 32, not {}",
            layout.head_dim
        )));
    }
    if layout.capacity == 0 {
        return Err(Error::InvalidRequest(
            "KV cache capacity must be at least 1".into(),
        ));
    }
    Ok(())
}

impl<T: TensorInfo> KvCache<T> {
    pub fn new<B: Backend<Tensor = T>>(backend: &B, layout: KvLayout) -> Result<Self> {
        check_layout(&layout)?;
        let arena = backend.alloc(layout.dtype, layout.elems())?;
        Ok(KvCache {
            arena,
            layout,
            len: 0,
        })
    }

    /// A cache over an arena the caller made (conformance poisons it and adds guard elements
    /// past `layout.elems()`); the arena must have the layout's dtype and at least its size.
    pub fn from_arena(arena: T, layout: KvLayout) -> Result<Self> {
        check_layout(&layout)?;
        if arena.dtype() != layout.dtype || arena.len() < layout.elems() {
            return Err(Error::InvalidRequest(format!(
                "a {} arena of {} elements cannot hold {layout:?}",
                arena.dtype(),
                arena.len()
            )));
        }
        Ok(KvCache {
            arena,
            layout,
            len: 0,
        })
    }

    /// Gives the arena back (conformance reads its guard elements).
    pub fn into_arena(self) -> T {
        self.arena
    }

    /// Marks `len` positions as written (conformance fills arenas directly).
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.layout.capacity {
            return Err(Error::ContextFull {
                capacity: self.layout.capacity,
                requested: len,
            });
        }
        self.len = len;
        Ok(())
    }

    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    pub fn capacity(&self) -> usize {
        self.layout.capacity
    }

    /// Positions written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn remaining(&self) -> usize {
        self.layout.capacity - self.len
    }

    pub fn bytes(&self) -> usize {
        self.layout.bytes()
    }

    pub fn arena(&self) -> &T {
        &self.arena
    }

    pub fn arena_mut(&mut self) -> &mut T {
        &mut self.arena
    }

    /// Errors with `ContextFull` unless `n` more positions fit.
    pub fn check_room(&self, n: usize) -> Result<()> {
        if n > self.remaining() {
            return Err(Error::ContextFull {
                capacity: self.layout.capacity,
                requested: self.len + n,
            });
        }
        Ok(())
    }

    /// Marks `n` more positions as written (after the backend wrote them).
    pub(crate) fn advance(&mut self, n: usize) -> Result<()> {
        self.check_room(n)?;
        self.len += n;
        Ok(())
    }

    pub fn snapshot(&self) -> KvSnapshot {
        KvSnapshot { len: self.len }
    }

    /// Forgets every position from `len` on (a snapshot's [`KvSnapshot::len`], or the
    /// accepted length after a speculative verification): only the length moves, nothing is
    /// copied, and the next forward writes over those positions. Rolling forward is an error
    /// ([`Error::KvRollForward`]) and changes nothing.
    pub fn rollback_to(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::KvRollForward {
                len: self.len,
                requested: len,
            });
        }
        self.len = len;
        Ok(())
    }

    /// Empties the cache (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// K and V of `layer` for positions `0..len`, as f32 `(n_kv_heads, len, head_dim)` each.
    pub fn read_layer<B: Backend<Tensor = T>>(
        &self,
        backend: &B,
        layer: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        if layer >= self.layout.n_layers {
            return Err(Error::InvalidRequest(format!(
                "layer {layer} out of range ({} layers)",
                self.layout.n_layers
            )));
        }
        let l = &self.layout;
        let mut k = Vec::with_capacity(l.n_kv_heads * self.len * l.head_dim);
        let mut v = Vec::with_capacity(k.capacity());
        // Layer `layer`'s K heads then V heads are one contiguous range of the arena.
        let start = l.offset(layer, 0, 0, 0);
        let span = 2 * l.n_kv_heads * l.capacity * l.head_dim;
        let all = backend.download_range_f32(&self.arena, start, span)?;
        for (kv, out) in [(0, &mut k), (1, &mut v)] {
            for h in 0..l.n_kv_heads {
                let o = l.offset(layer, kv, h, 0) - start;
                out.extend_from_slice(&all[o..o + self.len * l.head_dim]);
            }
        }
        Ok((k, v))
    }
}
