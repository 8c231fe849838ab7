//! Random-access weight sources: a file natively, a byte slice anywhere (HTTP Range requests
//! in the browser implement the same trait in the web crate). `load_from` streams a source
//! through a `Loader`; `read_tensor` re-reads one tensor (e.g. to reload a layer).

use super::{
    Format, LoadOptions, LoadSummary, Loader, LoaderError, ModelHeader, TensorInfo, TensorSink,
};

pub trait WeightSource {
    /// Total length in bytes.
    fn len(&mut self) -> Result<u64, LoaderError>;
    fn is_empty(&mut self) -> Result<bool, LoaderError> {
        Ok(self.len()? == 0)
    }
    /// Fills `buf` with the bytes at `offset` (all of them, or an error).
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError>;
}

/// An in-memory file (tests, or bytes already fetched).
pub struct MemSource<'a>(pub &'a [u8]);

impl WeightSource for MemSource<'_> {
    fn len(&mut self) -> Result<u64, LoaderError> {
        Ok(self.0.len() as u64)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        let start = usize::try_from(offset).ok();
        let src = start
            .and_then(|s| self.0.get(s..s.checked_add(buf.len())?))
            .ok_or_else(|| LoaderError::Io {
                offset,
                detail: format!(
                    "read of {} bytes past the end ({} bytes)",
                    buf.len(),
                    self.0.len()
                ),
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: &std::path::Path) -> Result<Self, LoaderError> {
        let file = std::fs::File::open(path).map_err(|e| LoaderError::Io {
            offset: 0,
            detail: format!("{}: {e}", path.display()),
        })?;
        Ok(Self { file })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl WeightSource for FileSource {
    fn len(&mut self) -> Result<u64, LoaderError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| LoaderError::Io {
                offset: 0,
                detail: e.to_string(),
            })
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), LoaderError> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e: std::io::Error| LoaderError::Io {
            offset,
            detail: e.to_string(),
        };
        self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        self.file.read_exact(buf).map_err(io)
    }
}

/// Streams a whole source through a new loader in `chunk`-byte reads. The source's length
/// becomes `expected_len`, so bounds are checked as soon as the header is read. The chunk
/// buffer is the only allocation sized by the caller.
pub fn load_from(
    source: &mut dyn WeightSource,
    format: Option<Format>,
    mut opts: LoadOptions,
    chunk: usize,
    sink: &mut dyn TensorSink,
) -> Result<(ModelHeader, LoadSummary), LoaderError> {
    let len = source.len()?;
    opts.expected_len = Some(len);
    let chunk = chunk.max(1);
    let mut buf = vec![0u8; chunk.min(len.max(1) as usize)];
    let format = match format {
        Some(f) => f,
        None => {
            let mut first = [0u8; Format::DETECT_BYTES];
            let n = (len as usize).min(first.len());
            source.read_at(0, &mut first[..n])?;
            Format::detect(&first[..n])?
        }
    };
    let mut loader = Loader::new(format, opts);
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        source.read_at(off, &mut buf[..n])?;
        loader.push(&buf[..n], sink)?;
        off += n as u64;
    }
    let summary = loader.finish(sink)?;
    let header = loader.header().cloned().ok_or(LoaderError::State {
        state: "a missing header",
    })?;
    Ok((header, summary))
}

/// Parses only the header of a GGUF or safetensors source (metadata and tensor infos), reading
/// 4 MiB at a time until it is complete: no tensor data is read or checked, so a file holding
/// just the header (as `webjit bench model --synthetic-from` takes) parses too.
pub fn read_header(source: &mut dyn WeightSource) -> Result<ModelHeader, LoaderError> {
    let len = source.len()?;
    let mut first = [0u8; Format::DETECT_BYTES];
    let n = (len as usize).min(first.len());
    source.read_at(0, &mut first[..n])?;
    let mut loader = Loader::new(Format::detect(&first[..n])?, LoadOptions::default());
    let mut buf = vec![0u8; (4usize << 20).min(len.max(1) as usize)];
    let mut off = 0u64;
    while off < len {
        if let Some(h) = loader.header() {
            return Ok(h.clone());
        }
        let n = (len - off).min(buf.len() as u64) as usize;
        source.read_at(off, &mut buf[..n])?;
        loader.push(&buf[..n], &mut super::NullSink)?;
        off += n as u64;
    }
    if let Some(h) = loader.header() {
        return Ok(h.clone());
    }
    // The file ends inside its header: `finish` reports it as truncated, naming the field
    // and the byte it ends at.
    Err(match loader.finish(&mut super::NullSink) {
        Err(e) => e,
        Ok(_) => LoaderError::State {
            state: "a file that ends before its header",
        },
    })
}

/// Reads one tensor's bytes by random access (the header must come from the same file).
pub fn read_tensor(
    source: &mut dyn WeightSource,
    info: &TensorInfo,
) -> Result<Vec<u8>, LoaderError> {
    let len = source.len()?;
    let end = info
        .offset
        .checked_add(info.size)
        .filter(|&e| e <= len)
        .ok_or_else(|| LoaderError::OutOfBounds {
            tensor: info.name.clone(),
            start: info.offset,
            end: info.offset.saturating_add(info.size),
            file_len: len,
        })?;
    let mut buf = vec![0u8; (end - info.offset) as usize];
    source.read_at(info.offset, &mut buf)?;
    Ok(buf)
}
