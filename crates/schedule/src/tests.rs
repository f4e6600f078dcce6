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
        shapes: None,
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

mod shape_policy {
    use super::*;
    use crate::ShapePolicy;

    /// Every kind, each with a ramp wide enough for a policy to matter.
    fn every_kind() -> Vec<ScheduleConfig> {
        vec![
            ScheduleConfig::linear(64, 2048, 0.3, 10_000).into(),
            composer(10_000, 0.3, 64, 2048, 8).into(),
            root(64, 2048, 8, 3_000, 1),
            root(64, 2048, 8, 3_000, 2),
            ScheduleConfig::fixed_discrete(vec![64, 100, 512, 1000, 2048], vec![10, 20, 30, 40]),
            ScheduleConfig::constant(2048),
        ]
    }

    fn lengths(schedule: &Schedule) -> Vec<u64> {
        schedule.change_points().map(|c| c.seq_len).collect()
    }

    #[test]
    fn off_by_default_and_off_is_the_kind_itself() {
        for config in every_kind() {
            assert_eq!(config.shapes(), None);
            let plain = config.build().unwrap();
            assert_eq!(plain.allowed_lengths(), None);
            assert_eq!(plain, plain.without_shapes());
            // Serialized without a `shapes` key, so configs and checkpoints written before the
            // policy existed read back the same.
            assert!(!serde_json::to_string(&config).unwrap().contains("shapes"));
        }
    }

    #[test]
    fn even_yields_at_most_k_lengths_each_snapped_down() {
        for config in every_kind() {
            let plain = config.build().unwrap();
            for k in [2u32, 3, 4, 8, 16] {
                let snapped = config
                    .clone()
                    .with_shapes(ShapePolicy::Even(k))
                    .build()
                    .unwrap();
                let allowed = snapped.allowed_lengths().unwrap().to_vec();
                assert!(allowed.len() <= k as usize, "{config:?} K={k}: {allowed:?}");
                assert_eq!(allowed.last(), Some(&plain.max_len()));
                assert_eq!(allowed.first(), Some(&plain.min_len()));
                let seen = lengths(&snapped);
                assert!(seen.len() <= k as usize);
                assert!(seen.iter().all(|l| allowed.contains(l)));
                assert_eq!(snapped.max_len(), plain.max_len());
                for position in (0..10_500).step_by(37) {
                    let (a, b) = (snapped.seq_len_at(position), plain.seq_len_at(position));
                    assert!(a <= b, "{config:?} K={k} at {position}: {a} > {b}");
                    // Down to the nearest allowed: no allowed length between them.
                    assert!(!allowed.iter().any(|&l| a < l && l <= b));
                }
                // The longest length from the same position on: the warmup ends together.
                assert_eq!(snapped.warmup_end(), plain.warmup_end());
            }
        }
    }

    #[test]
    fn even_lengths_are_multiples_of_the_step_between_the_ends() {
        let s = ScheduleConfig::composer(64, 2048, 0.3, 10_000)
            .with_step(64)
            .with_shapes(ShapePolicy::Even(8))
            .build()
            .unwrap();
        let allowed = s.allowed_lengths().unwrap();
        assert_eq!(allowed, [64, 320, 576, 896, 1152, 1472, 1728, 2048]);
        assert!(allowed.iter().all(|l| l % 64 == 0));
    }

    #[test]
    fn a_huge_even_count_is_every_multiple_of_the_step_at_no_cost() {
        let s = ScheduleConfig::linear(64, 1 << 40, 0.5, 1_000)
            .with_step(1 << 30)
            .with_shapes(ShapePolicy::Even(u32::MAX))
            .build()
            .unwrap();
        let allowed = s.allowed_lengths().unwrap();
        assert_eq!(allowed.len(), 1025); // 64, then 2^30 .. 2^40 in steps of 2^30
        let small = ScheduleConfig::linear(8, 64, 0.5, 100)
            .with_shapes(ShapePolicy::Even(u32::MAX))
            .build()
            .unwrap();
        assert_eq!(
            small.allowed_lengths().unwrap(),
            [8, 16, 24, 32, 40, 48, 56, 64]
        );
    }

    #[test]
    fn powers_of_two_keep_the_ends() {
        let s = ScheduleConfig::linear(48, 1000, 0.5, 1_000)
            .with_shapes(ShapePolicy::PowersOfTwo)
            .build()
            .unwrap();
        assert_eq!(s.allowed_lengths().unwrap(), [48, 64, 128, 256, 512, 1000]);
        assert_eq!(lengths(&s), [48, 64, 128, 256, 512, 1000]);
    }

    #[test]
    fn a_list_snaps_down_and_below_its_shortest_up() {
        let s = ScheduleConfig::linear(8, 1024, 1.0, 1_024)
            .with_step(8)
            .with_shapes(ShapePolicy::Lengths(vec![1024, 256, 512]))
            .build()
            .unwrap();
        assert_eq!(s.allowed_lengths().unwrap(), [256, 512, 1024]);
        assert_eq!(s.seq_len_at(0), 256); // 8 scheduled: nothing below 256 to snap to
        assert_eq!(s.seq_len_at(600), 512); // 600 scheduled
        assert_eq!(s.seq_len_at(1_023), 512); // 1016 scheduled
        assert_eq!(s.seq_len_at(1_024), 1024);
        assert_eq!(s.min_len(), 256);
    }

    #[test]
    fn bad_policies_name_the_field() {
        let base = ScheduleConfig::linear(8, 1024, 0.3, 1_000).config();
        for (policy, needle) in [
            (ShapePolicy::Even(1), "at least 2"),
            (ShapePolicy::Even(0), "at least 2"),
            (
                ShapePolicy::Lengths(vec![256, 512]),
                "must include the schedule's longest length 1024",
            ),
            (ShapePolicy::Lengths(vec![0, 1024]), ">= 1"),
            (ShapePolicy::Lengths(vec![2048, 1024]), "2048 is longer"),
            (ShapePolicy::Lengths(vec![1024, 1024]), "at least 2 lengths"),
        ] {
            let err = base.clone().with_shapes(policy).build().unwrap_err();
            assert!(
                matches!(
                    &err,
                    ScheduleError::InvalidField {
                        field: "shapes",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn config_files_and_flags_spell_it_one_way_each() {
        let toml: ScheduleConfig = toml::from_str(
            "kind = \"composer\"\nmin = 64\nmax = 1024\nduration = 0.3\ntotal = 1000\nshapes = { even = 4 }",
        )
        .unwrap();
        assert_eq!(toml.shapes(), Some(&ShapePolicy::Even(4)));
        let pow2: ScheduleConfig =
            toml::from_str("kind = \"constant\"\nmax = 64\nshapes = \"powers_of_two\"").unwrap();
        assert_eq!(pow2.shapes(), Some(&ShapePolicy::PowersOfTwo));
        let list: ScheduleConfig = toml::from_str(
            "kind = \"fixed_discrete\"\ndifficulty = [8, 64]\nmax_step = [5]\nshapes = { lengths = [8, 64] }",
        )
        .unwrap();
        assert_eq!(list.shapes(), Some(&ShapePolicy::Lengths(vec![8, 64])));
        for (text, policy) in [
            ("even:8", ShapePolicy::Even(8)),
            ("powers_of_two", ShapePolicy::PowersOfTwo),
            ("pow2", ShapePolicy::PowersOfTwo),
            ("256, 512,1024", ShapePolicy::Lengths(vec![256, 512, 1024])),
        ] {
            assert_eq!(text.parse::<ShapePolicy>().unwrap(), policy);
            // Display reads back.
            assert_eq!(policy.to_string().parse::<ShapePolicy>().unwrap(), policy);
        }
        assert!("even:x".parse::<ShapePolicy>().is_err());
        let bare = "8".parse::<ShapePolicy>().unwrap_err();
        assert!(bare.contains("even:8"), "{bare}");
        assert!("squares".parse::<ShapePolicy>().is_err());
    }

    proptest! {
        #[test]
        fn any_policy_is_monotone_bounded_and_ends_at_max(
            min in 1u64..512, extra in 0u64..4096, step in 1u64..128, k in 2u32..20,
            total in 1u64..50_000, duration in 0.0f64..=1.0, pow2 in any::<bool>(),
        ) {
            let max = min + extra;
            let policy = if pow2 { ShapePolicy::PowersOfTwo } else { ShapePolicy::Even(k) };
            let config: ScheduleConfig =
                ScheduleConfig::linear(min, max, duration, total).with_step(step).into();
            let plain = config.build().unwrap();
            let snapped = config.with_shapes(policy).build().unwrap();
            let allowed = snapped.allowed_lengths().unwrap().to_vec();
            if !pow2 {
                prop_assert!(allowed.len() <= k as usize);
            }
            let mut last = 0;
            for c in snapped.change_points() {
                prop_assert!(c.seq_len > last);
                prop_assert!(allowed.contains(&c.seq_len));
                last = c.seq_len;
            }
            prop_assert_eq!(last, max);
            for position in (0..=total).step_by((total as usize / 97).max(1)) {
                prop_assert!(snapped.seq_len_at(position) <= plain.seq_len_at(position));
            }
        }
    }
}
