//! The `webjit` binary as a user runs it: every subcommand's `--help`, `--json` outputs that
//! parse and agree with facts the test computes itself, one-line errors with a non-zero exit
//! on missing and corrupt models, `--model` as a short name or an http:// URL, and
//! `webjit serve` (GET, HEAD, ranges, 416, 404, traversal, headers) on a free port.

use std::io::BufReader;
use std::net::TcpStream;

use sha2::{Digest, Sha256};
use webjit_tests::cli_support::{http, read_response, webjit, Server, TempDir};
use webjit_tests::gemma_refs::tiny_llama_path;
use webjit_tests::{require_model, Rand};

mod args;
mod perplexity;
mod serve;

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The subcommand names of a clap `--help` text (its `Commands:` section), `help` excluded.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|n| n != "help")
        .collect()
}

#[test]
fn every_subcommand_has_help_naming_its_main_options() {
    // The options each command must document; a subcommand missing here still has to answer
    // --help, and every documented command must be present.
    let expected: &[(&str, &[&str])] = &[
        ("info", &["--json"]),
        (
            "tune",
            &[
                "--budget-s",
                "--model",
                "--json",
                "--export",
                "--prompt-tokens",
                "--unchecked",
            ],
        ),
        ("embed", &["--model", "--batch", "--json", "minilm-l6"]),
        ("bench", &["matmul", "model", "embed"]),
        (
            "generate",
            &["--model", "--prompt", "--max-tokens", "--json", "http://"],
        ),
        ("chat", &["--model", "--system", "--temperature"]),
        ("load", &["--model", "--chunk-kib", "--json", "http://"]),
        (
            "perplexity",
            &["--model", "--text", "--ctx", "--chunks", "--json"],
        ),
        ("serve", &["--host", "--port", "--root", "--models"]),
    ];
    let top = webjit(&["--help"], &[]).ok("webjit --help");
    let names = subcommands(&top.stdout);
    for (name, _) in expected {
        assert!(
            names.iter().any(|n| n == name),
            "`webjit --help` does not list `{name}`:\n{}",
            top.stdout
        );
    }
    for name in &names {
        let run = webjit(&[name, "--help"], &[]).ok(&format!("webjit {name} --help"));
        let want = expected
            .iter()
            .find(|(n, _)| n == name)
            .map_or(&[][..], |e| e.1);
        for opt in want {
            assert!(
                run.stdout.contains(opt),
                "`webjit {name} --help` does not mention {opt}:\n{}",
                run.stdout
            );
        }
    }
    let bench = webjit(&["bench", "--help"], &[]).ok("webjit bench --help");
    let bench_names = subcommands(&bench.stdout);
    assert!(bench_names.len() >= 3, "{}", bench.stdout);
    for name in &bench_names {
        let run =
            webjit(&["bench", name, "--help"], &[]).ok(&format!("webjit bench {name} --help"));
        assert!(run.stdout.contains("--json") || run.stdout.contains("Usage"));
        if name == "matmul" {
            for opt in ["--m", "--n", "--k", "--json"] {
                assert!(run.stdout.contains(opt), "bench matmul --help: {opt}");
            }
        }
    }
}

#[test]
fn info_and_bench_matmul_json() {
    let info = webjit(&["info", "--json"], &[]).ok("info --json");
    let v = info.json("info --json");
    assert!(v["adapter"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(
        v["limits"]["max_buffer_size"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{v}"
    );
    assert!(v["fingerprint"].as_str().is_some(), "{v}");
    let mut r = Rand::new(11);
    let (m, n, k) = (r.range(16, 80), r.range(16, 80), r.range(16, 80));
    let (ms, ns, ks) = (m.to_string(), n.to_string(), k.to_string());
    let args = [
        "bench", "matmul", "--m", &ms, "--n", &ns, "--k", &ks, "--min-ms", "5", "--json",
    ];
    let b = webjit(&args, &[]).ok("bench matmul --json");
    let v = b.json("bench matmul --json");
    assert_eq!(
        (v["m"].as_u64(), v["n"].as_u64(), v["k"].as_u64()),
        (Some(m as u64), Some(n as u64), Some(k as u64)),
        "{v} (seed {})",
        r.seed
    );
    assert!(v["time_ms"].as_f64().is_some_and(|t| t > 0.0), "{v}");
    // Progress bars draw only on a terminal: captured runs have a clean stderr.
    assert!(b.stderr.trim().is_empty(), "stderr: {}", b.stderr);
}

/// A matvec sweep reports both yardsticks: the 256 MiB streaming read and the read of the
/// weight's own bytes (same dispatch cost), and the fractions are the best config's over them.
#[test]
fn bench_qmatmul_sweep_reports_both_read_yardsticks() {
    let args = [
        "bench", "qmatmul", "--format", "q8_0", "--m", "1", "--n", "96", "--k", "256", "--sweep",
        "--min-ms", "2", "--json",
    ];
    let v = webjit(&args, &[])
        .ok("bench qmatmul --sweep --json")
        .json("bench qmatmul");
    let gbps = v["gbps"].as_f64().unwrap();
    let same = v["read_same_bytes_gbps"].as_f64().unwrap();
    let big = v["read_gbps"].as_f64().unwrap();
    assert!(gbps > 0.0 && same > 0.0 && big > 0.0, "{v}");
    let f = v["fraction_of_read_same_bytes"].as_f64().unwrap();
    assert!((f - gbps / same).abs() < 1e-9 * f.max(1.0), "{v}");
    assert_eq!(v["weight_bytes"].as_u64(), Some(96 * 8 * 34), "{v}");
    assert!(v["results"].as_array().is_some_and(|r| r.len() > 1), "{v}");
}

#[test]
fn load_json_matches_the_file_by_path_and_by_short_name() {
    let path = tiny_llama_path();
    let bytes = std::fs::read(&path).expect("reading the tiny llama");
    let sha = sha256_hex(&bytes);
    let p = path.to_string_lossy().into_owned();
    for model in [p.as_str(), "tiny-llama"] {
        let run = webjit(&["load", "--model", model, "--hash", "--json"], &[]).ok(model);
        let v = run.json("load --json");
        assert_eq!(v["bytes"].as_u64(), Some(bytes.len() as u64), "{v}");
        assert_eq!(v["sha256"].as_str(), Some(sha.as_str()), "{v}");
        assert_eq!(v["format"], "gguf", "{v}");
        assert_eq!(v["architecture"], "llama", "{v}");
        assert!(v["tensors"].as_u64().is_some_and(|t| t > 0), "{v}");
        assert_eq!(v["model"].as_str(), Some(p.as_str()), "{v}");
        assert!(run.stderr.trim().is_empty(), "stderr: {}", run.stderr);
    }
}

#[test]
fn bench_model_profile_times_every_dispatch_of_a_step() {
    let p = tiny_llama_path().to_string_lossy().into_owned();
    let args = [
        "bench",
        "model",
        "--model",
        &p,
        "--prompt-tokens",
        "4",
        "--gen-tokens",
        "2",
        "--reps",
        "1",
        "--profile",
        "--json",
    ];
    let v = webjit(&args, &[])
        .ok("bench model --profile")
        .json("bench model --json");
    let prof = &v["profile"];
    let kernels = prof["kernels"].as_array().expect("profile.kernels");
    assert!(!kernels.is_empty(), "{v}");
    // One timed pass per dispatch: the per-key counts add up to the step's dispatches.
    let counted: u64 = kernels
        .iter()
        .map(|k| k["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(Some(counted), v["dispatches_per_token"].as_u64(), "{v}");
    let sum: f64 = kernels
        .iter()
        .map(|k| k["us"].as_f64().unwrap_or(0.0))
        .sum();
    let total = prof["gpu_us_per_step"].as_f64().expect("gpu_us_per_step");
    assert!(
        total > 0.0 && (sum - total).abs() <= 1e-6 * total.max(1.0),
        "{v}"
    );
    // The same step with dispatches sharing passes: positive, and no slower than one pass
    // per dispatch by more than timer noise.
    let shared = prof["gpu_us_per_step_shared_passes"]
        .as_f64()
        .expect("gpu_us_per_step_shared_passes");
    assert!(shared > 0.0 && shared < 2.0 * total, "{v}");
    let submit = v["overhead_submit_ms_per_token"]
        .as_f64()
        .expect("overhead_submit_ms_per_token");
    let overhead = v["overhead_ms_per_token"].as_f64().expect("overhead");
    assert!(submit > 0.0 && submit <= overhead, "{v}");
    // The floor is the cheapest dispatch: positive, at most the step's mean dispatch, and the
    // time below it is dispatches x floor.
    let floor = prof["floor_us"].as_f64().expect("floor_us");
    let n = counted as f64;
    assert!(floor > 0.0 && floor <= total / n + 1e-9, "{v}");
    let below = prof["below_floor_us"].as_f64().expect("below_floor_us");
    assert!((below - n * floor).abs() <= 1e-6 * below.max(1.0), "{v}");
    let share = prof["below_floor_share"]
        .as_f64()
        .expect("below_floor_share");
    assert!((share - below / total).abs() < 1e-9 && share <= 1.0, "{v}");
    // Most expensive first.
    let us: Vec<f64> = kernels
        .iter()
        .map(|k| k["us"].as_f64().unwrap_or(0.0))
        .collect();
    assert!(us.windows(2).all(|w| w[0] >= w[1]), "{v}");
}

#[test]
fn embed_json_gives_unit_vectors_of_the_hidden_size() {
    let dir = require_model("all-MiniLM-L6-v2");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("config.json")).expect("reading config.json"),
    )
    .expect("config.json is JSON");
    let hidden = config["hidden_size"].as_u64().expect("hidden_size") as usize;
    let run = webjit(
        &[
            "embed",
            "--model",
            "minilm-l6",
            "--json",
            "hi",
            "a longer second sentence",
        ],
        &[],
    )
    .ok("embed --json");
    let v = run.json("embed --json");
    let embs = v["embeddings"].as_array().expect("embeddings");
    assert_eq!(embs.len(), 2, "{v}");
    for e in embs {
        let e: Vec<f64> = e
            .as_array()
            .expect("a vector")
            .iter()
            .map(|x| x.as_f64().expect("a number"))
            .collect();
        assert_eq!(e.len(), hidden);
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");
    }
    let ids = v["token_ids"].as_array().expect("token_ids");
    // [CLS] hi [SEP] is shorter than the second sentence's ids.
    let lens: Vec<usize> = ids
        .iter()
        .map(|t| t.as_array().map_or(0, |a| a.len()))
        .collect();
    assert!(lens[0] >= 3 && lens[0] < lens[1], "{lens:?}");
    assert!(run.stderr.trim().is_empty(), "stderr: {}", run.stderr);
}

/// `generate` and `load` over http:// from `webjit serve` give the same results as from the
/// file: the URL source streams the exact bytes.
#[test]
fn generate_and_load_over_http_match_the_file() {
    let path = tiny_llama_path();
    let dir = path.parent().expect("the model cache");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a file name");
    let server = Server::start(&["--models", &dir.to_string_lossy()]);
    let url = format!("{}models/{name}", server.url);
    let p = path.to_string_lossy().into_owned();
    let mut r = Rand::new(5);
    let ids: Vec<String> = r.ids(4, 200).iter().map(|i| (i + 1).to_string()).collect();
    let prompt_ids = format!("1,{}", ids.join(","));
    let max_tokens = 5;
    let generate = |model: &str| {
        let run = webjit(
            &[
                "generate",
                "--model",
                model,
                "--prompt-ids",
                &prompt_ids,
                "--max-tokens",
                &max_tokens.to_string(),
                "--max-context",
                "64",
                "--json",
            ],
            &[],
        )
        .ok(&format!("generate --model {model}"));
        run.json("generate --json")
    };
    let (a, b) = (generate(&p), generate(&url));
    let want_prompt: Vec<u64> = prompt_ids.split(',').map(|s| s.parse().unwrap()).collect();
    let got_prompt: Vec<u64> = a["prompt_tokens"]
        .as_array()
        .expect("prompt_tokens")
        .iter()
        .filter_map(|x| x.as_u64())
        .collect();
    assert_eq!(got_prompt, want_prompt, "(seed {})", r.seed);
    let n = a["tokens"].as_array().expect("tokens").len();
    assert!(n >= 1 && n <= max_tokens, "{a}");
    assert_eq!(a["tokens"], b["tokens"], "file vs http (seed {})", r.seed);
    assert_eq!(a["text"], b["text"]);

    let sha = sha256_hex(&std::fs::read(&path).expect("reading the model"));
    let run = webjit(&["load", "--model", &url, "--hash", "--json"], &[]).ok("load over http");
    let v = run.json("load --json");
    assert_eq!(v["sha256"].as_str(), Some(sha.as_str()), "{v}");
    assert_eq!(v["model"].as_str(), Some(url.as_str()), "{v}");
    // A model directory over http: the small files whole, the weights streamed.
    let minilm = require_model("all-MiniLM-L6-v2");
    let minilm_name = minilm.file_name().and_then(|n| n.to_str()).expect("a name");
    let minilm_url = format!("{}models/{minilm_name}", server.url);
    let embed = |model: &str| {
        webjit(
            &["embed", "--model", model, "--json", "streamed weights"],
            &[],
        )
        .ok(&format!("embed --model {model}"))
        .json("embed --json")
    };
    let (e1, e2) = (embed(&minilm.to_string_lossy()), embed(&minilm_url));
    assert_eq!(e1["token_ids"], e2["token_ids"]);
    let vec = |v: &serde_json::Value| -> Vec<f64> {
        v["embeddings"][0]
            .as_array()
            .expect("an embedding")
            .iter()
            .filter_map(|x| x.as_f64())
            .collect()
    };
    let (v1, v2) = (vec(&e1), vec(&e2));
    assert!(!v1.is_empty() && v1.len() == v2.len());
    let max_diff = v1
        .iter()
        .zip(&v2)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(
        max_diff < 1e-6,
        "file vs http embeddings differ by {max_diff}"
    );

    // `tune --model` reads only the header: over http, the same problems as from the file.
    // Weights synthesized from the header give finite activations: no candidate of a problem
    // captured from the model's steps is rejected (NaN inputs made every one disagree).
    let tune_keys_with = |model: &str, extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "tune",
            "--model",
            model,
            "--budget-s",
            "0.3",
            "--no-save",
            "--json",
        ];
        a.extend_from_slice(extra);
        let run = webjit(&a, &[]).ok(&format!("tune --model {model} {extra:?}"));
        let v = run.json("tune --json");
        let kernels = v["kernels"].as_array().expect("kernels");
        for k in kernels {
            assert_eq!(k["rejected"], 0, "tune --model {model}: {k}");
        }
        assert!(v["run"]["revision"].is_string(), "no run facts: {v}");
        kernels
            .iter()
            .filter_map(|k| k["tune_key"].as_str().map(str::to_string))
            .collect()
    };
    let tune_keys = |model: &str| tune_keys_with(model, &[]);
    let (k1, k2) = (tune_keys(&p), tune_keys(&url));
    assert!(!k1.is_empty());
    assert_eq!(k1, k2, "tune --model: file vs http");
    // --kv-cache picks the decode attention the plan captures and tunes, as the model runs it.
    let is_kivi = |k: &String| k.contains("kivi2");
    let kivi = tune_keys_with(&p, &["--kv-cache", "kivi2"]);
    assert!(kivi.iter().any(is_kivi), "no kivi2 kernel tuned: {kivi:?}");
    assert!(
        !k1.iter().any(is_kivi),
        "kivi2 kernel without --kv-cache: {k1:?}"
    );
    let line = webjit(&["tune", "--kv-cache", "q8_0", "--no-save"], &[])
        .one_line_error("tune --kv-cache without --model");
    assert!(line.contains("--kv-cache q8_0 needs --model"), "{line}");
    // A prompt length the prefill kernels do not serve is one clear line.
    let line = webjit(
        &["tune", "--model", &p, "--prompt-tokens", "4", "--no-save"],
        &[],
    )
    .one_line_error("tune --prompt-tokens 4");
    assert!(line.contains("prompt tokens 4"), "{line}");

    let missing = format!("{}models/no-such-model.gguf", server.url);
    let line = webjit(&["load", "--model", &missing], &[]).one_line_error("404 URL");
    assert!(line.contains("404"), "{line}");
}

#[test]
fn missing_models_fail_with_one_line() {
    let empty = TempDir::new("empty-cache");
    let cache = [("WEBJIT_CACHE", empty.0.as_os_str())];
    let missing = empty.0.join("nope.gguf");
    let missing = missing.to_string_lossy();
    for args in [
        vec!["load", "--model", &missing],
        vec!["generate", "--model", &missing, "--prompt", "hi"],
        vec!["chat", "--model", &missing],
        vec!["embed", "--model", &missing, "hi"],
        vec!["tune", "--model", &missing, "--no-save"],
        vec!["bench", "model", "--model", &missing],
    ] {
        let line = webjit(&args, &cache).one_line_error(&args.join(" "));
        assert!(line.contains("nope.gguf"), "{line}");
    }
    for (args, needle) in [
        (
            vec!["generate", "--model", "gemma3-270m", "--prompt", "hi"],
            "make models",
        ),
        (vec!["embed", "--model", "minilm-l6", "hi"], "make models"),
        (
            vec!["load", "--model", "https://example.org/m.gguf"],
            "http://",
        ),
        (
            vec!["load", "--model", "ftp://example.org/m.gguf"],
            "http://",
        ),
    ] {
        let line = webjit(&args, &cache).one_line_error(&args.join(" "));
        assert!(line.contains(needle), "{line}");
    }
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/m.gguf");
    let line = webjit(&["load", "--model", &url], &cache).one_line_error("refused URL");
    assert!(line.contains(&url), "{line}");
}

#[test]
fn corrupt_models_fail_with_one_line() {
    let bytes = std::fs::read(tiny_llama_path()).expect("reading the tiny llama");
    let tmp = TempDir::new("corrupt");
    let mut r = Rand::new(17);
    let cut = r.range(bytes.len() / 4, bytes.len() * 3 / 4);
    let garbage: Vec<u8> = r.ids(4096, 256).iter().map(|&b| b as u8).collect();
    let cases = [
        ("truncated-data.gguf", &bytes[..cut]),
        ("truncated-header.gguf", &bytes[..r.range(8, 200)]),
        ("garbage.gguf", &garbage[..]),
    ];
    for (name, data) in cases {
        let p = tmp.write(name, data);
        let p = p.to_string_lossy();
        for args in [
            vec!["load", "--model", &p],
            vec!["load", "--model", &p, "--no-gpu"],
            vec![
                "generate",
                "--model",
                &p,
                "--prompt-ids",
                "1,2",
                "--max-tokens",
                "2",
            ],
        ] {
            let line =
                webjit(&args, &[]).one_line_error(&format!("{} (seed {})", args.join(" "), r.seed));
            assert!(line.contains("[LOAD_") || line.contains("[BAD_"), "{line}");
        }
    }
}
