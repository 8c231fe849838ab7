//! Per-layer KV cache: K and V of `capacity` slots, f32, f16 (packed in u32 pairs) or
//! llama.cpp's q8_0 / q4_0 blocks of 32 values (rows of u32 words, see `KvDType::row_words`
//! and shaders/kv_quant.wgsl), or KIVI's 2-bit groups with an f16 residual window (`kivi2`:
//! K and V are then flat word arrays laid out by shaders/kivi.wgsl; linear caches only, see
//! `KvDType`'s module doc for the choices).
//!
//! A linear cache keeps position p in slot p and refuses to grow past its capacity. A ring
//! cache (sliding-window layers, e.g. Gemma 3's window of 512 on 5 of every 6 layers) has
//! capacity = window and keeps position p in slot p % capacity, so it always holds exactly
//! the last `capacity` positions.
//!
//! Positions are written by `ops::kv_append` (prefill) and `ops::qk_rope_append` (decode).
//!
//! q8_0 and q4_0 caches hold their keys rotated by a Walsh-Hadamard matrix (`key_rotation`),
//! which the writers and the queries that read them share; values are stored as they are.

pub use webjit_jit::kernels::kv_dtype::KvDType;

use crate::error::{Error, Result};
use crate::ops::expect_single;
use crate::tensor::{DType, Tensor};
use crate::Engine;

const OP: &str = "kv_cache";

/// The KV cache format called `name` (`f32`, `f16`, `q8_0`, `q4_0`, `kivi2`), or an INVALID_ARGUMENT
/// error that lists them.
pub fn parse_kv_cache(name: &str) -> Result<KvDType> {
    KvDType::parse(name).ok_or_else(|| Error::InvalidArgument {
        op: OP,
        detail: format!(
            "unknown KV cache mode `{name}`; supported: {}",
            KvDType::names()
        ),
    })
}

#[derive(Clone, Debug, PartialEq)]
pub struct KvCacheOptions {
    pub batch: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Slots: the longest context of a linear cache, the window of a ring cache.
    pub capacity: usize,
    /// Ring buffer of the last `capacity` positions (sliding-window layers).
    pub ring: bool,
    /// `None`: f16 where the device has `shader-f16`, else f32.
    pub dtype: Option<KvDType>,
}

pub struct KvCache {
    /// [batch, capacity, n_kv_heads, head_dim] f32, or [.., row words] u32 (f16 pairs or
    /// quantized blocks).
    k: Tensor,
    /// Same layout as `k`.
    v: Tensor,
    opts: KvCacheOptions,
    dtype: KvDType,
    len: usize,
    /// Width of the Walsh-Hadamard rotation of the stored keys (`key_rotation`); 0: none.
    key_rotation: usize,
}

/// `WEBJIT_KV_ROTATION=0` (or `off`) turns the key rotation of new quantized caches off, for
/// comparisons (llama.cpp's `LLAMA_ATTN_ROT_DISABLE`); unset or anything else leaves it on.
fn rotation_env_on() -> bool {
    !matches!(
        std::env::var("WEBJIT_KV_ROTATION").as_deref(),
        Ok("0") | Ok("off")
    )
}

impl KvCache {
    pub fn new(engine: &Engine, opts: KvCacheOptions) -> Result<Self> {
        let o = &opts;
        if o.batch == 0 || o.n_kv_heads == 0 || o.capacity == 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "batch {}, kv heads {} and capacity {} must all be >= 1",
                    o.batch, o.n_kv_heads, o.capacity
                ),
            });
        }
        let dtype = o.dtype.unwrap_or(if engine.profile().f16 {
            KvDType::F16
        } else {
            KvDType::F32
        });
        if let Err(detail) = dtype.check_head_dim(o.head_dim as u64) {
            return Err(Error::InvalidArgument { op: OP, detail });
        }
        if o.capacity > u32::MAX as usize / 2 {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!("capacity {} is above 2^31 slots", o.capacity),
            });
        }
        if dtype == KvDType::Kivi2 && o.ring {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: "a kivi2 cache is linear only; sliding-window (ring) layers keep f16"
                    .into(),
            });
        }
        let row = dtype.row_words(o.head_dim as u64) as usize;
        let t = match dtype {
            KvDType::F32 => DType::F32,
            _ => DType::U32,
        };
        // `empty_exact` checks the size against the memory budget before allocating; exact sizes
        // because a cache lives as long as its model (see `BufferPool::get_exact`).
        let (k, v) = if dtype == KvDType::Kivi2 {
            let (kw, vw) = dtype.cache_words(
                o.batch as u64,
                o.capacity as u64,
                o.n_kv_heads as u64,
                o.head_dim as u64,
            );
            let words = |w: u64| {
                usize::try_from(w).map_err(|_| Error::InvalidArgument {
                    op: OP,
                    detail: format!("a kivi2 cache of {} slots is too large", o.capacity),
                })
            };
            (
                engine.empty_exact(&[words(kw)?], t)?,
                engine.empty_exact(&[words(vw)?], t)?,
            )
        } else {
            let shape = [o.batch, o.capacity, o.n_kv_heads, row];
            (
                engine.empty_exact(&shape, t)?,
                engine.empty_exact(&shape, t)?,
            )
        };
        expect_single(OP, "k cache", &k)?;
        let key_rotation = match dtype.key_rotation(o.head_dim as u64) {
            Some(n) if rotation_env_on() => n as usize,
            _ => 0,
        };
        Ok(Self {
            k,
            v,
            opts,
            dtype,
            len: 0,
            key_rotation,
        })
    }

    /// The width of the orthonormal Walsh-Hadamard rotation the cache's keys are stored
    /// under, in blocks along each head (`KvDType::key_rotation`: q8_0 and q4_0 caches, as
    /// llama.cpp does), or `None`. Whoever appends keys rotates them first and rotates the
    /// queries that attend them alike, so q.k is unchanged and only the rounding improves:
    /// the decode step's `ops::qk_rope_append` does both itself; a prompt's keys and queries
    /// go through `ops::hadamard` before `ops::kv_append` (the decoder does this).
    pub fn key_rotation(&self) -> Option<usize> {
        (self.key_rotation > 0).then_some(self.key_rotation)
    }

    /// Turns the key rotation on (where the format and head dim have one) or off, while the
    /// cache is empty: its keys are all stored one way.
    pub fn set_key_rotation(&mut self, on: bool) -> Result<()> {
        if self.len > 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "the key rotation of a cache holding {} positions cannot change",
                    self.len
                ),
            });
        }
        self.key_rotation = match self.dtype.key_rotation(self.opts.head_dim as u64) {
            Some(n) if on => n as usize,
            _ => 0,
        };
        Ok(())
    }

    /// Positions appended so far (a ring holds the last `min(len, capacity)` of them).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn options(&self) -> &KvCacheOptions {
        &self.opts
    }
    pub fn dtype(&self) -> KvDType {
        self.dtype
    }
    /// Bytes of GPU memory the K and V storage take.
    pub fn bytes(&self) -> u64 {
        let words = |t: &Tensor| t.shape().iter().product::<usize>() as u64 * 4;
        words(&self.k) + words(&self.v)
    }
    /// The K storage: [batch, capacity, n_kv_heads, head_dim] (f16 caches: u32 pairs;
    /// quantized: [.., row words] u32; kivi2: [words] u32).
    pub fn k(&self) -> &Tensor {
        &self.k
    }
    pub fn v(&self) -> &Tensor {
        &self.v
    }
    /// Forget every position (the storage is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Forgets the newest positions down to `len` (a no-op if it holds fewer). A ring may
    /// drop its newest position this way: the slot it overwrote held the position that just
    /// left the window, and re-appending that position writes the same slot again.
    /// kivi2: a group that becomes incomplete again is read from the f16 residual window, which
    /// holds the last 256 positions written, so rewinds of up to 128 positions (a
    /// generation's steps run ahead) are exact; a deeper one would read rows the window no
    /// longer holds.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A second handle to the same storage with the same length and options: what an op's
    /// replay attends (the tuner re-records captured decode steps with it).
    pub(crate) fn view(&self) -> KvCache {
        KvCache {
            k: self.k.clone(),
            v: self.v.clone(),
            opts: self.opts.clone(),
            dtype: self.dtype,
            len: self.len,
            key_rotation: self.key_rotation,
        }
    }

    /// The length after appending `n_new` positions, or the error saying why they do not fit.
    pub(crate) fn append_end(&self, n_new: usize) -> Result<usize> {
        let o = &self.opts;
        let end = self
            .len
            .checked_add(n_new)
            .filter(|&e| e <= u32::MAX as usize);
        match end {
            Some(e) if o.ring || e <= o.capacity => Ok(e),
            _ => Err(Error::InvalidArgument {
                op: OP,
                detail: format!(
                    "appending {n_new} positions at {} overflows the cache of {} slots",
                    self.len, o.capacity
                ),
            }),
        }
    }

    /// Records that positions up to `end` (from `append_end`) were written.
    pub(crate) fn set_len(&mut self, end: usize) {
        self.len = end;
    }

    /// The entries a decode step attends: (first slot, count). `window` limits attention to
    /// the last `window` positions; without one a ring attends all it holds.
    pub fn visible(&self, window: Option<u32>) -> Result<(u32, u32)> {
        let o = &self.opts;
        let mut n = self.len;
        if let Some(w) = window {
            if w == 0 {
                return Err(Error::InvalidArgument {
                    op: "attention_decode",
                    detail: "window must be >= 1 (use None for no window)".into(),
                });
            }
            n = n.min(w as usize);
        } else if o.ring {
            n = n.min(o.capacity);
        }
        if o.ring && n > o.capacity {
            return Err(Error::InvalidArgument {
                op: "attention_decode",
                detail: format!(
                    "the ring cache keeps {} positions, fewer than the {n} to attend \
                     (pass a window <= capacity)",
                    o.capacity
                ),
            });
        }
        let start = self.len - n;
        Ok(((start % o.capacity) as u32, n as u32))
    }
}
