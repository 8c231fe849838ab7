//! Tokenizers. BERT's WordPiece goes through the `tokenizers` crate (built without C
//! dependencies, so it also compiles for wasm32).

pub mod wordpiece;
