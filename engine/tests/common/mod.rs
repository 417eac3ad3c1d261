pub mod gpu;
pub mod tiny_hf;
pub mod cli;
