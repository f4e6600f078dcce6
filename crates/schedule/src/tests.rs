use proptest::prelude::*;

use crate::{
    ProgressUnit, RampBuilder, Root, Schedule, ScheduleConfig, ScheduleError, ScheduleKind,
    ScheduleWarning,
};

fn composer(total: u64, duration: f64, min: u64, max: u64, step: u64) -> RampBuilder {
    ScheduleConfig::composer(min, max, duration, total).with_step(step)
}

/// DeepSpeed's `fixed_root` (`fixed_linear` for degree 1) with every field set.
fn root(min: u64, max: u64, step: u64, total_curriculum_step: u64, degree: u32) -> ScheduleConfig {
    let root = Root {
        min,
        max,
        step,
        total_curriculum_step,
        root_degree: (degree != 1).then_some(degree),
        total: None,
        unit: ProgressUnit::Steps,
    };
    if degree == 1 {
        ScheduleConfig::FixedLinear(root)
    } else {
        ScheduleConfig::FixedRoot(root)
    }
}

#[test]
fn linear_reaches_max_exactly_at_warmup_end() {
    let s = ScheduleConfig::linear(8, 1024, 0.3, 10_000)
        .build()
        .unwrap();
    assert_eq!(s.seq_len_at(0), 8);
    assert!(s.seq_len_at(2_999) < 1024);
    assert_eq!(s.seq_len_at(3_000), 1024);
    assert_eq!(s.warmup_end(), 3_000);
    for c in s.change_points() {
        assert!(c.seq_len == 8 || c.seq_len == 1024 || c.seq_len % 8 == 0);
    }
}

#[test]
fn linear_with_zero_duration_is_constant_max() {
    let s = ScheduleConfig::linear(8, 64, 0.0, 100).build().unwrap();
    assert_eq!(s.seq_len_at(0), 64);
    assert_eq!(s.change_points().count(), 1);
}

#[test]
fn composer_quirk_reaches_max_early_through_integer_division() {
    // 10 000 * 1.0 warmup batches / 127 updates = 78 batches per update: max at 127 * 78 =
    // 9906, before the nominal end of the warmup.
    let s = composer(10_000, 1.0, 8, 1024, 8).build().unwrap();
    assert_eq!(s.warmup_end(), 9_906);
    assert_eq!(s.seq_len_at(9_905), 1016);
}

#[test]
fn composer_quirk_never_reaching_max_is_a_warning() {
    let s = composer(8825, 1.0, 64, 68, 4).build().unwrap();
    assert!(
        s.warnings()
            .iter()
            .any(|w| matches!(w, ScheduleWarning::MaxNotReachedInTraining { .. }))
    );
    let s = composer(100, 1.0, 8, 30, 8).build().unwrap();
    assert!(
        s.warnings()
            .iter()
            .any(|w| matches!(w, ScheduleWarning::ComposerStepDoesNotDivideRange { .. }))
    );
    // Never a length between the last whole step (24) and max (30).
    assert!(
        s.change_points()
            .all(|c| c.seq_len <= 24 || c.seq_len == 30)
    );
}

#[test]
fn composer_division_by_zero_is_rejected_with_a_reason() {
    let err = composer(1000, 1.0, 8, 12, 45).build().unwrap_err();
    assert!(matches!(err, ScheduleError::ComposerDivisionByZero { .. }));
    assert!(err.to_string().contains("step <= max - min"), "{err}");
    let err = composer(40, 0.0, 64, 1080, 8).build().unwrap_err();
    assert!(err.to_string().contains("raise total or duration"), "{err}");
}

#[test]
fn validation_names_the_field_and_value() {
    let cases: Vec<(ScheduleConfig, &str)> = vec![
        (ScheduleConfig::linear(0, 64, 0.3, 10).into(), "`min` = 0"),
        (ScheduleConfig::linear(64, 8, 0.3, 10).into(), "`max` = 8"),
        (
            ScheduleConfig::linear(8, 64, 0.3, 10).with_step(0).into(),
            "`step` = 0",
        ),
        (
            ScheduleConfig::linear(8, 64, 1.5, 10).into(),
            "`duration` = 1.5",
        ),
        (
            ScheduleConfig::linear(8, 64, -0.1, 10).into(),
            "`duration` = -0.1",
        ),
        (
            ScheduleConfig::linear(8, 64, f64::NAN, 10).into(),
            "`duration` = NaN",
        ),
        (ScheduleConfig::constant(0), "`max` = 0"),
        (
            ScheduleConfig::fixed_root(8, 64, 10, 0),
            "`root_degree` = 0",
        ),
        (
            ScheduleConfig::fixed_linear(8, 64, 0),
            "`total_curriculum_step` = 0",
        ),
        (
            match root(8, 64, 8, 10, 3) {
                ScheduleConfig::FixedRoot(r) => ScheduleConfig::FixedLinear(r),
                other => other,
            },
            "use kind = \"fixed_root\"",
        ),
        (
            match root(8, 64, 8, 10, 1) {
                ScheduleConfig::FixedLinear(r) => ScheduleConfig::FixedRoot(r),
                other => other,
            },
            "fixed_root needs its degree",
        ),
        (
            ScheduleConfig::fixed_discrete(vec![8, 16], vec![]),
            "`max_step` = []",
        ),
        (
            ScheduleConfig::fixed_discrete(vec![16, 8], vec![5]),
            "non-decreasing",
        ),
    ];
    for (config, needle) in cases {
        let err = config.build().unwrap_err().to_string();
        assert!(err.contains(needle), "`{err}` should contain `{needle}`");
    }
}

#[test]
fn missing_and_unused_fields_are_reported() {
    // Each kind takes exactly its fields: a missing one and one of another kind are named.
    let err = toml::from_str::<ScheduleConfig>("kind = \"linear\"\nmin = 8\nmax = 64\ntotal = 10")
        .unwrap_err();
    assert!(
        err.to_string().contains("missing field `duration`"),
        "{err}"
    );
    let err = toml::from_str::<ScheduleConfig>("kind = \"constant\"\nmax = 64\nroot_degree = 2")
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `root_degree`"),
        "{err}"
    );
    // `total` (the length of training) belongs to every kind.
    let constant: ScheduleConfig =
        toml::from_str("kind = \"constant\"\nmax = 64\ntotal = 10").unwrap();
    assert_eq!(constant.total(), Some(10));
    assert_eq!(constant, ScheduleConfig::constant(64).with_total(10));
    assert!(ScheduleConfig::default_for(ScheduleKind::FixedDiscrete).is_none());
    for kind in ScheduleKind::ALL {
        if let Some(config) = ScheduleConfig::default_for(kind) {
            assert_eq!(config.kind(), kind);
            assert_eq!(config.build().unwrap().max_len(), 1024);
        }
    }
}

#[test]
fn step_not_multiple_of_eight_warns() {
    let s = ScheduleConfig::linear(8, 64, 0.5, 100)
        .with_step(12)
        .build()
        .unwrap();
    assert_eq!(
        s.warnings(),
        &[ScheduleWarning::StepNotMultipleOf8 { step: 12 }]
    );
}

#[test]
fn config_round_trips_through_toml_and_json() {
    let text = r#"
        kind = "linear"
        duration = 0.3
        min = 8
        max = 1024
        step = 8
        total = 1000
        unit = "tokens"
    "#;
    let config: ScheduleConfig = toml::from_str(text).unwrap();
    assert_eq!(config.unit(), ProgressUnit::Tokens);
    let schedule = config.build().unwrap();
    assert_eq!(schedule.seq_len_at(300), 1024);
    let json = serde_json::to_string(&config).unwrap();
    let back: ScheduleConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    let err = toml::from_str::<ScheduleConfig>("kind = \"linear\"\nlength = 3").unwrap_err();
    assert!(err.to_string().contains("length"), "{err}");
    // DeepSpeed spellings are accepted.
    let ds: ScheduleConfig = serde_json::from_str(
        r#"{"kind":"fixed_root","min":64,"max":1024,"difficulty_step":8,"total_step":100,"root_degree":2}"#,
    )
    .unwrap();
    assert_eq!(ds.build().unwrap().seq_len_at(100), 1024);
}

#[test]
fn unit_mismatch_is_an_error() {
    let s = ScheduleConfig::linear(8, 64, 0.5, 100).build().unwrap();
    assert!(s.seq_len_in(10, ProgressUnit::Steps).is_ok());
    assert_eq!(
        s.seq_len_in(10, ProgressUnit::Tokens),
        Err(ScheduleError::UnitMismatch {
            expected: ProgressUnit::Steps,
            given: ProgressUnit::Tokens
        })
    );
}

#[test]
fn a_billion_step_plan_has_few_change_points() {
    let s = ScheduleConfig::linear(8, 2048, 0.3, 1_000_000_000)
        .build()
        .unwrap();
    let points: Vec<_> = s.change_points().collect();
    assert_eq!(points.len(), 256);
    assert_eq!(points.last().unwrap().position, 300_000_000);
    let s = ScheduleConfig::fixed_root(8, 4096, 1_000_000_000, 3)
        .build()
        .unwrap();
    assert_eq!(s.change_points().last().unwrap().seq_len, 4096);
}

fn any_schedule() -> impl Strategy<Value = Schedule> {
    let ramp = (
        1u64..2000,
        0u64..4000,
        1u64..128,
        0.0f64..=1.0,
        1u64..100_000,
    );
    prop_oneof![
        ramp.clone()
            .prop_filter_map("valid linear", |(min, extra, step, d, total)| {
                ScheduleConfig::linear(min, min + extra, d, total)
                    .with_step(step)
                    .build()
                    .ok()
            }),
        ramp.clone()
            .prop_filter_map("valid composer", |(min, extra, step, d, total)| {
                composer(total, d, min, min + extra, step).build().ok()
            }),
        (ramp, 1u32..5).prop_filter_map("valid root", |((min, extra, step, _, total), deg)| {
            root(min, min + extra, step, total, deg).build().ok()
        }),
        (
            proptest::collection::vec((1u64..500, 1u64..1000), 1..6),
            1u64..1000
        )
            .prop_map(|(pairs, first)| {
                let mut difficulty = vec![first];
                let mut max_step = Vec::new();
                let (mut d, mut m) = (first, 0);
                for (dd, mm) in pairs {
                    d += dd;
                    m += mm;
                    difficulty.push(d);
                    max_step.push(m);
                }
                ScheduleConfig::fixed_discrete(difficulty, max_step)
                    .build()
                    .unwrap()
            }),
        (1u64..5000).prop_map(|max| ScheduleConfig::constant(max).build().unwrap()),
    ]
}

proptest! {
    #[test]
    fn length_is_within_bounds_and_non_decreasing(s in any_schedule(), probes in proptest::collection::vec(0u64..300_000, 1..64)) {
        let max = s.config().max().unwrap_or(s.max_len());
        let mut probes = probes;
        probes.sort_unstable();
        let mut last = 0;
        for p in probes {
            let len = s.seq_len_at(p);
            prop_assert!(len >= 1 && len <= max, "len {} at {} outside [1, {}]", len, p, max);
            prop_assert!(len >= last, "length fell from {} to {} at {}", last, len, p);
            last = len;
        }
    }

    #[test]
    fn final_length_from_the_warmup_end_on(s in any_schedule(), after in 0u64..1_000_000) {
        let end = s.warmup_end();
        prop_assert_eq!(s.seq_len_at(end), s.max_len());
        prop_assert_eq!(s.seq_len_at(end.saturating_add(after)), s.max_len());
        if end > 0 {
            prop_assert!(s.seq_len_at(end - 1) < s.max_len());
        }
        match s.config() {
            ScheduleConfig::Linear(ramp) => {
                prop_assert_eq!(s.max_len(), ramp.max);
                prop_assert!(end <= (ramp.total as f64 * ramp.duration) as u64);
            }
            ScheduleConfig::Constant(constant) => {
                prop_assert_eq!(s.max_len(), constant.max);
                prop_assert_eq!(end, 0);
            }
            _ => {}
        }
    }

    #[test]
    fn change_points_match_pointwise_evaluation(s in any_schedule(), probes in proptest::collection::vec(0u64..300_000, 1..32)) {
        let points: Vec<_> = s.change_points().collect();
        prop_assert_eq!(points[0].position, 0);
        for w in points.windows(2) {
            prop_assert!(w[0].position < w[1].position && w[0].seq_len < w[1].seq_len);
        }
        for p in probes {
            let idx = points.partition_point(|c| c.position <= p) - 1;
            prop_assert_eq!(points[idx].seq_len, s.seq_len_at(p));
        }
    }

    #[test]
    fn linear_lengths_are_min_max_or_step_multiples(min in 1u64..500, extra in 0u64..3000, step in 1u64..200, d in 0.0f64..=1.0, total in 1u64..50_000) {
        let s = ScheduleConfig::linear(min, min + extra, d, total).with_step(step).build().unwrap();
        for c in s.change_points() {
            prop_assert!(c.seq_len == min || c.seq_len == min + extra || c.seq_len % step == 0);
        }
        let warmup = (total as f64 * d) as u64;
        prop_assert_eq!(s.seq_len_at(warmup), min + extra);
    }
}
