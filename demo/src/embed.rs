//! `webjit embed`: sentence embeddings with a BERT model directory (all-MiniLM-L6-v2).

use std::io::BufRead;

use serde_json::json;
use webjit_engine::loader::WeightSource;
use webjit_engine::model::bert::Bert;
use webjit_engine::{DeviceOptions, Engine, Error, Result};

use crate::model_ref::{resolve, ModelRef};
use crate::progress::ProgressSource;

/// Sentence-transformers' default `max_seq_length` when the directory does not say.
const DEFAULT_MAX_SEQ_LEN: usize = 512;

/// A BERT model directory (local or http): the bytes of config.json, tokenizer.json and the
/// optional sentence_bert_config.json and, unless `weights` is false, model.safetensors opened
/// (its bytes are streamed onto the GPU by `load_bert`, never read whole).
struct BertFiles {
    config_json: Vec<u8>,
    tokenizer_json: Vec<u8>,
    weights: Option<Box<dyn WeightSource>>,
    max_seq_len: usize,
}

fn read_bert_files(dir: &ModelRef, weights: bool) -> Result<BertFiles> {
    let max_seq_len = dir
        .read_small("sentence_bert_config.json")?
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("max_seq_length").and_then(|m| m.as_u64()))
        .map_or(DEFAULT_MAX_SEQ_LEN, |m| m.min(1 << 20) as usize);
    Ok(BertFiles {
        config_json: dir.require_small("config.json")?,
        tokenizer_json: dir.require_small("tokenizer.json")?,
        weights: if weights {
            Some(dir.join("model.safetensors").open()?)
        } else {
            None
        },
        max_seq_len,
    })
}

fn load_bert(engine: &Engine, f: &mut BertFiles) -> Result<Bert> {
    let Some(weights) = f.weights.as_mut() else {
        return Err(Error::InvalidArgument {
            op: "embed",
            detail: "model.safetensors was not opened".into(),
        });
    };
    let mut src = ProgressSource::new(weights.as_mut(), "loading")?;
    let bert = Bert::from_source(
        engine,
        &f.config_json,
        &mut src,
        &f.tokenizer_json,
        f.max_seq_len,
    )?;
    src.finish();
    Ok(bert)
}

pub fn run(model: &str, texts: Vec<String>, batch: usize, as_json: bool) -> Result<()> {
    let mut files = read_bert_files(&resolve(model, "embed")?, true)?;
    let texts = if texts.is_empty() {
        let stdin = std::io::stdin();
        stdin
            .lock()
            .lines()
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidArgument {
                op: "embed",
                detail: format!("reading stdin: {e}"),
            })?
    } else {
        texts
    };
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let bert = load_bert(&engine, &mut files)?;
    drop(files);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let (ids, embs) = bert.embed(&engine, &refs, batch)?;
    if as_json {
        println!("{}", json!({ "token_ids": ids, "embeddings": embs }));
    } else {
        for (t, e) in texts.iter().zip(&embs) {
            let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            println!(
                "{:<40} [{} ...] ({} dims)",
                t.chars().take(40).collect::<String>(),
                head.join(", "),
                e.len()
            );
        }
        // Embeddings are unit length, so the dot product is the cosine similarity.
        if embs.len() > 1 {
            println!("cosine similarity:");
            for (i, a) in embs.iter().enumerate() {
                let row: Vec<String> = embs
                    .iter()
                    .map(|b| format!("{:6.3}", a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()))
                    .collect();
                println!("  [{i}] {}", row.join(" "));
            }
        }
    }
    Ok(())
}

/// Sentences of typical length (10-20 tokens) for throughput measurements.
const BENCH_SENTENCES: [&str; 8] = [
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "WebGPU brings general purpose compute shaders to every modern browser.",
    "She placed the book on the shelf and walked out of the quiet room.",
    "Sentence embeddings map text to vectors whose distances reflect meaning.",
    "It rained all afternoon, so the football match was postponed until Sunday.",
    "Tuning kernels on the user's own device can make inference much faster.",
    "Two dogs are playing with a red ball in the garden.",
];

/// `webjit bench embed`: sentences per second at a batch size. With `synthetic`, the model needs
/// only config.json and tokenizer.json and the weights are random (speed does not depend on
/// them), so the benchmark runs where the real weights cannot be copied.
pub fn bench(
    model: &str,
    batch: usize,
    synthetic: bool,
    min_ms: u64,
    profile: bool,
    as_json: bool,
) -> Result<()> {
    let mut files = read_bert_files(&resolve(model, "bench embed")?, !synthetic)?;
    let engine = Engine::new_blocking(DeviceOptions::default())?;
    let bert = if synthetic {
        synthetic_bert(&engine, &files)?
    } else {
        load_bert(&engine, &mut files)?
    };
    let batch = batch.max(1);
    let texts: Vec<&str> = (0..batch)
        .map(|i| BENCH_SENTENCES[i % BENCH_SENTENCES.len()])
        .collect();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| bert.tokenize(t))
        .collect::<Result<_>>()?;
    // Host time spent recording (the rest of a batch is the device's work and
    // the readback): on a fast GPU at batch 1 this is what bounds latency.
    let host = std::cell::Cell::new(std::time::Duration::ZERO);
    let dispatches = std::cell::Cell::new(0);
    let run = || -> Result<()> {
        let t = std::time::Instant::now();
        let mut rec = engine.recorder();
        let out = bert.forward(&mut rec, &ids)?;
        dispatches.set(rec.stats.dispatches);
        host.set(host.get() + t.elapsed());
        // Reading the embeddings back is part of the user-visible cost (one submit with the
        // work, as `Bert::embed` does).
        pollster::block_on(engine.submit_and_read(rec, &out)).map(|_| ())
    };
    run()?; // warm-up: compiles pipelines
    host.set(std::time::Duration::ZERO);
    let t0 = std::time::Instant::now();
    let mut iters = 0u32;
    while iters < 3 || t0.elapsed().as_millis() < min_ms as u128 {
        run()?;
        iters += 1;
    }
    let host_ms = host.get().as_secs_f64() * 1e3 / iters as f64;
    let secs = t0.elapsed().as_secs_f64() / iters as f64;
    let dispatches = dispatches.get();
    let sps = batch as f64 / secs;
    let tokens: usize = ids.iter().map(|t| t.len()).sum();
    // Per-kernel GPU time of one forward pass, summed by kernel key (first seen first).
    let kernels = if profile {
        let times = pollster::block_on(bert.profile_forward_async(&engine, &ids))?;
        let mut sums: Vec<(String, f64, u32)> = Vec::new();
        for (k, us) in times {
            match sums.iter_mut().find(|s| s.0 == k) {
                Some(s) => {
                    s.1 += us;
                    s.2 += 1;
                }
                None => sums.push((k, us, 1)),
            }
        }
        sums
    } else {
        Vec::new()
    };
    let kernel_json: Vec<_> = kernels
        .iter()
        .map(|(k, us, n)| json!({"kernel": k, "us": us, "dispatches": n}))
        .collect();
    if as_json {
        println!(
            "{}",
            crate::run_info::stamped(
                json!({"bench": "embed", "device": engine.profile().name, "batch": batch, "synthetic_weights": synthetic,
                       "tokens_per_batch": tokens, "ms_per_batch": secs * 1e3, "sentences_per_s": sps, "iterations": iters,
                       "record_ms": host_ms, "dispatches_per_batch": dispatches,
                       "profile_us": kernel_json}),
                Some(&engine)
            )
        );
    } else {
        println!(
            "{}: batch {batch} ({tokens} tokens): {:.2} ms per batch ({host_ms:.2} ms recording {dispatches} dispatches), {sps:.1} sentences/s",
            engine.profile().name,
            secs * 1e3
        );
        if profile {
            let total: f64 = kernels.iter().map(|k| k.1).sum();
            println!(
                "GPU time of one forward pass by kernel (one pass per dispatch): {total:.0} us"
            );
            for (k, us, n) in &kernels {
                println!("  {us:10.0} us  {n:3} x  {k}");
            }
        }
    }
    Ok(())
}

fn synthetic_bert(engine: &Engine, files: &BertFiles) -> Result<Bert> {
    use webjit_engine::model::bert::BertConfig;
    let (config_json, tokenizer_json) = (&files.config_json, &files.tokenizer_json);
    let c: BertConfig = serde_json::from_slice(config_json).map_err(|e| Error::BadModel {
        detail: format!("config.json: {e}"),
    })?;
    let (h, ff) = (c.hidden_size, c.intermediate_size);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![c.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![c.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![c.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for i in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", ff, h),
            ("output.dense", h, ff),
        ] {
            shapes.push((format!("{p}.{name}.weight"), vec![out, inp]));
            shapes.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
            shapes.push((format!("{p}.{name}.weight"), vec![h]));
            shapes.push((format!("{p}.{name}.bias"), vec![h]));
        }
    }
    // A safetensors file in memory: 8-byte header length, JSON header, then the data.
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in &shapes {
        let bytes = shape.iter().product::<usize>() * 4;
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut file = Vec::with_capacity(8 + header.len() + offset);
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header.as_bytes());
    let mut s = 0x2545F491u32;
    while file.len() < 8 + header.len() + offset {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let v = (s as f32 / u32::MAX as f32 - 0.5) * 0.1;
        file.extend_from_slice(&v.to_le_bytes());
    }
    Bert::from_bytes(engine, config_json, &file, tokenizer_json, 256)
}
