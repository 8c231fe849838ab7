//! The `llama` architecture against llama.cpp, on the tiny random-weight GGUF of
//! tests/data/tiny_llama (made by scripts/make_tiny_llama.py: GQA, SwiGLU, normal RoPE pairing,
//! untied output, F32/F16/Q8_0/Q4_K/Q6_K tensors). llama.cpp recorded the logits at every
//! prompt position, so every prefix length is checked, then the greedy continuation.

use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_engine::model::llm_config::Arch;
use webjit_tests::engine;
use webjit_tests::gemma_refs::{
    check_last_logits, run_golden, tiny_llama_path, tiny_llama_prompt_refs, top_k, PromptRef,
    GREEDY,
};

fn session() -> Session {
    let mut src = FileSource::open(&tiny_llama_path()).expect("tiny llama");
    let (_, dec) = Decoder::load(engine(), &mut src, Some(128)).expect("load tiny llama");
    assert_eq!(dec.cfg.arch, Arch::Llama);
    Session::new(engine(), dec).expect("session")
}

/// The last-position bounds against llama.cpp (argmax, top-10 overlap, NMSE <= 5e-3) for the prefix of
/// length n, against `want` (llama.cpp's logits there; see the near-tie case above).
fn check_prefix(ours: &[f32], r: &PromptRef, n: usize, want: Vec<f32>, failures: &mut Vec<String>) {
    let prefix = PromptRef {
        name: format!("{} prefix {n}", r.name),
        prompt_ids: r.prompt_ids[..n].to_vec(),
        last_top10: top_k(&want, 10),
        last_logits: Some(want),
        greedy: Vec::new(),
        all_logits: None,
        text: String::new(),
    };
    if let Err(m) = check_last_logits(ours, &prefix) {
        failures.push(m);
    }
}

#[test]
fn every_prefix_matches_llama_cpp_logits() {
    let e = engine();
    let mut s = session();
    let mut checked = 0;
    let mut failures = Vec::new();
    for r in tiny_llama_prompt_refs() {
        let all = r.all_logits.as_ref().expect("all positions recorded");
        for n in 1..=r.prompt_ids.len() {
            s.reset();
            let step = s.step(e, &r.prompt_ids[..n], &GREEDY).expect("prefill");
            let ours = e.read_f32(&step.logits).expect("read");
            // The prefix is a prompt of its own: its last position is position n-1.
            let want = all[n - 1].clone();
            let top = top_k(&want, 2);
            if top[0].1 - top[1].1 < 0.5 {
                // A near tie in llama.cpp's own logits (it moves by up to ~1 logit between
                // its batched and token-by-token runs): either of its top two may win, and
                // the NMSE and top-10 bounds still apply below.
                let ours_top = top_k(&ours, 1)[0].0;
                assert!(
                    ours_top == top[0].0 || ours_top == top[1].0,
                    "{} prefix {n}: argmax {ours_top} not in llama.cpp's top-2 {top:?}",
                    r.name
                );
                let mut alt = want.clone();
                alt[ours_top as usize] = top[0].1 + 1e-3;
                check_prefix(&ours, &r, n, alt, &mut failures);
                checked += 1;
                continue;
            }
            check_prefix(&ours, &r, n, want, &mut failures);
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 40, "{checked} prefixes");
}

#[test]
fn greedy_continuation_matches_llama_cpp() {
    let mut s = session();
    for r in tiny_llama_prompt_refs() {
        run_golden(&mut s, &r);
    }
}

#[test]
fn bad_models_give_typed_errors() {
    let bytes = std::fs::read(tiny_llama_path()).expect("tiny llama");
    // Cut inside the tensor data: the loader must refuse, not the decoder panic.
    let cut = &bytes[..bytes.len() - 1000];
    let mut src = webjit_engine::loader::MemSource(cut);
    let err = match Decoder::load(engine(), &mut src, Some(16)) {
        Err(e) => e,
        Ok(_) => panic!("a truncated model loaded"),
    };
    assert!(
        err.code().starts_with("LOAD") || err.code() == "BAD_MODEL_FILE",
        "{}: {err}",
        err.code()
    );
    // An architecture without a plan is refused with UNSUPPORTED_ARCHITECTURE, naming it and
    // the supported ones: patch the architecture string in place ("llama" -> "llamb").
    let pos = bytes
        .windows(5)
        .position(|w| w == b"llama")
        .expect("architecture string");
    let mut other = bytes.clone();
    other[pos + 4] = b'b';
    let mut src = webjit_engine::loader::MemSource(&other);
    let err = match Decoder::load(engine(), &mut src, Some(16)) {
        Err(e) => e,
        Ok(_) => panic!("an unknown architecture loaded"),
    };
    assert_eq!(err.code(), "UNSUPPORTED_ARCHITECTURE", "{err}");
    let msg = err.to_string();
    for name in [
        "`llamb`", "llama", "qwen2", "qwen3", "phi3", "gemma2", "gemma3",
    ] {
        assert!(msg.contains(name), "{msg} does not name {name}");
    }
    // A context longer than the cache is an argument error, not a panic.
    let mut s = session();
    let too_long = vec![1u32; 129];
    let err = match s.step(engine(), &too_long, &GREEDY) {
        Err(e) => e,
        Ok(_) => panic!("129 tokens fit a 128-token cache"),
    };
    assert_eq!(err.code(), "INVALID_ARGUMENT", "{err}");
}

/// `generate` (pipelined: each step reads its token on the GPU, one step runs ahead) gives the
/// same greedy tokens as stepping one token at a time, and the same context afterwards; a
/// seeded sampled run repeats exactly; the repetition-penalty path (not pipelined) runs too.
#[test]
fn generate_matches_stepping_and_is_deterministic() {
    use webjit_engine::model::generate::GenerateOptions;
    let e = engine();
    let mut s = session();
    for r in tiny_llama_prompt_refs() {
        s.reset();
        let mut tok = s
            .step(e, &r.prompt_ids, &GREEDY)
            .expect("prefill")
            .result
            .token;
        let mut stepped = vec![tok];
        for _ in 0..9 {
            tok = s.step(e, &[tok], &GREEDY).expect("step").result.token;
            stepped.push(tok);
        }
        let pos_stepped = s.position();
        s.reset();
        let opts = GenerateOptions {
            max_tokens: 10,
            ..Default::default()
        };
        let g = s
            .generate(e, &r.prompt_ids, &opts, &|_| false, &mut |_| true)
            .expect("generate");
        assert_eq!(g.tokens, stepped, "{}", r.name);
        // Each token but the first (from the prompt step) and the last was awaited with the
        // step after it already queued: the GPU never waited for the host to record a step.
        assert_eq!(g.queued_behind, g.tokens.len() - 2, "{}", r.name);
        // The last token is pending, exactly as after stepping: the step run ahead was undone.
        assert_eq!(s.position(), pos_stepped, "{}", r.name);
        assert!(g.dispatches_per_token > 0);
    }
    let r = &tiny_llama_prompt_refs()[0];
    let sampled = |s: &mut Session, penalty: f32| -> (Vec<u32>, usize) {
        s.reset();
        let opts = GenerateOptions {
            max_tokens: 12,
            temperature: 1.2,
            top_k: 20,
            top_p: 0.9,
            repeat_penalty: penalty,
            seed: 42,
        };
        let g = s
            .generate(e, &r.prompt_ids, &opts, &|_| false, &mut |_| true)
            .expect("sampled");
        (g.tokens, g.queued_behind)
    };
    let a = sampled(&mut s, 1.0);
    assert_eq!(a, sampled(&mut s, 1.0), "same seed, same tokens");
    assert_eq!(a.0.len(), 12);
    assert_eq!(a.1, 10, "sampled steps run ahead too");
    let p = sampled(&mut s, 1.3);
    assert_eq!(p, sampled(&mut s, 1.3), "penalty path is deterministic too");
    assert_eq!(
        p.1, 0,
        "a repetition penalty needs each token on the host first"
    );
    // Stopping early through the callback leaves the stopping token pending.
    s.reset();
    let mut seen = 0;
    let g = s
        .generate(
            e,
            &r.prompt_ids,
            &GenerateOptions::default(),
            &|_| false,
            &mut |_| {
                seen += 1;
                seen < 3
            },
        )
        .expect("stopped");
    assert_eq!(g.tokens.len(), 3);
    assert_eq!(s.position(), r.prompt_ids.len() + 2);
}

/// The one-token-at-a-time path the browser drives (`start` / `next_token`, each awaiting its
/// readback) gives the same tokens as `generate` for the same seed, sampled and with a
/// repetition penalty, stops for the same reasons, and continues a conversation the same way.
#[test]
fn incremental_generation_matches_generate() {
    use webjit_engine::model::generate::{GenerateOptions, StopReason};
    let e = engine();
    let mut s = session();
    let r = &tiny_llama_prompt_refs()[0];
    for (temperature, penalty) in [(0.0, 1.0), (1.2, 1.0), (0.9, 1.3)] {
        let opts = GenerateOptions {
            max_tokens: 9,
            temperature,
            top_k: 20,
            top_p: 0.9,
            repeat_penalty: penalty,
            seed: 7,
        };
        s.reset();
        let want = s
            .generate(e, &r.prompt_ids, &opts, &|_| false, &mut |_| true)
            .expect("generate");
        // A second turn after the first (the pending token is fed first).
        let want2 = s
            .generate(e, &r.prompt_ids[1..4], &opts, &|_| false, &mut |_| true)
            .expect("second turn");
        s.reset();
        let mut g = s.start(&r.prompt_ids, &opts).expect("start");
        let mut got = Vec::new();
        while let Some(res) = pollster::block_on(s.next_token(e, &mut g, &|_| false)).expect("next")
        {
            got.push(res.token);
        }
        assert_eq!(got, want.tokens, "t={temperature} penalty={penalty}");
        assert_eq!(g.stop, Some(StopReason::MaxTokens));
        assert_eq!(g.stats.top_logits, want.top_logits);
        let mut g = s.start(&r.prompt_ids[1..4], &opts).expect("start 2");
        let mut got2 = Vec::new();
        while let Some(res) = pollster::block_on(s.next_token(e, &mut g, &|_| false)).expect("next")
        {
            got2.push(res.token);
        }
        assert_eq!(got2, want2.tokens, "second turn t={temperature}");
    }
    // An end-of-generation id stops at once (and is reported); `stop` ends a generation early.
    s.reset();
    let opts = GenerateOptions {
        max_tokens: 50,
        ..Default::default()
    };
    let mut g = s.start(&r.prompt_ids, &opts).expect("start");
    let first = pollster::block_on(s.next_token(e, &mut g, &|_| true))
        .expect("next")
        .expect("a token");
    assert_eq!(g.stop, Some(StopReason::Eog));
    assert_eq!(g.stats.tokens, vec![first.token]);
    assert!(pollster::block_on(s.next_token(e, &mut g, &|_| true))
        .expect("after eog")
        .is_none());
    s.reset();
    let mut g = s.start(&r.prompt_ids, &opts).expect("start");
    pollster::block_on(s.next_token(e, &mut g, &|_| false)).expect("next");
    pollster::block_on(s.next_token(e, &mut g, &|_| false)).expect("next");
    s.stop(&mut g);
    assert!(pollster::block_on(s.next_token(e, &mut g, &|_| false))
        .expect("stopped")
        .is_none());
    assert_eq!(g.stop, Some(StopReason::Stopped));
    assert_eq!(
        s.position(),
        r.prompt_ids.len() + 1,
        "the last token waits, unfed"
    );
    assert!(
        s.start(&[], &opts).is_ok(),
        "the pending token alone is a prompt"
    );
    s.reset();
    assert!(s.start(&[], &opts).is_err(), "nothing to generate from");

    // Filling the KV cache stops with `Context` after the same tokens as stepping until the
    // cache is full, though steps were submitted ahead of the host up to the end.
    let cap = s.decoder.max_context();
    let mut stepped = vec![
        s.step(e, &r.prompt_ids, &GREEDY)
            .expect("prefill")
            .result
            .token,
    ];
    while s.position() < cap {
        let t = *stepped.last().expect("a token");
        stepped.push(s.step(e, &[t], &GREEDY).expect("step").result.token);
    }
    s.reset();
    let opts = GenerateOptions {
        max_tokens: 10 * cap,
        ..Default::default()
    };
    let mut g = s.start(&r.prompt_ids, &opts).expect("start");
    let mut got = Vec::new();
    while let Some(res) = pollster::block_on(s.next_token(e, &mut g, &|_| false)).expect("next") {
        got.push(res.token);
    }
    assert_eq!(g.stop, Some(StopReason::Context));
    assert_eq!(got.len(), cap - r.prompt_ids.len() + 1);
    assert_eq!(got, stepped);
    assert_eq!(
        s.position(),
        cap,
        "every returned token but the last was fed"
    );
}

/// The browser's streaming path: a `PrefillSink` given the prompt as text tokenizes it with
/// the header's vocabulary, prefills while the file arrives in small pieces, and the first
/// token of `start_prefilled` + `next_token` comes from the prefilled logits: the same ids and
/// tokens as tokenizing first and calling `generate`.
#[test]
fn streaming_prefill_from_text_matches_generate() {
    use webjit_engine::loader::source::load_from;
    use webjit_engine::loader::LoadOptions;
    use webjit_engine::model::generate::GenerateOptions;
    use webjit_engine::model::stream_prefill::{PrefillPrompt, PrefillSink};
    let e = engine();
    let opts = GenerateOptions {
        max_tokens: 8,
        temperature: 0.7,
        seed: 3,
        ..Default::default()
    };
    for r in tiny_llama_prompt_refs().iter().take(2) {
        let mut s = session();
        let want = s
            .generate(e, &r.prompt_ids, &opts, &|_| false, &mut |_| true)
            .expect("generate");
        let mut src = FileSource::open(&tiny_llama_path()).expect("tiny llama");
        let mut sink = PrefillSink::new(e, PrefillPrompt::Text(r.text.clone()), Some(128));
        load_from(&mut src, None, LoadOptions::default(), 4096, &mut sink).expect("load");
        let (ran, n) = sink.layers_run();
        assert_eq!((ran, n), (n, 2), "every block ran while the file streamed");
        let p = sink.finish().expect("finish");
        assert_eq!(
            p.prompt, r.prompt_ids,
            "{}: text tokenized as llama.cpp did",
            r.name
        );
        assert!(p.tokenizer.is_some());
        let mut s2 = Session::new(e, p.decoder).expect("session");
        let mut g = s2
            .start_prefilled(&p.prompt, p.logits, &opts)
            .expect("start");
        let mut got = Vec::new();
        while let Some(res) =
            pollster::block_on(s2.next_token(e, &mut g, &|_| false)).expect("next")
        {
            got.push(res.token);
        }
        assert_eq!(got, want.tokens, "{}", r.name);
    }
}

/// Prefill while the file streams in (each block runs over the prompt as soon as it has
/// arrived) gives bit-identical logits to loading first and prefilling after, for small and
/// large chunks, and `generate_prefilled` continues exactly like `generate`.
#[test]
fn streaming_prefill_matches_load_then_prefill() {
    use webjit_engine::model::generate::GenerateOptions;
    let e = engine();
    let bytes = std::fs::read(tiny_llama_path()).expect("tiny llama");
    let mut s = session();
    let opts = GenerateOptions {
        max_tokens: 8,
        ..Default::default()
    };
    for r in tiny_llama_prompt_refs() {
        s.reset();
        let step = s.step(e, &r.prompt_ids, &GREEDY).expect("prefill");
        let want = e.read_f32(&step.logits).expect("read");
        s.reset();
        let want_tokens = s
            .generate(e, &r.prompt_ids, &opts, &|_| false, &mut |_| true)
            .expect("generate")
            .tokens;
        for chunk in [4096, 1 << 20] {
            let mut src = webjit_engine::loader::MemSource(&bytes);
            let (_, dec, logits, stats) =
                Decoder::load_with_prefill(e, &mut src, &r.prompt_ids, Some(128), chunk)
                    .expect("streaming prefill");
            assert_eq!(stats.n_layers, 2);
            assert_eq!(dec.position(), r.prompt_ids.len());
            let got = e.read_f32(&logits).expect("read");
            assert_eq!(got, want, "{} chunk {chunk}: logits differ", r.name);
            let mut s2 = Session::new(e, dec).expect("session");
            let toks = s2
                .generate_prefilled(e, &r.prompt_ids, &logits, &opts, &|_| false, &mut |_| true)
                .expect("generate_prefilled")
                .tokens;
            assert_eq!(toks, want_tokens, "{} chunk {chunk}", r.name);
        }
    }
    // Bad prompts are typed errors from inside the load.
    let mut src = webjit_engine::loader::MemSource(&bytes);
    let err = match Decoder::load_with_prefill(e, &mut src, &[1, 100_000], Some(128), 1 << 20) {
        Err(e) => e,
        Ok(_) => panic!("an out-of-vocabulary prompt prefilled"),
    };
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

/// A device lost while a model generates or loads: the operation in flight fails with
/// `DEVICE_LOST` (not a readback error), and so does everything after it, natively through
/// wgpu's device-lost callback and failed maps. The engine's own device is destroyed here, so
/// the shared test engine is not touched.
#[test]
fn device_loss_fails_generation_and_loads_with_device_lost() {
    use webjit_engine::model::generate::GenerateOptions;
    use webjit_engine::DeviceOptions;
    let e = webjit_tests::make_engine(DeviceOptions {
        load_tuning: false,
        ..Default::default()
    });
    let mut src = FileSource::open(&tiny_llama_path()).expect("tiny llama");
    let (_, dec) = Decoder::load(&e, &mut src, Some(128)).expect("load tiny llama");
    let mut s = Session::new(&e, dec).expect("session");
    let prompt = &tiny_llama_prompt_refs()[0].prompt_ids;
    let opts = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let mut seen = 0;
    let g = s.generate(&e, prompt, &opts, &|_| false, &mut |_: u32| {
        seen += 1;
        if seen == 3 {
            e.gpu.device.destroy();
        }
        true
    });
    let Err(err) = g else {
        panic!("generation went on after its device was destroyed");
    };
    assert_eq!(err.code(), "DEVICE_LOST", "{err}");
    assert!(seen < 12, "{seen} tokens came after the loss");
    assert!(
        e.device_lost().is_some(),
        "the engine does not report the loss"
    );
    // Every later operation says the same.
    s.reset();
    let Err(err) = s.step(&e, prompt, &GREEDY) else {
        panic!("a step on a lost device succeeded");
    };
    assert_eq!(err.code(), "DEVICE_LOST", "{err}");
    let mut src = FileSource::open(&tiny_llama_path()).expect("tiny llama");
    let Err(err) = Decoder::load(&e, &mut src, Some(128)) else {
        panic!("a load on a lost device succeeded");
    };
    assert_eq!(err.code(), "DEVICE_LOST", "{err}");
}
