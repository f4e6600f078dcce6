//! Shards listed and read over plain HTTP from nginx on 127.0.0.1, its WebDAV listing
//! (`dav_ext_methods PROPFIND`) in its default configuration, which refuses `PROPFIND` with
//! `Depth: infinity` (403). The test starts nginx itself from a scratch directory; where nginx
//! or its `dav-ext` module is not installed (Debian: `nginx libnginx-mod-http-dav-ext`), it
//! prints a notice and skips.
#![cfg(feature = "http")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

const DAV_EXT: &str = "/usr/lib/nginx/modules/ngx_http_dav_ext_module.so";

/// nginx serving `root`, stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: the master stops its workers too (SIGKILL would leave them listening).
        let stopped = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .filter(|_| Path::new(DAV_EXT).exists())
}

fn start_nginx(binary: &Path, scratch: &Path, root: &Path) -> Nginx {
    // A free port: bound and released (nginx binds it a moment later).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = scratch.display();
    let config = format!(
        "load_module {DAV_EXT};\n\
         daemon off;\npid {s}/nginx.pid;\nerror_log {s}/error.log;\nevents {{}}\n\
         http {{\n  access_log off;\n  client_body_temp_path {s}/body;\n  proxy_temp_path {s}/proxy;\n\
         fastcgi_temp_path {s}/fastcgi;\n  uwsgi_temp_path {s}/uwsgi;\n  scgi_temp_path {s}/scgi;\n\
         server {{\n    listen 127.0.0.1:{port};\n    root {};\n\
         location / {{ dav_ext_methods PROPFIND OPTIONS; }}\n  }}\n}}\n",
        root.display()
    );
    let config_path = scratch.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nginx did not start: {}",
            std::fs::read_to_string(scratch.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx { child, port }
}

/// The status code nginx answers a bare `PROPFIND` of `path` with this `Depth`.
fn propfind_status(port: u16, path: &str, depth: &str) -> String {
    let host = format!("127.0.0.1:{port}");
    common::bare_http_request(&host, "PROPFIND", path, &format!("Depth: {depth}\r\n"))
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned()
}

fn warmup() -> WarmupConfig {
    let schedule = ScheduleConfig::linear(8, 64, 0.5, 50).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(4))
        .with_keep_last(true)
}

async fn streamed_tokens(location: String) -> (Vec<i64>, usize) {
    let mut loader = LoaderBuilder::new([location], warmup())
        .with_shuffle_units(false)
        .build()
        .await
        .unwrap();
    let shards = loader.catalog().shard_count();
    let mut got = Vec::new();
    while let Some(b) = loader.next().await {
        got.extend(common::real_tokens(&b.unwrap().batch));
    }
    (got, shards)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_directories_are_listed_one_level_at_a_time_as_nginx_allows() {
    let Some(binary) = nginx_binary() else {
        println!("notice: nginx with {DAV_EXT} is not installed; skipping the HTTP listing tests");
        return;
    };
    let scratch = common::temp_dir("http");
    let root = scratch.join("www");
    // Two levels below the listed directory, and a file that is not a shard.
    let docs = common::documents(150, 60, 11);
    std::fs::create_dir_all(root.join("shards/a/b")).unwrap();
    common::write_rows(&root.join("shards/a/one.parquet"), &docs[..50], 20);
    common::write_rows(&root.join("shards/a/b/two.parquet"), &docs[50..100], 20);
    common::write_rows(&root.join("shards/three.parquet"), &docs[100..], 20);
    std::fs::write(root.join("shards/a/notes.txt"), "not a shard").unwrap();
    let nginx = start_nginx(&binary, &scratch, &root);

    // What made every `http://` directory fail before: nginx refuses the whole tree at once.
    assert_eq!(propfind_status(nginx.port, "/shards/", "infinity"), "403");
    assert_eq!(propfind_status(nginx.port, "/shards/", "1"), "207");

    // Shards sort by their full path: a/b/two, a/one, three.
    let want: Vec<i64> = docs[50..100]
        .iter()
        .chain(&docs[..50])
        .chain(&docs[100..])
        .flatten()
        .map(|&t| i64::from(t))
        .collect();
    for location in [
        format!("http://127.0.0.1:{}/shards/", nginx.port),
        format!("http://127.0.0.1:{}/shards", nginx.port),
    ] {
        let (got, shards) = streamed_tokens(location.clone()).await;
        assert_eq!(shards, 3, "{location}");
        common::assert_same_tokens(&got, &want, &location);
    }
    let (got, shards) = streamed_tokens(format!(
        "http://127.0.0.1:{}/shards/a/b/two.parquet",
        nginx.port
    ))
    .await;
    assert_eq!(shards, 1);
    let two: Vec<i64> = docs[50..100]
        .iter()
        .flatten()
        .map(|&t| i64::from(t))
        .collect();
    common::assert_same_tokens(&got, &two, "one file");

    // A symbolic link to a directory above, which nginx follows: refused as a loop at once,
    // naming it, instead of listing forever.
    std::os::unix::fs::symlink(".", root.join("shards/a/x")).unwrap();
    std::os::unix::fs::symlink("..", root.join("shards/a/b/y")).unwrap();
    let location = format!("http://127.0.0.1:{}/shards/", nginx.port);
    let started = Instant::now();
    let err = LoaderBuilder::new([location], warmup())
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a loop") && err.contains("/shards/a/x"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    println!("http: nginx directories listed with Depth: 1 walks");
}
