//! Tuning data: shape buckets, the record of winners, and the checksum that invalidates a record
//! when the WGSL its winner renders to changes. Running candidates is the engine's job
//! (`webjit_engine::tune`); storing records (JSON file, IndexedDB) sits behind a trait there.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::JitError;
use crate::profile::DeviceProfile;
use crate::spec::KernelSpec;

/// `n` rounded up to a power of two (0 stays 0): sizes in one bucket share a tuning record.
pub fn bucket(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        n.next_power_of_two()
    }
}

/// FNV-1a, stable across runs and platforms.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Checksum of the WGSL (and override constants) that config `cfg` of `spec` renders to. A
/// record carries its winner's; a record whose winner now renders to other code is stale: it
/// is ignored (a miss), never an error.
pub fn wgsl_checksum<S: KernelSpec>(spec: &S, cfg: &S::Config) -> Result<String, JitError> {
    let mut text = spec.render(cfg)?;
    for (name, v) in spec.overrides(cfg) {
        text.push_str(&format!("\noverride {name} = {v}"));
    }
    Ok(format!("{:016x}", fnv1a(text.as_bytes())))
}

/// One tuned problem: which config won and what it measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneRecord {
    pub winner: String,
    pub default: String,
    pub default_us: f64,
    pub tuned_us: f64,
    pub candidates: u32,
    pub checksum: String,
}

/// Records of one or more devices: fingerprint -> tune key -> record. This is the export format.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TuneRecords {
    pub version: u32,
    pub devices: BTreeMap<String, BTreeMap<String, TuneRecord>>,
}

impl TuneRecords {
    pub const VERSION: u32 = 1;

    pub fn new() -> Self {
        Self {
            version: Self::VERSION,
            devices: BTreeMap::new(),
        }
    }

    /// The winner for `spec` on `profile` and its config, if recorded, still in the space,
    /// legal for this problem, and rendering to the code it was timed with.
    pub fn lookup<S: KernelSpec>(
        &self,
        spec: &S,
        profile: &DeviceProfile,
    ) -> Option<(&TuneRecord, S::Config)> {
        let rec = self
            .devices
            .get(&profile.fingerprint())?
            .get(&spec.tune_key())?;
        let cfg = spec.config_by_key(profile, &rec.winner).ok()?;
        spec.check(profile, &cfg).ok()?;
        (wgsl_checksum(spec, &cfg).ok()? == rec.checksum).then_some((rec, cfg))
    }

    pub fn insert(&mut self, fingerprint: &str, tune_key: &str, rec: TuneRecord) {
        self.devices
            .entry(fingerprint.to_string())
            .or_default()
            .insert(tune_key.to_string(), rec);
    }

    /// Adds every record of `other`, replacing records with the same device and key.
    pub fn merge(&mut self, other: TuneRecords) {
        for (fp, recs) in other.devices {
            self.devices.entry(fp).or_default().extend(recs);
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Parses exported records; an unknown version or malformed text is an error message.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let r: TuneRecords =
            serde_json::from_str(text).map_err(|e| format!("tuning records: {e}"))?;
        if r.version != Self::VERSION {
            return Err(format!(
                "tuning records: version {} (this build reads {})",
                r.version,
                Self::VERSION
            ));
        }
        Ok(r)
    }

    pub fn len(&self) -> usize {
        self.devices.values().map(|m| m.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::MatmulSpec;

    fn mm(m: u64, n: u64, k: u64) -> MatmulSpec {
        MatmulSpec {
            m,
            n,
            k,
            batch: 1,
            trans_b: true,
            epilogue: Default::default(),
        }
    }

    #[test]
    fn records_round_trip_and_stale_checksums_miss() {
        let p = DeviceProfile::lavapipe_like();
        let spec = mm(100, 200, 300);
        let space = spec.space(&p);
        let winner = space.last().expect("a space").clone();
        let mut recs = TuneRecords::new();
        let rec = TuneRecord {
            winner: spec.key(&winner),
            default: spec.key(&spec.default_config(&p)),
            default_us: 2.0,
            tuned_us: 1.0,
            candidates: 3,
            checksum: wgsl_checksum(&spec, &winner).unwrap(),
        };
        recs.insert(&p.fingerprint(), &spec.tune_key(), rec.clone());
        let back = TuneRecords::from_json(&recs.to_json()).unwrap();
        assert_eq!(back, recs);
        assert_eq!(back.lookup(&spec, &p), Some((&rec, winner.clone())));
        // Same bucket: found. Other bucket, other device, stale checksum, unknown key: misses.
        let same_bucket = mm(120, 240, 400);
        assert_eq!(same_bucket.tune_key(), "matmul.f32.nt|m128.n256.k512");
        assert!(back.lookup(&same_bucket, &p).is_some());
        assert!(back.lookup(&mm(1000, 200, 300), &p).is_none());
        assert!(back
            .lookup(&spec, &DeviceProfile::discrete_like())
            .is_none());
        let mut stale = back.clone();
        stale
            .devices
            .values_mut()
            .for_each(|m| m.values_mut().for_each(|r| r.checksum = "0".into()));
        assert!(stale.lookup(&spec, &p).is_none());
        let mut unknown = back.clone();
        unknown
            .devices
            .values_mut()
            .for_each(|m| m.values_mut().for_each(|r| r.winner = "no.such.key".into()));
        assert!(unknown.lookup(&spec, &p).is_none());
        assert!(TuneRecords::from_json("{\"version\": 99, \"devices\": {}}").is_err());
        assert!(TuneRecords::from_json("not json").is_err());
    }
}
