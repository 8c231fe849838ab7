//! Where tuning records persist: a JSON file natively; IndexedDB in the browser is the web
//! facade's implementation of `RecordStore`.

use webjit_jit::tune::TuneRecords;

use crate::error::{Error, Result};
use crate::Engine;

/// Where tuning records persist: a JSON file natively, IndexedDB in the browser (implemented by
/// the web facade). Text in, text out, so the engine names no platform types.
pub trait RecordStore {
    fn load(&self) -> std::result::Result<Option<String>, String>;
    fn save(&self, json: &str) -> std::result::Result<(), String>;
}

/// Records in a JSON file: `$WEBJIT_TUNING_FILE`, else `$XDG_CACHE_HOME/webjit/tuning.json`,
/// else `~/.cache/webjit/tuning.json`.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileStore {
    pub path: std::path::PathBuf,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileStore {
    pub fn default_path() -> Option<std::path::PathBuf> {
        if let Some(p) = std::env::var_os("WEBJIT_TUNING_FILE") {
            return Some(p.into());
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache"))
            })?;
        Some(cache.join("webjit").join("tuning.json"))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl RecordStore for FileStore {
    fn load(&self) -> std::result::Result<Option<String>, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }
    fn save(&self, json: &str) -> std::result::Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // Write then rename, so a crash never leaves a half-written file.
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl Engine {
    /// Loads records from a store (missing is fine; malformed is an error).
    pub fn load_tuning(&self, store: &dyn RecordStore) -> Result<usize> {
        let text = store.load().map_err(|e| Error::InvalidArgument {
            op: "tuning",
            detail: e,
        })?;
        let Some(text) = text else { return Ok(0) };
        let recs = TuneRecords::from_json(&text).map_err(|e| Error::InvalidArgument {
            op: "tuning",
            detail: e,
        })?;
        let n = recs.len();
        self.import_tuning(recs);
        Ok(n)
    }

    pub fn save_tuning(&self, store: &dyn RecordStore) -> Result<()> {
        store
            .save(&self.export_tuning().to_json())
            .map_err(|e| Error::InvalidArgument {
                op: "tuning",
                detail: e,
            })
    }
}
