//! `export --submit`: upload each manifest, put the ETag S3 gave it into its job request
//! (and its `.job.json`), and create the job with S3 Control CreateJob.

use super::export::WrittenJob;
use anyhow::{bail, Context, Result};
use aws_sdk_s3control::types as t;
use serde_json::Value;

/// Where the jobs go: the S3 Control endpoint and the bucket the manifests are uploaded to.
pub struct SubmitTarget<'a> {
    pub s3: &'a crate::s3::S3Settings,
    pub region: &'a str,
    pub s3control_endpoint_url: Option<&'a str>,
    pub bucket: &'a str,
}

/// Submit every job in order; (job name, JobId) of each. A bucket with default SSE-KMS
/// encryption gives an ETag that is not the MD5, hence the ETag S3 answers is the one used.
pub async fn submit(target: &SubmitTarget<'_>, jobs: &mut [WrittenJob]) -> Result<Vec<(String, String)>> {
    let client = crate::s3::build_client(target.s3).await?;
    let control = crate::s3::build_control_client(target.s3, target.region, target.s3control_endpoint_url).await?;
    let mut ids = Vec::new();
    for job in jobs.iter_mut() {
        let etag = upload_manifest(&client, target.bucket, job)
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}{}", created_so_far(&ids)))?;
        job.request["Manifest"]["Location"]["ETag"] = etag.into();
        std::fs::write(&job.job, serde_json::to_string_pretty(&job.request)? + "\n")
            .with_context(|| format!("{}: cannot write", job.job.display()))?;
        let out = create_job(&control, &job.request)
            .with_context(|| format!("{}{}", job.job.display(), created_so_far(&ids)))?
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "CreateJob for {}: {}{}",
                    job.name,
                    aws_sdk_s3control::error::DisplayErrorContext(&e),
                    created_so_far(&ids)
                )
            })?;
        let id = out.job_id().unwrap_or_default().to_string();
        if id.is_empty() {
            bail!("CreateJob for {}: the answer has no JobId{}", job.name, created_so_far(&ids));
        }
        ids.push((job.name.clone(), id));
    }
    Ok(ids)
}

/// PutObject the manifest; the ETag S3 answers, unquoted.
async fn upload_manifest(client: &aws_sdk_s3::Client, bucket: &str, job: &WrittenJob) -> Result<String> {
    let body = aws_sdk_s3::primitives::ByteStream::from_path(&job.csv)
        .await
        .with_context(|| format!("{}: cannot read", job.csv.display()))?;
    let put =
        client.put_object().bucket(bucket).key(&job.manifest_key).content_type("text/csv").body(body).send().await;
    let put = put.map_err(|e| {
        anyhow::anyhow!(
            "uploading {} to s3://{bucket}/{}: {}",
            job.csv.display(),
            job.manifest_key,
            aws_sdk_s3::error::DisplayErrorContext(&e)
        )
    })?;
    put.e_tag()
        .map(|t| t.trim_matches('"').to_string())
        .filter(|t| !t.is_empty())
        .with_context(|| format!("s3://{bucket}/{}: PutObject returned no ETag", job.manifest_key))
}

/// For an error part-way through: the jobs already created.
fn created_so_far(ids: &[(String, String)]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ids.iter().map(|(n, id)| format!("{n} = {id}")).collect();
    format!(" (jobs already created: {}; running the export again creates no duplicate)", list.join(", "))
}

fn text(v: &Value, field: &str) -> Result<String> {
    v.as_str().map(str::to_string).with_context(|| format!("field {field}: missing or not a string"))
}

fn flag(v: &Value) -> bool {
    v.as_bool().unwrap_or(false)
}

/// The CreateJob call for a request as written to `.job.json`, so that what is submitted
/// is what is on disk.
pub fn create_job(
    control: &aws_sdk_s3control::Client,
    req: &Value,
) -> Result<aws_sdk_s3control::operation::create_job::builders::CreateJobFluentBuilder> {
    Ok(control
        .create_job()
        .account_id(text(&req["AccountId"], "AccountId")?)
        .confirmation_required(flag(&req["ConfirmationRequired"]))
        .operation(job_operation(&req["Operation"])?)
        .report(job_report(&req["Report"])?)
        .client_request_token(text(&req["ClientRequestToken"], "ClientRequestToken")?)
        .manifest(job_manifest(&req["Manifest"])?)
        .description(text(&req["Description"], "Description")?)
        .priority(req["Priority"].as_i64().context("field Priority: missing")? as i32)
        .role_arn(text(&req["RoleArn"], "RoleArn")?))
}

fn job_operation(op: &Value) -> Result<t::JobOperation> {
    if let Some(u) = op.get("S3UpdateObjectEncryption") {
        let k = &u["ObjectEncryption"]["SSEKMS"];
        let ssekms = t::S3UpdateObjectEncryptionSsekms::builder()
            .kms_key_arn(text(&k["KMSKeyArn"], "Operation.S3UpdateObjectEncryption.ObjectEncryption.SSEKMS.KMSKeyArn")?)
            .bucket_key_enabled(flag(&k["BucketKeyEnabled"]))
            .build()?;
        let update = t::S3UpdateObjectEncryptionOperation::builder()
            .object_encryption(t::ObjectEncryption::builder().ssekms(ssekms).build())
            .build();
        Ok(t::JobOperation::builder().s3_update_object_encryption(update).build())
    } else if let Some(c) = op.get("S3PutObjectCopy") {
        let f = |name: &str| text(&c[name], &format!("Operation.S3PutObjectCopy.{name}"));
        let sse =
            text(&c["NewObjectMetadata"]["SSEAlgorithm"], "Operation.S3PutObjectCopy.NewObjectMetadata.SSEAlgorithm")?;
        let copy = t::S3CopyObjectOperation::builder()
            .target_resource(f("TargetResource")?)
            .metadata_directive(t::S3MetadataDirective::from(f("MetadataDirective")?.as_str()))
            .new_object_metadata(
                t::S3ObjectMetadata::builder().sse_algorithm(t::S3SseAlgorithm::from(sse.as_str())).build(),
            )
            .sse_aws_kms_key_id(f("SSEAwsKmsKeyId")?)
            .bucket_key_enabled(flag(&c["BucketKeyEnabled"]))
            .storage_class(t::S3StorageClass::from(f("StorageClass")?.as_str()))
            .build();
        Ok(t::JobOperation::builder().s3_put_object_copy(copy).build())
    } else {
        bail!("field Operation: neither S3UpdateObjectEncryption nor S3PutObjectCopy");
    }
}

fn job_report(r: &Value) -> Result<t::JobReport> {
    Ok(t::JobReport::builder()
        .bucket(text(&r["Bucket"], "Report.Bucket")?)
        .format(t::JobReportFormat::from(text(&r["Format"], "Report.Format")?.as_str()))
        .enabled(flag(&r["Enabled"]))
        .prefix(text(&r["Prefix"], "Report.Prefix")?)
        .report_scope(t::JobReportScope::from(text(&r["ReportScope"], "Report.ReportScope")?.as_str()))
        .build())
}

fn job_manifest(m: &Value) -> Result<t::JobManifest> {
    let fields = m["Spec"]["Fields"]
        .as_array()
        .context("field Manifest.Spec.Fields: missing")?
        .iter()
        .map(|f| text(f, "Manifest.Spec.Fields").map(|f| t::JobManifestFieldName::from(f.as_str())))
        .collect::<Result<Vec<_>>>()?;
    let spec = t::JobManifestSpec::builder()
        .format(t::JobManifestFormat::from(text(&m["Spec"]["Format"], "Manifest.Spec.Format")?.as_str()))
        .set_fields(Some(fields))
        .build()?;
    let location = t::JobManifestLocation::builder()
        .object_arn(text(&m["Location"]["ObjectArn"], "Manifest.Location.ObjectArn")?)
        .e_tag(text(&m["Location"]["ETag"], "Manifest.Location.ETag")?)
        .build()?;
    Ok(t::JobManifest::builder().spec(spec).location(location).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch_ops::job::tests::{manifest, settings, KEY, ROLE};
    use crate::batch_ops::select::Operation;

    fn control() -> aws_sdk_s3control::Client {
        let conf = aws_sdk_s3control::Config::builder()
            .behavior_version(aws_sdk_s3control::config::BehaviorVersion::latest())
            .region(aws_sdk_s3control::config::Region::new("us-east-1"))
            .build();
        aws_sdk_s3control::Client::from_conf(conf)
    }

    #[test]
    fn the_submitted_request_is_the_written_one() {
        let req = settings().request(&manifest(Operation::Copy { storage_class: "GLACIER_IR".into() }));
        let call = create_job(&control(), &req).unwrap();
        let input = call.as_input();
        assert_eq!(input.get_account_id().as_deref(), Some("111122223333"));
        assert_eq!(input.get_role_arn().as_deref(), Some(ROLE));
        assert_eq!(input.get_priority(), &Some(42));
        assert_eq!(input.get_confirmation_required(), &Some(true));
        let copy = input.get_operation().as_ref().unwrap().s3_put_object_copy().unwrap();
        assert_eq!(copy.sse_aws_kms_key_id(), Some(KEY));
        assert!(copy.bucket_key_enabled());
        assert_eq!(copy.storage_class(), Some(&t::S3StorageClass::GlacierIr));
        let location = input.get_manifest().as_ref().unwrap().location().unwrap();
        assert_eq!(location.e_tag(), "0123456789abcdef0123456789abcdef");
        let report = input.get_report().as_ref().unwrap();
        assert_eq!(report.bucket(), Some("arn:aws-us-gov:s3:::reports-bucket"));
    }

    #[test]
    fn a_request_missing_a_field_is_refused_naming_it() {
        let mut req = settings().request(&manifest(Operation::Update));
        req["Report"].as_object_mut().unwrap().remove("Prefix");
        let err = create_job(&control(), &req).unwrap_err();
        assert_eq!(err.to_string(), "field Report.Prefix: missing or not a string");
    }
}
