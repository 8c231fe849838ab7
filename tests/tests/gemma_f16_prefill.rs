//! The golden Gemma 3 270M prompts with prefill matmuls multiplying in f16 (sums in f32), the
//! default on GPUs with `shader-f16` and 32-lane subgroups, where these tests cannot run on the
//! real file: against llama.cpp with the same criteria as `gemma.rs` (logits at the last
//! prompt position, greedy continuation up to its first near tie).

use webjit_engine::loader::FileSource;
use webjit_engine::model::decoder::Decoder;
use webjit_engine::model::generate::Session;
use webjit_jit::kernels::qmatmul::QMatmulSpec;
use webjit_jit::quant::GgmlType;
use webjit_tests::gemma_refs::{gemma_prompt_refs, run_golden_on, GEMMA_MODEL, GREEDY};
use webjit_tests::{f16_prefill_engine, require_model};

#[test]
fn f16_prefill_matches_llama_cpp() {
    let e = f16_prefill_engine();
    assert!(
        e.profile().f16,
        "this adapter ({}) has no shader-f16: the f16 prefill path cannot be tested here",
        e.profile().name
    );
    // Gemma's prefill shapes get f16 tiles on this engine (else the test would prove nothing).
    for (format, n, k) in [(GgmlType::Q5_0, 1024, 640), (GgmlType::Q4K, 640, 2048)] {
        let spec = QMatmulSpec {
            format,
            m: 692,
            n,
            k,
            rows: n,
        };
        let c = e.choose(&spec, None);
        assert!(c.f16, "{} {n}x{k}: default {c:?} is not f16", format.name());
    }
    let mut src = FileSource::open(&require_model(GEMMA_MODEL)).expect("open model");
    let (_, dec) = Decoder::load(e, &mut src, Some(1024)).expect("load Gemma");
    let mut session = Session::new(e, dec).expect("session");
    // The longest prompt (692 tokens: all prefill, past the sliding window) and a chat prompt.
    for name in ["long", "chat"] {
        let refs = gemma_prompt_refs();
        let r = refs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no reference prompt `{name}`"));
        run_golden_on(e, &mut session, r);
    }
    // A step on an engine other than the model's is a typed error, not a device error.
    match session.step(webjit_tests::engine(), &[2], &GREEDY) {
        Ok(_) => panic!("a step on another engine succeeded"),
        Err(err) => assert!(err.to_string().contains("another engine"), "{err}"),
    }
}
