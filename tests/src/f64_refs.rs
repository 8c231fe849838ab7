//! Exact float64 references of the tiny decoder-family GGUFs (`tests/data/families/
//! <family>.f64.json`, written by scripts/f64_decoder.py: the model's forward pass in float64
//! on dequantized weights, no activation rounding; Gemma 3 files by scripts/f64_gemma3.py, e.g.
//! `tests/data/gemma_lowbit/f64.json`), the checks of webjit against them, and
//! llama.cpp's measured distance from them (which widens the llama.cpp checks of gemma_refs
//! where llama.cpp's own 8-bit rounding is larger than the golden rule allows).

use webjit_engine::model::generate::Session;
use webjit_engine::Engine;

use crate::gemma_refs::{
    check_greedy_allowing, check_last_logits_allowing, pairs, read_f16, read_json, top_k,
    PromptRef, GREEDY,
};

/// Bound on |ours - f64| for a logit (top-10 at the last prompt position, top-5 rank by rank
/// at each greedy step). webjit's measured worst is ~0.035 (decode steps; prefill ~1e-4);
/// llama.cpp's is 0.1-1.5 on the same logits.
pub const F64_LOGIT_TOL: f64 = 0.05;
/// Bound on the NMSE of the last position's logits against f64.
pub const F64_NMSE: f64 = 1e-4;
/// Greedy ids must equal f64's until f64's own top-2 gap is below this: two logits each within
/// F64_LOGIT_TOL can swap only across a gap below twice that.
pub const F64_GAP: f64 = 2.0 * F64_LOGIT_TOL;

/// llama.cpp's measured distance from the exact f64 evaluation on its own greedy tokens, per
/// greedy step: f64's argmax and top-2 gap on llama.cpp's context, and the largest rank-by-rank
/// difference of llama.cpp's top-5 logits from f64's (its token-by-token or batched result,
/// the nearer).
#[derive(Clone, Debug)]
pub struct LlamaStepDeviation {
    pub f64_id: u32,
    pub f64_gap: f32,
    pub max_abs_rank5: f32,
}

/// llama.cpp's measured distance from f64 for one prompt (see `LlamaStepDeviation`); at the
/// last prompt position: f64's argmax, the largest |llama.cpp - f64| on f64's top-10 ids and
/// llama.cpp's NMSE against f64.
#[derive(Clone, Debug)]
pub struct LlamaDeviation {
    pub last_f64_argmax: u32,
    pub last_max_abs_top10: f32,
    pub last_nmse: f64,
    pub steps: Vec<LlamaStepDeviation>,
}

/// One greedy step of the f64 evaluation itself: its token, top-10 and top-2 gap.
#[derive(Clone, Debug)]
pub struct F64Step {
    pub id: u32,
    pub top: Vec<(u32, f64)>,
    pub gap: f64,
}

/// The exact float64 reference of one prompt (`tests/data/families/<family>.f64.json`, written
/// by scripts/f64_decoder.py).
#[derive(Clone, Debug)]
pub struct F64Ref {
    pub name: String,
    pub prompt_ids: Vec<u32>,
    pub last_top10: Vec<(u32, f64)>,
    /// [n_vocab] last-position logits (f16-rounded).
    pub last_logits: Vec<f32>,
    pub greedy: Vec<F64Step>,
    pub llama_cpp: LlamaDeviation,
}

fn pairs64(v: &serde_json::Value) -> Vec<(u32, f64)> {
    pairs(v)
        .into_iter()
        .zip(v.as_array().expect("pairs"))
        .map(|((id, _), p)| (id, p[1].as_f64().expect("logit")))
        .collect()
}

/// The f64 references of a tiny family GGUF.
pub fn family_f64_refs(family: &str) -> Vec<F64Ref> {
    f64_refs_file(&format!("families/{family}.f64.json"))
}

/// The f64 references of a file under tests/data/ in the format of `family_f64_refs`. A file
/// without llama.cpp numbers (`llama_cpp` absent, as in phi3.long_factors.f64.json) gets an
/// empty `LlamaDeviation`: only the f64 checks apply to it.
pub fn f64_refs_file(rel: &str) -> Vec<F64Ref> {
    let doc = read_json(rel);
    // The logits files lie beside the JSON file.
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    let f = |v: &serde_json::Value| v.as_f64().expect("number");
    let id = |v: &serde_json::Value| v.as_u64().expect("id") as u32;
    doc["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| {
            let l = &p["llama_cpp"];
            F64Ref {
                name: p["name"].as_str().expect("name").into(),
                prompt_ids: p["prompt_ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(id)
                    .collect(),
                last_top10: pairs64(&p["last_top10"]),
                last_logits: read_f16(&format!(
                    "{dir}/{}",
                    p["logits_f16"].as_str().expect("logits_f16")
                )),
                greedy: p["greedy"]
                    .as_array()
                    .expect("greedy")
                    .iter()
                    .map(|s| F64Step {
                        id: id(&s["id"]),
                        top: pairs64(&s["top"]),
                        gap: f(&s["gap"]),
                    })
                    .collect(),
                llama_cpp: if l.is_null() {
                    LlamaDeviation {
                        last_f64_argmax: u32::MAX,
                        last_max_abs_top10: f32::NAN,
                        last_nmse: f64::NAN,
                        steps: Vec::new(),
                    }
                } else {
                    LlamaDeviation {
                        last_f64_argmax: id(&l["last_f64_argmax"]),
                        last_max_abs_top10: f(&l["last_max_abs_top10"]) as f32,
                        last_nmse: f(&l["last_nmse"]),
                        steps: l["steps"]
                            .as_array()
                            .expect("steps")
                            .iter()
                            .map(|s| LlamaStepDeviation {
                                f64_id: id(&s["f64_id"]),
                                f64_gap: f(&s["f64_gap"]) as f32,
                                max_abs_rank5: f(&s["max_abs_rank5"]) as f32,
                            })
                            .collect(),
                    }
                },
            }
        })
        .collect()
}

/// Our last-position logits against f64: |ours - f64| <= F64_LOGIT_TOL on f64's top-10 ids,
/// the same argmax unless f64's own top-2 gap is below F64_GAP, NMSE <= F64_NMSE. Returns the
/// largest |ours - f64| on the top-10.
pub fn check_f64_last(ours: &[f32], f: &F64Ref) -> Result<f64, String> {
    let name = &f.name;
    if ours.len() != f.last_logits.len() {
        return Err(format!(
            "{name}: {} logits, f64 has {}",
            ours.len(),
            f.last_logits.len()
        ));
    }
    let mut worst = 0f64;
    for &(id, want) in &f.last_top10 {
        let d = (ours[id as usize] as f64 - want).abs();
        worst = worst.max(d);
        if d.is_nan() || d > F64_LOGIT_TOL {
            return Err(format!(
                "{name}: logit of {id} {} vs f64 {want:.4} (> {F64_LOGIT_TOL})",
                ours[id as usize]
            ));
        }
    }
    let mine = top_k(ours, 1)[0];
    let (best, second) = (f.last_top10[0], f.last_top10[1]);
    if mine.0 != best.0 && best.1 - second.1 >= F64_GAP {
        return Err(format!("{name}: argmax {mine:?}, f64 {best:?}"));
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&y, &w) in ours.iter().zip(&f.last_logits) {
        num += (y as f64 - w as f64).powi(2);
        den += (w as f64).powi(2);
    }
    let nmse = num / den.max(f64::MIN_POSITIVE);
    if nmse.is_nan() || nmse > F64_NMSE {
        return Err(format!(
            "{name}: NMSE {nmse:.3e} > {F64_NMSE:e} against f64"
        ));
    }
    Ok(worst)
}

/// Steps of `f` the greedy comparison covers: up to and including f64's first near tie.
pub fn f64_steps(f: &F64Ref) -> usize {
    f.greedy
        .iter()
        .position(|g| g.gap < F64_GAP)
        .map_or(f.greedy.len(), |i| i + 1)
}

/// Our greedy steps (id, top-5) against f64's: top-5 logits rank by rank within F64_LOGIT_TOL,
/// ids equal until f64's gap is below F64_GAP. Returns (steps compared, largest difference).
pub fn check_f64_greedy(
    ours: &[(u32, Vec<(u32, f32)>)],
    f: &F64Ref,
) -> Result<(usize, f64), String> {
    let name = &f.name;
    let n = f64_steps(f);
    let mut worst = 0f64;
    for (i, want) in f.greedy.iter().take(n).enumerate() {
        let Some((id, top5)) = ours.get(i) else {
            return Err(format!("{name}: {} steps, f64 needs {n}", ours.len()));
        };
        for (k, (m, w)) in top5.iter().zip(&want.top).enumerate() {
            let d = (m.1 as f64 - w.1).abs();
            worst = worst.max(d);
            if d.is_nan() || d > F64_LOGIT_TOL {
                return Err(format!(
                    "{name} step {i}: rank-{k} logit {} vs f64 {:.4} (> {F64_LOGIT_TOL}; ours \
                     {top5:?}, f64 {:?})",
                    m.1,
                    w.1,
                    &want.top[..5]
                ));
            }
        }
        if want.gap < F64_GAP {
            break;
        }
        if *id != want.id {
            return Err(format!(
                "{name} step {i}: token {id}, f64 {} (f64 gap {:.3})",
                want.id, want.gap
            ));
        }
    }
    Ok((n, worst))
}

/// Steps of the llama.cpp comparison: up to and including llama.cpp's first near tie or first
/// token that is not f64's argmax on its context.
pub fn llama_steps(r: &PromptRef, d: &LlamaDeviation) -> usize {
    r.greedy
        .iter()
        .zip(&d.steps)
        .position(|(g, s)| g.gap < 0.3 || s.f64_id != g.id)
        .map_or(r.greedy.len(), |i| i + 1)
}

/// One prompt against both references (the rule of tests/families.rs and quant_gemma_lowbit.rs):
/// prefill, the last logits against f64 (tightly) and llama.cpp (golden rule widened by
/// llama.cpp's measured distance from f64), then greedy decoding through the GPU sampler for as
/// many steps as either reference compares. Ok = a summary with a line per allowance used.
pub fn golden_check_f64(
    e: &Engine,
    s: &mut Session,
    r: &PromptRef,
    f: &F64Ref,
) -> Result<String, String> {
    let name = &r.name;
    s.reset();
    let step = s
        .step(e, &r.prompt_ids, &GREEDY)
        .map_err(|err| format!("{name}: prefill: {} {err}", err.code()))?;
    let logits = e
        .read_f32(&step.logits)
        .map_err(|err| format!("{name}: read logits: {err}"))?;
    let last_worst = check_f64_last(&logits, f)?;
    let mut notes = check_last_logits_allowing(&logits, r, Some(&f.llama_cpp))?;
    // The sampler's report must be the true top of these logits.
    let top5 = top_k(&logits, 5);
    if step.result.top != top5 {
        return Err(format!(
            "{name}: sampler top-5 {:?}, logits' top-5 {top5:?}",
            step.result.top
        ));
    }
    let n = f64_steps(f).max(llama_steps(r, &f.llama_cpp));
    let mut ours = vec![(step.result.token, step.result.top.clone())];
    while ours.len() < n {
        let last = ours[ours.len() - 1].0;
        let res = s
            .step(e, &[last], &GREEDY)
            .map_err(|err| format!("{name}: decode step {}: {} {err}", ours.len(), err.code()))?
            .result;
        ours.push((res.token, res.top));
    }
    let (n_f64, step_worst) = check_f64_greedy(&ours, f)?;
    let (n_llama, more) = check_greedy_allowing(&ours, r, Some(&f.llama_cpp))?;
    notes.extend(more);
    let mut msg = format!(
        "{name}: {} prompt tokens; vs f64: last top-10 within {last_worst:.1e}, {n_f64} greedy \
         steps (top-5 within {step_worst:.1e}); vs llama.cpp: last logits and {n_llama} greedy \
         steps agree",
        r.prompt_ids.len()
    );
    for n in notes {
        msg.push_str(&format!("\n  allowance: {n}"));
    }
    Ok(msg)
}
