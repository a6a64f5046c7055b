//! CreateJob requests, in the `aws s3control create-job --cli-input-json` shape: what is
//! written to `NAME.job.json` is what `--submit` sends, so a person can submit either way.

use super::manifest::Manifest;
use super::select::Operation;
use serde_json::{json, Value};

/// What every job of one export shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    pub account_id: String,
    pub role_arn: String,
    pub priority: i32,
    pub kms_key_arn: String,
    pub bucket_key: bool,
    /// The key's partition (aws, aws-cn, aws-us-gov), which is the buckets' too.
    pub partition: String,
    /// Where the manifests are uploaded and the completion reports go.
    pub report_bucket: String,
    /// The key prefix of the manifests in the report bucket (`rekey-batch-ops/STEM`).
    pub prefix: String,
}

/// A KMS key ARN's partition and region (`arn:PARTITION:kms:REGION:…`), defaulting to
/// AWS's commercial partition and us-east-1 for anything shorter.
pub fn partition_and_region(key_arn: &str) -> (String, String) {
    let mut parts = key_arn.split(':');
    let partition = parts.nth(1).unwrap_or("aws").to_string();
    let region = parts.nth(1).unwrap_or("us-east-1").to_string();
    (partition, region)
}

impl JobSettings {
    /// Where `manifest` is uploaded, as a key of the report bucket.
    pub fn manifest_key(&self, manifest: &Manifest) -> String {
        format!("{}/{}.csv", self.prefix, manifest.name)
    }

    /// The CreateJob request for `manifest`, naming the manifest's MD5 as its ETag (the
    /// ETag of a single-part upload; `--submit` puts the ETag S3 answers in its place).
    pub fn request(&self, manifest: &Manifest) -> Value {
        let (partition, name, etag) = (&self.partition, &manifest.name, &manifest.md5);
        json!({
            "AccountId": self.account_id,
            "ConfirmationRequired": true,
            "Operation": self.operation(&manifest.operation, &manifest.bucket),
            "Report": {
                "Bucket": format!("arn:{partition}:s3:::{}", self.report_bucket),
                "Format": "Report_CSV_20180820",
                "Enabled": true,
                "Prefix": format!("{}/reports/{name}", self.prefix),
                "ReportScope": "AllTasks",
            },
            // The same manifest gives the same token: a repeated create-job is not a second job.
            "ClientRequestToken": format!("rekey-{etag}"),
            "Manifest": {
                "Spec": { "Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key", "VersionId"] },
                "Location": {
                    "ObjectArn": format!("arn:{partition}:s3:::{}/{}", self.report_bucket, self.manifest_key(manifest)),
                    "ETag": etag,
                },
            },
            "Description": format!(
                "rekey: {} of {} objects in {}",
                manifest.operation.label(),
                manifest.objects,
                manifest.bucket
            ),
            "Priority": self.priority,
            "RoleArn": self.role_arn,
        })
    }

    /// The request's `Operation`: encryption updated in place, or a copy onto itself that
    /// keeps the metadata and sets the storage class (else it would become STANDARD).
    fn operation(&self, operation: &Operation, bucket: &str) -> Value {
        match operation {
            Operation::Update => json!({
                "S3UpdateObjectEncryption": {
                    "ObjectEncryption": { "SSEKMS": { "KMSKeyArn": self.kms_key_arn, "BucketKeyEnabled": self.bucket_key } }
                }
            }),
            Operation::Copy { storage_class } => json!({
                "S3PutObjectCopy": {
                    "TargetResource": format!("arn:{}:s3:::{bucket}", self.partition),
                    "MetadataDirective": "COPY",
                    "NewObjectMetadata": { "SSEAlgorithm": "KMS" },
                    "SSEAwsKmsKeyId": self.kms_key_arn,
                    "BucketKeyEnabled": self.bucket_key,
                    "StorageClass": storage_class,
                }
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const KEY: &str = "arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    pub const ROLE: &str = "arn:aws-us-gov:iam::111122223333:role/batch-rekey";

    pub fn settings() -> JobSettings {
        let (partition, _) = partition_and_region(KEY);
        JobSettings {
            account_id: "111122223333".into(),
            role_arn: ROLE.into(),
            priority: 42,
            kms_key_arn: KEY.into(),
            bucket_key: true,
            partition,
            report_bucket: "reports-bucket".into(),
            prefix: "rekey-batch-ops/job".into(),
        }
    }

    pub fn manifest(operation: Operation) -> Manifest {
        let mut m =
            Manifest::empty("copy-src-bucket-GLACIER_IR".into(), "src-bucket".into(), operation, "x.csv".into());
        m.objects = 3;
        m.md5 = "0123456789abcdef0123456789abcdef".into();
        m
    }

    #[test]
    fn the_partition_and_region_come_from_the_key_arn() {
        assert_eq!(partition_and_region(KEY), ("aws-us-gov".to_string(), "us-gov-west-1".to_string()));
        assert_eq!(partition_and_region("alias/x"), ("aws".to_string(), "us-east-1".to_string()));
    }

    #[test]
    fn a_copy_job_request_names_the_role_report_manifest_and_key() {
        let req = settings().request(&manifest(Operation::Copy { storage_class: "GLACIER_IR".into() }));
        assert_eq!(req["AccountId"], "111122223333");
        assert_eq!(req["RoleArn"], ROLE);
        assert_eq!(req["Priority"], 42);
        assert_eq!(req["ConfirmationRequired"], true);
        assert_eq!(req["ClientRequestToken"], "rekey-0123456789abcdef0123456789abcdef");
        assert_eq!(req["Description"], "rekey: Copy of 3 objects in src-bucket");
        assert_eq!(req["Report"]["Bucket"], "arn:aws-us-gov:s3:::reports-bucket");
        assert_eq!(req["Report"]["Prefix"], "rekey-batch-ops/job/reports/copy-src-bucket-GLACIER_IR");
        assert_eq!(req["Report"]["ReportScope"], "AllTasks");
        assert_eq!(
            req["Manifest"]["Location"],
            json!({
                "ObjectArn": "arn:aws-us-gov:s3:::reports-bucket/rekey-batch-ops/job/copy-src-bucket-GLACIER_IR.csv",
                "ETag": "0123456789abcdef0123456789abcdef",
            })
        );
        assert_eq!(
            req["Operation"],
            json!({ "S3PutObjectCopy": {
                "TargetResource": "arn:aws-us-gov:s3:::src-bucket",
                "MetadataDirective": "COPY",
                "NewObjectMetadata": { "SSEAlgorithm": "KMS" },
                "SSEAwsKmsKeyId": KEY,
                "BucketKeyEnabled": true,
                "StorageClass": "GLACIER_IR",
            }})
        );
    }

    #[test]
    fn an_update_job_request_sets_the_key_and_bucket_key_in_place() {
        let mut s = settings();
        s.bucket_key = false;
        let req = s.request(&manifest(Operation::Update));
        assert_eq!(
            req["Operation"],
            json!({ "S3UpdateObjectEncryption": { "ObjectEncryption": { "SSEKMS": { "KMSKeyArn": KEY, "BucketKeyEnabled": false } } } })
        );
        assert_eq!(req["Description"], "rekey: UpdateObjectEncryption of 3 objects in src-bucket");
    }
}
