//! Gemma 3 golden references (recorded with llama-cpp-python by
//! `scripts/record_gemma_refs.py` into `tests/data/gemma/`) and a GGUF header reader, shared by
//! the tokenizer and model tests.

use std::path::{Path, PathBuf};

use std::sync::OnceLock;
use webjit_engine::model::generate::{SampleSettings, Session};

use webjit_engine::loader::ModelHeader;

use crate::f64_refs::{LlamaDeviation, F64_LOGIT_TOL, F64_NMSE};

/// The model file in the cache of `scripts/fetch-models.sh`.
pub const GEMMA_MODEL: &str = "gemma-3-270m-q4_k_m.gguf";

/// `tests/data`.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// A recorded JSON file under `tests/data` (e.g. `gemma/refs.json`).
pub fn read_json(rel: &str) -> serde_json::Value {
    let p = data_dir().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A recorded little-endian f16 vector under `tests/data` (e.g. full logits), as f32.
pub fn read_f16(rel: &str) -> Vec<f32> {
    let p = data_dir().join(rel);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert!(bytes.len().is_multiple_of(2), "{}: odd length", p.display());
    bytes
        .chunks_exact(2)
        .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// IEEE binary16 -> f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as f32;
    match exp {
        0 => sign * man * 2f32.powi(-24),
        31 if man == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + man / 1024.0) * 2f32.powi(e - 15),
    }
}

/// Parses only the header of a GGUF file (metadata and tensor infos), reading 4 MiB at a time
/// until it is complete: the tensor data is never read.
pub fn read_gguf_header(path: &Path) -> ModelHeader {
    let mut src = webjit_engine::loader::FileSource::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    webjit_engine::loader::read_header(&mut src)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The Gemma 3 270M header, read once per test binary (the model must be fetched).
pub fn gemma_header() -> &'static ModelHeader {
    static H: OnceLock<ModelHeader> = OnceLock::new();
    H.get_or_init(|| read_gguf_header(&crate::require_model(GEMMA_MODEL)))
}

/// One greedy step of the reference: the chosen id, the top-5 `(id, logit)` it was chosen
/// from (token-by-token decoding), and llama.cpp's top-1 minus top-2 logit. `top5_batched` is
/// the same step computed by llama.cpp in one batch over the prompt and the tokens before it:
/// llama.cpp's own spread between its two ways of computing the same step.
#[derive(Clone, Debug)]
pub struct StepRef {
    pub id: u32,
    pub top5: Vec<(u32, f32)>,
    pub gap: f32,
    pub top5_batched: Option<Vec<(u32, f32)>>,
}

/// References for one prompt.
#[derive(Clone, Debug)]
pub struct PromptRef {
    pub name: String,
    pub text: String,
    /// [n_prompt] with BOS and special-token parsing.
    pub prompt_ids: Vec<u32>,
    /// Top-10 `(id, logit)` at the last prompt position.
    pub last_top10: Vec<(u32, f32)>,
    pub greedy: Vec<StepRef>,
    /// [n_vocab] logits at the last prompt position, where recorded.
    pub last_logits: Option<Vec<f32>>,
    /// [n_prompt][n_vocab] logits at every prompt position (tiny llama only).
    pub all_logits: Option<Vec<Vec<f32>>>,
}

pub(crate) fn pairs(v: &serde_json::Value) -> Vec<(u32, f32)> {
    v.as_array()
        .expect("[id, logit] pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_u64().expect("id") as u32,
                p[1].as_f64().expect("logit") as f32,
            )
        })
        .collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("floats")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

/// KL divergence KL(p || q) of the softmaxes of two logit rows (f64).
pub fn kl(p: &[f32], q: &[f32]) -> f64 {
    let lse = |x: &[f32]| {
        let m = x.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let (lp, lq) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let la = a as f64 - lp;
            la.exp() * (la - (b as f64 - lq))
        })
        .sum()
}

/// The `k` largest `(id, logit)`, ties to the lower id (as numpy's stable argsort).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let order = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return Vec::new();
    }
    // Linear-time selection, then only the k winners are sorted.
    idx.select_nth_unstable_by(k - 1, order);
    idx.truncate(k);
    idx.sort_by(order);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

fn prompt_refs(rel: &str, dir: &str) -> Vec<PromptRef> {
    let refs = read_json(rel);
    refs["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let all_logits: Option<Vec<Vec<f32>>> = p["logits"]
                .as_array()
                .map(|rows| rows.iter().map(floats).collect());
            let last_logits = match p["logits_f16"].as_str() {
                Some(f) => Some(read_f16(&format!("{dir}/{f}"))),
                None => all_logits.as_ref().and_then(|r| r.last().cloned()),
            };
            let last_top10 = if p["last_top10"].is_array() {
                pairs(&p["last_top10"])
            } else {
                top_k(last_logits.as_deref().expect("logits"), 10)
            };
            PromptRef {
                name: p["name"].as_str().expect("name").into(),
                text: p["text"].as_str().expect("text").into(),
                prompt_ids: p["prompt_ids"]
                    .as_array()
                    .expect("prompt_ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id") as u32)
                    .collect(),
                last_top10,
                greedy: p["greedy"]
                    .as_array()
                    .expect("greedy")
                    .iter()
                    .map(|s| StepRef {
                        id: s["id"].as_u64().expect("id") as u32,
                        top5: pairs(&s["top5"]),
                        gap: s["gap"].as_f64().expect("gap") as f32,
                        top5_batched: s["top5_batched"]
                            .is_array()
                            .then(|| pairs(&s["top5_batched"])),
                    })
                    .collect(),
                last_logits,
                all_logits,
            }
        })
        .collect()
}

/// Gemma 3 270M prompts of `tests/data/gemma/refs.json` (full logits for `chat` and `long`).
pub fn gemma_prompt_refs() -> Vec<PromptRef> {
    prompt_refs("gemma/refs.json", "gemma")
}

/// Gemma 3 270M requantized to IQ4_XS (`tests/data/gemma_iq4/refs.json`, recorded by
/// scripts/record_gemma_iq4_refs.py on the file scripts/make_gemma_iq4.py generates; full
/// logits for `chat` and `long`).
pub fn gemma_iq4_prompt_refs() -> Vec<PromptRef> {
    prompt_refs("gemma_iq4/refs.json", "gemma_iq4")
}

/// Gemma 3 270M with IQ3_S/IQ2_XS attn_output and ffn_down (`tests/data/gemma_lowbit/refs.json`,
/// recorded by scripts/record_gemma_lowbit_refs.py on the file scripts/make_gemma_lowbit.py
/// generates; full logits for `chat` and `long`).
pub fn gemma_lowbit_prompt_refs() -> Vec<PromptRef> {
    prompt_refs("gemma_lowbit/refs.json", "gemma_lowbit")
}

/// The tiny random-weight llama GGUF, generated into the model cache by `make models`
/// (scripts/make_tiny_llama.py, sha256-checked: its references were recorded on these bytes).
pub fn tiny_llama_path() -> PathBuf {
    crate::require_model("tiny-llama.gguf")
}

/// Its prompts (every prompt position's full logits recorded).
pub fn tiny_llama_prompt_refs() -> Vec<PromptRef> {
    prompt_refs("tiny_llama/refs.json", "tiny_llama")
}

/// The prompts of a tiny family GGUF (`tests/data/families/<family>.json`, recorded by
/// scripts/make_tiny_families.py; last-position logits in f16 files beside it).
pub fn family_prompt_refs(family: &str) -> Vec<PromptRef> {
    prompt_refs(&format!("families/{family}.json"), "families")
}

/// Bounds for the last prompt position against llama.cpp: same argmax, at least 8 of llama.cpp's
/// top-10 ids in ours, and (where the full vector was recorded) NMSE <= 5e-3.
pub fn check_last_logits(ours: &[f32], r: &PromptRef) -> Result<(), String> {
    check_last_logits_allowing(ours, r, None).map(|_| ())
}

/// `check_last_logits` widened where llama.cpp is measurably off the exact float64 evaluation
/// of the same model (`dev`, recorded by scripts/f64_decoder.py): a different argmax is
/// allowed when llama.cpp's own argmax is not f64's, and the NMSE bound grows to llama.cpp's
/// own NMSE against f64 plus ours (1e-4), added as root-mean-square errors. Returns a note for
/// each allowance used.
pub fn check_last_logits_allowing(
    ours: &[f32],
    r: &PromptRef,
    dev: Option<&LlamaDeviation>,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let name = &r.name;
    if let Some(want) = &r.last_logits {
        if ours.len() != want.len() {
            return Err(format!(
                "{name}: {} logits, llama.cpp has {}",
                ours.len(),
                want.len()
            ));
        }
    }
    if let Some(i) = ours.iter().position(|x| !x.is_finite()) {
        return Err(format!("{name}: logit {i} is {}", ours[i]));
    }
    let mine = top_k(ours, 10);
    let llama_not_exact = dev.is_some_and(|d| d.last_f64_argmax != r.last_top10[0].0);
    if mine[0].0 != r.last_top10[0].0 && llama_not_exact {
        notes.push(format!(
            "{name}: argmax {:?} != llama.cpp's {:?}, allowed: llama.cpp's argmax is not the \
             exact f64 one ({})",
            mine[0],
            r.last_top10[0],
            dev.map_or(0, |d| d.last_f64_argmax)
        ));
    } else if mine[0].0 != r.last_top10[0].0 {
        return Err(format!(
            "{name}: argmax {:?}, llama.cpp {:?}",
            mine[0], r.last_top10[0]
        ));
    }
    let shared = r
        .last_top10
        .iter()
        .filter(|(id, _)| mine.iter().any(|(m, _)| m == id))
        .count();
    if shared < 8 {
        return Err(format!(
            "{name}: {shared} of llama.cpp's top-10 in ours\n  ours  {mine:?}\n  llama {:?}",
            r.last_top10
        ));
    }
    if let Some(want) = &r.last_logits {
        let (mut num, mut den) = (0f64, 0f64);
        for (&y, &w) in ours.iter().zip(want) {
            num += (y as f64 - w as f64).powi(2);
            den += (w as f64).powi(2);
        }
        let nmse = num / den.max(f64::MIN_POSITIVE);
        let bound = dev.map_or(5e-3, |d| {
            5e-3f64.max((d.last_nmse.sqrt() + F64_NMSE.sqrt()).powi(2))
        });
        if nmse > bound {
            return Err(format!(
                "{name}: NMSE {nmse:.3e} > {bound:.3e} against llama.cpp"
            ));
        }
        if nmse > 5e-3 {
            notes.push(format!(
                "{name}: NMSE {nmse:.3e} against llama.cpp, allowed up to {bound:.3e}: \
                 llama.cpp's own NMSE against f64 is {:.3e}",
                dev.map_or(0.0, |d| d.last_nmse)
            ));
        }
    }
    Ok(notes)
}

/// The greedy rule against llama.cpp. `ours[i]` = (chosen id, our top-5 `(id, logit)`) at step i. Ids
/// must be identical up to the first step where llama.cpp's own top-1/top-2 gap is below
/// 0.3 (that step's choice may fall either way, and everything after it depends on it);
/// at every compared step (that one included) our top-5 logits are within 1.0 of llama.cpp's,
/// rank by rank: of its token-by-token result, or, where recorded, of its batched result for
/// the same step (llama.cpp's two answers differ by up to ~0.8 at some steps; within 1.0 of
/// either is within llama.cpp's own spread). Returns how many steps were compared.
pub fn check_greedy(ours: &[(u32, Vec<(u32, f32)>)], r: &PromptRef) -> Result<usize, String> {
    check_greedy_allowing(ours, r, None).map(|(n, _)| n)
}

/// `check_greedy` widened where llama.cpp is measurably off the exact float64 evaluation on
/// its own tokens (`dev`): at step i the logit bound is llama.cpp's own largest rank-by-rank
/// distance from f64 there plus 0.05 (where that exceeds 1.0), and the comparison also stops
/// at a step whose llama.cpp token is not f64's argmax on llama.cpp's context (llama.cpp's
/// choice there is its rounding's, not the model's). Returns the steps compared and a note per
/// allowance used.
pub fn check_greedy_allowing(
    ours: &[(u32, Vec<(u32, f32)>)],
    r: &PromptRef,
    dev: Option<&LlamaDeviation>,
) -> Result<(usize, Vec<String>), String> {
    let name = &r.name;
    let mut notes = Vec::new();
    let mut compared = 0;
    for (i, want) in r.greedy.iter().enumerate() {
        let Some((id, top5)) = ours.get(i) else {
            return Err(format!(
                "{name}: {} steps, llama.cpp has {}",
                ours.len(),
                i + 1
            ));
        };
        compared += 1;
        let step_dev = dev.and_then(|d| d.steps.get(i));
        let tol = step_dev
            .map_or(1.0, |d| d.max_abs_rank5 + F64_LOGIT_TOL as f32)
            .max(1.0);
        for (k, (w, m)) in want.top5.iter().zip(top5).enumerate() {
            let batched = want.top5_batched.as_ref().and_then(|b| b.get(k));
            let near_batched = batched.is_some_and(|b| (b.1 - m.1).abs() <= tol);
            let off = (w.1 - m.1).abs();
            if off > tol && !near_batched {
                return Err(format!(
                    "{name} step {i}: rank-{k} logit {} vs llama.cpp {} (ours {top5:?}, llama {:?})",
                    m.1, w.1, want.top5
                ));
            }
            if off > 1.0 && !batched.is_some_and(|b| (b.1 - m.1).abs() <= 1.0) {
                notes.push(format!(
                    "{name} step {i}: rank-{k} logit {} vs llama.cpp {}, allowed up to {tol:.3}: \
                     llama.cpp's own top-5 are up to {:.3} from f64 there",
                    m.1,
                    w.1,
                    tol - F64_LOGIT_TOL as f32
                ));
            }
        }
        if want.gap < 0.3 {
            break;
        }
        if let Some(d) = step_dev.filter(|d| d.f64_id != want.id) {
            notes.push(format!(
                "{name} step {i}: comparison stops: llama.cpp's token {} (its gap {:.3}) is not \
                 the f64 argmax {} on its context (f64 gap {:.3}); ours {id}",
                want.id, want.gap, d.f64_id, d.f64_gap
            ));
            break;
        }
        if *id != want.id {
            return Err(format!(
                "{name} step {i}: token {id}, llama.cpp {} (gap {})",
                want.id, want.gap
            ));
        }
    }
    Ok((compared, notes))
}

/// Greedy sampling settings of the golden runs.
pub const GREEDY: SampleSettings = SampleSettings::GREEDY;

/// Prefill, check the last position's logits, then decode greedily through the GPU sampler
/// for as many steps as the reference can compare.
pub fn run_golden(s: &mut Session, r: &PromptRef) {
    run_golden_on(crate::engine(), s, r)
}

/// `run_golden` for a session on engine `e`.
pub fn run_golden_on(e: &webjit_engine::Engine, s: &mut Session, r: &PromptRef) {
    match golden_check(e, s, r) {
        Ok(k) => eprintln!("{}: {k} greedy steps agree with llama.cpp", r.name),
        Err(m) => panic!("{m}"),
    }
}

/// `run_golden_on` returning the first failed check (or engine error) instead of panicking,
/// so a caller can report every prompt; Ok = the number of greedy steps compared.
pub fn golden_check(
    e: &webjit_engine::Engine,
    s: &mut Session,
    r: &PromptRef,
) -> Result<usize, String> {
    let name = &r.name;
    s.reset();
    let step = s
        .step(e, &r.prompt_ids, &GREEDY)
        .map_err(|err| format!("{name}: prefill: {} {err}", err.code()))?;
    let logits = e
        .read_f32(&step.logits)
        .map_err(|err| format!("{name}: read logits: {err}"))?;
    check_last_logits(&logits, r)?;
    // The sampler's report must be the true top of these logits.
    let top5 = top_k(&logits, 5);
    if step.result.top != top5 {
        return Err(format!(
            "{name}: sampler top-5 {:?}, logits' top-5 {top5:?}",
            step.result.top
        ));
    }
    // Steps worth running: up to the first one where llama.cpp's own choice is a near tie.
    let n = r
        .greedy
        .iter()
        .position(|g| g.gap < 0.3)
        .map_or(r.greedy.len(), |i| i + 1);
    let mut ours = vec![(step.result.token, step.result.top.clone())];
    while ours.len() < n {
        let last = ours[ours.len() - 1].0;
        let res = s
            .step(e, &[last], &GREEDY)
            .map_err(|err| format!("{name}: decode step {}: {} {err}", ours.len(), err.code()))?
            .result;
        ours.push((res.token, res.top));
    }
    check_greedy(&ours, r)
}
