//! The primitives of the forward pass, one per file, each small enough to check by eye.
//! Shapes are the contract; mismatched shapes are programming errors and panic (the model
//! validates every weight shape once, in [`crate::Model::new`]).

pub mod attention;
pub mod embedding;
pub mod linear;
pub mod rms_norm;
pub mod rope;
pub mod softmax;
pub mod swiglu;

pub use attention::{attention, attention_windowed};
pub use embedding::embedding;
pub use linear::linear;
pub use rms_norm::rms_norm;
pub use softmax::softmax;
pub use swiglu::swiglu;
