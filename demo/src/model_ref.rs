//! What `--model` names, for every subcommand that takes one: a path, the short name of a model
//! `make models` fetched (`gemma3-270m`, `minilm-l6`, `tiny-llama`), or an `http://` URL whose
//! bytes stream through the loader (ranged GETs). Resolution fails with one line that says what
//! to do: which command fetches a missing model, that only http is supported natively.

use std::path::{Path, PathBuf};

use webjit_engine::loader::{FileSource, WeightSource};
use webjit_engine::{Error, Result};

use crate::http_source::{get_small, HttpSource, HttpUrl};

/// Short names of the models `make models` (scripts/fetch-models.sh) puts in the cache:
/// (name, file or directory in the cache).
pub const SHORT_NAMES: &[(&str, &str)] = &[
    ("gemma3-270m", "gemma-3-270m-q4_k_m.gguf"),
    ("minilm-l6", "all-MiniLM-L6-v2"),
    ("tiny-llama", "tiny-llama.gguf"),
];

/// Largest config or tokenizer file read whole (tokenizer.json of large vocabularies is a few
/// MiB); a bigger one is not what the name says.
const MAX_SMALL_FILE: u64 = 64 << 20;

/// The model cache `make models` fills: `${WEBJIT_CACHE:-~/.cache/webjit}/models`.
pub fn model_cache() -> PathBuf {
    let base = std::env::var_os("WEBJIT_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("webjit"))
        })
        .unwrap_or_else(|| PathBuf::from(".cache/webjit"));
    base.join("models")
}

#[derive(Clone, Debug)]
pub enum ModelRef {
    Path(PathBuf),
    Url(HttpUrl),
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelRef::Path(p) => write!(f, "{}", p.display()),
            ModelRef::Url(u) => write!(f, "{u}"),
        }
    }
}

/// Resolves a `--model` argument for subcommand `op`. A path that exists wins over a short
/// name of the same spelling; a path that does not exist is an error here, before any GPU
/// work starts.
pub fn resolve(arg: &str, op: &'static str) -> Result<ModelRef> {
    let bad = |detail: String| Error::InvalidArgument { op, detail };
    if arg.is_empty() {
        return Err(bad("--model is empty".into()));
    }
    if arg.contains("://") {
        return HttpUrl::parse(arg).map(ModelRef::Url).map_err(bad);
    }
    let path = Path::new(arg);
    if path.exists() {
        return Ok(ModelRef::Path(path.to_path_buf()));
    }
    if let Some((_, file)) = SHORT_NAMES.iter().find(|(n, _)| *n == arg) {
        let p = model_cache().join(file);
        if p.exists() {
            return Ok(ModelRef::Path(p));
        }
        return Err(bad(format!(
            "model `{arg}` is not fetched ({} does not exist); run `make models` \
             (scripts/fetch-models.sh) to fetch it",
            p.display()
        )));
    }
    let names: Vec<&str> = SHORT_NAMES.iter().map(|(n, _)| *n).collect();
    Err(bad(format!(
        "--model {arg}: no such file or directory (give a path, an http:// URL or one of {})",
        names.join(", ")
    )))
}

impl ModelRef {
    /// The file `name` inside this model directory.
    pub fn join(&self, name: &str) -> ModelRef {
        match self {
            ModelRef::Path(p) => ModelRef::Path(p.join(name)),
            ModelRef::Url(u) => ModelRef::Url(u.join(name)),
        }
    }

    /// For commands that read one weights file: a local model directory stands for its
    /// `model.safetensors` (so `load --model minilm-l6` works).
    pub fn weights_file(self) -> ModelRef {
        match &self {
            ModelRef::Path(p) if p.is_dir() => self.join("model.safetensors"),
            ModelRef::Url(u) if u.target.ends_with('/') => self.join("model.safetensors"),
            _ => self,
        }
    }

    /// A random-access source over the file's bytes.
    pub fn open(&self) -> Result<Box<dyn WeightSource>> {
        match self {
            ModelRef::Path(p) => {
                if p.is_dir() {
                    return Err(Error::InvalidArgument {
                        op: "model",
                        detail: format!("{} is a directory, not a model file", p.display()),
                    });
                }
                Ok(Box::new(FileSource::open(p)?))
            }
            ModelRef::Url(u) => Ok(Box::new(HttpSource::new(u.clone()))),
        }
    }

    /// A small file of a model directory (config, tokenizer), whole; `None` when it does not
    /// exist.
    pub fn read_small(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.join(name) {
            ModelRef::Path(p) => match std::fs::metadata(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::BadModel {
                    detail: format!("{}: {e}", p.display()),
                }),
                Ok(m) if m.len() > MAX_SMALL_FILE => Err(Error::BadModel {
                    detail: format!(
                        "{}: {} bytes, above the {MAX_SMALL_FILE}-byte limit for this file",
                        p.display(),
                        m.len()
                    ),
                }),
                Ok(_) => std::fs::read(&p).map(Some).map_err(|e| Error::BadModel {
                    detail: format!("{}: {e}", p.display()),
                }),
            },
            ModelRef::Url(u) => Ok(get_small(&u, MAX_SMALL_FILE)?),
        }
    }

    /// Like `read_small`, but the file must exist.
    pub fn require_small(&self, name: &str) -> Result<Vec<u8>> {
        self.read_small(name)?.ok_or_else(|| Error::BadModel {
            detail: format!("{}: does not exist", self.join(name)),
        })
    }
}

/// A local file that holds at least a model's header (see `ModelRef::header_file`).
pub struct HeaderFile {
    path: PathBuf,
    /// Downloaded for this run: removed on drop.
    temporary: bool,
}

impl HeaderFile {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HeaderFile {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Largest header downloaded for header-only commands (a GGUF header with a 256k-token
/// vocabulary is a few MiB).
const MAX_HEADER_BYTES: u64 = 256 << 20;

impl ModelRef {
    /// For commands that read only the header (`tune --model`): the file itself, or for a URL
    /// just its header bytes (up to the first tensor byte) in a temporary file.
    pub fn header_file(&self, op: &'static str) -> Result<HeaderFile> {
        let url = match self {
            ModelRef::Path(p) => {
                return Ok(HeaderFile {
                    path: p.clone(),
                    temporary: false,
                })
            }
            ModelRef::Url(u) => u,
        };
        let mut src = HttpSource::new(url.clone());
        let header = webjit_engine::loader::read_header(&mut src)?;
        let n = header.data_start.min(src.len()?);
        if n > MAX_HEADER_BYTES {
            return Err(Error::BadModel {
                detail: format!(
                    "{self}: a {n}-byte header is above the {MAX_HEADER_BYTES}-byte limit"
                ),
            });
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path =
            std::env::temp_dir().join(format!("webjit-header-{}-{stamp}.gguf", std::process::id()));
        let io = |e: std::io::Error| Error::InvalidArgument {
            op,
            detail: format!("writing {}: {e}", path.display()),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let guard = HeaderFile {
            path: path.clone(),
            temporary: true,
        };
        let mut buf = vec![0u8; (n as usize).min(4 << 20)];
        let mut off = 0u64;
        while off < n {
            let k = ((n - off) as usize).min(buf.len());
            src.read_at(off, &mut buf[..k])?;
            std::io::Write::write_all(&mut file, &buf[..k]).map_err(io)?;
            off += k as u64;
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_missing_paths_resolve_to_clear_errors() {
        assert!(matches!(
            resolve("http://127.0.0.1:1/m.gguf", "t"),
            Ok(ModelRef::Url(_))
        ));
        let e = resolve("https://example.org/m.gguf", "t").unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
        let e = resolve("/no/such/model.gguf", "t").unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        assert!(resolve("", "t").is_err());
    }
}
