//! The KV cache: for every layer, the rotated keys and the values of every position seen so far.
//!
//! Layout per layer: `(n_kv_heads, capacity, head_dim)`; positions `0..len` are valid, the rest
//! is workspace. All layers share one `len`: a forward pass appends the same positions to each.

use ndarray::{s, Array3, ArrayView3};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct KvCache {
    /// Per layer: (n_kv_heads, capacity, head_dim)
    k: Vec<Array3<f32>>,
    /// Per layer: (n_kv_heads, capacity, head_dim)
    v: Vec<Array3<f32>>,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `capacity` positions.
    pub fn new(n_layers: usize, n_kv_heads: usize, capacity: usize, head_dim: usize) -> KvCache {
        let zeros = || Array3::zeros((n_kv_heads, capacity, head_dim));
        KvCache {
            k: (0..n_layers).map(|_| zeros()).collect(),
            v: (0..n_layers).map(|_| zeros()).collect(),
            capacity,
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of valid positions (the position the next token will take).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn n_layers(&self) -> usize {
        self.k.len()
    }

    /// Keys of `layer` at positions `0..len`: (n_kv_heads, len, head_dim). Panics if
    /// `layer >= n_layers()`.
    #[track_caller]
    pub fn k(&self, layer: usize) -> ArrayView3<'_, f32> {
        self.k[layer].slice(s![.., ..self.len, ..])
    }

    /// Values of `layer` at positions `0..len`: (n_kv_heads, len, head_dim). Panics if
    /// `layer >= n_layers()`.
    #[track_caller]
    pub fn v(&self, layer: usize) -> ArrayView3<'_, f32> {
        self.v[layer].slice(s![.., ..self.len, ..])
    }

    /// Roll back to the first `len` positions (no-op if `len >= self.len()`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Checks that `n` more positions fit; the error leaves the cache untouched.
    pub(crate) fn check_room(&self, n: usize) -> Result<()> {
        let requested = self.len + n;
        if requested > self.capacity {
            return Err(Error::CacheFull {
                capacity: self.capacity,
                requested,
            });
        }
        Ok(())
    }

    /// Writes `k`, `v` (n_kv_heads, seq, head_dim) of `layer` at positions `len..len + seq`
    /// and returns that layer's keys and values at `0..len + seq`. `len` itself moves only in
    /// [`KvCache::advance`], once every layer has been written.
    #[track_caller]
    pub(crate) fn write(
        &mut self,
        layer: usize,
        k: ArrayView3<f32>,
        v: ArrayView3<f32>,
    ) -> (ArrayView3<'_, f32>, ArrayView3<'_, f32>) {
        let end = self.len + k.dim().1;
        self.k[layer]
            .slice_mut(s![.., self.len..end, ..])
            .assign(&k);
        self.v[layer]
            .slice_mut(s![.., self.len..end, ..])
            .assign(&v);
        (
            self.k[layer].slice(s![.., ..end, ..]),
            self.v[layer].slice(s![.., ..end, ..]),
        )
    }

    /// Marks `n` more positions valid (after [`KvCache::write`] on every layer).
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
