pub mod tiny_hf;
