//! Chat templates in the browser: the engine's Jinja renderer (`webjit_engine::chat`), for a
//! loaded model (its own `tokenizer.chat_template`, or a template string from the caller) and
//! without one (`renderChat`, so a page can write the first turn before the model is there).

use wasm_bindgen::prelude::*;
use webjit_engine::chat::{ChatMessage, ChatTemplate, TemplateError};
use webjit_engine::loader::{MetaEntry, MetaValue};
use webjit_engine::tokenizer::text::TextTokenizer;
use webjit_engine::Error;

use crate::{invalid, js_err, parse_opts};

/// Gemma 3's published chat template: the Gemma 3 GGUFs people fetch (and the one the tests
/// use) carry none, and `webjit chat` falls back to the same file for them.
const GEMMA3_TEMPLATE: &str = include_str!("../../demo/templates/gemma3.jinja");

/// The template a model of `architecture` gets when its file has none (only `gemma3`).
fn builtin(architecture: &str) -> Option<&'static str> {
    (architecture == "gemma3").then_some(GEMMA3_TEMPLATE)
}

/// The template the package uses for a model of `architecture` whose GGUF has no
/// `tokenizer.chat_template` (`gemma3`: Gemma 3's published one), or undefined.
#[wasm_bindgen(js_name = builtinChatTemplate)]
pub fn builtin_chat_template(architecture: &str) -> Option<String> {
    builtin(architecture).map(str::to_string)
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RenderOpts {
    bos_token: Option<String>,
    eos_token: Option<String>,
    add_generation_prompt: Option<bool>,
}

/// `template` applied to `messages_json` (`[{role, content}]`) without a model. options:
/// `{bosToken, eosToken, addGenerationPrompt}` (the texts templates write for `bos_token` /
/// `eos_token`, empty by default; the generation prompt is on by default).
#[wasm_bindgen(js_name = renderChat)]
pub fn render_chat(
    messages_json: &str,
    template: &str,
    options_json: &str,
) -> Result<String, JsValue> {
    let o: RenderOpts = parse_opts("chatPrompt", options_json)?;
    let msgs = messages(messages_json)?;
    let t = ChatTemplate::new(template).map_err(template_error)?;
    t.render(
        &msgs,
        o.add_generation_prompt.unwrap_or(true),
        o.bos_token.as_deref().unwrap_or(""),
        o.eos_token.as_deref().unwrap_or(""),
    )
    .map_err(template_error)
}

/// Parses `[{role, content}]`.
pub(crate) fn messages(json: &str) -> Result<Vec<ChatMessage>, JsValue> {
    serde_json::from_str(json).map_err(|e| {
        invalid(format!(
            "messages: {e} (expected an array of {{role: string, content: string}})"
        ))
    })
}

/// A template error as a JS error with code CHAT_TEMPLATE; a missing template says how to
/// pass one here.
pub(crate) fn template_error(e: TemplateError) -> JsValue {
    let msg = match e {
        TemplateError::Missing => "the model has no chat template (GGUF key \
             `tokenizer.chat_template`): pass one as a Jinja string, chatPrompt(messages, \
             {template}) / chat(messages, {template}), or generate from plain text"
            .to_string(),
        other => other.to_string(),
    };
    let err = js_err("CHAT_TEMPLATE", msg);
    let _ = js_sys::Reflect::set(&err, &"detail".into(), &"CHAT_TEMPLATE".into());
    err
}

/// A loaded model's chat template, resolved once at load: the GGUF's, else the built-in one
/// of its architecture. A template that does not parse is kept as its error, so that the load
/// succeeds (plain-text generation does not need it) and each chat call reports why.
pub(crate) struct ModelTemplate {
    template: Result<Option<ChatTemplate>, TemplateError>,
    /// Where it came from: "gguf", "builtin:<architecture>" or "none".
    pub(crate) origin: String,
}

impl ModelTemplate {
    pub(crate) fn from_gguf(meta: &[MetaEntry]) -> Self {
        match ChatTemplate::from_gguf(meta) {
            Ok(Some(t)) => Self {
                template: Ok(Some(t)),
                origin: "gguf".into(),
            },
            Err(e) => Self {
                template: Err(e),
                origin: "gguf".into(),
            },
            Ok(None) => {
                let arch = meta
                    .iter()
                    .find(|e| e.key == "general.architecture")
                    .and_then(|e| match &e.value {
                        MetaValue::Str(s) => Some(s.as_str()),
                        _ => None,
                    })
                    .unwrap_or("");
                match builtin(arch) {
                    Some(src) => Self {
                        template: ChatTemplate::new(src).map(Some),
                        origin: format!("builtin:{arch}"),
                    },
                    None => Self {
                        template: Ok(None),
                        origin: "none".into(),
                    },
                }
            }
        }
    }

    /// The caller's template when given (parsed here), else the model's.
    fn pick<T>(
        &self,
        caller: Option<&str>,
        f: impl FnOnce(&ChatTemplate) -> Result<T, JsValue>,
    ) -> Result<T, JsValue> {
        match caller {
            Some(src) => f(&ChatTemplate::new(src).map_err(template_error)?),
            None => match &self.template {
                Ok(Some(t)) => f(t),
                Ok(None) => Err(template_error(TemplateError::Missing)),
                Err(e) => Err(template_error(e.clone())),
            },
        }
    }

    /// The prompt text of `messages_json`.
    pub(crate) fn text(
        &self,
        tok: &TextTokenizer,
        messages_json: &str,
        caller: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<String, JsValue> {
        let msgs = messages(messages_json)?;
        self.pick(caller, |t| {
            t.render_for(tok, &msgs, add_generation_prompt)
                .map_err(template_error)
        })
    }

    /// The prompt ids of `messages_json`, as `ChatTemplate::prompt_ids`: the model's BOS only
    /// when the text does not already start with it.
    pub(crate) fn ids(
        &self,
        tok: &TextTokenizer,
        messages_json: &str,
        caller: Option<&str>,
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, JsValue> {
        let msgs = messages(messages_json)?;
        self.pick(caller, |t| {
            t.prompt_ids(tok, &msgs, add_generation_prompt)
                .map(|(_, ids)| ids)
                .map_err(|e| match e {
                    Error::ChatTemplate(t) => template_error(t),
                    other => crate::js_error(other),
                })
        })
    }
}
