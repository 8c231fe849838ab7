//! Tokenizers. BERT's WordPiece goes through the `tokenizers` crate (built without C
//! dependencies, so it also compiles for wasm32). Gemma's SentencePiece vocabulary is built from
//! GGUF metadata by `spm`.

pub mod spm;
pub mod wordpiece;
