//! Write a generated inventory in any of S3's three formats, for benchmarks
//! (`scripts/bench-plan ROWS RUNS parquet`): the demo's mix of rows, 4 data files.
//!
//! `cargo run --release --example write_inventory -- FORMAT ROWS DIR` (FORMAT: csv, parquet
//! or orc) prints the manifest's path.

use rekey::inventory::synthetic::{demo_rows, write_inventory, InventorySpec};
use rekey::inventory::FileFormat;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, rows, dir] = args.as_slice() else {
        eprintln!("usage: write_inventory csv|parquet|orc ROWS DIR");
        std::process::exit(2);
    };
    let format = match format.as_str() {
        "csv" => FileFormat::Csv,
        "parquet" => FileFormat::Parquet,
        "orc" => FileFormat::Orc,
        other => {
            eprintln!("unknown format {other}: csv, parquet or orc");
            std::process::exit(2);
        }
    };
    let rows: usize = rows.parse().map_err(std::io::Error::other)?;
    let created = 1_764_000_000_000;
    let spec = InventorySpec {
        data_files: 4,
        format,
        ..InventorySpec::new(&std::path::Path::new(dir).join("inventory-bucket"), "bench-bucket", created)
    };
    let manifest = write_inventory(&spec, demo_rows("bench-bucket", rows, 5, created, 1))?;
    println!("{}", manifest.display());
    Ok(())
}
