//! Op-level API on typed arrays: neighborhood, block-sparse and dense attention, for people
//! building their own models and for the demo's attention playground.

use wasm_bindgen::prelude::*;
use webjit_engine::ops::{
    self, AttentionOptions, BlockSelect, Granularity, NaOptions, Partition, SparseOptions,
};
use webjit_engine::{Engine, Error, Recorder, Tensor};

use crate::{invalid, js_error, now_ms, parse_opts, set, WebEngine};

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NaOpts {
    /// [batch, heads, X(, Y(, Z)), head_dim] of q, k and v.
    shape: Vec<usize>,
    kernel: Vec<u32>,
    #[serde(default)]
    dilation: Vec<u32>,
    #[serde(default)]
    causal: Vec<bool>,
    scale: Option<f32>,
    /// Extra timed runs after the first (0: no timing).
    #[serde(default)]
    repeat: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum SelectOpts {
    TopK(u32),
    Threshold(f32),
    Strided { local: u32, stride: u32 },
    Fixed { chunk: u32, summary: u32 },
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum BlockOpts {
    Tokens(u32),
    Box([u32; 3]),
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SparseOpts {
    /// [batch, seq, heads, d] of q.
    q_shape: Vec<usize>,
    /// [batch, seq, kv_heads, d] of k and v.
    kv_shape: Vec<usize>,
    block: BlockOpts,
    select: SelectOpts,
    /// [h, w] or [t, h, w]: the seq tokens as an image or video, row-major.
    #[serde(default)]
    grid: Vec<u32>,
    #[serde(default)]
    causal: bool,
    #[serde(default)]
    global: bool,
    granularity: Option<String>,
    scale: Option<f32>,
    #[serde(default)]
    return_selection: bool,
    #[serde(default)]
    repeat: u32,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DenseOpts {
    q_shape: Vec<usize>,
    kv_shape: Vec<usize>,
    #[serde(default)]
    causal: bool,
    window: Option<u32>,
    scale: Option<f32>,
    #[serde(default)]
    repeat: u32,
}

fn upload(engine: &Engine, what: &str, shape: &[usize], data: &[f32]) -> Result<Tensor, JsValue> {
    let n: usize = shape.iter().product();
    if shape.is_empty() || n != data.len() {
        return Err(invalid(format!(
            "{what} has {} values; shape {shape:?} needs {n}",
            data.len()
        )));
    }
    engine.upload_f32(shape, data).map_err(js_error)
}

/// q with `q_shape`, k and v with `kv_shape`.
fn upload_qkv(
    engine: &Engine,
    q_shape: &[usize],
    kv_shape: &[usize],
    [q, k, v]: [&[f32]; 3],
) -> Result<(Tensor, Tensor, Tensor), JsValue> {
    Ok((
        upload(engine, "q", q_shape, q)?,
        upload(engine, "k", kv_shape, k)?,
        upload(engine, "v", kv_shape, v)?,
    ))
}

/// Runs `record` once and reads its output; then, when `repeat` > 0, times `repeat` more
/// runs recorded into one submission (milliseconds per run, readback included once).
async fn run_timed(
    engine: &Engine,
    repeat: u32,
    record: impl Fn(&mut Recorder) -> Result<Tensor, Error>,
) -> Result<(Vec<f32>, Option<f64>), Error> {
    let mut rec = engine.recorder();
    let out = record(&mut rec)?;
    rec.submit()?;
    let first: Vec<f32> = bytemuck::pod_collect_to_vec(&engine.read_bytes(&out).await?);
    let mut ms = None;
    if repeat > 0 {
        let t0 = now_ms();
        let mut rec = engine.recorder();
        let mut last = out;
        for _ in 0..repeat {
            last = record(&mut rec)?;
        }
        rec.submit()?;
        engine
            .read_bytes(&last.head(1).unwrap_or(last.clone()))
            .await?;
        ms = Some((now_ms() - t0) / repeat as f64);
    }
    Ok((first, ms))
}

fn report(output: Vec<f32>, ms: Option<f64>) -> js_sys::Object {
    let o = js_sys::Object::new();
    set(&o, "output", js_sys::Float32Array::from(&output[..]));
    if let Some(ms) = ms {
        set(&o, "ms", ms);
    }
    o
}

fn sparse_options(o: &SparseOpts) -> Result<SparseOptions, JsValue> {
    let block = match o.block {
        BlockOpts::Tokens(b) => [1, 1, b],
        BlockOpts::Box(b) => b,
    };
    let partition = match o.grid[..] {
        [] => Partition::D1,
        [h, w] => Partition::D2 { h, w },
        [t, h, w] => Partition::D3 { t, h, w },
        _ => return Err(invalid("grid must be [h, w] or [t, h, w]")),
    };
    let select = match o.select {
        SelectOpts::TopK(k) => BlockSelect::TopK(k),
        SelectOpts::Threshold(t) => BlockSelect::Threshold(t),
        SelectOpts::Strided { local, stride } => BlockSelect::Strided { local, stride },
        SelectOpts::Fixed { chunk, summary } => BlockSelect::Fixed { chunk, summary },
    };
    let granularity = match o.granularity.as_deref() {
        None | Some("query") => Granularity::Query,
        Some("queryBlock") => Granularity::QueryBlock,
        Some(g) => {
            return Err(invalid(format!(
                "granularity `{g}`: expected 'query' or 'queryBlock'"
            )))
        }
    };
    Ok(SparseOptions {
        block,
        select,
        partition,
        causal: o.causal,
        global: o.global,
        granularity,
        scale: o.scale,
        return_selection: o.return_selection,
    })
}

#[wasm_bindgen(js_class = Engine)]
impl WebEngine {
    /// Neighborhood attention (NATTEN semantics) on q, k, v of shape
    /// [batch, heads, X(, Y(, Z)), head_dim]. Resolves to `{output, ms?}`.
    #[wasm_bindgen(js_name = neighborhoodAttention)]
    pub fn neighborhood_attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        options_json: &str,
    ) -> Result<js_sys::Promise, JsValue> {
        self.check()?;
        let o: NaOpts = parse_opts("neighborhoodAttention", options_json)?;
        let e = self.inner.clone();
        let (q, k, v) = upload_qkv(&e, &o.shape, &o.shape, [q, k, v])?;
        let na = NaOptions {
            kernel: o.kernel,
            dilation: o.dilation,
            causal: o.causal,
            rpb: None,
            scale: o.scale,
        };
        // Validate before going async, so argument errors throw synchronously.
        ops::neighborhood_attention(&q, &k, &v, &na)
            .spec()
            .map_err(js_error)?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let (out, ms) = run_timed(&e, o.repeat, |rec| {
                ops::neighborhood_attention(&q, &k, &v, &na).record(rec)
            })
            .await
            .map_err(js_error)?;
            Ok(report(out, ms).into())
        }))
    }

    /// Block-sparse attention (MoBA / VMoBA / static patterns) on q [batch, seq, heads, d],
    /// k, v [batch, seq, kv_heads, d]. Resolves to `{output, ms?, selection?}` where
    /// selection is `{perQuery, dims:[batch, heads, rows], nBlocks, counts, indices}`.
    #[wasm_bindgen(js_name = blockSparseAttention)]
    pub fn block_sparse_attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        options_json: &str,
    ) -> Result<js_sys::Promise, JsValue> {
        self.check()?;
        let o: SparseOpts = parse_opts("blockSparseAttention", options_json)?;
        let opts = sparse_options(&o)?;
        let e = self.inner.clone();
        let (q, k, v) = upload_qkv(&e, &o.q_shape, &o.kv_shape, [q, k, v])?;
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let mut rec = e.recorder();
            let res = ops::block_sparse_attention(&q, &k, &v, &opts)
                .record(&mut rec)
                .map_err(js_error)?;
            rec.submit().map_err(js_error)?;
            let out: Vec<f32> =
                bytemuck::pod_collect_to_vec(&e.read_bytes(&res.out).await.map_err(js_error)?);
            let mut ms = None;
            if o.repeat > 0 {
                let timing = SparseOptions {
                    return_selection: false,
                    ..opts.clone()
                };
                let (_, t) = run_timed(&e, o.repeat, |rec| {
                    Ok(ops::block_sparse_attention(&q, &k, &v, &timing)
                        .record(rec)?
                        .out)
                })
                .await
                .map_err(js_error)?;
                ms = t;
            }
            let r = report(out, ms);
            if let Some(sel) = res.selection {
                let counts: Vec<u32> = bytemuck::pod_collect_to_vec(
                    &e.read_bytes(&sel.counts).await.map_err(js_error)?,
                );
                let idx: Vec<u32> = bytemuck::pod_collect_to_vec(
                    &e.read_bytes(&sel.indices).await.map_err(js_error)?,
                );
                let s = js_sys::Object::new();
                set(&s, "perQuery", sel.per_query);
                let dims = js_sys::Array::new();
                for d in sel.dims {
                    dims.push(&(d as f64).into());
                }
                set(&s, "dims", dims);
                set(&s, "nBlocks", sel.n_blocks as f64);
                set(&s, "counts", js_sys::Uint32Array::from(&counts[..]));
                set(&s, "indices", js_sys::Uint32Array::from(&idx[..]));
                set(&r, "selection", s);
            }
            Ok(r.into())
        }))
    }

    /// Dense attention (causal or not, optional sliding window) with the layout of
    /// `blockSparseAttention`, e.g. to compare against. Resolves to `{output, ms?}`.
    #[wasm_bindgen(js_name = denseAttention)]
    pub fn dense_attention(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        options_json: &str,
    ) -> Result<js_sys::Promise, JsValue> {
        self.check()?;
        let o: DenseOpts = parse_opts("denseAttention", options_json)?;
        let e = self.inner.clone();
        let (q, k, v) = upload_qkv(&e, &o.q_shape, &o.kv_shape, [q, k, v])?;
        let opts = AttentionOptions {
            causal: o.causal,
            window: o.window,
            scale: o.scale,
            ..Default::default()
        };
        Ok(wasm_bindgen_futures::future_to_promise(async move {
            let (out, ms) = run_timed(&e, o.repeat, |rec| {
                ops::attention(&q, &k, &v, &opts).record(rec)
            })
            .await
            .map_err(js_error)?;
            Ok(report(out, ms).into())
        }))
    }
}
