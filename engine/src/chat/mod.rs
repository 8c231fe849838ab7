//! Chat templates: a model's own `tokenizer.chat_template` (Jinja, as written by Hugging Face
//! and copied into the GGUF by llama.cpp's converter) rendered with `minijinja`, which also
//! compiles for wasm32, so the browser and the CLI write the same prompt.
//!
//! The environment follows the one `transformers` renders chat templates in (the reference the
//! templates were written against): `trim_blocks` and `lstrip_blocks` on, loop controls
//! (`break`/`continue`), a `tojson` that writes Python's `json.dumps(ensure_ascii=False)`
//! (keys in insertion order, `", "` and `": "` separators), `raise_exception(msg)` and
//! `strftime_now(fmt)`. Python string and dict methods (`.strip()`, `.split()`,
//! `.startswith()`, `.items()`, ...) come from minijinja-contrib's pycompat callback. Each
//! render gets `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and `tools = none`
//! (transformers passes `tools=None` when there are none; templates test `tools is not none`).

mod py;

use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value};
use serde::Serialize;

use crate::loader::{MetaEntry, MetaValue};
use crate::tokenizer::text::TextTokenizer;

pub use py::Date;

/// The GGUF metadata key of the model's default chat template.
pub const GGUF_KEY: &str = "tokenizer.chat_template";

/// One turn of a conversation. `role` is usually `system`, `user` or `assistant`; what a
/// template does with other roles is up to the template (many raise an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Why a chat prompt could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The model has no `tokenizer.chat_template` and the caller gave none.
    Missing,
    /// The metadata value is not a string.
    NotAString { found: String },
    /// The template does not parse; `line` is 1-based when known.
    Syntax { line: Option<usize>, detail: String },
    /// The template called `raise_exception(message)`: it refuses these messages (for example
    /// roles that do not alternate, or a role it does not support).
    Raised { message: String },
    /// Rendering failed for another reason (an undefined name, a wrong type, an unsupported
    /// filter or method); `line` is 1-based when known.
    Render { line: Option<usize>, detail: String },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |line: &Option<usize>| line.map(|l| format!(" at line {l}")).unwrap_or_default();
        match self {
            TemplateError::Missing => write!(
                f,
                "the model has no chat template (GGUF key `{GGUF_KEY}`); pass a Jinja chat \
                 template string, or give the prompt as plain text"
            ),
            TemplateError::NotAString { found } => {
                write!(f, "GGUF key `{GGUF_KEY}` is not a string ({found})")
            }
            TemplateError::Syntax { line, detail } => {
                write!(f, "the chat template does not parse{}: {detail}", at(line))
            }
            TemplateError::Raised { message } => {
                write!(f, "the chat template refused the messages: {message}")
            }
            TemplateError::Render { line, detail } => {
                write!(f, "the chat template failed{}: {detail}", at(line))
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// The message of a `raise_exception` call, carried as the minijinja error's source so that a
/// render failure can tell it from the engine's own errors.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

const NAME: &str = "chat_template";

/// A parsed chat template, ready to render conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Parses `source`. A syntax error is `TemplateError::Syntax` naming the line and cause.
    pub fn new(source: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::Syntax {
                line: None,
                detail: describe(&e),
            })?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", py::tojson);
        env.add_function("raise_exception", |msg: String| -> Result<Value, _> {
            Err(
                minijinja::Error::new(ErrorKind::InvalidOperation, msg.clone())
                    .with_source(Raised(msg)),
            )
        });
        env.add_global("strftime_now", Value::from_function(py::strftime_now_today));
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TemplateError::Syntax {
                line: e.line(),
                detail: describe(&e),
            })?;
        Ok(Self {
            env,
            source: source.to_string(),
        })
    }

    /// The template stored in a GGUF header's metadata, `None` when the key is absent.
    pub fn from_gguf(meta: &[MetaEntry]) -> Result<Option<Self>, TemplateError> {
        match meta.iter().find(|e| e.key == GGUF_KEY).map(|e| &e.value) {
            None => Ok(None),
            Some(MetaValue::Str(s)) => Self::new(s).map(Some),
            Some(v) => Err(TemplateError::NotAString {
                found: format!("{v:?}").chars().take(80).collect(),
            }),
        }
    }

    /// The template to use for a model: the caller's when given, else the GGUF's; neither is
    /// `TemplateError::Missing`.
    pub fn resolve(meta: &[MetaEntry], caller: Option<&str>) -> Result<Self, TemplateError> {
        match caller {
            Some(src) => Self::new(src),
            None => Self::from_gguf(meta)?.ok_or(TemplateError::Missing),
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Fixes the date `strftime_now` reports (for reproducible prompts and tests); by default
    /// it is today's date (UTC) from the system clock (`Date.now()` in the browser).
    pub fn set_date(&mut self, date: Date) {
        self.env.add_global(
            "strftime_now",
            Value::from_function(move |fmt: String| py::strftime(&date, &fmt)),
        );
    }

    /// Writes `messages` in the template. `add_generation_prompt` ends the text with the
    /// opener of the assistant's turn. `bos_token` / `eos_token` are the texts of those tokens
    /// (empty when the model has none): templates such as Llama 3's write the BOS themselves.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, TemplateError> {
        let tmpl = self.env.get_template(NAME).map_err(|e| render_error(&e))?;
        tmpl.render(minijinja::context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos_token,
            eos_token => eos_token,
            tools => Value::from(()),
        })
        .map_err(|e| render_error(&e))
    }
}

fn render_error(e: &minijinja::Error) -> TemplateError {
    // A `raise_exception` may arrive wrapped (an error inside an include, a macro or a filter
    // keeps the original as its source).
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return TemplateError::Raised {
                message: r.0.clone(),
            };
        }
        cur = err.source();
    }
    TemplateError::Render {
        line: e.line(),
        detail: describe(e),
    }
}

/// The error's kind and detail without minijinja's "(in template:line)" suffix (the line is
/// reported separately).
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

impl ChatTemplate {
    /// Renders `messages` with the BOS and EOS texts of `tok`'s vocabulary.
    pub fn render_for(
        &self,
        tok: &TextTokenizer,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("");
        self.render(
            messages,
            add_generation_prompt,
            text(tok.bos()),
            text(tok.eos()),
        )
    }

    /// The prompt ids of `messages` (the rendered text, then its ids). Control tokens written
    /// by the template are parsed as such. The model's BOS is added only when the text does
    /// not already begin with the BOS token's text: templates such as Llama 3's and Gemma's
    /// write `<|begin_of_text|>` / `<bos>` themselves, and a second BOS changes the output.
    pub fn prompt_ids(
        &self,
        tok: &TextTokenizer,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> crate::error::Result<(String, Vec<u32>)> {
        let text = self.render_for(tok, messages, add_generation_prompt)?;
        let ids = tok.encode(&text, !starts_with_bos(tok, &text))?;
        Ok((text, ids))
    }
}

/// Whether `text` begins with the text of `tok`'s BOS token.
pub fn starts_with_bos(tok: &TextTokenizer, text: &str) -> bool {
    tok.bos()
        .and_then(|b| tok.token_text(b))
        .is_some_and(|b| !b.is_empty() && text.starts_with(b))
}
