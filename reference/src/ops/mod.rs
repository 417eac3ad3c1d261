//! The primitives of the forward pass, one per file, each small enough to check by eye.
//! Shapes are the contract; mismatched shapes are programming errors and panic (the model
//! validates every weight shape once, in [`crate::Model::new`]).

pub mod attention;
pub mod embedding;
pub mod gated;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod softcap;
pub mod softmax;

pub use attention::{attention, attention_windowed, attention_with, Scores};
pub use embedding::embedding;
pub use gated::{gated, geglu, swiglu};
pub use linear::linear;
pub use rms_norm::rms_norm;
pub use softcap::softcap;
pub use softmax::softmax;
