//! The recorded llama.cpp references are coherent (so a model test built on them can trust
//! them) and the golden checkers reject wrong results.

use webjit_tests::gemma_refs::{
    check_greedy, check_last_logits, gemma_prompt_refs, tiny_llama_prompt_refs, top_k, PromptRef,
};

fn coherent(r: &PromptRef, full_top10_tol: f32) {
    let name = &r.name;
    assert!(r.prompt_ids.len() > 1, "{name}: prompt ids");
    assert_eq!(r.last_top10.len(), 10, "{name}");
    assert!(r.greedy.len() >= 16, "{name}: greedy steps");
    // The first greedy step is taken from the last prompt position.
    for (a, b) in r.greedy[0].top5.iter().zip(&r.last_top10) {
        assert_eq!(a.0, b.0, "{name}: step 0 top-5 vs last-position top-10");
        assert!((a.1 - b.1).abs() <= 1e-4, "{name}: {a:?} vs {b:?}");
    }
    for (i, s) in r.greedy.iter().enumerate() {
        assert_eq!(s.id, s.top5[0].0, "{name} step {i}: greedy is the argmax");
        assert!(
            (s.gap - (s.top5[0].1 - s.top5[1].1)).abs() <= 1e-4,
            "{name} step {i}"
        );
    }
    if let Some(full) = &r.last_logits {
        // The full vector (f16 for Gemma) has the recorded top-10.
        let t = top_k(full, 10);
        assert_eq!(t[0].0, r.last_top10[0].0, "{name}: full-vector argmax");
        for (id, logit) in &r.last_top10 {
            let got = full[*id as usize];
            assert!(
                (got - logit).abs() <= full_top10_tol,
                "{name}: id {id} {got} vs {logit}"
            );
        }
    }
}

#[test]
fn gemma_references_are_coherent() {
    let refs = gemma_prompt_refs();
    assert!(
        refs.iter().any(|r| r.prompt_ids.len() > 600),
        "a >600-token prompt"
    );
    assert!(refs.iter().filter(|r| r.last_logits.is_some()).count() >= 2);
    for r in &refs {
        assert_eq!(r.greedy.len(), 32, "{}", r.name);
        // f16 holds logits of magnitude ~20 to within 0.008.
        coherent(r, 0.02);
        if let Some(full) = &r.last_logits {
            assert_eq!(full.len(), 262144, "{}", r.name);
        }
    }
}

#[test]
fn tiny_llama_references_are_coherent() {
    for r in &tiny_llama_prompt_refs() {
        let all = r.all_logits.as_ref().expect("all positions");
        assert_eq!(all.len(), r.prompt_ids.len(), "{}", r.name);
        coherent(r, 1e-4);
    }
}

/// The checkers accept llama.cpp's own results and reject a wrong argmax, a permuted vector
/// and a diverging continuation.
#[test]
fn golden_checkers_can_fail() {
    for r in gemma_prompt_refs()
        .iter()
        .chain(tiny_llama_prompt_refs().iter())
    {
        let steps: Vec<(u32, Vec<(u32, f32)>)> =
            r.greedy.iter().map(|s| (s.id, s.top5.clone())).collect();
        let n = check_greedy(&steps, r).expect("llama.cpp's own steps");
        assert!(n >= 1);
        if n > 1 {
            let mut bad = steps.clone();
            bad[0].0 += 1;
            assert!(check_greedy(&bad, r).is_err(), "{}: wrong token", r.name);
        }
        let mut off = steps.clone();
        off[0].1[0].1 += 1.5;
        assert!(
            check_greedy(&off, r).is_err(),
            "{}: logit off by 1.5",
            r.name
        );

        let Some(full) = &r.last_logits else { continue };
        check_last_logits(full, r).expect("llama.cpp's own logits");
        let mut rolled = full.clone();
        rolled.rotate_left(1);
        assert!(
            check_last_logits(&rolled, r).is_err(),
            "{}: rotated",
            r.name
        );
        let mut noisy = full.clone();
        for (i, x) in noisy.iter_mut().enumerate() {
            // Deterministic noise of ~10% of the logits' RMS.
            *x += 0.3 * (((i * 7919) % 13) as f32 - 6.0) / 6.0 * x.abs().max(1.0);
        }
        assert!(check_last_logits(&noisy, r).is_err(), "{}: noisy", r.name);
    }
}
