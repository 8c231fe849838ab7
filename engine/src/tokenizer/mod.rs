//! Tokenizers. BERT's WordPiece goes through the `tokenizers` crate (built without C
//! dependencies, so it also compiles for wasm32). LLM vocabularies are built from GGUF
//! metadata: SentencePiece (`tokenizer.ggml.model = llama`) by `spm`, byte-level BPE (`gpt2`)
//! by `bpe` (on the `tokenizers` crate's BPE model and pre-tokenizers); `text::TextTokenizer`
//! picks one for a model.

pub mod bpe;
mod meta;
pub mod spm;
pub mod text;
pub mod vocab;
pub mod wordpiece;
