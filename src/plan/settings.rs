//! The options of `estimate` and `plan`, from flags and from a job file: the plan's own
//! settings, stored in the checkpoint (`run.options_json`) so that `rekey run` does what
//! the estimate costed. The clap attributes make them flags; the commands in `cli` parse
//! them, and everything after reads this one typed struct.
//!
//! Every flag has a job-file key of the same name (`--kms-key` ↔ `kms-key`), and a flag
//! given on the command line overrides the file. Relative paths in a job file are
//! relative to the job file's own directory, so `jobs/` can be moved as a whole.

use crate::inventory::{EncryptionStatus, OpenOptions};
use crate::plan::classify::MAX_SINGLE_COPY;
use crate::plan::{ClassifyOptions, KmsQuota, KmsSources, MethodChoice, Pace, PlanConfig, PriceTable, Versions};
use crate::units::ByteSize;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// S3's documented floor for PUT/COPY requests per second per prefix: the rate a plan
/// without `--s3-rps` is costed and run at.
pub const DEFAULT_S3_RPS: f64 = 3500.0;
/// The share of the account's KMS quota a plan without `--kms-share` may use.
pub const DEFAULT_KMS_SHARE: f64 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// For people: a breakdown by method and storage class.
    #[default]
    Table,
    /// Exactly one JSON object (`rekey.estimate/1`).
    Json,
    /// One row per cost line, for spreadsheets.
    Csv,
}

/// `--assume-encryption`: what to take for objects when the report does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
pub enum AssumeEncryption {
    #[value(name = "SSE-S3")]
    #[serde(rename = "SSE-S3")]
    SseS3,
    #[value(name = "NOT-SSE")]
    #[serde(rename = "NOT-SSE")]
    NotSse,
}

/// Flags shared by `estimate` and `plan`; also the schema of a job file.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PlanSettings {
    /// Inventory: a manifest.json (local or s3://), a Batch Operations CSV manifest, or
    /// s3://bucket/prefix/ to list the bucket live (no inventory needed).
    #[arg(long, value_name = "SRC")]
    pub inventory: Option<String>,
    /// List the bucket and prefix --inventory s3://... names instead of reading a manifest.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub list: Option<bool>,
    /// A listing: HEAD every object while planning, for an exact estimate (else the run
    /// HEADs each object just before its write).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub head_all: Option<bool>,
    /// The target KMS key, as a full key ARN (UpdateObjectEncryption accepts nothing else).
    #[arg(long, value_name = "ARN")]
    pub kms_key: Option<String>,
    /// The bucket's region (sets the KMS quota). Default: the key ARN's region, then AWS_REGION.
    #[arg(long)]
    pub region: Option<String>,
    /// A custom S3 endpoint (emulator, S3-compatible store). AWS_ENDPOINT_URL also works.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Virtual-hosted addressing with a custom endpoint (default there: path-style).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub virtual_host: Option<bool>,
    /// Accept a plain-http endpoint on a host other than loopback.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub allow_http: Option<bool>,
    /// auto: UpdateObjectEncryption where S3 allows it, else copy.
    #[arg(long, value_enum)]
    pub method: Option<MethodChoice>,
    /// current: only each key's current version. all: noncurrent versions too, updated in
    /// place by version id (no new version); those only a copy could take are skipped.
    #[arg(long, value_enum)]
    pub versions: Option<Versions>,
    /// SSE-KMS objects under this key (full ARN, repeatable) move to --kms-key; a HEAD
    /// per object decides (the inventory does not name the key).
    #[arg(long, value_name = "ARN", conflicts_with = "rekey_kms")]
    pub from_key: Option<Vec<String>>,
    /// SSE-KMS objects under any other key move to --kms-key (a HEAD per object decides).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub rekey_kms: Option<bool>,
    /// Enable S3 Bucket Keys on re-encrypted objects (up to 99 % fewer KMS requests).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub bucket_key: Option<bool>,
    /// Only keys starting with this prefix (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub include_prefix: Option<Vec<String>>,
    /// Never keys starting with this prefix (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub exclude_prefix: Option<Vec<String>>,
    /// Skip objects smaller than this (bytes, or e.g. 128KiB).
    #[arg(long, value_name = "SIZE")]
    pub min_size: Option<ByteSize>,
    /// Skip objects larger than this.
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<ByteSize>,
    /// Copies above this size use multipart copy (default and maximum 5GiB).
    #[arg(long, value_name = "SIZE")]
    pub multipart_threshold: Option<ByteSize>,
    /// A TOML file overriding prices (see docs/cost-model.md).
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// For reports without an EncryptionStatus column, and Batch Operations manifests.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub assume_encryption: Option<AssumeEncryption>,
    /// Do not check data files' sizes and MD5s, nor manifest.checksum.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub no_verify: Option<bool>,
    /// Count undecodable rows as skipped (bad_row) instead of stopping.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub skip_bad_rows: Option<bool>,
    /// Override whether the bucket is versioned (default: the report has version columns).
    #[arg(long, value_name = "BOOL")]
    pub versioned: Option<bool>,
    /// The account's KMS request quota, requests/s (default: AWS's table for the region).
    #[arg(long, value_name = "RPS")]
    pub kms_quota: Option<f64>,
    /// The share of the KMS quota this job may use (default 0.5).
    #[arg(long, value_name = "FRACTION")]
    pub kms_share: Option<f64>,
    /// S3 requests per second (default 3500).
    #[arg(long, value_name = "RPS")]
    pub s3_rps: Option<f64>,
    /// Reads per month after migration, for the ongoing KMS cost.
    #[arg(long, value_name = "N")]
    pub monthly_gets: Option<u64>,
    /// Inventory reader threads (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// The SQLite checkpoint to write (plan).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Overwrite an existing checkpoint (plan).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub replace: Option<bool>,
    /// Split the plan into N checkpoints by a stable hash of bucket and key, one per
    /// machine, each paced at --kms-share / N (plan writes STATE's stem.shard-I-of-N.ext).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Job files only: the name of one `[[inventories]]` entry, which names its checkpoint
    /// (default: the inventory's source bucket).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Job files only: several inventories (buckets, regions, keys) in one job, each an
    /// `[[inventories]]` table taking any of the keys above; the top-level keys are their
    /// defaults. See [`crate::cli::job`].
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventories: Option<Vec<PlanSettings>>,
}

impl PlanSettings {
    /// Read a job file. Unknown keys are refused, with the line they are on.
    pub fn from_job_file(path: &Path) -> Result<PlanSettings> {
        let text = std::fs::read_to_string(path).with_context(|| format!("job file {}", path.display()))?;
        let mut s: PlanSettings = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("job file {}: {}", path.display(), e.to_string().replace('\n', " ")))?;
        let base = path.parent().unwrap_or(Path::new(""));
        s.rebase(base);
        for entry in s.inventories.iter_mut().flatten() {
            entry.rebase(base);
        }
        Ok(s)
    }

    /// Make the relative paths relative to `base`, the job file's directory.
    fn rebase(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.prices.as_mut() {
            rebase(p);
        }
        if let Some(p) = self.state.as_mut() {
            rebase(p);
        }
        if let Some(inv) = self.inventory.as_mut() {
            if !inv.starts_with("s3://") && Path::new(inv).is_relative() {
                *inv = base.join(&*inv).display().to_string();
            }
        }
    }

    /// The rules that decide each object's fate, as the plan applies them; a run applies
    /// them again to an object it HEADs (`exec::redecide`). `resolve` has checked them.
    pub fn classify_options(&self) -> ClassifyOptions {
        ClassifyOptions {
            method: self.method.unwrap_or_default(),
            include_prefixes: self.include_prefix.clone().unwrap_or_default(),
            exclude_prefixes: self.exclude_prefix.clone().unwrap_or_default(),
            min_size: self.min_size.map(|b| b.0),
            max_size: self.max_size.map(|b| b.0),
            report_has_versions: false,
            multipart_threshold: self.multipart_threshold.map(|b| b.0).unwrap_or(MAX_SINGLE_COPY),
            versions: self.versions.unwrap_or_default(),
            // `resolve` refused bad ones before the plan was stored.
            kms_sources: kms_sources(self, self.method.unwrap_or_default()).unwrap_or(KmsSources::None),
        }
    }

    /// The plan lists its bucket live instead of reading an inventory.
    pub fn is_listing(&self) -> bool {
        let src = self.inventory.as_deref().unwrap_or("");
        matches!(
            crate::inventory::InventorySource::parse(src, self.list.unwrap_or(false)),
            Ok(crate::inventory::InventorySource::Listing { .. })
        )
    }

    /// A listing whose objects' encryption nobody has checked: the run HEADs each one
    /// before its write (see `inventory::listing`).
    pub fn run_heads_first(&self) -> bool {
        self.is_listing() && !self.head_all.unwrap_or(false) && self.assume_encryption.is_none()
    }

    /// Flags over the file: each field set on the command line wins.
    pub fn over(self, file: PlanSettings) -> PlanSettings {
        macro_rules! pick {
            ($($f:ident),* $(,)?) => { PlanSettings { $($f: self.$f.or(file.$f)),* } };
        }
        pick!(
            inventory,
            list,
            head_all,
            kms_key,
            region,
            endpoint_url,
            virtual_host,
            allow_http,
            method,
            versions,
            from_key,
            rekey_kms,
            bucket_key,
            include_prefix,
            exclude_prefix,
            min_size,
            max_size,
            multipart_threshold,
            prices,
            format,
            assume_encryption,
            no_verify,
            skip_bad_rows,
            versioned,
            kms_quota,
            kms_share,
            s3_rps,
            monthly_gets,
            threads,
            state,
            replace,
            shards,
            name,
            inventories,
        )
    }
}

/// A KMS key ARN: `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyArn {
    pub arn: String,
    pub region: String,
    pub account: String,
}

impl KeyArn {
    pub fn parse(s: &str) -> Result<KeyArn, String> {
        KeyArn::parse_flag("--kms-key", s)
    }

    /// As [`KeyArn::parse`], the error naming `flag`.
    pub fn parse_flag(flag: &str, s: &str) -> Result<KeyArn, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let why = if !s.starts_with("arn:") {
            "it is a bare key id or alias name; UpdateObjectEncryption requires the full key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        } else if parts.len() != 6 || parts[2] != "kms" {
            "it is not a KMS ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
        } else if parts[5].starts_with("alias/") {
            "it is an alias ARN; UpdateObjectEncryption requires the key's own ARN (arn:aws:kms:REGION:ACCOUNT:key/ID), and an alias can be re-pointed mid-run"
        } else if !parts[5].starts_with("key/") || parts[5].len() <= 4 {
            "its resource is not key/ID"
        } else if parts[3].is_empty() || parts[4].len() != 12 || !parts[4].bytes().all(|b| b.is_ascii_digit()) {
            "it has no region or no 12-digit account id"
        } else {
            return Ok(KeyArn { arn: s.to_string(), region: parts[3].into(), account: parts[4].into() });
        };
        Err(format!("{flag} {s}: {why}"))
    }
}

/// `--from-key` / `--rekey-kms`, checked. Moving between KMS keys is UpdateObjectEncryption
/// only, which takes nothing but full key ARNs (docs/s3-facts.md §0); S3 reports an
/// object's key as its ARN, so the keys compared with it must be ARNs too.
fn kms_sources(s: &PlanSettings, method: MethodChoice) -> Result<KmsSources> {
    let from: Vec<String> = s.from_key.clone().unwrap_or_default();
    let any = s.rekey_kms.unwrap_or(false);
    let sources = match (from.is_empty(), any) {
        (true, false) => return Ok(KmsSources::None),
        (false, true) => bail!("--from-key and --rekey-kms: pass one (--rekey-kms already takes every other key)"),
        (true, true) => KmsSources::Any,
        (false, false) => {
            for k in &from {
                KeyArn::parse_flag("--from-key", k).map_err(anyhow::Error::msg)?;
            }
            KmsSources::FromKeys(from)
        }
    };
    if method == MethodChoice::Copy {
        bail!("--from-key / --rekey-kms move objects with UpdateObjectEncryption, which --method copy does not use");
    }
    Ok(sources)
}

/// What the CLI resolved from the settings, beyond the plan itself.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub plan: PlanConfig,
    pub kms_key: Option<String>,
    pub format: Format,
    pub endpoint_url: Option<String>,
    pub virtual_host: bool,
    pub allow_http: bool,
    pub state: Option<PathBuf>,
    pub replace: bool,
    /// `--shards`: 1 for an unsharded plan.
    pub shards: u32,
}

/// Check every setting and apply defaults. Errors name the flag (and job-file key).
/// Long on purpose: one check per setting, in the order the flags are documented.
pub fn resolve(s: &PlanSettings) -> Result<Resolved> {
    let inventory =
        s.inventory.clone().context("no inventory: pass --inventory SRC or set `inventory` in the job file")?;
    let method = s.method.unwrap_or_default();
    let key = match &s.kms_key {
        None => None,
        Some(k) => match KeyArn::parse(k) {
            Ok(arn) => Some(arn),
            // A copy-only plan can name the key any way CopyObject accepts.
            Err(_) if method == MethodChoice::Copy && !k.is_empty() => None,
            Err(why) => bail!("{why}"),
        },
    };
    let env_region = std::env::var("AWS_REGION").or_else(|_| std::env::var("AWS_DEFAULT_REGION")).ok();
    let region = match (&s.region, &key) {
        (Some(r), Some(k)) if *r != k.region => bail!(
            "--region {r} but the KMS key is in {}: S3 can only use a KMS key in the bucket's own region",
            k.region
        ),
        (Some(r), _) => r.clone(),
        (None, Some(k)) => k.region.clone(),
        (None, None) => env_region.unwrap_or_else(|| "us-east-1".into()),
    };
    let kms_sources = kms_sources(s, method)?;
    let threshold = s.multipart_threshold.map(|b| b.0).unwrap_or(MAX_SINGLE_COPY);
    if threshold == 0 || threshold > MAX_SINGLE_COPY {
        bail!("--multipart-threshold {threshold}: must be between 1 byte and 5GiB (the CopyObject limit)");
    }
    if let (Some(min), Some(max)) = (s.min_size, s.max_size) {
        if min > max {
            bail!("--min-size {} is larger than --max-size {}", min.0, max.0);
        }
    }
    let positive = |name: &str, v: Option<f64>, default: f64| -> Result<f64> {
        let v = v.unwrap_or(default);
        if !v.is_finite() || v <= 0.0 {
            bail!("--{name} {v}: must be a positive number");
        }
        Ok(v)
    };
    let kms_share = positive("kms-share", s.kms_share, DEFAULT_KMS_SHARE)?;
    if kms_share > 1.0 {
        bail!("--kms-share {kms_share}: must be at most 1 (the whole quota)");
    }
    let kms_quota = match s.kms_quota {
        Some(q) => KmsQuota { rps: positive("kms-quota", Some(q), 1.0)?, source: "--kms-quota" },
        None => KmsQuota::for_region(&region),
    };
    let s3_rps = positive("s3-rps", s.s3_rps, DEFAULT_S3_RPS)?;
    let prices = match &s.prices {
        Some(p) => PriceTable::load(p).map_err(|e| anyhow::anyhow!("--prices {e}"))?,
        None => PriceTable::default(),
    };
    let shards = crate::plan::shard::check_shards(s.shards.unwrap_or(1)).map_err(anyhow::Error::msg)?;
    let threads = s.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    if threads == 0 {
        bail!("--threads 0: need at least one reader thread");
    }
    let plan = PlanConfig {
        inventory,
        open: OpenOptions {
            verify: !s.no_verify.unwrap_or(false),
            assume_encryption: s.assume_encryption.map(|a| match a {
                AssumeEncryption::SseS3 => EncryptionStatus::SseS3,
                AssumeEncryption::NotSse => EncryptionStatus::NotSse,
            }),
            list: s.list.unwrap_or(false),
            head_all: s.head_all.unwrap_or(false),
        },
        classify: ClassifyOptions { kms_sources, ..s.classify_options() },
        versioned: s.versioned,
        bucket_key: s.bucket_key.unwrap_or(false),
        prices,
        region,
        pace: Pace { kms_quota, kms_share, s3_rps },
        monthly_gets: s.monthly_gets,
        skip_bad_rows: s.skip_bad_rows.unwrap_or(false),
        threads,
    };
    Ok(Resolved {
        plan,
        kms_key: key.map(|k| k.arn).or_else(|| s.kms_key.clone()),
        format: s.format.unwrap_or_default(),
        endpoint_url: s.endpoint_url.clone(),
        virtual_host: s.virtual_host.unwrap_or(false),
        allow_http: s.allow_http.unwrap_or(false),
        state: s.state.clone(),
        replace: s.replace.unwrap_or(false),
        shards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn key_arns() {
        let k = KeyArn::parse(KEY).unwrap();
        assert_eq!((k.region.as_str(), k.account.as_str()), ("eu-west-1", "123456789012"));
        assert!(KeyArn::parse("1234abcd-12ab").unwrap_err().contains("bare key id"));
        assert!(KeyArn::parse("alias/my-key").unwrap_err().contains("bare key id or alias"));
        assert!(KeyArn::parse("arn:aws:kms:eu-west-1:123456789012:alias/my-key").unwrap_err().contains("alias ARN"));
        assert!(KeyArn::parse("arn:aws:s3:::bucket").is_err());
        assert!(KeyArn::parse("arn:aws:kms:eu-west-1:1234:key/x").unwrap_err().contains("12-digit"));
    }

    #[test]
    fn alias_allowed_only_for_copy() {
        let mut s =
            PlanSettings { inventory: Some("m.json".into()), kms_key: Some("alias/k".into()), ..Default::default() };
        assert!(resolve(&s).unwrap_err().to_string().contains("requires the full key ARN"));
        s.method = Some(MethodChoice::Copy);
        assert_eq!(resolve(&s).unwrap().kms_key.as_deref(), Some("alias/k"));
    }

    #[test]
    fn region_follows_the_key_and_must_agree() {
        let mut s = PlanSettings { inventory: Some("m.json".into()), kms_key: Some(KEY.into()), ..Default::default() };
        let r = resolve(&s).unwrap();
        assert_eq!(r.plan.region, "eu-west-1");
        assert_eq!(r.plan.pace.kms_quota.rps, 100_000.0);
        s.region = Some("us-east-2".into());
        assert!(resolve(&s).unwrap_err().to_string().contains("bucket's own region"));
    }

    #[test]
    fn flags_override_the_job_file() {
        let file: PlanSettings = toml::from_str("inventory = \"a.json\"\nmethod = \"copy\"\nbucket-key = true\ninclude-prefix = [\"x/\"]\nmin-size = \"1KiB\"\n").unwrap();
        let flags = PlanSettings { method: Some(MethodChoice::Update), ..Default::default() };
        let s = flags.over(file);
        assert_eq!(s.method, Some(MethodChoice::Update));
        assert_eq!(s.inventory.as_deref(), Some("a.json"));
        assert_eq!(s.bucket_key, Some(true));
        assert_eq!(s.min_size, Some(ByteSize(1024)));
        assert_eq!(s.include_prefix, Some(vec!["x/".to_string()]));
    }

    #[test]
    fn job_file_takes_shards() {
        let file: PlanSettings = toml::from_str("inventory = \"a.json\"\nshards = 4\n").unwrap();
        assert_eq!(PlanSettings::default().over(file.clone()).shards, Some(4));
        assert_eq!(PlanSettings { shards: Some(2), ..Default::default() }.over(file).shards, Some(2));
        let e = toml::from_str::<PlanSettings>("shards = -1\n").unwrap_err().to_string();
        assert!(e.contains("shards"), "{e}");
    }

    #[test]
    fn the_shipped_job_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs");
        let one = PlanSettings::from_job_file(&dir.join("example.toml")).unwrap();
        assert!(one.inventory.is_some() && one.inventories.is_none());
        resolve(&one).unwrap();
        let fleet = PlanSettings::from_job_file(&dir.join("fleet.toml")).unwrap();
        let entries = fleet.inventories.clone().unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].name.as_deref(), Some("eu-archive"));
        assert_eq!(fleet.state, Some(dir.join("fleet.rekey")), "paths are relative to the job file");
        for e in entries {
            let r = resolve(&e.over(fleet.clone())).unwrap();
            assert!(r.kms_key.is_some());
        }
    }

    #[test]
    fn job_file_typos_are_refused_with_their_line() {
        let e = toml::from_str::<PlanSettings>("inventory = \"a\"\nkms_key = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("unknown field `kms_key`"), "{e}");
    }

    #[test]
    fn from_keys_must_be_arns_and_exclude_rekey_kms_and_copy() {
        let base = PlanSettings { inventory: Some("m.json".into()), kms_key: Some(KEY.into()), ..Default::default() };
        let with = |f: &dyn Fn(&mut PlanSettings)| {
            let mut s = base.clone();
            f(&mut s);
            resolve(&s)
        };
        let other = "arn:aws:kms:eu-west-1:123456789012:key/other";
        let r = with(&|s| s.from_key = Some(vec![other.into()])).unwrap();
        assert_eq!(r.plan.classify.kms_sources, KmsSources::FromKeys(vec![other.into()]));
        assert_eq!(with(&|s| s.rekey_kms = Some(true)).unwrap().plan.classify.kms_sources, KmsSources::Any);
        assert_eq!(resolve(&base).unwrap().plan.classify.kms_sources, KmsSources::None);
        let e = with(&|s| s.from_key = Some(vec!["alias/old".into()])).unwrap_err().to_string();
        assert!(e.starts_with("--from-key alias/old:"), "{e}");
        let e = with(&|s| {
            s.from_key = Some(vec![other.into()]);
            s.rekey_kms = Some(true);
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("pass one"), "{e}");
        let e = with(&|s| {
            s.rekey_kms = Some(true);
            s.method = Some(MethodChoice::Copy);
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--method copy"), "{e}");
        let file: PlanSettings = toml::from_str("versions = \"all\"\nfrom-key = [\"x\"]\n").unwrap();
        assert_eq!(file.versions, Some(Versions::All));
        assert_eq!(file.from_key, Some(vec!["x".to_string()]));
    }

    #[test]
    fn bounds() {
        let base = PlanSettings { inventory: Some("m.json".into()), ..Default::default() };
        let bad = |f: &dyn Fn(&mut PlanSettings)| {
            let mut s = base.clone();
            f(&mut s);
            resolve(&s).unwrap_err().to_string()
        };
        assert!(bad(&|s| s.multipart_threshold = Some(ByteSize(6 << 30))).contains("5GiB"));
        assert!(bad(&|s| s.kms_share = Some(1.5)).contains("at most 1"));
        assert!(bad(&|s| s.s3_rps = Some(0.0)).contains("positive"));
        assert!(bad(&|s| {
            s.min_size = Some(ByteSize(10));
            s.max_size = Some(ByteSize(5));
        })
        .contains("larger than"));
        assert!(resolve(&PlanSettings::default()).unwrap_err().to_string().contains("no inventory"));
        assert!(bad(&|s| s.shards = Some(0)).contains("--shards 0: must be between 1 and"));
        assert_eq!(resolve(&PlanSettings { shards: Some(4), ..base.clone() }).unwrap().shards, 4);
        assert_eq!(resolve(&base).unwrap().shards, 1);
    }
}
