//! The default model (stub).
