//! A job of two buckets, each with its own KMS key, end to end against the S3/KMS
//! emulator: `plan --job` writes one checkpoint per bucket, the two runs go side by side,
//! and every object ends up SSE-KMS under its own bucket's key; `status` over both
//! checkpoints counts them by bucket.

use crate::support::{rekey_bin, Moto};
use rekey::cli::demo::bucket::{create_kms_key, populate, write_inventory_of, BucketSpec};
use std::collections::HashMap;
use std::process::{Command, Output};

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    Command::new(rekey_bin()).args(args).envs(moto.env_for_cli()).output().expect("run rekey")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "rekey failed: {}", String::from_utf8_lossy(&o.stderr));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_two_buckets_runs_side_by_side_each_under_its_own_key() {
    let moto = Moto::start();
    let s3 = moto.s3_client().await;
    let kms = moto.kms_client().await;
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::from("state = \"fleet.rekey\"\nkms-share = 0.5\n");
    let mut buckets = Vec::new();
    for (i, bucket) in ["rekey-job-a", "rekey-job-b"].into_iter().enumerate() {
        let key = create_kms_key(&kms, bucket).await.expect("CreateKey");
        let spec = BucketSpec { seed: 10 + i as u64, max_size: 2048, ..BucketSpec::new(bucket, 60 + 30 * i) };
        let seeded = populate(&s3, &spec).await.expect("populate");
        let encrypted: HashMap<String, bool> = seeded.iter().map(|o| (o.key.clone(), o.encrypted)).collect();
        let manifest =
            write_inventory_of(&s3, bucket, &encrypted, &dir.path().join(format!("inv-{bucket}"))).await.unwrap();
        toml.push_str(&format!("\n[[inventories]]\ninventory = \"{}\"\nkms-key = \"{key}\"\n", manifest.display()));
        buckets.push((bucket, key, seeded));
    }
    let job = dir.path().join("fleet.toml");
    std::fs::write(&job, toml).unwrap();
    let plan = ok(rekey(&moto, &["plan", "--job", job.to_str().unwrap(), "--format", "json"]));
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(doc["by_region"].as_array().unwrap().len(), 1);

    // Both checkpoints run at once, as the estimate assumes.
    let states: Vec<String> =
        buckets.iter().map(|(b, _, _)| dir.path().join(format!("fleet.{b}.rekey")).display().to_string()).collect();
    let runs: Vec<std::process::Child> = states
        .iter()
        .map(|s| {
            Command::new(rekey_bin())
                .args(["run", "--state", s, "--quiet"])
                .envs(moto.env_for_cli())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in runs {
        ok(r.wait_with_output().unwrap());
    }

    // Every object is SSE-KMS under its own bucket's key.
    for (bucket, key, seeded) in &buckets {
        for o in seeded {
            let head = s3.head_object().bucket(*bucket).key(&o.key).send().await.expect("HEAD");
            assert_eq!(head.server_side_encryption().map(|s| s.as_str()), Some("aws:kms"), "{bucket}/{}", o.key);
            let got = head.ssekms_key_id().unwrap();
            assert!(rekey::s3::object_store::same_kms_key(got, key), "{bucket}/{}: {got} is not {key}", o.key);
        }
    }

    // status over both: every object done, by bucket.
    let mut args = vec!["status", "--format", "json", "--state"];
    args.extend(states.iter().map(String::as_str));
    let status: serde_json::Value = serde_json::from_slice(&ok(rekey(&moto, &args)).stdout).unwrap();
    let total: usize = buckets.iter().map(|(_, _, s)| s.len()).sum();
    assert_eq!(status["by_status"]["done"].as_u64(), Some(total as u64), "{status}");
    for ((bucket, _, seeded), line) in buckets.iter().zip(status["by_bucket"].as_array().unwrap()) {
        assert_eq!(line["bucket"], *bucket);
        assert_eq!(line["done"].as_u64(), Some(seeded.len() as u64), "{line}");
        assert_eq!(line["to_do"].as_u64(), Some(0));
    }
}
