//! `--inventory s3://…/manifest.json`, read through aws-sdk-s3 from moto.

use crate::support::Moto;
use rekey::inventory::synthetic::{demo_rows, write_inventory, InventorySpec};
use std::path::Path;
use std::process::{Command, Output};

const CREATED: i64 = 1_764_000_000_000;

/// Upload every file under `root` to `bucket`, keyed by its path below `root`.
async fn upload_tree(client: &aws_sdk_s3::Client, bucket: &str, root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let key = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                let body = aws_sdk_s3::primitives::ByteStream::from(std::fs::read(&path).unwrap());
                client.put_object().bucket(bucket).key(&key).body(body).send().await.unwrap();
            }
        }
    }
}

fn rekey(moto: &Moto, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rekey"));
    cmd.args(args);
    for (k, v) in moto.env_for_cli() {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn estimate_streams_an_inventory_from_s3() {
    let moto = Moto::start();
    let client = moto.s3_client().await;
    client.create_bucket().bucket("inventory-dest").send().await.unwrap();

    let local = tempfile::tempdir().unwrap();
    let spec = InventorySpec { data_files: 3, ..InventorySpec::new(local.path(), "src-bucket", CREATED) };
    let manifest = write_inventory(&spec, demo_rows("src-bucket", 4000, 2, CREATED, 9)).unwrap();
    upload_tree(&client, "inventory-dest", local.path()).await;
    let manifest_key = manifest.strip_prefix(local.path()).unwrap().to_string_lossy().into_owned();
    let url = format!("s3://inventory-dest/{manifest_key}");

    // The same inventory read locally and from S3 gives the same estimate.
    let from_s3 = rekey(&moto, &["estimate", "--inventory", &url, "--format", "json"]);
    assert!(from_s3.status.success(), "{}", String::from_utf8_lossy(&from_s3.stderr));
    let local_run = rekey(&moto, &["estimate", "--inventory", manifest.to_str().unwrap(), "--format", "json"]);
    let a: serde_json::Value = serde_json::from_slice(&from_s3.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&local_run.stdout).unwrap();
    assert_eq!(a["inventory"]["rows"], 4000);
    assert_eq!(a["inventory"]["files"], 3);
    assert_eq!(a["objects"], b["objects"]);
    assert_eq!(a["requests"], b["requests"]);
    assert_eq!(a["cost_usd"], b["cost_usd"]);

    // A tampered data file in the bucket: the MD5 check catches it.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let data_key = m["files"][1]["key"].as_str().unwrap().to_string();
    let mut bytes = std::fs::read(local.path().join(&data_key)).unwrap();
    let n = bytes.len();
    bytes.swap(n / 2, n / 2 + 1);
    bytes[n / 3] ^= 1;
    client.put_object().bucket("inventory-dest").key(&data_key).body(bytes.into()).send().await.unwrap();
    let out = rekey(&moto, &["estimate", "--inventory", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("s3://inventory-dest/{data_key}")), "{err}");
    assert!(err.contains("MD5") || err.contains("cannot read"), "{err}");

    // A data file missing from the bucket.
    client.delete_object().bucket("inventory-dest").key(&data_key).send().await.unwrap();
    let out = rekey(&moto, &["estimate", "--inventory", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("no such object"), "{err}");

    // A manifest that is not there.
    let out = rekey(&moto, &["estimate", "--inventory", "s3://inventory-dest/nope/manifest.json"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such object"));
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_operations_manifest_from_s3() {
    let moto = Moto::start();
    let client = moto.s3_client().await;
    client.create_bucket().bucket("manifests").send().await.unwrap();
    let body = "data-bucket,a+b%2Bc%25.txt,null\ndata-bucket,k2,v2\n";
    client
        .put_object()
        .bucket("manifests")
        .key("job/manifest.csv")
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let out = rekey(
        &moto,
        &[
            "estimate",
            "--inventory",
            "s3://manifests/job/manifest.csv",
            "--assume-encryption",
            "SSE-S3",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["objects"]["by_method"]["update"], 2);
}

/// Parquet and ORC data files need their footer first, so from S3 they are spooled to a
/// temporary file, verified, then read: the estimate is the local one's, and a file
/// changed in the bucket is refused by its MD5 before a row of it is used.
#[tokio::test(flavor = "multi_thread")]
async fn parquet_and_orc_inventories_from_s3() {
    use rekey::inventory::FileFormat;
    let moto = Moto::start();
    let client = moto.s3_client().await;
    client.create_bucket().bucket("inventory-dest").send().await.unwrap();
    for format in [FileFormat::Parquet, FileFormat::Orc] {
        let local = tempfile::tempdir().unwrap();
        let spec = InventorySpec {
            data_files: 2,
            format,
            dest_prefix: format!("inv-{}", format.as_str()),
            ..InventorySpec::new(local.path(), "src-bucket", CREATED)
        };
        let manifest = write_inventory(&spec, demo_rows("src-bucket", 3000, 2, CREATED, 5)).unwrap();
        upload_tree(&client, "inventory-dest", local.path()).await;
        let manifest_key = manifest.strip_prefix(local.path()).unwrap().to_string_lossy().into_owned();
        let url = format!("s3://inventory-dest/{manifest_key}");

        let from_s3 = rekey(&moto, &["estimate", "--inventory", &url, "--format", "json"]);
        assert!(from_s3.status.success(), "{format:?}: {}", String::from_utf8_lossy(&from_s3.stderr));
        let local_run = rekey(&moto, &["estimate", "--inventory", manifest.to_str().unwrap(), "--format", "json"]);
        let a: serde_json::Value = serde_json::from_slice(&from_s3.stdout).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&local_run.stdout).unwrap();
        assert_eq!(a["inventory"]["rows"], 3000, "{format:?}");
        assert_eq!(a["inventory"]["files"], 2);
        assert_eq!(a["objects"], b["objects"], "{format:?}");
        assert_eq!(a["cost_usd"], b["cost_usd"], "{format:?}");

        // One byte changed in the middle (the footer, and so the file, still reads).
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let data_key = m["files"][0]["key"].as_str().unwrap().to_string();
        let mut bytes = std::fs::read(local.path().join(&data_key)).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        client.put_object().bucket("inventory-dest").key(&data_key).body(bytes.into()).send().await.unwrap();
        let out = rekey(&moto, &["estimate", "--inventory", &url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("s3://inventory-dest/{data_key}: MD5 is ")), "{err}");
    }
}
