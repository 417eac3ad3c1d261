pub mod cli;
pub mod gpu;
pub mod http;
pub mod openai;
pub mod tiny_hf;
pub mod tokenizer;
