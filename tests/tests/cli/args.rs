//! Argument errors in the CLI's own format (issue 28, items 4 and 5): each is one line
//! `error [INVALID_ARGUMENT]: ...` naming the flag, the value and what is allowed, exit 1 like
//! every other error, and with `--json` one JSON object `{"error": {"code", "message"}}` on
//! stdout; `generate` reports why it stopped and its KV cache's format and size; a file cut
//! inside its header is a truncated file.

use std::process::{Command, Stdio};

use webjit_tests::cli_support::{webjit, webjit_bin, Run, TempDir};
use webjit_tests::gemma_refs::tiny_llama_path;

/// The one stderr line of a failed run, checked to be an argument error naming `flag` and
/// `value` and saying what is allowed (`allowed`).
fn argument_error(run: &Run, what: &str, flag: &str, value: &str, allowed: &str) {
    let line = run.one_line_error(what);
    assert_eq!(run.code, Some(1), "{what}: {line}");
    assert!(
        line.starts_with("error [INVALID_ARGUMENT]: "),
        "{what}: {line}"
    );
    for needle in [flag, value, allowed] {
        assert!(
            line.contains(needle),
            "{what}: {needle:?} missing in {line}"
        );
    }
}

#[test]
fn argument_errors_are_one_line_naming_flag_value_and_range() {
    let model = tiny_llama_path();
    let m = model.to_str().expect("a UTF-8 path");
    // A BERT directory that does not exist: the arguments are refused before it is looked up.
    let bert = "no-such-bert-dir";
    let gen = |extra: &[&'static str]| {
        let mut a = vec!["generate", "--model", m, "--prompt-ids", "1,2"];
        a.extend_from_slice(extra);
        a
    };
    // (arguments, flag, value as it must appear, what is allowed, has --json)
    let cases: Vec<(Vec<&str>, &str, &str, &str, bool)> = vec![
        (
            gen(&["--max-tokens", "-1"]),
            "--max-tokens",
            "-1",
            ">= 0",
            true,
        ),
        (
            gen(&["--kv-cache", "q3"]),
            "--kv-cache",
            "q3",
            "f32, f16, q8_0, q4_0",
            true,
        ),
        (
            gen(&["--temperature", "-1"]),
            "--temperature",
            "-1",
            ">= 0",
            true,
        ),
        (
            gen(&["--temperature", "nan"]),
            "--temperature",
            "nan",
            ">= 0",
            true,
        ),
        (gen(&["--top-k", "-5"]), "--top-k", "-5", "0 to 64", true),
        (gen(&["--top-k", "65"]), "--top-k", "65", "0 to 64", true),
        (gen(&["--top-p", "-0.5"]), "--top-p", "-0.5", "<= 1", true),
        (gen(&["--top-p", "0"]), "--top-p", "0", "> 0", true),
        (
            gen(&["--repeat-penalty", "0"]),
            "--repeat-penalty",
            "0",
            "> 0",
            true,
        ),
        (gen(&["--seed", "-3"]), "--seed", "-3", ">= 0", true),
        (
            gen(&["--max-context", "-1"]),
            "--max-context",
            "-1",
            ">= 1",
            true,
        ),
        (
            gen(&["--max-context", "0"]),
            "--max-context",
            "0",
            ">= 1",
            true,
        ),
        // Shorter than the 2-token prompt: refused before loading, with the length needed.
        (
            gen(&["--max-context", "1"]),
            "--max-context",
            "1",
            "2 or more",
            true,
        ),
        (
            vec!["generate", "--model", m, "--prompt-ids", ""],
            "--prompt-ids",
            "\"\"",
            "token ids",
            true,
        ),
        (
            vec!["generate", "--model", m, "--prompt-ids", "1,,2"],
            "--prompt-ids",
            "1,,2",
            "token ids",
            true,
        ),
        (
            vec!["chat", "--model", m, "--max-tokens", "-1"],
            "--max-tokens",
            "-1",
            ">= 0",
            false,
        ),
        (
            vec!["embed", "--model", bert, "--batch", "-1", "hi"],
            "--batch",
            "-1",
            ">= 1",
            true,
        ),
        (
            vec!["embed", "--model", bert, "--batch", "0", "hi"],
            "--batch",
            "0",
            ">= 1",
            true,
        ),
        (
            vec!["load", "--model", m, "--chunk-kib", "0"],
            "--chunk-kib",
            "0",
            "1 to 1048576",
            true,
        ),
        (
            vec!["load", "--model", m, "--chunk-kib", "-1"],
            "--chunk-kib",
            "-1",
            "1 to 1048576",
            true,
        ),
        (
            vec!["tune", "--budget-s", "-1", "--no-save"],
            "--budget-s",
            "-1",
            "> 0",
            true,
        ),
        (
            vec!["tune", "--budget-s", "inf", "--no-save"],
            "--budget-s",
            "inf",
            "> 0",
            true,
        ),
        (
            vec!["tune", "--prompt-tokens", "0", "--no-save"],
            "--prompt-tokens",
            "0",
            "from 1",
            true,
        ),
        (
            vec!["bench", "matmul", "--m", "-1"],
            "--m",
            "-1",
            ">= 1",
            true,
        ),
        (
            vec!["bench", "attention", "--heads", "0"],
            "--heads",
            "0",
            ">= 1",
            true,
        ),
        (
            vec!["bench", "model", "--model", m, "--reps", "0"],
            "--reps",
            "0",
            ">= 1",
            true,
        ),
        (
            vec!["bench", "read", "--min-ms", "-5"],
            "--min-ms",
            "-5",
            "from 0",
            true,
        ),
        // clap's own errors, in the same form: an unknown option, a missing value.
        (
            gen(&["--bogus"]),
            "--bogus",
            "unknown option",
            "--help",
            true,
        ),
        (
            vec!["generate", "--prompt-ids", "1", "--model"],
            "--model",
            "needs a value",
            "--help",
            false,
        ),
    ];
    for (args, flag, value, allowed, has_json) in &cases {
        let what = args.join(" ");
        argument_error(&webjit(args, &[]), &what, flag, value, allowed);
        if !has_json {
            continue;
        }
        let mut with_json = args.clone();
        with_json.push("--json");
        let what = with_json.join(" ");
        let run = webjit(&with_json, &[]);
        assert_eq!(run.code, Some(1), "{what}: {}", run.stderr);
        let v = run.json(&what);
        assert_eq!(v["error"]["code"], "INVALID_ARGUMENT", "{what}: {v}");
        let msg = v["error"]["message"].as_str().expect("a message");
        assert!(msg.contains(flag) && msg.contains(value), "{what}: {msg}");
        // The same line as without --json goes to stderr.
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(
            lines,
            [format!("error [INVALID_ARGUMENT]: {msg}")],
            "{what}"
        );
    }
    // Help and version are still clap's, on stdout with exit 0.
    let help = webjit(&["generate", "--help"], &[]).ok("generate --help");
    assert!(help.stdout.contains("--max-tokens"), "{}", help.stdout);
    let version = webjit(&["--version"], &[]).ok("--version");
    assert!(version.stdout.starts_with("webjit "), "{}", version.stdout);
}

#[cfg(unix)]
#[test]
fn a_prompt_that_is_not_utf8_is_one_argument_error() {
    use std::os::unix::ffi::OsStringExt;
    let model = tiny_llama_path();
    let bytes = std::ffi::OsString::from_vec(vec![b'h', 0xff, 0xfe, b'i']);
    let out = Command::new(webjit_bin())
        .arg("generate")
        .arg("--model")
        .arg(&model)
        .arg("--prompt")
        .arg(&bytes)
        .stdin(Stdio::null())
        .output()
        .expect("spawning webjit");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    argument_error(
        &run,
        "non-UTF-8 --prompt",
        "--prompt",
        "\\xFF\\xFE",
        "UTF-8",
    );
}

/// `generate --json` as a value.
fn generate_json(args: &[&str]) -> serde_json::Value {
    let run = webjit(args, &[]).ok(&args.join(" "));
    run.json(&args.join(" "))
}

#[test]
fn generate_reports_why_it_stopped() {
    let model = tiny_llama_path();
    let m = model.to_str().expect("a UTF-8 path");
    let prompt = ["1", "2", "3"];
    let ids = prompt.join(",");
    let base = ["generate", "--model", m, "--prompt-ids", &ids];
    // A context of 8 fills after 3 prompt tokens and 5 fed generated ones; the token sampled
    // last is returned but not fed, so 6 come back, far below --max-tokens 50.
    let mut args = base.to_vec();
    args.extend(["--max-context", "8", "--max-tokens", "50", "--json"]);
    let v = generate_json(&args);
    assert_eq!(v["stop_reason"], "context", "{v}");
    let n = v["tokens"].as_array().expect("tokens").len();
    assert_eq!(prompt.len() + n - 1, 8, "{v}");
    // The summary line says so too.
    let run = webjit(&args[..args.len() - 1], &[]).ok("generate --max-context 8");
    let summary = run.stderr.lines().last().unwrap_or_default();
    assert!(
        summary.contains("context is full") && summary.contains("--max-context 8"),
        "{}",
        run.stderr
    );
    // The token limit, well inside the context.
    let mut args = base.to_vec();
    args.extend(["--max-context", "64", "--max-tokens", "2", "--json"]);
    let v = generate_json(&args);
    assert_eq!(v["stop_reason"], "max_tokens", "{v}");
    assert_eq!(v["tokens"].as_array().map(Vec::len), Some(2), "{v}");
    let run = webjit(&args[..args.len() - 1], &[]).ok("generate --max-tokens 2");
    assert!(run.stderr.contains("--max-tokens 2"), "{}", run.stderr);
}

/// `--kv-cache` picks the format: the JSON names it and its size follows the layout (the f32
/// cache's element count: q8_0 34 bytes and q4_0 18 bytes per 32, f16 2 bytes each; tiny-llama's
/// head dim 64 makes whole pairs of blocks, so no scale word is half used; kivi2 as
/// shaders/kivi.wgsl lays it out).
#[test]
fn generate_kv_cache_modes_report_their_size() {
    let model = tiny_llama_path();
    let m = model.to_str().expect("a UTF-8 path");
    let run = |mode: &str| {
        let args = [
            "generate",
            "--model",
            m,
            "--prompt-ids",
            "1,2,3",
            "--max-tokens",
            "2",
            "--max-context",
            "64",
            "--kv-cache",
            mode,
            "--json",
        ];
        let v = generate_json(&args);
        assert_eq!(v["kv_cache"], mode, "{v}");
        v["kv_cache_bytes"].as_u64().expect("kv_cache_bytes")
    };
    let elems = run("f32") / 4;
    assert!(elems > 0 && elems % 64 == 0);
    assert_eq!(run("f16"), elems * 2);
    assert_eq!(run("q8_0"), elems / 32 * 34);
    assert_eq!(run("q4_0"), elems / 32 * 18);
    // kivi2 (d 64, 64 slots) per layer and kv head: K one group of 9 words per channel
    // (576), V 64 rows of 4 code words and a (scale, min) word per 32 channels (384), and
    // each a 256-row f16 residual window (8192): 69376 bytes, more than f16 at so short a
    // context.
    let pairs = elems / (2 * 64 * 64);
    assert_eq!(run("kivi2"), pairs * (576 + 384 + 2 * 8192) * 4);
}

#[test]
fn files_cut_inside_the_header_are_truncated_files() {
    let bytes = std::fs::read(tiny_llama_path()).expect("reading the tiny llama");
    let tmp = TempDir::new("args-cut");
    // (file, bytes kept): empty, inside the GGUF magic, inside the first metadata entry, in
    // the middle of the metadata (with the file's length known, the counts it declares no
    // longer fit: still a cut file, not an absurd count).
    for (name, keep) in [
        ("empty.gguf", 0usize),
        ("magic.gguf", 3),
        ("kv.gguf", 30),
        ("meta.gguf", 2000),
    ] {
        let p = tmp.write(name, &bytes[..keep]);
        let p = p.to_string_lossy();
        for args in [
            vec!["generate", "--model", &p, "--prompt-ids", "1,2"],
            vec!["load", "--model", &p, "--no-gpu"],
        ] {
            let what = args.join(" ");
            let line = webjit(&args, &[]).one_line_error(&what);
            assert!(
                line.starts_with("error [LOAD_TRUNCATED]: "),
                "{what}: {line}"
            );
            assert!(
                line.contains(&format!("file ends at byte {keep} ")),
                "{what}: {line}"
            );
            // Read as a stream the cut is met inside the header; with the length known up
            // front, at the count that no longer fits.
            assert!(
                line.contains("header") || line.contains("count"),
                "{what}: {line}"
            );
        }
    }
}
