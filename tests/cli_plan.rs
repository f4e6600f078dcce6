//! End-to-end tests of `seqwarm plan`.

mod common;

use common::{ok, seqwarm, temp};

#[test]
fn plan_on_defaults_prints_a_table_and_writes_svg() {
    let dir = temp("plan");
    let svg = dir.join("plan.svg");
    let stdout = ok(&seqwarm(&["plan", "--svg", svg.to_str().unwrap()]));
    assert!(stdout.starts_with("schedule: linear"), "{stdout}");
    assert!(stdout.contains("max 1024 from steps 3000"), "{stdout}");
    // Tokens per step under each mode, and what the warmup saves over the baseline.
    assert!(
        stdout.contains("tokens per step at 8 rows per batch"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "constant max trains 81920000 tokens; truncate/repack/pack 69627968 (15.0% fewer)"
        ),
        "{stdout}"
    );
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("<polyline"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plan_json_of_a_billion_steps_is_instant_and_exact() {
    let out = ok(&seqwarm(&[
        "plan",
        "--no-svg",
        "--format",
        "json",
        "--total",
        "1000000000",
        "--min",
        "64",
        "--max",
        "4096",
        "--step",
        "64",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let points = v["change_points"].as_array().unwrap();
    assert_eq!(points.len(), 64);
    assert_eq!(
        points.last().unwrap(),
        &serde_json::json!([300_000_000u64, 4096])
    );
}

#[test]
fn plan_reads_a_toml_config_and_flags_override_it() {
    let dir = temp("plan-cfg");
    let config = dir.join("schedule.toml");
    std::fs::write(
        &config,
        "kind = \"composer\"\nduration = 0.5\nmin = 16\nmax = 80\nstep = 16\ntotal = 100\n",
    )
    .unwrap();
    let out = ok(&seqwarm(&[
        "plan",
        "--no-svg",
        "--format",
        "json",
        "--schedule-config",
        config.to_str().unwrap(),
        "--max",
        "144",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["kind"], "composer");
    assert_eq!(v["max_len"], 144);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plan_rejects_bad_config_naming_the_field() {
    let out = seqwarm(&["plan", "--no-svg", "--min", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`min` = 0"), "{stderr}");
    let out = seqwarm(&[
        "plan", "--no-svg", "--kind", "composer", "--min", "8", "--max", "12", "--step", "45",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("divides by zero"));
}

#[test]
fn a_schedule_too_long_to_list_is_refused_not_a_crash() {
    let out = seqwarm(&[
        "plan",
        "--no-svg",
        "--total",
        "1000000000",
        "--max",
        "1073741824",
        "--duration",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("more than 100000 times"), "{stderr}");
}

#[test]
fn a_closed_pipe_ends_plan_quietly_and_a_full_disk_is_an_error() {
    use std::process::{Command, Stdio};
    // More than a pipe's buffer of output, to a reader that has gone away.
    let mut child = Command::new(env!("CARGO_BIN_EXE_seqwarm"))
        .args(["plan", "--no-svg", "--max", "65536"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let out = Command::new(env!("CARGO_BIN_EXE_seqwarm"))
            .args(["plan", "--no-svg"])
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("writing the change points to stdout") && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn plan_lists_the_distinct_shapes_and_what_a_shape_policy_gives_up() {
    let args = [
        "plan",
        "--no-svg",
        "--kind",
        "composer",
        "--min",
        "64",
        "--max",
        "2048",
        "--duration",
        "0.3",
        "--total",
        "10000",
        "--batch-rows",
        "8",
    ];
    let plain = ok(&seqwarm(&args));
    assert!(
        plain.contains("shapes: 249 distinct (no shape policy;"),
        "{plain}"
    );
    let bounded = ok(&seqwarm(&[&args[..], &["--shapes", "even:6"]].concat()));
    assert!(
        bounded.contains(
            "shapes: 6 distinct (shape policy even:6): truncate/repack/pack 8x64, 8x456, 8x856, \
             8x1248, 8x1648, 8x2048; reshape 256x64, 35x456, 19x856, 13x1248, 9x1648, 8x2048"
        ),
        "{bounded}"
    );
    assert!(
        bounded.contains("gives up 4628736 tokens under truncate/repack/pack (3.30% of 140127232)"),
        "{bounded}"
    );
    // The same in JSON, and a list that snaps the shortest lengths up adds tokens.
    let json = ok(&seqwarm(
        &[
            &args[..],
            &["--shapes", "256,1024,2048", "--format", "json"],
        ]
        .concat(),
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["shapes"]["count"], 3);
    assert_eq!(
        v["config"]["shapes"],
        serde_json::json!({"lengths": [256, 1024, 2048]})
    );
    assert_eq!(
        v["shapes"]["truncate_repack_pack"],
        serde_json::json!([[8, 256], [8, 1024], [8, 2048]])
    );
    assert!(v["shapes"]["tokens_given_up"]["reshape"].as_i64().unwrap() < 0);
    // A bad policy names the field.
    let bad = seqwarm(&[&args[..], &["--shapes", "even:1"]].concat());
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("`shapes` = even:1"), "{stderr}");
}
