//! Command-line parsing with the CLI's own error format: every argument error is one line,
//! `error [INVALID_ARGUMENT]: op `generate`: --max-tokens -1: expected ...`, or one JSON
//! object with `--json`, and exits 1 like every other error. clap's own multi-line usage errors
//! are rewritten into that form; `--help` and `--version` are left to clap.
//!
//! Numeric flags take the value parsers below, which name what is allowed. Negative numbers are
//! read as values (`--max-tokens -1`), not as unknown flags, so that the range check can refuse
//! them with a message saying why.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command, FromArgMatches};
use webjit_engine::Error;

/// Whether the command line asks for JSON output (before any `--`): errors are then printed
/// as JSON too. Read from the raw arguments, as it must work when parsing fails.
pub fn wants_json(args: &[OsString]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// Prints `e` as the CLI's one error line (and, with `json`, as one JSON object on stdout:
/// `{"error": {"code": ..., "message": ...}}`) and exits 1.
pub fn fail(e: &Error, json: bool) -> ! {
    if json {
        println!(
            "{}",
            serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}})
        );
    }
    eprintln!("error [{}]: {e}", e.code());
    std::process::exit(1)
}

/// Parses `args` into `C`; an argument error ends the process through `fail`.
pub fn parse<C: clap::CommandFactory + FromArgMatches>(args: Vec<OsString>, json: bool) -> C {
    let cmd = negatives_are_values(C::command());
    let parsed = cmd
        .clone()
        .try_get_matches_from(&args)
        .and_then(|mut m: ArgMatches| C::from_arg_matches_mut(&mut m));
    match parsed {
        Ok(c) => c,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let path = command_path(&cmd, &args);
                // The engine's error takes a static `op`; the process ends right after.
                let op: &'static str = Box::leak(path.clone().into_boxed_str());
                let detail = describe(&e, &args, &path);
                fail(&Error::InvalidArgument { op, detail }, json)
            }
        },
    }
}

/// Every argument that takes a value, in every subcommand, takes `-1` as its value rather
/// than as a flag.
fn negatives_are_values(cmd: Command) -> Command {
    cmd.mut_args(|a| {
        let takes_value = a.get_action().takes_values();
        a.allow_negative_numbers(takes_value)
    })
    .mut_subcommands(negatives_are_values)
}

/// `generate`, `bench matmul`, ...: the subcommands named on the command line (`webjit` for
/// none), as the `op` of the error like the commands' own errors.
fn command_path(root: &Command, args: &[OsString]) -> String {
    let mut path = Vec::new();
    let mut cur = root;
    for a in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if let Some(sub) = cur.find_subcommand(a) {
            path.push(sub.get_name().to_string());
            cur = sub;
        }
    }
    if path.is_empty() {
        root.get_name().to_string()
    } else {
        path.join(" ")
    }
}

fn strings(v: Option<&ContextValue>) -> Vec<String> {
    match v {
        Some(ContextValue::String(s)) => vec![s.clone()],
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::StyledStr(s)) => vec![s.to_string()],
        Some(ContextValue::StyledStrs(v)) => v.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn first(e: &clap::Error, k: ContextKind) -> Option<String> {
    strings(e.get(k)).into_iter().next()
}

/// `--max-tokens <MAX_TOKENS>` -> `--max-tokens`; positionals keep their `[TEXT]...` form.
fn flag(arg: &str) -> &str {
    if arg.starts_with('-') {
        arg.split([' ', '=']).next().unwrap_or(arg)
    } else {
        arg
    }
}

/// A value as typed, quoted only when it would not read clearly bare (empty, spaces, control
/// characters).
pub fn shown(v: &str) -> String {
    if v.is_empty()
        || v.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

/// One line for a clap error: the flag, the value and what is allowed.
fn describe(e: &clap::Error, args: &[OsString], path: &str) -> String {
    let arg = first(e, ContextKind::InvalidArg);
    let value = first(e, ContextKind::InvalidValue);
    let help = match path {
        "webjit" => "see `webjit --help`".to_string(),
        p => format!("see `webjit {p} --help`"),
    };
    match (e.kind(), arg.as_deref()) {
        (ErrorKind::ValueValidation, Some(a)) => {
            let why = std::error::Error::source(e).map_or_else(String::new, |s| s.to_string());
            let why = generic_parse_error(&why).unwrap_or(why);
            format!("{} {}: {why}", flag(a), shown(&value.unwrap_or_default()))
        }
        (ErrorKind::InvalidValue, Some(a)) => {
            let valid = strings(e.get(ContextKind::ValidValue));
            let v = value.unwrap_or_default();
            if valid.is_empty() {
                format!("{} needs a value; {help}", flag(a))
            } else {
                format!(
                    "{} {}: expected one of {}",
                    flag(a),
                    shown(&v),
                    valid.join(", ")
                )
            }
        }
        (ErrorKind::UnknownArgument, Some(a)) => {
            let hint = first(e, ContextKind::SuggestedArg)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            let what = if a.starts_with('-') {
                "unknown option"
            } else {
                "unexpected argument"
            };
            format!("{what} {}{hint}; {help}", shown(a))
        }
        (ErrorKind::InvalidSubcommand, _) => {
            let sub = first(e, ContextKind::InvalidSubcommand).unwrap_or_default();
            let hint = first(e, ContextKind::SuggestedSubcommand)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            format!("unknown subcommand {}{hint}; {help}", shown(&sub))
        }
        (ErrorKind::MissingRequiredArgument, _) => {
            let missing: Vec<String> = strings(e.get(ContextKind::InvalidArg))
                .iter()
                .map(|a| flag(a).to_string())
                .collect();
            format!("missing {}; {help}", missing.join(", "))
        }
        (ErrorKind::ArgumentConflict, Some(a)) => {
            let prior = first(e, ContextKind::PriorArg).unwrap_or_default();
            format!("{} cannot be used with {}", flag(a), flag(&prior))
        }
        (ErrorKind::InvalidUtf8, _) => not_utf8(args),
        (ErrorKind::MissingSubcommand, _) => {
            let subs = strings(e.get(ContextKind::ValidSubcommand));
            format!("a subcommand is needed: one of {}", subs.join(", "))
        }
        _ => {
            // Any other kind: clap's own first line, which names the argument.
            let text = e.render().to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            format!("{}; {help}", line.trim_start_matches("error: "))
        }
    }
}

/// Messages of `str::parse` for flags that use it directly, in words that say what is allowed.
fn generic_parse_error(why: &str) -> Option<String> {
    Some(
        match why {
            "invalid digit found in string" => "expected a whole number >= 0",
            "cannot parse integer from empty string" => "expected a whole number, got nothing",
            "number too large to fit in target type" => "the number is too large",
            "invalid float literal" => "expected a number",
            _ => return None,
        }
        .to_string(),
    )
}

/// The first argument that is not UTF-8, with the flag before it.
fn not_utf8(args: &[OsString]) -> String {
    let Some(i) = args.iter().position(|a| a.to_str().is_none()) else {
        return "an argument is not valid UTF-8".into();
    };
    let value = format!("{:?}", args[i]);
    match args[..i].last().and_then(|a| a.to_str()) {
        Some(f) if i > 1 && f.starts_with("--") => {
            format!("{f} {value}: not valid UTF-8 (text arguments must be UTF-8)")
        }
        _ => format!("argument {value} is not valid UTF-8 (text arguments must be UTF-8)"),
    }
}

/// What a whole number in `min..=max` is called in an error.
fn whole_range(min: u64, max: u64) -> String {
    if max == u64::MAX || max == usize::MAX as u64 {
        format!("expected a whole number >= {min}")
    } else {
        format!("expected a whole number from {min} to {max}")
    }
}

/// A value parser for a whole number in `min..=max`; `note` (e.g. "0 = 64") is added to the
/// error.
pub fn whole<T>(
    min: u64,
    max: u64,
    note: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |s: &str| {
        let range = whole_range(min, max);
        let range = if note.is_empty() {
            range
        } else {
            format!("{range} ({note})")
        };
        match s.parse::<u64>() {
            Ok(v) if (min..=max).contains(&v) => T::try_from(v).map_err(|_| range),
            _ => Err(range),
        }
    }
}

/// A whole number >= `min` (any size the flag's type holds).
pub fn at_least<T>(min: u64) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    whole(min, u64::MAX, "")
}

/// Floats a flag may hold.
pub trait Real: Copy + Clone + Send + Sync + 'static {
    /// `v` in this type, if it is finite there (1e39 is finite in f64, not in f32).
    fn finite(v: f64) -> Option<Self>;
}
impl Real for f32 {
    fn finite(v: f64) -> Option<Self> {
        Some(v as f32).filter(|x| x.is_finite())
    }
}
impl Real for f64 {
    fn finite(v: f64) -> Option<Self> {
        Some(v).filter(|x| x.is_finite())
    }
}

/// A value parser for a finite number for which `ok` holds; `allowed` says which those are
/// (e.g. "a number > 0").
pub fn real<T: Real>(
    ok: fn(f64) -> bool,
    allowed: &'static str,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| match s.parse::<f64>() {
        Ok(v) if ok(v) => {
            T::finite(v).ok_or_else(|| format!("expected {allowed}; {s} is too large"))
        }
        _ => Err(format!("expected {allowed}")),
    }
}

/// `--prompt-ids`: comma-separated token ids.
#[derive(Clone, Debug)]
pub struct TokenIds(pub Vec<u32>);

pub fn token_ids(s: &str) -> Result<TokenIds, String> {
    let allowed =
        "expected token ids separated by commas, e.g. 1,2,3 (whole numbers from 0 to 4294967295)";
    if s.trim().is_empty() {
        return Err(format!("{allowed}; the list is empty"));
    }
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("{allowed}; {} is not one", shown(p)))
        })
        .collect::<Result<Vec<u32>, String>>()
        .map(TokenIds)
}

/// `--min-ms`: 0 to an hour.
pub fn min_ms() -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    whole(0, 3_600_000, "milliseconds")
}

/// A count of tokens to run (`--prompt-tokens`, `--gen-tokens`): 1 to 2^30, below the KV
/// cache's 2^31 positions, so that sums of them cannot overflow.
pub fn token_count() -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    whole(1, 1 << 30, "")
}

/// `--kv-cache`: the KV cache format, for every command that loads a decoder (flatten it into
/// the command's arguments).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct KvCacheArgs {
    /// KV cache format: f16 (the default; f32 where the GPU has no shader-f16), f32,
    /// llama.cpp's q8_0 / q4_0 (blocks of 32 values with an f16 scale: ~1.9x / ~3.6x smaller
    /// than f16), or kivi2 (KIVI: 2-bit keys per channel over 128 tokens, values per token over
    /// 32 channels, the newest tokens in f16; ~6x smaller at long context; sliding-window
    /// layers keep f16).
    #[arg(long = "kv-cache", value_name = "MODE", value_parser = kv_cache)]
    pub kv_cache: Option<webjit_engine::kv_cache::KvDType>,
}

/// A KV cache format by name; the error lists the supported ones.
pub fn kv_cache(s: &str) -> Result<webjit_engine::kv_cache::KvDType, String> {
    webjit_engine::kv_cache::parse_kv_cache(s).map_err(|_| {
        format!(
            "expected one of {}; {} is not one",
            webjit_engine::kv_cache::KvDType::names(),
            shown(s)
        )
    })
}

/// "KV cache q8_0, 1.2 MiB": the format and size of a decoder's caches, for summaries.
pub fn kv_cache_summary(dec: &webjit_engine::model::decoder::Decoder) -> String {
    let name = dec.kv_dtype().map_or("none", |t| t.name());
    format!(
        "KV cache {name}, {:.1} MiB",
        dec.kv_cache_bytes() as f64 / (1 << 20) as f64
    )
}
