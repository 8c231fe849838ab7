//! `webjit generate` and `webjit chat`: text generation with a GGUF decoder (Gemma 3, llama).

use std::io::Write;
use std::path::PathBuf;

use serde_json::json;
use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::{GenerateOptions, Session};
use webjit_engine::{DeviceOptions, Engine, Error, Result};

#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Candidates kept (1..=64; 0 = 64).
    #[arg(long, default_value_t = 40)]
    pub top_k: u32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Repetition penalty over the last 64 tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest context to allocate KV cache for.
    #[arg(long, default_value_t = 4096)]
    pub max_context: usize,
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
    /// A GGUF file (gemma3 or llama architecture).
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt text; control tokens such as `<start_of_turn>` are parsed as such.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub prompt: Option<String>,
    /// The prompt as comma-separated token ids (BOS included), instead of text.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Print one JSON object: prompt_tokens, tokens, text, prefill_tok_s, decode_tok_s,
    /// top_logits (per step, the 5 best [id, logit]), dispatches_per_token.
    #[arg(long)]
    pub json: bool,
}

pub fn load(
    model: &std::path::Path,
    max_context: usize,
) -> Result<(Engine, webjit_engine::loader::ModelHeader, Session)> {
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let mut src = FileSource::open(model)?;
    let (header, dec) = Decoder::load(&engine, &mut src, Some(max_context))?;
    let session = Session::new(&engine, dec)?;
    Ok((engine, header, session))
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let (engine, _header, mut session) = load(&args.model, args.sampling.max_context)?;
    let prompt: Vec<u32> = match (&args.prompt_ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(_text)) => {
            return Err(Error::InvalidArgument {
                op: "generate",
                detail: "text prompts need the tokenizer (not wired yet): use --prompt-ids".into(),
            })
        }
        (None, None) => {
            return Err(Error::InvalidArgument {
                op: "generate",
                detail: "give --prompt TEXT or --prompt-ids".into(),
            })
        }
    };
    let opts = args.sampling.options();
    let json = args.json;
    let mut on_token = |id: u32| {
        if !json {
            print!("{id} ");
            let _ = std::io::stdout().flush();
        }
        true
    };
    let stats = session.generate(&engine, &prompt, &opts, &|_| false, &mut on_token)?;
    if json {
        let top: Vec<Vec<(u32, f32)>> = stats.top_logits.clone();
        println!(
            "{}",
            json!({
                "prompt_tokens": prompt,
                "tokens": stats.tokens,
                "prefill_tok_s": stats.prefill_tok_s,
                "decode_tok_s": stats.decode_tok_s,
                "dispatches_per_token": stats.dispatches_per_token,
                "top_logits": top,
            })
        );
    } else {
        println!();
        eprintln!(
            "prefill {} tokens at {:.1} tok/s, decode {} tokens at {:.1} tok/s, {} dispatches/token",
            stats.prompt_tokens,
            stats.prefill_tok_s,
            stats.tokens.len(),
            stats.decode_tok_s,
            stats.dispatches_per_token
        );
    }
    Ok(())
}
