//! `webjit perplexity` as a user runs it: a missing, empty or non-UTF-8 text, a context too small
//! or past the model's, a text too short for two chunks and `--chunks 0` are each one typed
//! error line naming the flag, the value and what is allowed (before anything loads); a run on
//! tiny-llama prints JSON whose counts follow llama-perplexity's method.

use webjit_tests::cli_support::{webjit, TempDir};
use webjit_tests::gemma_refs::tiny_llama_path;

/// tiny-llama's trained context (scripts/make_tiny_llama.py).
const TINY_CTX: usize = 256;

fn words(n: usize) -> String {
    (0..n)
        .map(|i| ["the", "cat", "sat", "on", "a", "mat", "and", "slept"][i % 8])
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn perplexity_refuses_bad_texts_and_contexts_with_one_typed_line() {
    let dir = TempDir::new("perplexity-cli");
    let model = tiny_llama_path();
    let m = model.to_str().expect("UTF-8 path");
    let empty = dir.write("empty.txt", b"");
    let blank = dir.write("blank.txt", b" \n\n\t ");
    let latin1 = dir.write("latin1.txt", b"caf\xe9 au lait");
    let short = dir.write("short.txt", words(20).as_bytes());
    let long = dir.write("long.txt", words(2000).as_bytes());
    let p = |f: &std::path::Path| f.to_str().expect("UTF-8 path").to_string();
    let missing = dir.0.join("no-such.txt");
    let too_big = (TINY_CTX * 4).to_string();
    // (arguments after the model, what the one line must contain)
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            vec!["--text".into(), p(&missing)],
            vec!["--text".into(), p(&missing), "No such file".into()],
        ),
        (
            vec!["--text".into(), p(&empty)],
            vec!["--text".into(), p(&empty), "empty".into()],
        ),
        (
            vec!["--text".into(), p(&blank)],
            vec!["--text".into(), "empty".into()],
        ),
        (
            vec!["--text".into(), p(&latin1)],
            vec!["--text".into(), "not UTF-8".into(), "offset 3".into()],
        ),
        (
            vec!["--text".into(), p(&long), "--ctx".into(), "2".into()],
            vec!["--ctx 2".into(), ">= 4".into()],
        ),
        (
            vec!["--text".into(), p(&long), "--ctx".into(), "-1".into()],
            vec!["--ctx -1".into(), ">= 4".into()],
        ),
        (
            vec!["--text".into(), p(&long), "--ctx".into(), too_big.clone()],
            vec![
                format!("--ctx {too_big}"),
                format!("model's context of {TINY_CTX}"),
            ],
        ),
        (
            vec!["--text".into(), p(&short), "--ctx".into(), "64".into()],
            vec!["needs at least 128".into(), "--ctx of at most".into()],
        ),
        (
            vec!["--text".into(), p(&long), "--chunks".into(), "0".into()],
            vec!["--chunks 0".into(), ">= 1".into()],
        ),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["perplexity", "--model", m];
        args.extend(extra.iter().map(String::as_str));
        let what = args.join(" ");
        let run = webjit(&args, &[]);
        let line = run.one_line_error(&what);
        assert_eq!(run.code, Some(1), "{what}: {line}");
        assert!(
            line.starts_with("error [INVALID_ARGUMENT]: "),
            "{what}: {line}"
        );
        for n in &needles {
            assert!(line.contains(n.as_str()), "{what}: {n:?} missing in {line}");
        }
        // With --json the same error is one JSON object on stdout.
        args.push("--json");
        let run = webjit(&args, &[]);
        assert_eq!(run.code, Some(1), "{what} --json");
        let v = run.json(&what);
        assert_eq!(v["error"]["code"], "INVALID_ARGUMENT", "{what}: {v}");
    }
}

#[test]
fn perplexity_json_counts_follow_llama_perplexity() {
    let dir = TempDir::new("perplexity-cli-run");
    let text = dir.write("text.txt", words(400).as_bytes());
    let model = tiny_llama_path();
    let args = [
        "perplexity",
        "--model",
        model.to_str().expect("UTF-8 path"),
        "--text",
        text.to_str().expect("UTF-8 path"),
        "--ctx",
        "32",
        "--chunks",
        "3",
        "--json",
    ];
    let run = webjit(&args, &[]).ok("perplexity on tiny-llama");
    let v = run.json("perplexity --json");
    assert_eq!(v["n_ctx"], 32);
    assert_eq!(v["chunks"], 3);
    // 32 - 32/2 - 1 = 15 tokens scored in each chunk.
    assert_eq!(v["scored"], 45);
    let ppl = v["ppl"].as_f64().expect("ppl");
    let running = v["running_ppl"].as_array().expect("running_ppl");
    assert_eq!(running.len(), 3);
    assert_eq!(running[2].as_f64(), Some(ppl));
    assert!(ppl.is_finite() && ppl > 1.0, "{v}");
    assert!(v["ppl_err"].as_f64().is_some_and(|e| e > 0.0), "{v}");
    assert!(v["text_tokens"].as_u64().is_some_and(|n| n >= 96), "{v}");
    // Progress: one line per chunk on stderr.
    let lines = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("perplexity: ["))
        .count();
    assert_eq!(lines, 3, "{}", run.stderr);
}
