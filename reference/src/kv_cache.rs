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

    /// Forgets positions `len..` (speculative decoding drops the rows of rejected drafts): only
    /// the length moves, nothing is copied, and the next forward writes over those rows.
    /// Rolling forward (`len > self.len()`) is an error and changes nothing.
    pub fn rollback_to(&mut self, len: usize) -> Result<()> {
        if len > self.len {
            return Err(Error::RollForward {
                len: self.len,
                requested: len,
            });
        }
        self.len = len;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn write_advance_view_and_truncate() {
        let mut cache = KvCache::new(2, 3, 4, 2);
        assert_eq!((cache.n_layers(), cache.capacity(), cache.len()), (2, 4, 0));
        assert!(cache.is_empty() && cache.k(1).dim() == (3, 0, 2));
        let k = Array3::from_shape_fn((3, 3, 2), |(h, t, i)| (100 * h + 10 * t + i) as f32 + 1.0);
        let v = k.mapv(|x| -x);
        for layer in 0..2 {
            let (k_all, v_all) = cache.write(layer, k.view(), v.view());
            assert_eq!((k_all, v_all), (k.view(), v.view()));
        }
        assert_eq!(cache.len(), 0, "len moves only on advance");
        cache.advance(3);
        assert_eq!((cache.k(1), cache.v(0)), (k.view(), v.view()));
        assert_eq!(cache.check_room(1), Ok(()));
        let err = Error::CacheFull {
            capacity: 4,
            requested: 5,
        };
        assert_eq!(cache.check_room(2), Err(err));
        cache.truncate(1);
        assert_eq!(cache.k(0), k.slice(s![.., ..1, ..]));
        // Rolling forward is refused and changes nothing; rolling back moves only the length.
        let err = Error::RollForward {
            len: 1,
            requested: 2,
        };
        assert_eq!(cache.rollback_to(2), Err(err));
        assert_eq!(cache.len(), 1);
        cache.advance(2);
        assert_eq!(cache.rollback_to(1), Ok(()));
        assert_eq!((cache.len(), cache.k(0)), (1, k.slice(s![.., ..1, ..])));
        assert_eq!(cache.rollback_to(0), Ok(()));
        assert!(cache.is_empty());
    }
}
