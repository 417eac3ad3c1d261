//! The conformance suite: every op of every backend, every KV-cache state and every sampled
//! token, compared against the reference transformer (itself checked against Hugging Face
//! transformers). This is what a kernel author runs before merging a kernel
//! (`wavefront-conformance`), and what golden-token CI runs on ROCm machines.
//!
//! - `compare`: the comparison policy (NaN → inf → NMSE);
//! - `tolerance`: the one tolerance table, each entry derived and explained;
//! - `harness`: seeded never-zero inputs, guard regions, NaN poisoning;
//! - `cases`: one module per backend op — cases as data, with grids and proptest strategies;
//! - `report`: the op × case table and the coverage (ops with no case);
//! - `coverage`: which case reaches which kernel path (GPU);
//! - `bridge`: the reference model built from exactly the weights an engine uses;
//! - `model`: model-level checks (logits, hidden states, KV state, sampled and greedy tokens);
//! - `models`: those checks gathered per model file, as the CLI and tests run them;
//! - `golden`: greedy token streams against transformers' SmolLM2 goldens;
//! - `planted`: a CPU backend with planted bugs, to prove the suite catches them;
//! - `rounded`: the GPU's 16-bit arithmetic on the CPU, with planted end-to-end bugs.

pub mod bridge;
pub mod cases;
pub mod compare;
pub mod coverage;
pub mod golden;
pub mod harness;
pub mod model;
pub mod models;
pub mod planted;
pub mod report;
pub mod rounded;
pub mod tolerance;
