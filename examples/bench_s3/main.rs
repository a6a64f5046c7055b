//! A small, fast, in-memory S3 endpoint for `scripts/bench-peers` only: rekey, s5cmd, the
//! AWS CLI and rclone re-encrypt the same objects against it, so that the endpoint is never
//! what limits them (moto manages a few hundred requests a second; this serves thousands on
//! one core) and every tool sees the same latency.
//!
//! ```sh
//! cargo run --release --example bench_s3 -- --port 9000 --latency-ms 20
//! ```
//!
//! Path-style S3 (or `{bucket}.localhost`), any SigV4 accepted unchecked: ListObjectsV2 and
//! ListObjects, HeadObject, GetObject, PutObject, CopyObject (SSE headers, metadata
//! directive, `x-amz-copy-source-if-match`), UpdateObjectEncryption, GetObjectTagging (an
//! empty set), and the bucket calls the peers make on start-up. Control endpoints, never
//! delayed and never counted:
//!
//! - `GET /__stats`: requests per operation and connections accepted since the last reset,
//!   as JSON.
//! - `POST /__reset`: zero the counters.
//! - `POST /__seed?bucket=B&count=N&size=S&prefix=P`: replace bucket B with N SSE-S3
//!   objects `P00000000`, `P00000001`, … of S bytes (20,000 PUTs would take longer than
//!   the runs being measured).
//! - `GET /__check?bucket=B`: objects per encryption and KMS key, so the benchmark can tell
//!   a tool that re-encrypted everything from one that skipped objects.

mod http;
mod s3;
mod store;

use clap::Parser;
use http::{Conn, Request, Response};
use s3::Op;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::Store;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "In-memory S3 endpoint for scripts/bench-peers")]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 9000)]
    port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    bind: String,
    /// Delay before every S3 answer, as a far-away endpoint would add.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Runtime worker threads. One by default, so that the tool measured keeps the other core.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct Server {
    store: Mutex<Store>,
    counts: [AtomicU64; Op::ALL.len()],
    requests: AtomicU64,
    /// Connections accepted since the last reset: a client that keeps too few idle
    /// connections pays a TCP handshake per request, and this shows it.
    connections: AtomicU64,
    latency: Duration,
}

impl Server {
    fn stats(&self) -> Response {
        let ops: BTreeMap<&str, u64> = Op::ALL
            .iter()
            .map(|op| (op.name(), self.counts[*op as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let total: u64 = ops.values().sum();
        let connections = self.connections.load(Ordering::Relaxed);
        json(serde_json::json!({ "total": total, "ops": ops, "connections": connections }))
    }

    fn check(&self, bucket: &str) -> Response {
        let store = self.store.lock().unwrap();
        let Some(b) = store.buckets.get(bucket) else { return s3::error(404, "NoSuchBucket", bucket) };
        let mut by_sse: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
        let mut bucket_key = 0u64;
        for o in b.objects.values() {
            *by_sse.entry(o.sse.clone().unwrap_or_else(|| "none".into())).or_default() += 1;
            if let Some(k) = &o.kms_key {
                *by_key.entry(k.clone()).or_default() += 1;
            }
            bucket_key += o.bucket_key as u64;
        }
        json(serde_json::json!({
            "objects": b.objects.len(), "sse": by_sse, "kms_keys": by_key, "bucket_key": bucket_key,
        }))
    }

    /// `/__…` requests: the benchmark's own controls.
    fn control(&self, req: &Request) -> Response {
        let q = s3::query(&req.query);
        let p = |n: &str| q.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/__stats") => self.stats(),
            ("POST", "/__reset") => {
                self.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
                self.connections.store(0, Ordering::Relaxed);
                self.stats()
            }
            ("POST", "/__seed") => {
                let bucket = p("bucket").unwrap_or("bench");
                let count = p("count").and_then(|c| c.parse().ok()).unwrap_or(20_000);
                let size = p("size").and_then(|c| c.parse().ok()).unwrap_or(1024);
                self.store.lock().unwrap().seed(bucket, p("prefix").unwrap_or("data/"), count, size);
                self.check(bucket)
            }
            ("GET", "/__check") => self.check(p("bucket").unwrap_or("bench")),
            _ => s3::error(404, "NoSuchControl", &req.path),
        }
    }
}

fn json(v: serde_json::Value) -> Response {
    Response::with_body(200, "application/json", v.to_string().into_bytes())
}

async fn serve(server: Arc<Server>, stream: tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let req = match conn.read_request().await {
            Ok(Some(r)) => r,
            // Closed, or unreadable: S3 would drop such a connection too.
            Ok(None) | Err(_) => return,
        };
        let id = server.requests.fetch_add(1, Ordering::Relaxed);
        let resp = if req.path.starts_with("/__") {
            server.control(&req)
        } else {
            let (op, resp) = s3::handle(&mut server.store.lock().unwrap(), &req);
            server.counts[op as usize].fetch_add(1, Ordering::Relaxed);
            if !server.latency.is_zero() {
                tokio::time::sleep(server.latency).await;
            }
            resp
        };
        if conn.write_response(&resp, id, req.keep_alive).await.is_err() || !req.keep_alive {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    rt.block_on(async move {
        let listener = TcpListener::bind((args.bind.as_str(), args.port)).await?;
        let addr = listener.local_addr()?;
        // The benchmark script waits for this line.
        println!("bench_s3 listening on http://{addr} (latency {} ms)", args.latency_ms);
        let server = Arc::new(Server {
            store: Mutex::new(Store::default()),
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            latency: Duration::from_millis(args.latency_ms),
        });
        loop {
            let (stream, _) = listener.accept().await?;
            server.connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(serve(server.clone(), stream));
        }
    })
}
