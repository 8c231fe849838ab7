//! GPU memory a decoder holds, from the engine's own accounting (`BufferPool::stats`): after a
//! load, its weights in their GPU layout and its KV caches, nothing more; during a prompt step,
//! the activations of about one layer beside them, not of every layer. (Llama-3.1-8B Q4_K_M,
//! 4.6 GiB of weights, failed a 512-token prefill under the default 8 GiB budget: the step held
//! every layer's activations until submit, 5.1 GiB, and the weights took up to a quarter more
//! as pool size classes.) Each test has its own engine, so no other test's buffers count.

use webjit_engine::jit::quant::GgmlType;
use webjit_engine::loader::{FileSource, ModelHeader, TensorInfo};
use webjit_engine::model::decoder::Decoder;
use webjit_engine::{ops, DType, DeviceOptions, Engine};
use webjit_tests::gemma_refs::GEMMA_MODEL;
use webjit_tests::{assert_close, make_engine, oracle, require_model, Rand};

const MIB: f64 = (1 << 20) as f64;

fn own_engine() -> Engine {
    make_engine(DeviceOptions {
        load_tuning: false,
        ..Default::default()
    })
}

/// Bytes tensor `t` takes on the GPU as the loader uploads it: quantized blocks repacked to
/// `row_words` u32 words a row, f32/f16/bf16 as f32.
fn gpu_bytes(t: &TensorInfo) -> u64 {
    let k = t.shape.last().copied().unwrap_or(1);
    let rows: u64 = t.shape.iter().rev().skip(1).product();
    if t.dtype.is_quantized() {
        let f = GgmlType::from_name(t.dtype.name()).expect("a format the engine reads");
        rows * f.row_words(k as usize).expect("whole blocks") as u64 * 4
    } else {
        rows * k * 4
    }
}

fn weight_bytes(h: &ModelHeader) -> u64 {
    h.tensors.iter().map(gpu_bytes).sum()
}

fn load(engine: &Engine, context: usize) -> (ModelHeader, Decoder) {
    let mut src = FileSource::open(&require_model(GEMMA_MODEL)).expect("open model");
    Decoder::load(engine, &mut src, Some(context)).expect("load Gemma")
}

/// After a load the engine holds the weights (in their GPU layout) and the KV caches at the
/// requested context, within 0.1% + 64 KiB (a few small tensors' 4-byte rounding and minimum
/// sizes). Weights in pool size classes held 264.7 MiB here, 4% more.
#[test]
fn a_loaded_model_holds_its_weights_and_kv_cache() {
    let engine = own_engine();
    let before = engine.pool.stats().live_bytes;
    let (header, dec) = load(&engine, 300);
    let held = engine.pool.stats().live_bytes - before;
    let (weights, kv) = (weight_bytes(&header), dec.kv_cache_bytes());
    let want = weights + kv;
    eprintln!(
        "held {:.2} MiB: weights {:.2} MiB + KV cache {:.2} MiB = {:.2} MiB",
        held as f64 / MIB,
        weights as f64 / MIB,
        kv as f64 / MIB,
        want as f64 / MIB
    );
    assert!(
        held >= weights,
        "held {held} bytes, less than the weights' {weights}"
    );
    assert!(
        held <= want + want / 1000 + (64 << 10),
        "held {held} bytes after the load, weights + KV cache are {want}"
    );
}

/// A prompt step of T tokens holds, beside the model, at most three layers' activations
/// (`layer`: per token the layer's inputs, norms, q/k/v, attention output, projections and
/// FFN halves, all f32) plus the logits, whatever the number of layers. Holding every tensor
/// until submit took 229 MiB here (27 `layer`s for 18 layers); reusing them, 16 MiB.
#[test]
fn a_prompt_step_holds_about_one_layers_activations() {
    let engine = own_engine();
    let t = 200;
    let (_, mut dec) = load(&engine, t + 1);
    let c = dec.cfg.clone();
    let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
    let layer = (t * (4 * c.d_model + 2 * qd + 2 * kvd + 3 * c.ffn) * 4) as u64;
    let logits = (c.vocab * 4) as u64;
    let tokens: Vec<u32> = (0..t as u32)
        .map(|i| (i * 7919 + 3) % c.vocab as u32)
        .collect();
    let base = engine.pool.stats().live_bytes;
    engine.pool.reset_peak();
    let mut rec = engine.recorder();
    let out = dec.forward(&mut rec, &tokens).expect("prompt step");
    rec.submit().expect("submit");
    let peak = engine.pool.stats().peak_live_bytes - base;
    // The step ran: finite logits of the last position.
    let v = engine.read_f32(&out).expect("read logits");
    assert_eq!(out.dtype(), DType::F32);
    assert!(v.len() == c.vocab && v.iter().all(|x| x.is_finite()));
    eprintln!(
        "{} layers, {t} tokens: the step held {:.2} MiB at most; one layer's activations {:.2} MiB",
        c.n_layers,
        peak as f64 / MIB,
        layer as f64 / MIB
    );
    let bound = 3 * layer + 2 * logits + (1 << 20);
    assert!(
        peak <= bound,
        "a {t}-token prompt step held {peak} bytes beside the model; bound {bound} \
         (3 layers' activations, logits)"
    );
}

/// Inside one recording a dropped tensor's buffer goes to the next tensor that fits. Commands
/// run in recorded order, so what read the old tensor saw its values; the new tensor starts as
/// NaN (the test engine poisons new tensors), as a fresh buffer would, not with old values.
#[test]
fn a_dropped_tensors_buffer_is_reused_in_recorded_order() {
    let e = own_engine();
    let mut r = Rand::new(71);
    let x = r.vec(64 * 64, -2.0, 2.0);
    let xt = e.upload_f32(&[64, 64], &x).expect("upload");
    let id = |t: &webjit_engine::Tensor| t.segments()[0].buffer.id();
    let mut rec = e.recorder();
    let a = ops::gelu_tanh(&xt).record(&mut rec).expect("gelu"); // [64, 64]
    let b = ops::softmax(&a).record(&mut rec).expect("softmax"); // [64, 64]
    let a_id = id(&a);
    drop(a);
    let c = ops::scale(&b, 2.0).record(&mut rec).expect("scale"); // [64, 64]
    assert_eq!(id(&c), a_id, "the dropped tensor's buffer was not reused");
    let d = ops::scale(&c, 3.0).record(&mut rec).expect("scale"); // [64, 64]
    let d_id = id(&d);
    drop(d);
    let unwritten = rec.empty(&[64, 64], DType::F32).expect("empty");
    assert_eq!(
        id(&unwritten),
        d_id,
        "the dropped tensor's buffer was not reused"
    );
    rec.submit().expect("submit");
    let g: Vec<f32> = oracle::gelu_tanh(&x).iter().map(|&v| v as f32).collect();
    let want_b = oracle::softmax(&g, 64);
    let want_c: Vec<f64> = want_b.iter().map(|v| 2.0 * v).collect();
    let got_b = e.read_f32(&b).expect("read b");
    let got_c = e.read_f32(&c).expect("read c");
    assert_close(
        "softmax before the reuse",
        r.seed,
        &got_b,
        &want_b,
        1e-6,
        1e-4,
        1e-8,
    );
    assert_close(
        "scale into the reused buffer",
        r.seed,
        &got_c,
        &want_c,
        1e-6,
        1e-4,
        1e-8,
    );
    let u = e.read_f32(&unwritten).expect("read");
    assert!(
        u.iter().all(|v| v.is_nan()),
        "a reused buffer must start as NaN like a fresh one, not hold its old tensor's values"
    );
}
