//! A small S3-compatible server on loopback that answers every request after a fixed delay:
//! a stand-in for a real object store's round trip, fast enough that the delay, not the
//! server, is what a client measures (moto, in Python, takes milliseconds per request).
//!
//! ```text
//! latency-s3 --root DIR [--port 0] [--latency-ms 20]
//! ```
//!
//! Each directory under `DIR` is a bucket and each file below it an object (`DIR/bench/a/b`
//! is `s3://bench/a/b`), read-only, path-style (`http://127.0.0.1:PORT/bench/a/b`). It answers
//! what a reader needs: `GET` (whole, `bytes=a-b`, `bytes=a-` and `bytes=-n` ranges), `HEAD`,
//! and `ListObjectsV2` (prefix, delimiter, pages of 1 000 with continuation tokens), and
//! ignores signatures. Objects are read into memory at start (the server's own reads would
//! otherwise take CPU the client under test needs on a small machine), so the data set must
//! fit. It prints `listening on PORT` once it accepts connections. Used by
//! `benches/python/bench_remote.py`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Keys per listing page (S3's own maximum).
const PAGE: usize = 1000;
/// Every object's modification time (the listing and the headers must agree; readers only
/// compare it).
const LAST_MODIFIED_HTTP: &str = "Thu, 01 Jan 2026 00:00:00 GMT";
const LAST_MODIFIED_ISO: &str = "2026-01-01T00:00:00.000Z";

/// The objects: bucket -> key -> contents.
type Objects = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

struct Server {
    objects: Objects,
    latency: Duration,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut root, mut port, mut latency_ms) = (None, 0u16, 20u64);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value)),
            "--port" => port = value.parse()?,
            "--latency-ms" => latency_ms = value.parse()?,
            _ => return Err(format!("unknown flag {flag}").into()),
        }
    }
    let root = root.ok_or("--root DIR is required")?;
    let objects = scan(&root)?;
    let server = Arc::new(Server {
        objects,
        latency: Duration::from_millis(latency_ms),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on {}", listener.local_addr()?.port());
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(serve(Arc::clone(&server), stream));
        }
    })
}

/// Every file below `root`, as bucket -> key -> contents.
fn scan(root: &Path) -> std::io::Result<Objects> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(&entry.path(), &format!("{key}/"), out)?;
            } else if kind.is_file() {
                out.insert(key, std::fs::read(entry.path())?);
            }
        }
        Ok(())
    }
    let mut buckets = Objects::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let mut keys = BTreeMap::new();
            walk(&entry.path(), "", &mut keys)?;
            buckets.insert(entry.file_name().to_string_lossy().into_owned(), keys);
        }
    }
    Ok(buckets)
}

/// One keep-alive connection: requests in order until the client closes it.
async fn serve(server: Arc<Server>, mut stream: TcpStream) {
    let mut buffer = Vec::with_capacity(4096);
    loop {
        let head_end = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        let request = Request::parse(&head);
        // A request body (none is expected) is read and ignored.
        let body = request.content_length;
        while buffer.len() < head_end + body {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        buffer.drain(..head_end + body);
        tokio::time::sleep(server.latency).await;
        let (head, body) = answer(&server, &request);
        if stream.write_all(&head).await.is_err() || stream.write_all(body).await.is_err() {
            return;
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    range: Option<String>,
    content_length: usize,
}

impl Request {
    fn parse(head: &str) -> Self {
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        let (mut range, mut content_length) = (None, 0);
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                match name.trim().to_ascii_lowercase().as_str() {
                    "range" => range = Some(value.trim().to_string()),
                    "content-length" => content_length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        Self {
            method,
            path: decode(path),
            query,
            range,
            content_length,
        }
    }
}

/// Percent-decoding (and `+` as a space in queries, which S3 clients do not send in keys).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A response: its head, and its body (`HEAD`: none, though `length` says how long it is).
type Response<'a> = (Vec<u8>, &'a [u8]);

fn respond<'a>(
    status: &str,
    headers: &[(&str, String)],
    body: &'a [u8],
    length: usize,
) -> Response<'a> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "content-length: {length}\r\n\r\n");
    (head.into_bytes(), body)
}

/// A response whose body is built here.
fn respond_owned(status: &str, headers: &[(&str, String)], body: &[u8]) -> Response<'static> {
    let (mut head, _) = respond(status, headers, b"", body.len());
    head.extend_from_slice(body);
    (head, b"")
}

fn error(status: &str, code: &str, resource: &str) -> Response<'static> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{code}</Message><Resource>{}</Resource></Error>",
        escape(resource)
    );
    respond_owned(
        status,
        &[("content-type", "application/xml".into())],
        body.as_bytes(),
    )
}

fn answer<'a>(server: &'a Server, request: &Request) -> Response<'a> {
    let path = request.path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    let Some(objects) = server.objects.get(bucket) else {
        return error("404 Not Found", "NoSuchBucket", bucket);
    };
    match (request.method.as_str(), key.is_empty()) {
        ("GET", true) => list(bucket, objects, &request.query),
        ("GET" | "HEAD", false) => {
            let Some(data) = objects.get(key) else {
                return error("404 Not Found", "NoSuchKey", key);
            };
            object(data, request)
        }
        _ => error("405 Method Not Allowed", "MethodNotAllowed", path),
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open range within `size`; `Err` when it
/// cannot be satisfied.
fn parse_range(range: &str, size: u64) -> Result<(u64, u64), ()> {
    let spec = range.strip_prefix("bytes=").ok_or(())?;
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            (a, b.saturating_add(1).min(size))
        }
    };
    if start >= end || start >= size {
        return Err(());
    }
    Ok((start, end))
}

fn object<'a>(data: &'a [u8], request: &Request) -> Response<'a> {
    let size = data.len() as u64;
    let mut headers = vec![
        ("etag", format!("\"{size:x}\"")),
        ("last-modified", LAST_MODIFIED_HTTP.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("content-type", "application/octet-stream".to_string()),
    ];
    let (status, start, end) = match request.range.as_deref().map(|r| parse_range(r, size)) {
        None => ("200 OK", 0, size),
        Some(Ok((start, end))) => {
            headers.push(("content-range", format!("bytes {start}-{}/{size}", end - 1)));
            ("206 Partial Content", start, end)
        }
        Some(Err(())) => {
            headers.push(("content-range", format!("bytes */{size}")));
            return respond("416 Range Not Satisfiable", &headers, b"", 0);
        }
    };
    let body = &data[start as usize..end as usize];
    if request.method == "GET" {
        respond(status, &headers, body, body.len())
    } else {
        respond(status, &headers, b"", body.len())
    }
}

fn list(
    bucket: &str,
    objects: &BTreeMap<String, Vec<u8>>,
    query: &BTreeMap<String, String>,
) -> Response<'static> {
    let empty = String::new();
    let prefix = query.get("prefix").unwrap_or(&empty);
    let delimiter = query.get("delimiter").filter(|d| !d.is_empty());
    let after = query
        .get("continuation-token")
        .or_else(|| query.get("start-after"))
        .cloned()
        .unwrap_or_default();
    let mut contents = String::new();
    let mut prefixes: Vec<String> = Vec::new();
    let (mut count, mut last, mut truncated) = (0usize, String::new(), false);
    let range = objects.range::<String, _>((
        std::ops::Bound::Excluded(&after),
        std::ops::Bound::Unbounded,
    ));
    for (key, data) in range.filter(|(k, _)| k.starts_with(prefix.as_str())) {
        let size = data.len();
        if count == PAGE {
            truncated = true;
            break;
        }
        if let Some(d) = delimiter
            && let Some(at) = key[prefix.len()..].find(d.as_str())
        {
            let common = &key[..prefix.len() + at + d.len()];
            if prefixes.last().is_some_and(|p| p == common) {
                continue;
            }
            prefixes.push(common.to_string());
        } else {
            let _ = write!(
                contents,
                "<Contents><Key>{}</Key><LastModified>{LAST_MODIFIED_ISO}</LastModified><ETag>&quot;{size:x}&quot;</ETag><Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                escape(key)
            );
        }
        count += 1;
        last.clone_from(key);
    }
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>{PAGE}</MaxKeys><IsTruncated>{truncated}</IsTruncated>",
        escape(bucket),
        escape(prefix)
    );
    if truncated {
        let _ = write!(
            body,
            "<NextContinuationToken>{}</NextContinuationToken>",
            escape(&last)
        );
    }
    body.push_str(&contents);
    for p in prefixes {
        let _ = write!(
            body,
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            escape(&p)
        );
    }
    body.push_str("</ListBucketResult>");
    respond_owned(
        "200 OK",
        &[("content-type", "application/xml".into())],
        body.as_bytes(),
    )
}
