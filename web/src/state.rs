//! The state a loaded text model shares between its JS object (`TextModel`), the promise of
//! a running `next()`, and `Engine.tune`: what a finished load built, and the slot the model's
//! state lives in while no async call has lent it out.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use wasm_bindgen::prelude::*;
use webjit_engine::model::generate::{Generation, Session};
use webjit_engine::tokenizer::spm::Utf8Stream;
use webjit_engine::tokenizer::text::TextTokenizer;
use webjit_engine::Tensor;

use crate::chat::ModelTemplate;
use crate::js_err;

/// A finished load: the session, its tokenizer, and the streamed prompt's ids and last logits
/// when one was prefilled.
pub(crate) struct Built {
    pub(crate) session: Session,
    pub(crate) tok: TextTokenizer,
    pub(crate) arch: String,
    /// The chat template: the GGUF's, or the built-in one of its architecture.
    pub(crate) template: ModelTemplate,
    pub(crate) prefilled: Option<(Vec<u32>, Tensor)>,
}

/// The model `tune()` works on: the text model loaded last, while it lives.
pub(crate) type CurrentModel = Rc<RefCell<Weak<RefCell<Slot>>>>;

pub(crate) struct Running {
    pub(crate) gen: Generation,
    pub(crate) text: Utf8Stream,
    pub(crate) prefill_ms: f64,
    pub(crate) decode_ms: f64,
}

impl Running {
    pub(crate) fn new(gen: Generation) -> Self {
        Self {
            gen,
            text: Utf8Stream::default(),
            prefill_ms: 0.0,
            decode_ms: 0.0,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) session: Session,
    pub(crate) running: Option<Running>,
    /// A prompt prefilled while the file streamed in, with its last logits, until
    /// `startPrefilled` (or any other use of the model) takes them.
    pub(crate) prefilled: Option<(Vec<u32>, Tensor)>,
}

/// The model's state: lent out while a `next()` awaits the GPU.
pub(crate) enum Slot {
    Ready(Box<Inner>),
    Busy,
    Freed,
}

/// Lends the model's state to an async call (`BUSY` while another one has it).
pub(crate) fn take(inner: &RefCell<Slot>, busy: &str) -> Result<Box<Inner>, JsValue> {
    match std::mem::replace(&mut *inner.borrow_mut(), Slot::Busy) {
        Slot::Ready(i) => Ok(i),
        other => {
            let is_busy = matches!(other, Slot::Busy);
            *inner.borrow_mut() = other;
            Err(if is_busy {
                js_err("BUSY", busy)
            } else {
                js_err("DISPOSED", "the model was disposed")
            })
        }
    }
}

/// Gives the state back, unless the model was freed meanwhile (then it drops here).
pub(crate) fn give_back(inner: &RefCell<Slot>, i: Box<Inner>) {
    let mut slot = inner.borrow_mut();
    if matches!(*slot, Slot::Busy) {
        *slot = Slot::Ready(i);
    }
}
