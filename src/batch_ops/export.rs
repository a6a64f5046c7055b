//! An export: a plan's pending objects written as Batch Operations manifests, one per
//! job, and a CreateJob request beside each. Objects no job can take stay for `rekey run`.

use super::cost::EstimateCosts;
use super::job::{partition_and_region, JobSettings};
use super::manifest::{Manifest, ManifestWriter};
use super::select::{job_name, route, safe_name, LeftForRun, Operation};
use crate::plan::prices::PriceTable;
use crate::plan::stored::StoredPlan;
use crate::store::{Checkpoint, StoreError};
use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{state}: the plan has no KMS key ARN; plan again with --kms-key")]
    NoKmsKey { state: String },
    #[error("the plan does not name its source bucket: pass --report-bucket")]
    NoReportBucket,
    #[error("{0}: not empty; export into a new or empty directory")]
    OutNotEmpty(String),
    #[error("{path}: cannot create the directory")]
    CreateDir {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot create")]
    Create {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: cannot write")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an export reads from the plan.
#[derive(Debug, Clone)]
pub struct ExportSource {
    pub kms_key_arn: String,
    pub prices: PriceTable,
    pub estimate: EstimateCosts,
    /// The key's partition and region, which are the buckets' too.
    pub partition: String,
    pub region: String,
    /// `--report-bucket`, else the plan's source bucket.
    pub report_bucket: String,
}

impl ExportSource {
    pub fn from_plan(plan: &StoredPlan, report_bucket: Option<String>) -> Result<Self, ExportError> {
        let Some(kms_key_arn) = plan.run.kms_key_arn.clone() else {
            return Err(ExportError::NoKmsKey { state: plan.path.display().to_string() });
        };
        let (partition, region) = partition_and_region(&kms_key_arn);
        let report_bucket = report_bucket.or(plan.run.source_bucket.clone()).ok_or(ExportError::NoReportBucket)?;
        Ok(ExportSource {
            kms_key_arn,
            prices: plan.prices.clone(),
            estimate: plan.estimate.clone(),
            partition,
            region,
            report_bucket,
        })
    }
}

/// A new or empty directory to export into: an export never mixes with an earlier one.
pub fn prepare_out_dir(out: &Path) -> Result<(), ExportError> {
    match std::fs::read_dir(out) {
        Ok(mut d) => match d.next() {
            Some(_) => Err(ExportError::OutNotEmpty(out.display().to_string())),
            None => Ok(()),
        },
        Err(_) => std::fs::create_dir_all(out)
            .map_err(|source| ExportError::CreateDir { path: out.display().to_string(), source }),
    }
}

/// The manifests' key prefix in the report bucket, named for the state file.
pub fn manifest_prefix(state: &Path) -> String {
    let stem = state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "rekey".into());
    format!("rekey-batch-ops/{}", safe_name(&stem))
}

/// The manifests written, and the objects left for `rekey run` by reason.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub manifests: Vec<Manifest>,
    pub left_for_run: BTreeMap<LeftForRun, u64>,
}

/// Route every pending object and write it to its job's manifest in `out`.
pub fn write_manifests(cp: &Checkpoint, out: &Path) -> Result<Selection, ExportError> {
    // Copies before updates, then by bucket and class: the order jobs are listed in.
    let mut writers: BTreeMap<(bool, String, Operation), ManifestWriter<BufWriter<std::fs::File>>> = BTreeMap::new();
    let mut left_for_run = BTreeMap::new();
    cp.for_each_todo(|o| -> Result<(), ExportError> {
        let operation = match route(&o) {
            Ok(op) => op,
            Err(why) => {
                *left_for_run.entry(why).or_default() += 1;
                return Ok(());
            }
        };
        let id = (operation == Operation::Update, o.bucket.clone(), operation);
        if !writers.contains_key(&id) {
            let name = job_name(&id.2, &o.bucket);
            let path = out.join(format!("{name}.csv"));
            let w = ManifestWriter::create(out, name, o.bucket.clone(), id.2.clone())
                .map_err(|source| ExportError::Create { path: path.display().to_string(), source })?;
            writers.insert(id.clone(), w);
        }
        let w = writers.get_mut(&id).expect("inserted above");
        w.add(&o).map_err(|source| ExportError::Write { path: format!("{}.csv", w.name()), source })
    })?;
    let manifests = writers
        .into_values()
        .map(|w| {
            let name = w.name().to_string();
            w.finish().map_err(|source| ExportError::Write { path: format!("{name}.csv"), source })
        })
        .collect::<Result<_, _>>()?;
    Ok(Selection { manifests, left_for_run })
}

/// A job written to disk: its manifest and its CreateJob request.
#[derive(Debug, Clone)]
pub struct WrittenJob {
    pub name: String,
    /// The manifest file.
    pub csv: PathBuf,
    /// The request file, `NAME.job.json`.
    pub job: PathBuf,
    /// The manifest's key in the report bucket.
    pub manifest_key: String,
    pub request: serde_json::Value,
    pub manifest: Manifest,
}

/// Build each manifest's CreateJob request and write it beside the manifest.
pub fn write_job_requests(
    settings: &JobSettings,
    manifests: Vec<Manifest>,
    out: &Path,
) -> Result<Vec<WrittenJob>, ExportError> {
    manifests
        .into_iter()
        .map(|manifest| {
            let request = settings.request(&manifest);
            let job = out.join(format!("{}.job.json", manifest.name));
            let body = serde_json::to_string_pretty(&request).expect("a JSON value serializes") + "\n";
            crate::private_file::create_private(&job)
                .and_then(|mut f| f.write_all(body.as_bytes()))
                .map_err(|source| ExportError::Write { path: job.display().to_string(), source })?;
            Ok(WrittenJob {
                name: manifest.name.clone(),
                csv: manifest.path.clone(),
                job,
                manifest_key: settings.manifest_key(&manifest),
                request,
                manifest,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_ops::job::tests::settings;
    use crate::store::RunRecord;

    #[test]
    fn the_out_dir_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b");
        prepare_out_dir(&fresh).unwrap();
        assert!(fresh.is_dir());
        prepare_out_dir(&fresh).unwrap();
        std::fs::write(fresh.join("x.csv"), "").unwrap();
        assert!(matches!(prepare_out_dir(&fresh), Err(ExportError::OutNotEmpty(_))));
    }

    #[test]
    fn the_prefix_is_named_for_the_state_file() {
        assert_eq!(manifest_prefix(Path::new("/tmp/my plan.sqlite")), "rekey-batch-ops/my_plan");
        assert_eq!(manifest_prefix(Path::new("")), "rekey-batch-ops/rekey");
    }

    #[test]
    fn a_plan_without_a_key_or_a_bucket_cannot_be_exported() {
        let mut plan = StoredPlan {
            path: "p.sqlite".into(),
            run: RunRecord {
                inventory_source: "s3://inv/manifest.json".into(),
                inventory_created: None,
                source_bucket: None,
                kms_key_arn: None,
                options_json: "{}".into(),
                prices_json: "{}".into(),
                estimate_json: "{}".into(),
            },
            settings: Default::default(),
            prices: PriceTable::default(),
            estimate: Default::default(),
        };
        let err = ExportSource::from_plan(&plan, None).unwrap_err();
        assert_eq!(err.to_string(), "p.sqlite: the plan has no KMS key ARN; plan again with --kms-key");
        plan.run.kms_key_arn = Some(crate::batch_ops::job::tests::KEY.into());
        assert!(matches!(ExportSource::from_plan(&plan, None), Err(ExportError::NoReportBucket)));
        plan.run.source_bucket = Some("src-bucket".into());
        let s = ExportSource::from_plan(&plan, None).unwrap();
        assert_eq!(
            (s.partition.as_str(), s.region.as_str(), s.report_bucket.as_str()),
            ("aws-us-gov", "us-gov-west-1", "src-bucket")
        );
        let s = ExportSource::from_plan(&plan, Some("reports".into())).unwrap();
        assert_eq!(s.report_bucket, "reports");
    }

    #[test]
    fn each_manifest_gets_a_request_file_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = crate::batch_ops::job::tests::manifest(Operation::Update);
        m.name = "update-src-bucket".into();
        m.path = dir.path().join("update-src-bucket.csv");
        let jobs = write_job_requests(&settings(), vec![m], dir.path()).unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].manifest_key, "rekey-batch-ops/job/update-src-bucket.csv");
        assert_eq!(jobs[0].job, dir.path().join("update-src-bucket.job.json"));
        let on_disk: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&jobs[0].job).unwrap()).unwrap();
        assert_eq!(on_disk, jobs[0].request);
    }
}
