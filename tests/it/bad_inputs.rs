//! The bad-input catalogue: `rekey plan` on every inventory under `tests/bad-inputs/`.
//!
//! Each sub-folder is one case: a `manifest.json` and its data files, flat or laid out as
//! S3 delivers them (see `tests/bad-inputs/README.md`). [`CASES`] gives each its expected
//! outcome: a checkpoint with an exact number of rows, or exit 1 with exactly one line on
//! stderr that contains every expected fragment (the file, and the row, line and field
//! where there is one), no panic, and nothing left beside `--state`.
//!
//! The folders are committed; [`regenerate`] wrote them and rewrites them:
//! `cargo test --release --test it -- --ignored bad_inputs::regenerate`.

use crate::support::plan_args;
use flate2::write::GzEncoder;
use rekey::inventory::keys::encode_form_key;
use rekey::inventory::manifest::md5_hex;
use rekey::inventory::synthetic::{columnar_data_file, columnar_file_schema, FULL_SCHEMA};
use rekey::inventory::FileFormat;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KMS_KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/bad-inputs");
/// The destination-bucket prefix of every data file key (`files[].key`).
const DATA_PREFIX: &str = "inventory/src-bucket/daily/data";
/// 2025-11-24T16:00:00Z, the manifest's `creationTimestamp`.
const CREATED_MS: i64 = 1_764_000_000_000;

enum Expect {
    /// Exit 0 and a checkpoint of `rows` objects, among them every one of `keys`.
    Plans { rows: i64, keys: &'static [&'static str] },
    /// Exit 1 and one stderr line containing every fragment.
    Fails(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    /// Flags after `plan --inventory M --kms-key K --state S`.
    args: &'static [&'static str],
    expect: Expect,
}

use Expect::{Fails, Plans};

const CASES: &[Case] = &[
    // Data files: transport and integrity.
    Case {
        name: "truncated-gzip",
        args: &["--no-verify"],
        expect: Fails(&["truncated-gzip/part-0.csv.gz: cannot read: ", "(truncated, or not gzip?)"]),
    },
    Case {
        name: "not-gzip",
        args: &[],
        expect: Fails(&["not-gzip/part-0.csv.gz: cannot read: invalid gzip header (truncated, or not gzip?)"]),
    },
    Case {
        name: "trailing-garbage-after-gzip",
        args: &[],
        expect: Fails(&["trailing-garbage-after-gzip/part-0.csv.gz: cannot read: "]),
    },
    Case {
        name: "zero-byte-gzip",
        args: &[],
        expect: Fails(&["zero-byte-gzip/part-0.csv.gz: cannot read: unexpected end of file (truncated, or not gzip?)"]),
    },
    Case {
        name: "md5-mismatch",
        args: &[],
        expect: Fails(&["md5-mismatch/part-0.csv.gz: MD5 is ", " but the manifest says 0123456789abcdef0123456789abcdef"]),
    },
    Case {
        name: "size-mismatch",
        args: &[],
        expect: Fails(&["size-mismatch/part-0.csv.gz: size is ", " bytes but the manifest says ", "(incomplete download?)"]),
    },
    Case {
        name: "missing-data-file",
        args: &[],
        expect: Fails(&["data file inventory/src-bucket/daily/data/part-1.csv.gz not found; tried: "]),
    },
    // The manifest.
    Case {
        name: "manifest-not-json",
        args: &[],
        expect: Fails(&["manifest-not-json/manifest.json: not a valid inventory manifest: expected value at line 1 column 1"]),
    },
    Case {
        name: "manifest-missing-files",
        args: &[],
        expect: Fails(&["manifest-missing-files/manifest.json: not a valid inventory manifest: missing field `files`"]),
    },
    Case {
        name: "empty-file-schema",
        args: &[],
        expect: Fails(&["empty-file-schema/manifest.json: field fileSchema: fileSchema is empty"]),
    },
    Case {
        name: "unknown-file-format",
        args: &[],
        expect: Fails(&["unknown-file-format/manifest.json: field fileFormat: unknown format 'TSV'"]),
    },
    Case {
        name: "no-encryption-column",
        args: &[],
        expect: Fails(&["no-encryption-column/manifest.json: fileSchema has no EncryptionStatus column", "--assume-encryption"]),
    },
    Case {
        name: "bad-md5-in-manifest",
        args: &[],
        expect: Fails(&["bad-md5-in-manifest/manifest.json: field files: entry 1 (", "MD5checksum 'd41d8cd98f00' is not 32 hex digits"]),
    },
    // Rows.
    Case {
        name: "too-few-columns",
        args: &[],
        expect: Fails(&["too-few-columns/part-0.csv.gz: row 2 (line 2): field (row): expected 18 columns (fileSchema), found 17"]),
    },
    Case {
        name: "too-many-columns",
        args: &[],
        expect: Fails(&["too-many-columns/part-0.csv.gz: row 3 (line 3): field (row): expected 18 columns (fileSchema), found 19"]),
    },
    Case {
        name: "non-numeric-size",
        args: &[],
        expect: Fails(&["non-numeric-size/part-0.csv.gz: row 2 (line 2): field Size: 'ten' is not a whole number of bytes"]),
    },
    Case {
        name: "negative-size",
        args: &[],
        expect: Fails(&["negative-size/part-0.csv.gz: row 1 (line 1): field Size: '-5' is not a whole number of bytes"]),
    },
    Case {
        name: "bad-date",
        args: &[],
        expect: Fails(&["bad-date/part-0.csv.gz: row 3 (line 3): field LastModifiedDate: '2025-02-30T10:00:00.000Z' is not an RFC 3339 date"]),
    },
    Case {
        name: "unknown-encryption-status",
        args: &[],
        expect: Fails(&["unknown-encryption-status/part-0.csv.gz: row 2 (line 2): field EncryptionStatus: unknown encryption status 'AES256'"]),
    },
    Case {
        name: "invalid-percent-encoding",
        args: &[],
        expect: Fails(&["invalid-percent-encoding/part-0.csv.gz: row 2 (line 2): field Key: invalid percent-encoding '%.t' at byte 11"]),
    },
    Case {
        name: "invalid-utf8-after-decoding",
        args: &[],
        expect: Fails(&["invalid-utf8-after-decoding/part-0.csv.gz: row 2 (line 2): field Key: not valid UTF-8 after decoding (byte 5)"]),
    },
    Case {
        name: "key-1025-bytes",
        args: &[],
        expect: Fails(&["key-1025-bytes/part-0.csv.gz: row 2 (line 2): field Key: key is 1025 bytes long; S3 keys are at most 1,024 bytes"]),
    },
    Case {
        name: "empty-key",
        args: &[],
        expect: Fails(&["empty-key/part-0.csv.gz: row 1 (line 1): field Key: key is empty"]),
    },
    Case {
        name: "bad-row-after-multiline-record",
        args: &[],
        expect: Fails(&["bad-row-after-multiline-record/part-0.csv.gz: row 2 (line 3): field Size: 'ten' is not a whole number of bytes"]),
    },
    Case {
        name: "bad-row-after-blank-lines",
        args: &[],
        expect: Fails(&["bad-row-after-blank-lines/part-0.csv.gz: row 2 (line 4): field Size: 'ten' is not a whole number of bytes"]),
    },
    Case {
        name: "bad-row-crlf-line-endings",
        args: &[],
        expect: Fails(&["bad-row-crlf-line-endings/part-0.csv.gz: row 3 (line 3): field Size: 'ten' is not a whole number of bytes"]),
    },
    Case {
        name: "unterminated-quote",
        args: &[],
        expect: Fails(&["unterminated-quote/part-0.csv.gz: row 2 (line 2): field (row): expected 18 columns (fileSchema), found 2"]),
    },
    Case {
        name: "bad-row-in-second-file",
        args: &[],
        expect: Fails(&["bad-row-in-second-file/part-1.csv.gz: row 2 (line 2): field IsLatest: 'yes' is not true or false"]),
    },
    // Valid, however odd.
    Case {
        name: "valid-s3-layout",
        args: &[],
        expect: Plans { rows: 5, keys: &["logs/app/0001.log", "a b+c%.txt", "données/été 2025.csv"] },
    },
    Case { name: "key-with-crlf", args: &[], expect: Plans { rows: 3, keys: &["notes/line one\r\nline two.txt", "notes/lf\nonly.txt"] } },
    Case { name: "key-1024-bytes", args: &[], expect: Plans { rows: 3, keys: &[] } },
    Case { name: "bom", args: &[], expect: Plans { rows: 3, keys: &["logs/app/0001.log"] } },
    Case { name: "crlf-line-endings", args: &[], expect: Plans { rows: 3, keys: &["logs/app/0001.log", "logs/app/0003.log"] } },
    Case { name: "concatenated-gzip-members", args: &[], expect: Plans { rows: 4, keys: &["logs/app/0004.log"] } },
    Case { name: "uncompressed-csv", args: &[], expect: Plans { rows: 3, keys: &[] } },
    Case { name: "empty-data-file", args: &[], expect: Plans { rows: 0, keys: &[] } },
    Case { name: "zero-row-manifest", args: &[], expect: Plans { rows: 0, keys: &[] } },
    // Parquet and ORC inventories (fileFormat decides how a data file is read, not its name).
    Case {
        name: "parquet-truncated",
        args: &["--no-verify"],
        expect: Fails(&["parquet-truncated/part-0.parquet: truncated Parquet file: it does not end with the magic number PAR1"]),
    },
    Case {
        name: "parquet-size-mismatch",
        args: &[],
        expect: Fails(&["parquet-size-mismatch/part-0.parquet: size is ", " bytes but the manifest says "]),
    },
    Case {
        name: "parquet-wrong-magic",
        args: &[],
        expect: Fails(&["parquet-wrong-magic/part-0.parquet: not a Parquet file: it does not start with the magic number PAR1"]),
    },
    Case {
        name: "parquet-that-is-csv",
        args: &[],
        expect: Fails(&["parquet-that-is-csv/part-0.parquet: not a Parquet file: it does not start with the magic number PAR1 (it is gzip: a CSV data file?)"]),
    },
    Case {
        name: "parquet-md5-mismatch",
        args: &[],
        expect: Fails(&["parquet-md5-mismatch/part-0.parquet: MD5 is ", " but the manifest says 0123456789abcdef0123456789abcdef"]),
    },
    Case {
        name: "parquet-no-key-column",
        args: &[],
        expect: Fails(&["parquet-no-key-column/part-0.parquet: has no column 'key', which the manifest's fileSchema lists"]),
    },
    Case {
        name: "parquet-schema-without-key",
        args: &[],
        expect: Fails(&["parquet-schema-without-key/manifest.json: field fileSchema: fileSchema lacks the required column 'key'"]),
    },
    Case {
        name: "parquet-wrong-column-type",
        args: &[],
        expect: Fails(&["parquet-wrong-column-type/part-0.parquet: column size is Utf8, expected an integer"]),
    },
    Case {
        name: "parquet-bad-row",
        args: &[],
        expect: Fails(&["parquet-bad-row/part-0.parquet: row 2: field encryption_status: unknown encryption status 'AES256'"]),
    },
    Case {
        name: "orc-truncated",
        args: &["--no-verify"],
        expect: Fails(&["orc-truncated/part-0.orc: truncated ORC file: it does not end with a postscript ending in ORC"]),
    },
    Case {
        name: "orc-that-is-csv",
        args: &[],
        expect: Fails(&["orc-that-is-csv/part-0.orc: not an ORC file: it does not start with the magic number ORC (it is text: a CSV data file?)"]),
    },
    Case {
        name: "orc-no-key-column",
        args: &[],
        expect: Fails(&["orc-no-key-column/part-0.orc: has no column 'key', which the manifest's fileSchema lists"]),
    },
    Case {
        name: "orc-wrong-column-type",
        args: &[],
        expect: Fails(&["orc-wrong-column-type/part-0.orc: column is_latest is Utf8, expected a boolean"]),
    },
    Case {
        name: "parquet-valid",
        args: &[],
        expect: Plans { rows: 4, keys: &["logs/app/0001.log", "a b+c%.txt", "a+b%2Bc%25.txt"] },
    },
    Case { name: "orc-valid", args: &[], expect: Plans { rows: 4, keys: &["a b+c%.txt", "a+b%2Bc%25.txt"] } },
];

fn rekey(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rekey"))
        .args(args)
        .env("AWS_REGION", "us-east-1")
        .env_remove("RUST_BACKTRACE")
        .env_remove("REKEY_LOG")
        .output()
        .unwrap()
}

/// The case's manifest: `manifest.json` at the top of the folder, or the one S3 delivery
/// layout puts a few folders down.
fn find_manifest(dir: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.json") {
                found.push(p);
            }
        }
    }
    assert_eq!(found.len(), 1, "{}: expected one manifest.json, found {found:?}", dir.display());
    found.pop().unwrap()
}

/// Every file under `dir`, with its bytes: to show that a case left its inputs alone.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn run_case(case: &Case) -> Result<(), String> {
    let dir = Path::new(ROOT).join(case.name);
    if !dir.is_dir() {
        return Err(format!("{} is missing: run the ignored test `regenerate`", dir.display()));
    }
    let manifest = find_manifest(&dir);
    let before = snapshot(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("x.rekey");
    let out = rekey(&plan_args(&manifest, KMS_KEY, &state, case.args));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fail = |what: String| Err(format!("{what}\n  exit: {:?}\n  stderr: {stderr}", out.status.code()));
    if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
        return fail("panicked".into());
    }
    if snapshot(&dir) != before {
        return fail(format!("changed its inputs under {}", dir.display()));
    }
    match &case.expect {
        Fails(fragments) => {
            if out.status.code() != Some(1) {
                return fail("expected exit 1".into());
            }
            let lines: Vec<&str> = stderr.lines().collect();
            if lines.len() != 1 || !stderr.ends_with('\n') {
                return fail(format!("expected exactly one line on stderr, got {}", lines.len()));
            }
            if !lines[0].starts_with("rekey: error: ") {
                return fail("the line does not start with 'rekey: error: '".into());
            }
            // `{e:#}` prints an error's causes after it: a cause already in the message shows twice.
            let cause = lines[0].rsplit(": ").next().unwrap_or_default();
            if lines[0][..lines[0].len() - cause.len()].contains(cause) {
                return fail(format!("the line repeats its cause '{cause}'"));
            }
            for f in *fragments {
                if !lines[0].contains(f) {
                    return fail(format!("the line lacks '{f}'"));
                }
            }
            if !out.stdout.is_empty() {
                return fail(format!("printed on stdout: {}", String::from_utf8_lossy(&out.stdout)));
            }
            // No checkpoint, no `x.rekey.rekey-tmp-PID`, no journal: nothing at all.
            let left = names_in(tmp.path());
            if !left.is_empty() {
                return fail(format!("left {left:?} beside --state"));
            }
        }
        Plans { rows, keys } => {
            if !out.status.success() {
                return fail("expected success".into());
            }
            let left = names_in(tmp.path());
            if left != ["x.rekey"] {
                return fail(format!("expected only the checkpoint beside --state, found {left:?}"));
            }
            let db = rusqlite::Connection::open(&state).unwrap();
            let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
            let n = count("SELECT COUNT(*) FROM objects");
            if n != *rows {
                return fail(format!("expected {rows} rows in the checkpoint, found {n}"));
            }
            // Every row decoded cleanly: no BOM or quote in the bucket, no CR on the last field.
            if count("SELECT COUNT(*) FROM objects WHERE bucket != 'src-bucket'") != 0 {
                return fail("a row's bucket is not 'src-bucket'".into());
            }
            if count("SELECT COUNT(*) FROM objects WHERE checksum_algorithm IS NOT 'CRC32'") != 0 {
                return fail("a row's ChecksumAlgorithm is not CRC32".into());
            }
            for key in *keys {
                let found: i64 =
                    db.query_row("SELECT COUNT(*) FROM objects WHERE key = ?1", [key], |r| r.get(0)).unwrap();
                if found != 1 {
                    return fail(format!("expected the key {key:?} once in the checkpoint, found it {found} times"));
                }
            }
            let planned = format!("holds {rows} objects");
            if !stderr.contains(&planned) {
                return fail(format!("stderr lacks '{planned}'"));
            }
        }
    }
    Ok(())
}

/// Every case, all failures reported together.
#[test]
fn catalogue() {
    let failures: Vec<String> =
        CASES.iter().filter_map(|c| run_case(c).err().map(|e| format!("{}: {e}", c.name))).collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// Every folder has a case, every case a folder, and the README lists them all.
#[test]
fn catalogue_is_complete_and_documented() {
    let mut folders: Vec<String> = std::fs::read_dir(ROOT)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut names: Vec<String> = CASES.iter().map(|c| c.name.to_string()).collect();
    names.sort();
    assert_eq!(folders, names, "tests/bad-inputs/ folders and CASES differ");
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    for name in &names {
        assert!(readme.contains(&format!("`{name}`")), "tests/bad-inputs/README.md does not list `{name}`");
    }
}

// ---- The generator ----------------------------------------------------------------------

/// Rewrite every case folder. Deterministic: gzip with no timestamp or name.
#[test]
#[ignore = "rewrites tests/bad-inputs/; run by hand after changing a case"]
fn regenerate() {
    for case in CASES {
        let dir = Path::new(ROOT).join(case.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        for (path, bytes) in files_of(case.name) {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

const MODIFIED: &str = "2025-06-01T12:00:00.000Z";

/// One FULL_SCHEMA row; `key` is written as given (encode it first for a real one).
fn row(key: &str, size: &str) -> Vec<String> {
    [
        "src-bucket",
        key,
        "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH",
        "true",
        "false",
        size,
        MODIFIED,
        "d41d8cd98f00b204e9800998ecf8427e",
        "STANDARD",
        "false",
        "",
        "SSE-S3",
        "",
        "",
        "",
        "",
        "DISABLED",
        "CRC32",
    ]
    .map(String::from)
    .to_vec()
}

/// Three good rows, `logs/app/000N.log`, keys encoded.
fn good_rows() -> Vec<Vec<String>> {
    (1..=3).map(|i| row(&encode_form_key(&format!("logs/app/{i:04}.log")), &(i * 100).to_string())).collect()
}

/// Rows as S3 writes them: every field quoted, LF line ends.
fn csv(rows: &[Vec<String>]) -> Vec<u8> {
    rows.iter()
        .map(|r| r.iter().map(|f| format!("\"{}\"", f.replace('"', "\"\""))).collect::<Vec<_>>().join(",") + "\n")
        .collect::<String>()
        .into_bytes()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A manifest in AWS's field order; `files` are (file name, size, MD5) under [`DATA_PREFIX`].
fn manifest_with(format: &str, schema: &str, files: &[(&str, u64, String)]) -> Vec<u8> {
    let files: Vec<String> = files
        .iter()
        .map(|(name, size, md5)| {
            format!("{{\n    \"key\" : \"{DATA_PREFIX}/{name}\",\n    \"size\" : {size},\n    \"MD5checksum\" : \"{md5}\"\n  }}")
        })
        .collect();
    format!(
        "{{\n  \"sourceBucket\" : \"src-bucket\",\n  \"destinationBucket\" : \"arn:aws:s3:::inventory-bucket\",\n  \"version\" : \"2016-11-30\",\n  \"creationTimestamp\" : \"{CREATED_MS}\",\n  \"fileFormat\" : \"{format}\",\n  \"fileSchema\" : \"{schema}\",\n  \"files\" : [ {} ]\n}}\n",
        files.join(", ")
    )
    .into_bytes()
}

/// A manifest describing `data` files exactly (their real size and MD5).
fn manifest_for(data: &[(&str, &[u8])]) -> Vec<u8> {
    let files: Vec<_> = data.iter().map(|(n, b)| (*n, b.len() as u64, md5_hex(b))).collect();
    manifest_with("CSV", FULL_SCHEMA, &files)
}

type Files = Vec<(String, Vec<u8>)>;

/// A flat case: `manifest.json` and the data files side by side.
fn flat(data: Vec<(&str, Vec<u8>)>) -> Files {
    let refs: Vec<(&str, &[u8])> = data.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let mut files = vec![("manifest.json".to_string(), manifest_for(&refs))];
    files.extend(data.into_iter().map(|(n, b)| (n.to_string(), b)));
    files
}

/// One gzip data file `part-0.csv.gz` holding `rows`, described exactly by the manifest.
fn one_file(rows: &[Vec<String>]) -> Files {
    flat(vec![("part-0.csv.gz", gzip(&csv(rows)))])
}

/// `good_rows()` with row `n` (1-based) changed by `f`.
fn good_rows_but(n: usize, f: impl FnOnce(&mut Vec<String>)) -> Vec<Vec<String>> {
    let mut rows = good_rows();
    f(&mut rows[n - 1]);
    rows
}

/// Replace the manifest of a flat case.
fn with_manifest(mut files: Files, manifest: Vec<u8>) -> Files {
    files[0] = ("manifest.json".into(), manifest);
    files
}

fn files_of(case: &str) -> Files {
    let good = gzip(&csv(&good_rows()));
    match case {
        "truncated-gzip" | "size-mismatch" => {
            // The manifest describes the whole file; the copy on disk stopped short.
            let files = one_file(&good_rows());
            let cut = good[..good.len() - 25].to_vec();
            vec![files[0].clone(), ("part-0.csv.gz".into(), cut)]
        }
        "not-gzip" => flat(vec![("part-0.csv.gz", csv(&good_rows()))]),
        "trailing-garbage-after-gzip" => {
            let mut bytes = good.clone();
            bytes.extend_from_slice(b"<html>proxy error</html>\n");
            flat(vec![("part-0.csv.gz", bytes)])
        }
        // Not even a gzip header: a 0-byte file is not an empty gzip stream (that is
        // `empty-data-file`), and `gzip -dc` refuses it too.
        "zero-byte-gzip" => flat(vec![("part-0.csv.gz", Vec::new())]),
        "md5-mismatch" => {
            let m = manifest_with(
                "CSV",
                FULL_SCHEMA,
                &[("part-0.csv.gz", good.len() as u64, "0123456789abcdef0123456789abcdef".into())],
            );
            with_manifest(one_file(&good_rows()), m)
        }
        "missing-data-file" => {
            // S3's delivery layout: the manifest in a dated folder, data files in data/.
            let m = manifest_for(&[("part-0.csv.gz", &good), ("part-1.csv.gz", &good)]);
            vec![
                ("inventory/src-bucket/daily/2025-11-24T16-00Z/manifest.json".into(), m),
                ("inventory/src-bucket/daily/data/part-0.csv.gz".into(), good.clone()),
            ]
        }
        "manifest-not-json" => {
            // What a failed download often saves in its place.
            let body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>\n";
            with_manifest(one_file(&good_rows()), body.to_vec())
        }
        "manifest-missing-files" => {
            let m = format!("{{\n  \"sourceBucket\" : \"src-bucket\",\n  \"destinationBucket\" : \"arn:aws:s3:::inventory-bucket\",\n  \"version\" : \"2016-11-30\",\n  \"creationTimestamp\" : \"{CREATED_MS}\",\n  \"fileFormat\" : \"CSV\",\n  \"fileSchema\" : \"{FULL_SCHEMA}\"\n}}\n");
            with_manifest(one_file(&good_rows()), m.into_bytes())
        }
        "empty-file-schema" => {
            let m = manifest_with("CSV", "", &[("part-0.csv.gz", good.len() as u64, md5_hex(&good))]);
            with_manifest(one_file(&good_rows()), m)
        }
        "unknown-file-format" => {
            let m = manifest_with("TSV", FULL_SCHEMA, &[("part-0.csv.gz", good.len() as u64, md5_hex(&good))]);
            with_manifest(one_file(&good_rows()), m)
        }
        "no-encryption-column" => {
            // FULL_SCHEMA without EncryptionStatus, and rows to match.
            let schema: Vec<&str> = FULL_SCHEMA.split(", ").filter(|c| *c != "EncryptionStatus").collect();
            let rows: Vec<Vec<String>> = good_rows()
                .into_iter()
                .map(|mut r| {
                    r.remove(11);
                    r
                })
                .collect();
            let data = gzip(&csv(&rows));
            let m = manifest_with("CSV", &schema.join(", "), &[("part-0.csv.gz", data.len() as u64, md5_hex(&data))]);
            vec![("manifest.json".into(), m), ("part-0.csv.gz".into(), data)]
        }
        "bad-md5-in-manifest" => {
            let m = manifest_with("CSV", FULL_SCHEMA, &[("part-0.csv.gz", good.len() as u64, "d41d8cd98f00".into())]);
            with_manifest(one_file(&good_rows()), m)
        }
        "too-few-columns" => one_file(&good_rows_but(2, |r| {
            r.pop();
        })),
        "too-many-columns" => one_file(&good_rows_but(3, |r| r.push("extra".into()))),
        "non-numeric-size" => one_file(&good_rows_but(2, |r| r[5] = "ten".into())),
        "negative-size" => one_file(&good_rows_but(1, |r| r[5] = "-5".into())),
        "bad-date" => one_file(&good_rows_but(3, |r| r[6] = "2025-02-30T10:00:00.000Z".into())),
        "unknown-encryption-status" => one_file(&good_rows_but(2, |r| r[11] = "AES256".into())),
        // A key written by hand, never encoded: `reports/100%.txt`.
        "invalid-percent-encoding" => one_file(&good_rows_but(2, |r| r[1] = "reports/100%.txt".into())),
        // %C3 starts a two-byte sequence; %28 is not a continuation byte.
        "invalid-utf8-after-decoding" => one_file(&good_rows_but(2, |r| r[1] = "logs/%C3%28.txt".into())),
        "key-1025-bytes" => one_file(&good_rows_but(2, |r| r[1] = encode_form_key(&long_key(1025)))),
        "empty-key" => one_file(&good_rows_but(1, |r| r[1] = String::new())),
        "bad-row-after-multiline-record" => {
            // Row 1's key holds a raw newline inside its quotes (legal CSV, one record over
            // two lines), so row 2 starts on line 3.
            let mut rows = good_rows();
            rows[0][1] = "logs/raw\nnewline.log".into();
            rows[1][5] = "ten".into();
            one_file(&rows)
        }
        "bad-row-after-blank-lines" => {
            // Blank lines are skipped, but still counted as lines.
            let rows = good_rows_but(2, |r| r[5] = "ten".into());
            let mut text = csv(&rows[..1]);
            text.extend_from_slice(b"\n\n");
            text.extend_from_slice(&csv(&rows[1..]));
            flat(vec![("part-0.csv.gz", gzip(&text))])
        }
        "bad-row-crlf-line-endings" => {
            let rows = good_rows_but(3, |r| r[5] = "ten".into());
            let text: String = rows.iter().map(|r| r.join(",") + "\r\n").collect();
            flat(vec![("part-0.csv.gz", gzip(text.as_bytes()))])
        }
        "unterminated-quote" => {
            // Row 2's key opens a quote that never closes, so the rest of the file (row 3,
            // unquoted) is that one field: the error points at where the quote opened.
            let mut text = csv(&good_rows()[..1]);
            text.extend_from_slice(b"\"src-bucket\",\"logs/app/0002.log,200\n");
            text.extend_from_slice((good_rows()[2].join(",") + "\n").as_bytes());
            flat(vec![("part-0.csv.gz", gzip(&text))])
        }
        "bad-row-in-second-file" => {
            let second = gzip(&csv(&good_rows_but(2, |r| r[3] = "yes".into())));
            flat(vec![("part-0.csv.gz", good.clone()), ("part-1.csv.gz", second)])
        }
        "valid-s3-layout" => {
            let keys =
                ["logs/app/0001.log", "a b+c%.txt", "données/été 2025.csv", "say \"hi\", twice", "日本語/ファイル"];
            let rows: Vec<Vec<String>> = keys.iter().map(|k| row(&encode_form_key(k), "42")).collect();
            let (a, b) = (gzip(&csv(&rows[..3])), gzip(&csv(&rows[3..])));
            let m = manifest_for(&[("part-0.csv.gz", &a), ("part-1.csv.gz", &b)]);
            let checksum = format!("{}\n", md5_hex(&m)).into_bytes();
            vec![
                ("inventory/src-bucket/daily/2025-11-24T16-00Z/manifest.json".into(), m),
                ("inventory/src-bucket/daily/2025-11-24T16-00Z/manifest.checksum".into(), checksum),
                ("inventory/src-bucket/daily/data/part-0.csv.gz".into(), a),
                ("inventory/src-bucket/daily/data/part-1.csv.gz".into(), b),
            ]
        }
        "key-with-crlf" => {
            // S3 keys may hold CR and LF; the inventory encodes them as %0D and %0A.
            let mut rows = good_rows();
            rows[0][1] = encode_form_key("notes/line one\r\nline two.txt");
            rows[1][1] = encode_form_key("notes/lf\nonly.txt");
            one_file(&rows)
        }
        "key-1024-bytes" => one_file(&good_rows_but(2, |r| r[1] = encode_form_key(&long_key(1024)))),
        "bom" => {
            let mut text = b"\xEF\xBB\xBF".to_vec();
            text.extend_from_slice(&csv(&good_rows()));
            flat(vec![("part-0.csv.gz", gzip(&text))])
        }
        "crlf-line-endings" => {
            // As a Windows tool re-saves it: CRLF, and quotes only where needed.
            let text: String = good_rows().iter().map(|r| r.join(",") + "\r\n").collect();
            flat(vec![("part-0.csv.gz", gzip(text.as_bytes()))])
        }
        "concatenated-gzip-members" => {
            let mut bytes = good.clone();
            bytes.extend_from_slice(&gzip(&csv(&[row("logs/app/0004.log", "400")])));
            flat(vec![("part-0.csv.gz", bytes)])
        }
        "uncompressed-csv" => flat(vec![("part-0.csv", csv(&good_rows()))]),
        "empty-data-file" => flat(vec![("part-0.csv.gz", gzip(b""))]),
        "zero-row-manifest" => vec![("manifest.json".into(), manifest_with("CSV", FULL_SCHEMA, &[]))],
        other => columnar_files_of(other),
    }
}

/// The Parquet and ORC cases: `part-0.parquet` or `part-0.orc` beside a manifest with S3's
/// fileSchema for the format. Keys are written as they are (these formats do not encode).
fn columnar_files_of(case: &str) -> Files {
    let format = if case.starts_with("orc-") { FileFormat::Orc } else { FileFormat::Parquet };
    let name = if format == FileFormat::Orc { "part-0.orc" } else { "part-0.parquet" };
    let columns: Vec<&str> = FULL_SCHEMA.split(", ").collect();
    let plain_rows = || -> Vec<Vec<String>> {
        (1..=3).map(|i| row(&format!("logs/app/{i:04}.log"), &(i * 100).to_string())).collect()
    };
    let data = |columns: &[&str], rows: &[Vec<String>]| columnar_data_file(format, columns, rows).unwrap();
    let good = data(&columns, &plain_rows());
    let described = |bytes: &[u8]| (name, bytes.len() as u64, md5_hex(bytes));
    let manifest =
        |files: &[(&str, u64, String)]| manifest_with(format.as_str(), &columnar_file_schema(format, &columns), files);
    let exact =
        |bytes: Vec<u8>| vec![("manifest.json".to_string(), manifest(&[described(&bytes)])), (name.to_string(), bytes)];
    match case {
        "parquet-truncated" | "parquet-size-mismatch" | "orc-truncated" => {
            let m = manifest(&[described(&good)]);
            vec![("manifest.json".into(), m), (name.into(), good[..good.len() * 2 / 3].to_vec())]
        }
        "parquet-wrong-magic" => {
            let mut bytes = good.clone();
            bytes[3] = b'0';
            exact(bytes)
        }
        // An inventory's CSV data file, as S3 writes it, where the Parquet one should be.
        "parquet-that-is-csv" => exact(gzip(&csv(&good_rows()))),
        "orc-that-is-csv" => exact(csv(&good_rows())),
        "parquet-md5-mismatch" => {
            let m = manifest(&[(name, good.len() as u64, "0123456789abcdef0123456789abcdef".into())]);
            vec![("manifest.json".into(), m), (name.into(), good)]
        }
        "parquet-no-key-column" | "orc-no-key-column" => {
            let without: Vec<&str> = columns.iter().copied().filter(|c| *c != "Key").collect();
            let rows: Vec<Vec<String>> = plain_rows()
                .into_iter()
                .map(|mut r| {
                    r.remove(1);
                    r
                })
                .collect();
            exact(data(&without, &rows))
        }
        "parquet-schema-without-key" => {
            let without: Vec<&str> = columns.iter().copied().filter(|c| *c != "Key").collect();
            let m = manifest_with(format.as_str(), &columnar_file_schema(format, &without), &[described(&good)]);
            vec![("manifest.json".into(), m), (name.into(), good)]
        }
        // A column of text where S3 writes a number (or a boolean): as a hand-made export
        // with every column a string would be.
        "parquet-wrong-column-type" | "orc-wrong-column-type" => {
            let typed = if format == FileFormat::Orc { "IsLatest" } else { "Size" };
            let some = ["Bucket", "Key", typed, "EncryptionStatus"];
            let rows: Vec<Vec<String>> = plain_rows()
                .iter()
                .map(|r| some.iter().map(|c| r[columns.iter().position(|x| x == c).unwrap()].clone()).collect())
                .collect();
            let bytes = all_text_columns(format, &some, &rows);
            let m = manifest_with(format.as_str(), &columnar_file_schema(format, &some), &[described(&bytes)]);
            vec![("manifest.json".into(), m), (name.into(), bytes)]
        }
        "parquet-bad-row" => {
            let mut rows = plain_rows();
            rows[1][11] = "AES256".into();
            exact(data(&columns, &rows))
        }
        "parquet-valid" | "orc-valid" => {
            let mut rows = plain_rows();
            rows[1][1] = "a b+c%.txt".into();
            rows[2][1] = "a+b%2Bc%25.txt".into();
            let mut marker = row("gone.txt", "");
            marker[4] = "true".into();
            for f in [7, 8, 11] {
                marker[f] = String::new();
            }
            rows.push(marker);
            exact(data(&columns, &rows))
        }
        other => panic!("no files for case {other}"),
    }
}

/// A data file whose every column is a string, `is_latest` and `size` included.
fn all_text_columns(format: FileFormat, columns: &[&str], rows: &[Vec<String>]) -> Vec<u8> {
    use arrow::array::{ArrayRef, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let snake = |c: &str| {
        c.chars().enumerate().fold(String::new(), |mut s, (i, ch)| {
            if ch.is_ascii_uppercase() && i > 0 {
                s.push('_');
            }
            s.push(ch.to_ascii_lowercase());
            s
        })
    };
    let schema =
        Arc::new(Schema::new(columns.iter().map(|c| Field::new(snake(c), DataType::Utf8, true)).collect::<Vec<_>>()));
    let arrays: Vec<ArrayRef> = (0..columns.len())
        .map(|i| {
            Arc::new(rows.iter().map(|r| Some(r[i].as_str()).filter(|v| !v.is_empty())).collect::<StringArray>())
                as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
    let mut out = Vec::new();
    if format == FileFormat::Orc {
        let mut w = orc_rust::ArrowWriterBuilder::new(&mut out, schema).try_build().unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    } else {
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    out
}

/// A key of exactly `len` bytes of UTF-8, with multi-byte characters, a space and a `+`
/// (so its encoded form is much longer than the limit).
fn long_key(len: usize) -> String {
    let mut k = String::from("deep/été +/");
    while k.len() < len {
        k.push(if k.len() % 2 == 0 { 'é' } else { 'x' });
        if k.len() > len {
            k.pop();
            k.push('x');
        }
    }
    assert_eq!(k.len(), len);
    k
}
