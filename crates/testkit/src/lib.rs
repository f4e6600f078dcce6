//! Helpers that several of seqwarm's test suites need: scratch directories, Parquet files
//! written from a record batch, and the shards a directory holds. Test code only: it panics
//! on any failure, which is what a test wants.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

/// A fresh, empty directory `seqwarm-{suite}-{name}-{pid}` under the system's temp directory.
pub fn temp_dir(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seqwarm-{suite}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Writes `batch` to `path` as one Parquet file, with `props` or arrow-rs's defaults.
pub fn write_parquet(path: &Path, batch: &RecordBatch, props: Option<WriterProperties>) {
    let file = std::fs::File::create(path).expect("create the Parquet file");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), props).expect("a Parquet writer");
    writer.write(batch).expect("write the batch");
    writer.close().expect("close the Parquet file");
}

/// The `.parquet` files directly in `dir`, as (file name, bytes), sorted by name: what two
/// runs that should write the same shards are compared by.
pub fn parquet_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("list the directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("read a shard"))
        })
        .collect();
    out.sort();
    out
}
