//! Soft-capping (Gemma 2): a value squashed smoothly into (−c, c).

/// `c · tanh(x / c)`, as transformers writes it (`x / c`, `tanh`, `* c`: Gemma 2's
/// `attn_logit_softcapping` in `eager_attention_forward` and `final_logit_softcapping` in
/// `Gemma2ForCausalLM.forward`).
pub fn softcap(x: f32, c: f32) -> f32 {
    (x / c).tanh() * c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_large_values_and_keeps_small_ones() {
        assert_eq!(softcap(0.0, 30.0), 0.0);
        // tanh(t) = t − t³/3 + O(t⁵): far below the cap, x − x³/(3c²) (0.29999 for 0.3, 30).
        assert!((softcap(0.3, 30.0) - (0.3 - 0.027 / 2700.0)).abs() < 1e-7);
        // tanh saturates: the result stays within the cap, with the sign of x.
        assert_eq!(softcap(1e4, 30.0), 30.0);
        assert_eq!(softcap(-1e4, 50.0), -50.0);
        // At x = c: c · tanh(1) = 0.7615942 c.
        assert!((softcap(50.0, 50.0) - 38.079_71).abs() < 1e-4);
    }
}
