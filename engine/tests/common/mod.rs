pub mod cli;
pub mod gpu;
pub mod tiny_hf;
