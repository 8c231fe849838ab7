//! Models. Each `forward` reads top-down like the architecture diagram.

pub mod bert;
pub mod decoder;
pub mod generate;
pub mod llm_config;
pub mod perplexity;
pub mod stream_prefill;
pub(crate) mod weights;
