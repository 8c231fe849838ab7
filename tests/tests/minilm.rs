//! Golden test: all-MiniLM-L6-v2 embeddings against sentence-transformers references recorded
//! by `scripts/record_minilm_refs.py` (tests/data/minilm_refs.json).

use webjit_engine::model::bert::Bert;
use webjit_tests::{engine, require_model};

struct Ref {
    text: String,
    ids: Vec<u32>,
    emb: Vec<f32>,
}

fn refs() -> Vec<Ref> {
    let text = include_str!("../data/minilm_refs.json");
    let doc: serde_json::Value =
        serde_json::from_str(text).expect("tests/data/minilm_refs.json parses");
    doc["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Ref {
            text: s["text"].as_str().unwrap_or_default().to_string(),
            ids: s["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
            emb: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let dir = require_model("all-MiniLM-L6-v2");
    let e = engine();
    let mut bert = Bert::load_dir(e, &dir).expect("load MiniLM");
    // The device's own choice, then the other way of running the LayerNorms (inside the
    // projections on GPUs, as dispatches of their own on CPU adapters): both must match.
    let default = bert.norm_in_matmul.unwrap_or(!e.profile().cpu);
    for fused in [default, !default] {
        bert.norm_in_matmul = Some(fused);
        eprintln!("MiniLM with LayerNorms inside the projections: {fused}");
        check(e, &bert);
    }
}

fn check(e: &webjit_engine::Engine, bert: &Bert) {
    let refs = refs();
    assert!(
        refs.len() >= 8
            && refs.iter().any(|r| r.text.is_empty())
            && refs.iter().any(|r| r.ids.len() > 128)
    );
    let texts: Vec<&str> = refs.iter().map(|r| r.text.as_str()).collect();

    // Batched (padded to the longest sentence).
    let (ids, batched) = bert.embed(e, &texts, 32).expect("embed batch");
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(ids[i], r.ids, "token ids of {:?}", r.text);
        let c = cosine(&batched[i], &r.emb);
        assert!(c >= 0.9999, "cosine {c} < 0.9999 for {:?}", r.text);
    }
    // One by one: the same embeddings as in the padded batch.
    for (i, t) in texts.iter().enumerate() {
        let (_, single) = bert.embed(e, &[t], 1).expect("embed one");
        let c = cosine(&single[0], &batched[i]);
        assert!(c >= 0.99999, "batched and single disagree ({c}) for {t:?}");
    }
}
