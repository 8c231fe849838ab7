//! Host-side sinks: `NullSink` (parse only, e.g. to time the loader) and `HashSink` (sha256 of
//! each tensor, so two loads can be compared without keeping any tensor in memory).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{LoaderError, TensorInfo, TensorSink};

#[derive(Default)]
pub struct NullSink;

impl TensorSink for NullSink {
    fn tensor_data(&mut self, _: &TensorInfo, _: u64, _: &[u8]) -> Result<(), LoaderError> {
        Ok(())
    }
    fn tensor_ready(&mut self, _: &TensorInfo) -> Result<(), LoaderError> {
        Ok(())
    }
}

/// Hashes each tensor's bytes. Also checks the loader's piece contract: pieces arrive in
/// order without gaps, each a whole number of blocks, and add up to the tensor's size.
#[derive(Default)]
pub struct HashSink {
    current: Option<(String, Sha256, u64)>,
    pub digests: BTreeMap<String, [u8; 32]>,
    /// Pieces received (how finely the tensor bytes were cut).
    pub pieces: usize,
}

impl HashSink {
    fn contract(tensor: &str, detail: String) -> LoaderError {
        LoaderError::Sink {
            tensor: tensor.to_string(),
            code: "PIECE_CONTRACT",
            detail,
        }
    }
}

impl TensorSink for HashSink {
    fn tensor_data(
        &mut self,
        info: &TensorInfo,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), LoaderError> {
        let cur = self
            .current
            .get_or_insert_with(|| (info.name.clone(), Sha256::new(), 0));
        if cur.0 != info.name || cur.2 != offset {
            return Err(Self::contract(
                &info.name,
                format!("piece at {offset}, expected {} of `{}`", cur.2, cur.0),
            ));
        }
        if !(bytes.len() as u64).is_multiple_of(info.dtype.block_bytes()) {
            return Err(Self::contract(
                &info.name,
                format!("piece of {} bytes is not whole blocks", bytes.len()),
            ));
        }
        cur.1.update(bytes);
        cur.2 += bytes.len() as u64;
        self.pieces += 1;
        Ok(())
    }

    fn tensor_ready(&mut self, info: &TensorInfo) -> Result<(), LoaderError> {
        let (name, h, n) = self
            .current
            .take()
            .unwrap_or_else(|| (info.name.clone(), Sha256::new(), 0));
        if name != info.name || n != info.size {
            return Err(Self::contract(
                &info.name,
                format!("ready after {n} of {} bytes", info.size),
            ));
        }
        self.digests.insert(name, h.finalize().into());
        Ok(())
    }
}
