//! Shape policies: a bounded set of sequence lengths for compiled training.
//!
//! `torch.compile` (and a captured CUDA graph) specialises on input shapes, so every new length
//! of a warmup costs a compilation: 64 to 2048 in steps of 8 is 249 of them. A shape policy
//! allows at most a few lengths and snaps each position's length **down** to the nearest
//! allowed one, so the curriculum keeps its direction (never longer than scheduled) and a
//! trainer compiles each shape once, up front. The schedule's longest length is always allowed:
//! the warm pass runs at it and training ends at it.

use serde::{Deserialize, Serialize};

use crate::error::ScheduleError;

/// Which lengths a schedule may yield (the `shapes` field of every schedule kind).
///
/// In a config file: `shapes = { even = 8 }`, `shapes = "powers_of_two"`, or
/// `shapes = { lengths = [256, 512, 1024] }`; on the command line `--shapes even:8`,
/// `--shapes powers_of_two`, `--shapes 256,512,1024`.
///
/// ```
/// use seqwarm_schedule::{ScheduleConfig, ShapePolicy};
///
/// let schedule = ScheduleConfig::linear(64, 2048, 0.5, 1_000)
///     .with_step(8)
///     .with_shapes(ShapePolicy::Even(4))
///     .build()?;
/// let lengths: Vec<u64> = schedule.change_points().map(|c| c.seq_len).collect();
/// assert_eq!(lengths, [64, 720, 1384, 2048]);
/// assert_eq!(schedule.seq_len_at(250), 720); // 1 056 unsnapped, snapped down
/// # Ok::<(), seqwarm_schedule::ScheduleError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ShapePolicy {
    /// At most this many lengths (>= 2), evenly spaced from the schedule's first length to its
    /// longest, each between them rounded down to a multiple of the schedule's `step` (8 for
    /// the kinds without one).
    Even(u32),
    /// The schedule's first length, every power of two above it and below its longest length,
    /// and the longest length: about log2(max / min) + 2 lengths.
    PowersOfTwo,
    /// Exactly these lengths. The longest must be the schedule's longest length; positions
    /// whose length is below the shortest listed are given the shortest listed (snapped up:
    /// there is nothing below to snap to).
    Lengths(Vec<u64>),
}

impl std::fmt::Display for ShapePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Even(count) => write!(f, "even:{count}"),
            Self::PowersOfTwo => f.write_str("powers_of_two"),
            Self::Lengths(lengths) => {
                let text: Vec<String> = lengths.iter().map(u64::to_string).collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

impl std::str::FromStr for ShapePolicy {
    type Err = String;
    /// `even:K`, `powers_of_two` (or `pow2`), or a comma-separated list of lengths.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(count) = s.strip_prefix("even:") {
            return count
                .trim()
                .parse()
                .map(Self::Even)
                .map_err(|e| format!("shape policy `{s}`: the count after `even:` {e}"));
        }
        if s == "powers_of_two" || s == "pow2" {
            return Ok(Self::PowersOfTwo);
        }
        if !s.contains(',') && s.parse::<u64>().is_ok() {
            return Err(format!(
                "shape policy `{s}`: a single length is not a policy; even:{s} allows {s} evenly \
                 spaced lengths, a list needs at least 2"
            ));
        }
        s.split(',')
            .map(|part| part.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map(Self::Lengths)
            .map_err(|_| {
                format!(
                    "unknown shape policy `{s}`; expected even:K, powers_of_two, or a \
                     comma-separated list of lengths"
                )
            })
    }
}

/// The allowed lengths of a built schedule, ascending; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllowedLengths(Vec<u64>);

impl AllowedLengths {
    /// The allowed set of `policy` for a curve from `first` to `longest` whose lengths are
    /// multiples of `step`.
    pub(crate) fn new(
        policy: &ShapePolicy,
        first: u64,
        longest: u64,
        step: u64,
    ) -> Result<Self, ScheduleError> {
        let mut lengths = match policy {
            ShapePolicy::Even(count) => {
                let count = u64::from(*count);
                if count < 2 {
                    return Err(invalid(
                        policy,
                        "even needs at least 2 lengths (a single length is kind = \"constant\")",
                    ));
                }
                // No more points than distinct lengths can exist (a larger K gives the same
                // set), so a huge K costs nothing: every step's multiple is then allowed.
                let count = count.min((longest - first) / step + 2);
                let span = u128::from(longest - first);
                (0..count)
                    .map(|i| {
                        if i + 1 == count {
                            return longest;
                        }
                        // < longest, so it fits a u64.
                        let raw = (u128::from(first) + span * u128::from(i) / u128::from(count - 1))
                            as u64;
                        (raw - raw % step).max(first)
                    })
                    .collect()
            }
            ShapePolicy::PowersOfTwo => {
                let mut lengths = vec![first];
                let mut power = first.checked_next_power_of_two();
                while let Some(p) = power.filter(|&p| p < longest) {
                    lengths.push(p);
                    power = p.checked_mul(2);
                }
                lengths.push(longest);
                lengths
            }
            ShapePolicy::Lengths(list) => {
                if list.contains(&0) {
                    return Err(invalid(policy, "every length must be >= 1"));
                }
                if let Some(&bad) = list.iter().find(|&&l| l > longest) {
                    return Err(invalid(
                        policy,
                        &format!("{bad} is longer than the schedule's longest length {longest}"),
                    ));
                }
                if !list.contains(&longest) {
                    return Err(invalid(
                        policy,
                        &format!(
                            "must include the schedule's longest length {longest} (training \
                             ends there and the warm pass runs there)"
                        ),
                    ));
                }
                let mut lengths = list.clone();
                lengths.sort_unstable();
                lengths.dedup();
                if lengths.len() < 2 {
                    return Err(invalid(
                        policy,
                        "needs at least 2 lengths (a single length is kind = \"constant\")",
                    ));
                }
                lengths
            }
        };
        lengths.sort_unstable();
        lengths.dedup();
        Ok(Self(lengths))
    }

    /// The longest allowed length not above `len`, or the shortest allowed when every one is
    /// above it.
    pub(crate) fn snap(&self, len: u64) -> u64 {
        match self.0.partition_point(|&l| l <= len) {
            0 => self.0[0],
            i => self.0[i - 1],
        }
    }

    /// The allowed lengths, ascending.
    pub(crate) fn as_slice(&self) -> &[u64] {
        &self.0
    }
}

fn invalid(policy: &ShapePolicy, reason: &str) -> ScheduleError {
    ScheduleError::InvalidField {
        field: "shapes",
        value: policy.to_string(),
        reason: reason.to_string(),
    }
}
