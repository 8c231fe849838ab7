//! Progressive weight loading: GGUF and safetensors parsers fed by chunks split anywhere
//! (`Loader::push`), delivering each tensor's bytes to a `TensorSink` as they arrive.
//!
//! Memory: the loader holds the header it parsed (metadata and tensor infos), one field being
//! assembled (at most one metadata string or an 8192-element batch of an array, or the
//! safetensors JSON), and at most one partial block of the tensor being streamed. Tensor data
//! is handed to the sink in block-aligned pieces straight from the pushed chunk and never kept,
//! so the loader's memory does not grow with the model.
//! No wasm-bindgen/web-sys here: the web facade feeds `push` from a ReadableStream.

mod error;
mod gguf;
mod safetensors;
mod sinks;
pub mod source;
mod types;
mod upload;

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

pub use error::LoaderError;
pub use sinks::{HashSink, NullSink};
#[cfg(not(target_arch = "wasm32"))]
pub use source::FileSource;
pub use source::{read_header, MemSource, WeightSource};
pub use types::{
    layer_of, Format, LoadEvent, MetaArray, MetaEntry, MetaValue, ModelHeader, TensorInfo,
    TensorSink, TensorType, ValueType,
};
pub use upload::{GpuSink, LoadedTensor, HOST_TENSORS};

use gguf::GgufParser;
use safetensors::SafetensorsParser;

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The file's length when known (a file, an HTTP Content-Length): lengths and offsets are
    /// then checked against it early, and `finish` checks the byte count.
    pub expected_len: Option<u64>,
    /// Checked against the sha256 of every pushed byte at `finish`.
    pub sha256: Option<[u8; 32]>,
    /// Hash the file even without an expected digest (reported in `LoadSummary`). Hashing
    /// costs about as much CPU as parsing, so it is off unless asked for.
    pub compute_sha256: bool,
    /// Safetensors: stream past tensors of dtypes the engine does not use (e.g. BERT's I64
    /// `position_ids`) instead of failing; they are marked `skipped` and never delivered.
    pub skip_unsupported: bool,
}

/// Parses a 64-character hex sha256.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

enum HeaderParser {
    Gguf(GgufParser),
    Safetensors(SafetensorsParser),
}

impl HeaderParser {
    fn want(&self) -> usize {
        match self {
            HeaderParser::Gguf(p) => p.want(),
            HeaderParser::Safetensors(p) => p.want(),
        }
    }
    fn is_done(&self) -> bool {
        match self {
            HeaderParser::Gguf(p) => p.is_done(),
            HeaderParser::Safetensors(p) => p.is_done(),
        }
    }
    /// The header field being read, named as inside the header (a file cut there is a
    /// truncated file, not a bad field).
    fn describe(&self) -> String {
        match self {
            HeaderParser::Gguf(p) => format!("the GGUF header's {}", p.describe()),
            HeaderParser::Safetensors(p) => format!("the safetensors {}", p.describe()),
        }
    }
    fn feed(&mut self, b: &[u8], at: u64) -> Result<(), LoaderError> {
        match self {
            HeaderParser::Gguf(p) => p.feed(b, at),
            HeaderParser::Safetensors(p) => p.feed(b, at),
        }
    }
    fn finish(self, end: u64) -> Result<ModelHeader, LoaderError> {
        match self {
            HeaderParser::Gguf(p) => p.finish(end),
            HeaderParser::Safetensors(p) => p.finish(),
        }
    }
}

enum Phase {
    Header(Box<HeaderParser>),
    Data,
    Finished,
    Failed,
}

/// What `finish` reports.
#[derive(Clone, Debug)]
pub struct LoadSummary {
    pub bytes: u64,
    pub tensors: usize,
    pub skipped: usize,
    /// When `sha256` or `compute_sha256` was set.
    pub sha256: Option<[u8; 32]>,
}

/// A chunk-fed loader for one file. Push the file's bytes in order with `push`, then `finish`.
pub struct Loader {
    opts: LoadOptions,
    phase: Phase,
    /// Absolute offset of the next byte to be pushed.
    pos: u64,
    /// The header field being assembled from several chunks.
    field: Vec<u8>,
    hasher: Option<Sha256>,
    header: Option<ModelHeader>,
    /// Tensor indices in data order (by offset).
    order: Vec<usize>,
    next: usize,
    /// Bytes of the current tensor delivered (or skipped) so far.
    done_in_tensor: u64,
    /// The start of a block split between chunks (at most one block).
    carry: Vec<u8>,
    /// Tensors still pending per layer.
    layer_pending: BTreeMap<usize, usize>,
    tensors_ready: usize,
    largest_field: usize,
}

impl Loader {
    pub fn new(format: Format, opts: LoadOptions) -> Self {
        let parser = match format {
            Format::Gguf => HeaderParser::Gguf(GgufParser::new(opts.expected_len)),
            Format::Safetensors => HeaderParser::Safetensors(SafetensorsParser::new(
                opts.expected_len,
                opts.skip_unsupported,
            )),
        };
        let hasher = (opts.sha256.is_some() || opts.compute_sha256).then(Sha256::new);
        Self {
            hasher,
            opts,
            phase: Phase::Header(Box::new(parser)),
            pos: 0,
            field: Vec::new(),
            header: None,
            order: Vec::new(),
            next: 0,
            done_in_tensor: 0,
            carry: Vec::new(),
            layer_pending: BTreeMap::new(),
            tensors_ready: 0,
            largest_field: 0,
        }
    }

    /// The header once parsed.
    pub fn header(&self) -> Option<&ModelHeader> {
        self.header.as_ref()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos + self.field.len() as u64
    }

    /// Host bytes the loader's own buffers hold now (field assembly and block carry; the
    /// parsed header is not counted).
    pub fn buffered_bytes(&self) -> usize {
        self.field.capacity() + self.carry.capacity()
    }

    /// The largest header field assembled so far.
    pub fn largest_field(&self) -> usize {
        self.largest_field
    }

    /// Feeds the next bytes of the file. After an error the loader is unusable.
    pub fn push(&mut self, data: &[u8], sink: &mut dyn TensorSink) -> Result<(), LoaderError> {
        if matches!(self.phase, Phase::Failed) {
            return Err(LoaderError::State { state: "an error" });
        }
        if matches!(self.phase, Phase::Finished) {
            return Err(LoaderError::State { state: "finish" });
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        let r = self.push_inner(data, sink);
        if r.is_err() {
            self.phase = Phase::Failed;
        }
        r
    }

    fn push_inner(
        &mut self,
        mut data: &[u8],
        sink: &mut dyn TensorSink,
    ) -> Result<(), LoaderError> {
        while let Phase::Header(parser) = &mut self.phase {
            if parser.is_done() {
                let Phase::Header(parser) = std::mem::replace(&mut self.phase, Phase::Data) else {
                    break;
                };
                self.start_data(parser.finish(self.pos)?, sink)?;
                break;
            }
            let n = parser.want();
            // Assemble the field in `field` only when it straddles chunks.
            if self.field.is_empty() && data.len() >= n {
                let (head, rest) = data.split_at(n);
                let at = self.pos;
                self.pos += n as u64;
                data = rest;
                parser.feed(head, at)?;
                continue;
            }
            let take = (n - self.field.len()).min(data.len());
            self.field.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.field.len() < n {
                break;
            }
            let at = self.pos;
            self.pos += n as u64;
            self.largest_field = self.largest_field.max(n);
            parser.feed(&self.field, at)?;
            self.field.clear();
            if self.field.capacity() > 1 << 16 {
                self.field = Vec::new();
            }
        }
        if matches!(self.phase, Phase::Data) {
            self.stream(data, sink)?;
        }
        if let Some(h) = &self.header {
            sink.event(&LoadEvent::Progress {
                bytes: self.pos,
                total: self.opts.expected_len,
                tensors_ready: self.tensors_ready,
                n_tensors: h.tensors.len(),
            })?;
        }
        Ok(())
    }

    fn start_data(
        &mut self,
        header: ModelHeader,
        sink: &mut dyn TensorSink,
    ) -> Result<(), LoaderError> {
        let mut order: Vec<usize> = (0..header.tensors.len()).collect();
        order.sort_by_key(|&i| header.tensors[i].offset);
        for t in &header.tensors {
            if let Some(l) = t.layer {
                *self.layer_pending.entry(l).or_insert(0) += 1;
            }
        }
        sink.event(&LoadEvent::Header(&header))?;
        self.order = order;
        self.header = Some(header);
        // Zero-byte tensors at the start are ready at once.
        self.stream(&[], sink)
    }

    /// Data phase: skip gaps, hand tensor bytes to the sink in block-aligned pieces.
    fn stream(&mut self, mut data: &[u8], sink: &mut dyn TensorSink) -> Result<(), LoaderError> {
        let Some(header) = self.header.take() else {
            return Ok(());
        };
        let r = (|| {
            while self.next < self.order.len() {
                let t = &header.tensors[self.order[self.next]];
                if self.pos < t.offset {
                    let gap = ((t.offset - self.pos).min(data.len() as u64)) as usize;
                    self.pos += gap as u64;
                    data = &data[gap..];
                    if self.pos < t.offset {
                        return Ok(());
                    }
                }
                // Bytes of a split block wait in `carry`: they are consumed, not delivered.
                let left = t.size - self.done_in_tensor - self.carry.len() as u64;
                let avail = (left.min(data.len() as u64)) as usize;
                let (mine, rest) = data.split_at(avail);
                data = rest;
                self.pos += avail as u64;
                if t.skipped {
                    self.done_in_tensor += avail as u64;
                } else {
                    self.deliver(t, mine, sink)?;
                }
                if self.done_in_tensor < t.size {
                    return Ok(());
                }
                self.tensor_complete(t, sink)?;
            }
            // Trailing bytes past the last tensor (padding) are only counted.
            self.pos += data.len() as u64;
            Ok(())
        })();
        self.header = Some(header);
        r
    }

    fn deliver(
        &mut self,
        t: &TensorInfo,
        mut mine: &[u8],
        sink: &mut dyn TensorSink,
    ) -> Result<(), LoaderError> {
        let unit = t.dtype.block_bytes() as usize;
        if !self.carry.is_empty() {
            let take = (unit - self.carry.len()).min(mine.len());
            self.carry.extend_from_slice(&mine[..take]);
            mine = &mine[take..];
            if self.carry.len() < unit {
                return Ok(());
            }
            sink.tensor_data(t, self.done_in_tensor, &self.carry)?;
            self.done_in_tensor += unit as u64;
            self.carry.clear();
        }
        let whole = mine.len() / unit * unit;
        if whole > 0 {
            sink.tensor_data(t, self.done_in_tensor, &mine[..whole])?;
            self.done_in_tensor += whole as u64;
        }
        self.carry.extend_from_slice(&mine[whole..]);
        Ok(())
    }

    fn tensor_complete(
        &mut self,
        t: &TensorInfo,
        sink: &mut dyn TensorSink,
    ) -> Result<(), LoaderError> {
        if !t.skipped {
            sink.tensor_ready(t)?;
            sink.event(&LoadEvent::TensorReady(t))?;
        }
        self.tensors_ready += 1;
        self.next += 1;
        self.done_in_tensor = 0;
        if let Some(l) = t.layer {
            if let Some(n) = self.layer_pending.get_mut(&l) {
                *n -= 1;
                if *n == 0 {
                    sink.event(&LoadEvent::LayerReady { layer: l })?;
                }
            }
        }
        Ok(())
    }

    /// Call after the last byte: checks that every tensor arrived, the length and the sha256.
    pub fn finish(&mut self, sink: &mut dyn TensorSink) -> Result<LoadSummary, LoaderError> {
        let r = self.finish_inner(sink);
        self.phase = if r.is_ok() {
            Phase::Finished
        } else {
            Phase::Failed
        };
        r
    }

    fn finish_inner(&mut self, sink: &mut dyn TensorSink) -> Result<LoadSummary, LoaderError> {
        let got = self.pos;
        match &self.phase {
            Phase::Failed => return Err(LoaderError::State { state: "an error" }),
            Phase::Finished => return Err(LoaderError::State { state: "finish" }),
            Phase::Header(p) => {
                // `pos` counts whole fields; a partial one waits in `field`. An empty file
                // has no format to name (fewer than 4 bytes are taken for safetensors).
                let got_any = got > 0 || !self.field.is_empty();
                return Err(LoaderError::Truncated {
                    field: if got_any {
                        p.describe()
                    } else {
                        "the header".into()
                    },
                    offset: got,
                    needed: (p.want() - self.field.len()) as u64,
                    got: got + self.field.len() as u64,
                });
            }
            Phase::Data => {}
        }
        let Some(header) = &self.header else {
            return Err(LoaderError::State {
                state: "a missing header",
            });
        };
        if let Some(&i) = self.order.get(self.next) {
            let t = &header.tensors[i];
            return Err(LoaderError::Truncated {
                field: format!("tensor `{}` data", t.name),
                offset: t.offset,
                needed: t.offset + t.size - got,
                got,
            });
        }
        if let Some(len) = self.opts.expected_len {
            if len != got {
                return Err(LoaderError::SizeMismatch {
                    what: "file".into(),
                    expected: len,
                    got,
                });
            }
        }
        let sha: Option<[u8; 32]> = self.hasher.take().map(|h| h.finalize().into());
        if let (Some(want), Some(sha)) = (self.opts.sha256, sha) {
            if want != sha {
                return Err(LoaderError::Checksum {
                    expected: hex(&want),
                    got: hex(&sha),
                });
            }
        }
        let skipped = header.tensors.iter().filter(|t| t.skipped).count();
        sink.event(&LoadEvent::Done {
            bytes: got,
            tensors: header.tensors.len() - skipped,
        })?;
        Ok(LoadSummary {
            bytes: got,
            tensors: header.tensors.len() - skipped,
            skipped,
            sha256: sha,
        })
    }
}

/// Shared header checks: overlaps, bounds against the file length, layer count, total bytes.
fn finish_header(mut h: ModelHeader, file_len: Option<u64>) -> Result<ModelHeader, LoaderError> {
    let mut order: Vec<&TensorInfo> = h.tensors.iter().collect();
    order.sort_by_key(|t| t.offset);
    let mut end = h.data_start;
    let mut prev: Option<&TensorInfo> = None;
    for t in order {
        let t_end = t
            .offset
            .checked_add(t.size)
            .ok_or_else(|| LoaderError::OutOfBounds {
                tensor: t.name.clone(),
                start: t.offset,
                end: u64::MAX,
                file_len: file_len.unwrap_or(u64::MAX),
            })?;
        if let Some(len) = file_len {
            if t_end > len {
                return Err(LoaderError::OutOfBounds {
                    tensor: t.name.clone(),
                    start: t.offset,
                    end: t_end,
                    file_len: len,
                });
            }
        }
        if let Some(p) = prev {
            // Zero-size tensors occupy no bytes and cannot overlap.
            if t.size > 0 && t.offset < p.offset + p.size {
                return Err(LoaderError::Overlap {
                    first: p.name.clone(),
                    second: t.name.clone(),
                    offset: t.offset,
                });
            }
        }
        if t.size > 0 {
            prev = Some(t);
        }
        end = end.max(t_end);
    }
    h.total_bytes = end;
    h.n_layers = h
        .tensors
        .iter()
        .filter_map(|t| t.layer)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    Ok(h)
}
