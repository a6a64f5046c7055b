//! The price table behind every estimate: us-east-1 list prices (docs/s3-facts.md §4),
//! overridable one value at a time with `--prices FILE.toml`:
//!
//! ```toml
//! kms_per_10k_requests = 0.03
//! [class.STANDARD_IA]
//! put_per_1k = 0.0125
//! retrieval_per_gib = 0.01
//! ```

use crate::inventory::StorageClass;
use crate::units::KIB;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What one storage class costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassPrices {
    /// USD per 1,000 PUT, COPY, POST or LIST requests.
    pub put_per_1k: f64,
    /// USD per 1,000 GET, HEAD and other requests.
    pub get_per_1k: f64,
    /// USD per GiB read (the source side of a copy).
    pub retrieval_per_gib: f64,
    /// USD per GiB-month stored.
    pub storage_per_gib_month: f64,
    /// Objects deleted or overwritten sooner are billed for the remaining days.
    pub min_storage_days: f64,
    /// Smaller objects are billed as this size.
    pub min_billable_bytes: u64,
}

/// The whole table. Serialised into the estimate's `assumptions` and the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub class: BTreeMap<StorageClass, ClassPrices>,
    /// UpdateObjectEncryption is "always charged as an S3 Standard storage class request".
    pub update_request_class: StorageClass,
    pub kms_per_10k_requests: f64,
    pub kms_key_per_month: f64,
    pub batch_ops_per_job: f64,
    pub batch_ops_per_million_objects: f64,
    /// Share of KMS requests a Bucket Key saves: AWS says "up to 99 %".
    pub bucket_key_reduction: f64,
}

impl Default for PriceTable {
    fn default() -> Self {
        use StorageClass::*;
        let p = |put, get, retrieval, storage, days, min_bytes| ClassPrices {
            put_per_1k: put,
            get_per_1k: get,
            retrieval_per_gib: retrieval,
            storage_per_gib_month: storage,
            min_storage_days: days,
            min_billable_bytes: min_bytes,
        };
        let ia_min = 128 * KIB;
        let class = BTreeMap::from([
            (Standard, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
            (ReducedRedundancy, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
            (IntelligentTiering, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
            (StandardIa, p(0.01, 0.001, 0.01, 0.0125, 30.0, ia_min)),
            (OnezoneIa, p(0.01, 0.001, 0.01, 0.01, 30.0, ia_min)),
            (GlacierIr, p(0.02, 0.01, 0.03, 0.004, 90.0, ia_min)),
            (Glacier, p(0.03, 0.0004, 0.0, 0.0036, 90.0, 0)),
            (DeepArchive, p(0.05, 0.0004, 0.0, 0.00099, 180.0, 0)),
            // Never planned (unsupported_storage_class); priced as STANDARD for completeness.
            (Outposts, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
            (Snow, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
            (ExpressOnezone, p(0.005, 0.0004, 0.0, 0.023, 0.0, 0)),
        ]);
        PriceTable {
            class,
            update_request_class: Standard,
            kms_per_10k_requests: 0.03,
            kms_key_per_month: 1.0,
            batch_ops_per_job: 0.25,
            batch_ops_per_million_objects: 1.0,
            bucket_key_reduction: 0.99,
        }
    }
}

/// A `--prices` file: every key optional, unknown keys refused (a typo must not silently
/// leave a default in place).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceOverrides {
    #[serde(default)]
    class: BTreeMap<String, ClassOverrides>,
    kms_per_10k_requests: Option<f64>,
    kms_key_per_month: Option<f64>,
    batch_ops_per_job: Option<f64>,
    batch_ops_per_million_objects: Option<f64>,
    bucket_key_reduction: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassOverrides {
    put_per_1k: Option<f64>,
    get_per_1k: Option<f64>,
    retrieval_per_gib: Option<f64>,
    storage_per_gib_month: Option<f64>,
    min_storage_days: Option<f64>,
    min_billable_bytes: Option<u64>,
}

impl PriceTable {
    pub fn class(&self, c: StorageClass) -> &ClassPrices {
        // Every class is in the default table and overrides only replace values.
        &self.class[&c]
    }

    /// The default table with the file's values laid over it.
    pub fn load(path: &Path) -> Result<PriceTable, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_toml(text: &str) -> Result<PriceTable, String> {
        let o: PriceOverrides = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut t = PriceTable::default();
        let set = |slot: &mut f64, v: Option<f64>, name: &str| -> Result<(), String> {
            if let Some(v) = v {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!("{name} = {v}: prices and factors must be zero or more"));
                }
                *slot = v;
            }
            Ok(())
        };
        set(&mut t.kms_per_10k_requests, o.kms_per_10k_requests, "kms_per_10k_requests")?;
        set(&mut t.kms_key_per_month, o.kms_key_per_month, "kms_key_per_month")?;
        set(&mut t.batch_ops_per_job, o.batch_ops_per_job, "batch_ops_per_job")?;
        set(&mut t.batch_ops_per_million_objects, o.batch_ops_per_million_objects, "batch_ops_per_million_objects")?;
        set(&mut t.bucket_key_reduction, o.bucket_key_reduction, "bucket_key_reduction")?;
        if t.bucket_key_reduction > 1.0 {
            return Err(format!("bucket_key_reduction = {}: must be between 0 and 1", t.bucket_key_reduction));
        }
        for (name, c) in o.class {
            let class: StorageClass = name.parse().map_err(|e| format!("[class.{name}]: {e}"))?;
            let slot = t.class.get_mut(&class).expect("every class has defaults");
            let field = |f: &str| format!("class.{name}.{f}");
            set(&mut slot.put_per_1k, c.put_per_1k, &field("put_per_1k"))?;
            set(&mut slot.get_per_1k, c.get_per_1k, &field("get_per_1k"))?;
            set(&mut slot.retrieval_per_gib, c.retrieval_per_gib, &field("retrieval_per_gib"))?;
            set(&mut slot.storage_per_gib_month, c.storage_per_gib_month, &field("storage_per_gib_month"))?;
            set(&mut slot.min_storage_days, c.min_storage_days, &field("min_storage_days"))?;
            if let Some(b) = c.min_billable_bytes {
                slot.min_billable_bytes = b;
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_published_table() {
        let t = PriceTable::default();
        assert_eq!(t.class(StorageClass::StandardIa).put_per_1k, 0.01);
        assert_eq!(t.class(StorageClass::GlacierIr).get_per_1k, 0.01);
        assert_eq!(t.class(StorageClass::GlacierIr).retrieval_per_gib, 0.03);
        assert_eq!(t.class(StorageClass::DeepArchive).min_storage_days, 180.0);
        assert_eq!(t.class(StorageClass::OnezoneIa).min_billable_bytes, 128 * 1024);
        assert_eq!(t.kms_per_10k_requests, 0.03);
    }

    #[test]
    fn overrides_one_value_at_a_time() {
        let t = PriceTable::from_toml("kms_per_10k_requests = 0.05\n[class.STANDARD_IA]\nput_per_1k = 0.02\n").unwrap();
        assert_eq!(t.kms_per_10k_requests, 0.05);
        assert_eq!(t.class(StorageClass::StandardIa).put_per_1k, 0.02);
        assert_eq!(t.class(StorageClass::StandardIa).get_per_1k, 0.001);
    }

    #[test]
    fn refuses_typos_and_nonsense() {
        assert!(PriceTable::from_toml("kms_per_10k = 1").unwrap_err().contains("unknown field"));
        assert!(PriceTable::from_toml("[class.STANDARD_AI]\nput_per_1k = 1")
            .unwrap_err()
            .contains("unknown storage class"));
        assert!(PriceTable::from_toml("kms_per_10k_requests = -1").unwrap_err().contains("zero or more"));
        assert!(PriceTable::from_toml("bucket_key_reduction = 1.5").is_err());
    }
}
