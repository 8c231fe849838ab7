//! `Embedder`: a BERT sentence encoder (mean pooling, L2 normalization).

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use webjit_engine::model::bert::Bert;
use webjit_engine::Engine;

use crate::{invalid, js_error};

/// Sentences per GPU batch.
const BATCH: usize = 32;

#[wasm_bindgen(js_name = Embedder)]
pub struct WebEmbedder {
    engine: Engine,
    /// `None` once freed.
    bert: Option<Rc<Bert>>,
}

impl WebEmbedder {
    /// An embedder over a model already built (`ModelLoad.finishEmbedder`).
    pub(crate) fn from_bert(engine: Engine, bert: Bert) -> Self {
        Self {
            engine,
            bert: Some(Rc::new(bert)),
        }
    }
}

/// sentence-transformers' `max_seq_length` as the page gives it: 0 means 512.
pub(crate) fn max_seq_len_of(n: u32) -> usize {
    if n == 0 {
        512
    } else {
        n as usize
    }
}

#[wasm_bindgen(js_class = Embedder)]
impl WebEmbedder {
    /// Embeds a JSON array of strings; resolves to n * dim floats, row per text.
    pub fn embed(&self, texts_json: &str) -> Result<js_sys::Promise, JsValue> {
        let texts: Vec<String> = serde_json::from_str(texts_json)
            .map_err(|e| invalid(format!("texts: {e} (expected a JSON array of strings)")))?;
        let bert = self.model()?.clone();
        let engine = self.engine.clone();
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let (_, emb) = bert
                .embed_async(&engine, &refs, BATCH)
                .await
                .map_err(js_error)?;
            let flat: Vec<f32> = emb.into_iter().flatten().collect();
            Ok(js_sys::Float32Array::from(&flat[..]).into())
        }))
    }

    /// For a JSON array of strings: 1 for each text longer than the max sequence length (its
    /// embedding covers only the first tokens), else 0.
    pub fn truncated(&self, texts_json: &str) -> Result<Vec<u8>, JsValue> {
        let texts: Vec<String> = serde_json::from_str(texts_json)
            .map_err(|e| invalid(format!("texts: {e} (expected a JSON array of strings)")))?;
        let bert = self.model()?;
        texts
            .iter()
            .map(|t| bert.is_truncated(t).map(u8::from).map_err(js_error))
            .collect()
    }

    /// Width of each embedding.
    pub fn dim(&self) -> Result<usize, JsValue> {
        Ok(self.model()?.config.hidden_size)
    }

    /// Token ids of `text` (with [CLS]/[SEP], truncated to the model's length).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.model()?.tokenize(text).map_err(js_error)
    }
}

impl WebEmbedder {
    fn model(&self) -> Result<&Rc<Bert>, JsValue> {
        self.bert
            .as_ref()
            .ok_or_else(|| crate::js_err("DISPOSED", "the embedder was disposed"))
    }
}

impl Drop for WebEmbedder {
    fn drop(&mut self) {
        // Release the weights first (a running embed() keeps its own reference), then
        // give the pooled buffers back.
        self.bert.take();
        self.engine.pool.trim();
        self.engine.forget_bind_groups();
    }
}
