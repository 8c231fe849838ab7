//! `webjit embed`: sentence embeddings with a BERT model directory (all-MiniLM-L6-v2).

use std::io::BufRead;

use serde_json::json;
use webjit_engine::model::bert::Bert;
use webjit_engine::{DeviceOptions, Engine, Error, Result};

pub fn run(model: &std::path::Path, texts: Vec<String>, batch: usize, as_json: bool) -> Result<()> {
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
    let bert = Bert::load_dir(&engine, model)?;
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
    }
    Ok(())
}
