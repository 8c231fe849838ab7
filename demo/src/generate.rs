//! `webjit generate` and `webjit chat`: text generation with a GGUF decoder (Gemma 3, llama).

use std::io::Write;

use serde_json::json;
use webjit_engine::chat::{ChatMessage, ChatTemplate, TemplateError};
use webjit_engine::jit::kernels::sample::SAMPLE_KMAX;
use webjit_engine::loader::{MetaEntry, MetaValue};
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{GenerateOptions, GenerateStats, Session, StopReason};
use webjit_engine::tokenizer::text::{StreamDecoder, TextTokenizer};
use webjit_engine::{DeviceOptions, Engine, Error, Result};

use crate::args::{at_least, kv_cache_summary, real, token_ids, whole, KvCacheArgs, TokenIds};
use crate::model_ref::{resolve, ModelRef};
use crate::progress::ProgressSource;

#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Tokens to generate at most (0: only read the prompt).
    #[arg(long, default_value_t = 128, value_parser = at_least::<usize>(0))]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, value_parser = real::<f32>(|t| t >= 0.0, "a number >= 0 (0 = greedy)"))]
    pub temperature: f32,
    /// Candidates kept (1..=64; 0 = 64).
    #[arg(long, default_value_t = 40, value_parser = whole::<u32>(0, SAMPLE_KMAX as u64, "0 = 64"))]
    pub top_k: u32,
    /// Nucleus sampling: keep the most likely tokens whose probabilities sum to this (0 < p <= 1).
    #[arg(long, default_value_t = 0.95, value_parser = real::<f32>(|p| p > 0.0 && p <= 1.0, "a number > 0 and <= 1"))]
    pub top_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0, value_parser = real::<f32>(|p| p > 0.0, "a number > 0 (1 = off)"))]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0, value_parser = at_least::<u64>(0))]
    pub seed: u64,
    /// Longest context to allocate KV cache for (prompt and generated tokens; >= 1).
    #[arg(long, default_value_t = 4096, value_parser = at_least::<usize>(1))]
    pub max_context: usize,
    #[command(flatten)]
    pub kv: KvCacheArgs,
}

impl SamplingArgs {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A GGUF file (gemma3 or llama architecture): a path, a short name of a fetched model
    /// (gemma3-270m, tiny-llama) or an http:// URL (streamed with Range requests).
    #[arg(long)]
    pub model: String,
    /// Prompt text; control tokens such as `<start_of_turn>` are parsed as such.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as comma-separated token ids (BOS included), instead of text.
    #[arg(long, value_parser = token_ids)]
    pub prompt_ids: Option<TokenIds>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object: prompt_tokens, tokens, text, prefill_tok_s (prompt tokens over
    /// the prefill time left after the load ends: blocks run while the file streams in),
    /// load_and_prefill_s, layers_prefilled_while_loading, decode_tok_s, top_logits (per step,
    /// the 5 best [id, logit]), dispatches_per_token, stop_reason (eog, max_tokens, context).
    #[arg(long)]
    pub json: bool,
}

/// A loaded model ready to generate: engine, tokenizer and session.
pub struct Loaded {
    pub engine: Engine,
    pub tok: TextTokenizer,
    pub session: Session,
    /// The GGUF header's metadata (chat template, architecture).
    pub meta: Vec<MetaEntry>,
}

/// Loads a decoder for `max_context` positions with the KV cache format of `--kv-cache`.
pub fn load_kv(model: &ModelRef, max_context: usize, kv: &KvCacheArgs) -> Result<Loaded> {
    let mut file = model.open()?;
    let mut src = ProgressSource::new(file.as_mut(), "loading")?;
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let (header, dec) = Decoder::load_with_kv(&engine, &mut src, Some(max_context), kv.kv_cache)?;
    src.finish();
    let tok = TextTokenizer::from_gguf(&header.metadata)?;
    let session = Session::new(&engine, dec)?;
    Ok(Loaded {
        engine,
        tok,
        session,
        meta: header.metadata,
    })
}

/// Generates from `prompt` ids, streaming text to stdout when `print` is set.
fn run_generation(
    m: &mut Loaded,
    prompt: &[u32],
    prefilled: Option<&webjit_engine::Tensor>,
    opts: &GenerateOptions,
    print: bool,
) -> Result<(GenerateStats, String)> {
    let Loaded {
        engine,
        tok,
        session,
        ..
    } = m;
    let mut stream = StreamDecoder::continuing(tok);
    let mut text = String::new();
    let mut err = None;
    let mut on_token = |id: u32| {
        if tok.is_eog(id) {
            return false;
        }
        match stream.push(id) {
            Ok(piece) => {
                if print {
                    print!("{piece}");
                    let _ = std::io::stdout().flush();
                }
                text.push_str(&piece);
                true
            }
            Err(e) => {
                err = Some(e);
                false
            }
        }
    };
    let is_eog = |id: u32| tok.is_eog(id);
    let stats = match prefilled {
        Some(logits) => {
            session.generate_prefilled(engine, prompt, logits, opts, &is_eog, &mut on_token)?
        }
        None => session.generate(engine, prompt, opts, &is_eog, &mut on_token)?,
    };
    if let Some(e) = err {
        return Err(e);
    }
    let rest = stream.finish();
    if print {
        print!("{rest}");
    }
    text.push_str(&rest);
    Ok((stats, text))
}

pub fn run(args: GenerateArgs) -> Result<()> {
    // The tokenizer comes from the header, so the prompt's ids are known before the weights
    // arrive; then each block prefills the prompt as soon as it has been loaded.
    let model = resolve(&args.model, "generate")?;
    let header = webjit_engine::loader::read_header(model.open()?.as_mut())?;
    let tok = TextTokenizer::from_gguf(&header.metadata)?;
    let prompt: Vec<u32> = match (&args.prompt_ids, &args.prompt) {
        (Some(ids), _) => ids.0.clone(),
        (None, Some(text)) => tok.encode(text, true)?,
        (None, None) => {
            return Err(Error::InvalidArgument {
                op: "generate",
                detail: "give --prompt TEXT or --prompt-ids".into(),
            })
        }
    };
    let max_context = args.sampling.max_context;
    if prompt.len() > max_context {
        return Err(Error::InvalidArgument {
            op: "generate",
            detail: format!(
                "--max-context {max_context}: the prompt has {} tokens, which must fit in the \
                 context; give --max-context {} or more",
                prompt.len(),
                prompt.len()
            ),
        });
    }
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let mut file = model.open()?;
    let mut src = ProgressSource::new(file.as_mut(), "loading")?;
    let t0 = std::time::Instant::now();
    let (header, dec, logits, streamed) = Decoder::load_with_prefill_kv(
        &engine,
        &mut src,
        &prompt,
        Some(args.sampling.max_context),
        4 << 20,
        args.sampling.kv.kv_cache,
    )?;
    src.finish();
    let kv_summary = kv_cache_summary(&dec);
    let (kv_name, kv_bytes) = (dec.kv_dtype().map(|t| t.name()), dec.kv_cache_bytes());
    let load_prefill_s = t0.elapsed().as_secs_f64();
    let session = Session::new(&engine, dec)?;
    let mut m = Loaded {
        engine,
        tok,
        session,
        meta: header.metadata,
    };
    let opts = args.sampling.options();
    let (stats, text) = run_generation(&mut m, &prompt, Some(&logits), &opts, !args.json)?;
    if args.json {
        println!(
            "{}",
            json!({
                "prompt_tokens": prompt,
                "tokens": stats.tokens,
                "text": text,
                "load_and_prefill_s": load_prefill_s,
                "prefill_tok_s": prompt.len() as f64 / streamed.after_load_s.max(1e-9),
                "layers_prefilled_while_loading": streamed.layers_before_load_end,
                "n_layers": streamed.n_layers,
                "decode_tok_s": stats.decode_tok_s,
                "dispatches_per_token": stats.dispatches_per_token,
                "stopped_on_eog": stats.stopped_on_eog,
                "stop_reason": stats.stop_reason,
                "top_logits": stats.top_logits,
                "kv_cache": kv_name,
                "kv_cache_bytes": kv_bytes,
            })
        );
    } else {
        println!();
        eprintln!(
            "[loaded + prefilled {} prompt tokens in {:.2} s ({} of {} blocks ran while the \
             file was still loading); {} tokens at {:.1} tok/s; {} dispatches/token; {}; {}]",
            stats.prompt_tokens,
            load_prefill_s,
            streamed.layers_before_load_end,
            streamed.n_layers,
            stats.tokens.len(),
            stats.decode_tok_s,
            stats.dispatches_per_token,
            stop_words(stats.stop_reason, &args.sampling),
            kv_summary
        );
    }
    Ok(())
}

/// Why generation stopped, for the summary line (`stop_reason` in JSON).
fn stop_words(reason: Option<StopReason>, s: &SamplingArgs) -> String {
    match reason {
        Some(StopReason::Eog) => "stopped at an end-of-generation token".into(),
        Some(StopReason::MaxTokens) => format!("stopped at --max-tokens {}", s.max_tokens),
        Some(StopReason::Context) => format!(
            "stopped: the context is full (--max-context {})",
            s.max_context
        ),
        Some(r) => format!("stopped: {}", r.name()),
        None => "stopped".into(),
    }
}

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// A GGUF chat model: a path, a short name of a fetched model (gemma3-270m) or an
    /// http:// URL. Its own chat template (`tokenizer.chat_template`) writes the prompt.
    #[arg(long)]
    pub model: String,
    /// A system prompt (the first message, role `system`).
    #[arg(long)]
    pub system: Option<String>,
    /// A Jinja chat template file to use instead of the model's.
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// The caller's template file, else the model's. A model without one gets Gemma 3's published
/// template when it is a `gemma3` model (the Gemma 3 GGUFs fetched here carry none), else
/// `TemplateError::Missing` with a hint at `--chat-template`.
fn chat_template(m: &Loaded, file: Option<&std::path::Path>) -> Result<ChatTemplate> {
    if let Some(p) = file {
        let src = std::fs::read_to_string(p).map_err(|e| Error::InvalidArgument {
            op: "chat",
            detail: format!("--chat-template {}: {e}", p.display()),
        })?;
        return Ok(ChatTemplate::new(&src)?);
    }
    if let Some(t) = ChatTemplate::from_gguf(&m.meta)? {
        return Ok(t);
    }
    let arch = m.meta.iter().find(|e| e.key == "general.architecture");
    if arch.is_some_and(|e| matches!(&e.value, MetaValue::Str(a) if a == "gemma3")) {
        eprintln!("webjit chat: the model has no chat template; using Gemma 3's (demo/templates/gemma3.jinja)");
        return Ok(ChatTemplate::new(GEMMA3_TEMPLATE)?);
    }
    eprintln!("webjit chat: pass a template with --chat-template FILE");
    Err(TemplateError::Missing.into())
}

/// Gemma 3's chat template as published with the instruction-tuned models.
const GEMMA3_TEMPLATE: &str = include_str!("../templates/gemma3.jinja");

/// Interactive chat: one user turn per line of stdin, the reply streams as it is generated.
/// `/reset` starts over; end of input quits.
pub fn chat(args: ChatArgs) -> Result<()> {
    let mut m = load_kv(
        &resolve(&args.model, "chat")?,
        args.sampling.max_context,
        &args.sampling.kv,
    )?;
    eprintln!("webjit chat: {}", kv_cache_summary(&m.session.decoder));
    let opts = args.sampling.options();
    let stdin = std::io::stdin();
    let template = chat_template(&m, args.chat_template.as_deref())?;
    let system: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s.as_str()))
        .collect();
    let mut history = system.clone();
    eprintln!("webjit chat: type a message (/reset to start over, Ctrl-D to quit)");
    loop {
        eprint!("> ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                return Err(Error::InvalidArgument {
                    op: "chat",
                    detail: format!("reading stdin: {e}"),
                })
            }
        }
        let line = line.trim_end_matches(['\n', '\r']);
        if line == "/reset" {
            history.clone_from(&system);
            continue;
        }
        history.push(ChatMessage::new("user", line));
        // Each turn renders the whole conversation from a fresh context: templates may write
        // earlier turns differently once a new one follows (Qwen3 drops old <think> blocks,
        // Gemma trims replies), so the cached tokens are not always a prefix of the new prompt.
        let (_, prompt) = match template.prompt_ids(&m.tok, &history, true) {
            Ok(p) => p,
            Err(e) => {
                // The template refused this conversation (e.g. roles it does not support):
                // say why and let the user go on.
                history.pop();
                eprintln!("webjit chat: {e}");
                continue;
            }
        };
        m.session.reset();
        let (stats, reply) = run_generation(&mut m, &prompt, None, &opts, true)?;
        println!();
        // Only a full context is named: the next turn cannot fit either.
        let full = match stats.stop_reason {
            Some(StopReason::Context) => {
                format!("; {}", stop_words(stats.stop_reason, &args.sampling))
            }
            _ => String::new(),
        };
        eprintln!(
            "[{} tokens, {:.1} tok/s{full}]",
            stats.tokens.len(),
            stats.decode_tok_s
        );
        history.push(ChatMessage::new("assistant", reply));
    }
    Ok(())
}
