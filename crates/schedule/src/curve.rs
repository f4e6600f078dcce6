//! The validated schedule curves and their evaluation.

/// A validated curve: every field has passed [`crate::ScheduleConfig::build`]'s checks, so
/// evaluation cannot divide by zero.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Curve {
    Constant {
        len: u64,
    },
    Linear {
        min: u64,
        max: u64,
        step: u64,
        /// Progress at which `max` is reached; lengths ramp over `[0, warmup)`.
        warmup: u64,
    },
    Composer {
        min: u64,
        max: u64,
        step: u64,
        /// Composer's `update_every_n_steps`, >= 1.
        every: u64,
    },
    DeepSpeedRoot {
        min: u64,
        max: u64,
        step: u64,
        total_step: u64,
        degree: u32,
    },
    Discrete {
        difficulty: Vec<u64>,
        max_step: Vec<u64>,
    },
    /// OLMo-core's `SequenceLengthSchedulerCallback`; `keep` is `Some(keep_multiple_of)` in
    /// truncate mode, `None` in split mode.
    Olmo {
        min: u64,
        max: u64,
        warmup_steps: u64,
        keep: Option<u64>,
    },
}

/// Python's `float // float` for positive operands (`float_floor_div`: fmod, then the
/// quotient of the rest, floored and nudged as CPython does).
fn python_floor_div(x: f64, y: f64) -> f64 {
    let rem = x % y;
    let div = (x - rem) / y;
    if div == 0.0 {
        return 0.0;
    }
    let floor = div.floor();
    if div - floor > 0.5 {
        floor + 1.0
    } else {
        floor
    }
}

/// OLMo-core's `_get_split_sequence_length` / `_get_truncated_sequence_length` at its 1-based
/// trainer `step` (the callback returns before either past `warmup_steps`: full length).
fn olmo_len(min: u64, max: u64, warmup_steps: u64, keep: Option<u64>, step: u64) -> u64 {
    if step > warmup_steps {
        return max;
    }
    // min + (max - min) * min(step, warmup_steps) / warmup_steps: an int product, then
    // Python's true division (correctly rounded, as one f64 division of exact operands is
    // below 2^53), then a float sum.
    let raw = (max - min) as f64 * step.min(warmup_steps) as f64;
    let seq_len = min as f64 + raw / warmup_steps as f64;
    if let Some(keep) = keep {
        // keep_multiple_of * (seq_len // keep_multiple_of), then int().
        (keep as f64 * python_floor_div(seq_len, keep as f64)) as u64
    } else {
        // n = floor(log(seq_len // min, 2)); min * 2 ** n. Python's math.log(x, 2) is
        // log(x) / log(2) from the C library, as Rust's ln.
        let ratio = python_floor_div(seq_len, min as f64);
        let n = (ratio.ln() / 2f64.ln()).floor();
        min << (n as u32)
    }
}

impl Curve {
    /// The length at `position` (in the schedule's unit).
    pub(crate) fn len_at(&self, position: u64) -> u64 {
        match *self {
            Self::Constant { len } => len,
            Self::Linear {
                min,
                max,
                step,
                warmup,
            } => {
                if position >= warmup {
                    return max;
                }
                // Exact integer interpolation (u128: (max - min) * position cannot overflow).
                let raw = u128::from(min)
                    + u128::from(max - min) * u128::from(position) / u128::from(warmup);
                let raw = raw as u64; // < max, so it fits.
                let quantized = raw - raw % step;
                quantized.max(min)
            }
            Self::Composer {
                min,
                max,
                step,
                every,
            } => {
                // curr_seq_len = step_size * (batch // update_every_n_steps) + min_seq_length;
                // at or past max the batch is left at full length.
                let len = u128::from(step) * u128::from(position / every) + u128::from(min);
                if len >= u128::from(max) {
                    max
                } else {
                    len as u64
                }
            }
            Self::DeepSpeedRoot {
                min,
                max,
                step,
                total_step,
                degree,
            } => {
                // The same float operations as DeepSpeed's __fixed_root_get_difficulty.
                let ratio = (position as f64 / total_step as f64).powf(1.0 / f64::from(degree));
                let raw = (ratio * (max - min) as f64 + min as f64).floor();
                // Saturating float-to-int cast: far past the end the value is clamped anyway.
                let mut len = raw as u64;
                len -= len % step;
                if len < min {
                    // DeepSpeed 0.19 rounds a length that fell below min up by one step.
                    len += step;
                }
                len.min(max)
            }
            Self::Discrete {
                ref difficulty,
                ref max_step,
            } => {
                let index = max_step.partition_point(|&m| position > m);
                difficulty[index]
            }
            // OLMo-core's trainer counts steps from 1 (it adds one before the callbacks run).
            Self::Olmo {
                min,
                max,
                warmup_steps,
                keep,
            } => olmo_len(min, max, warmup_steps, keep, position.saturating_add(1)),
        }
    }

    /// The length the curve settles at.
    pub(crate) fn final_len(&self) -> u64 {
        match self {
            Self::Constant { len } => *len,
            Self::Linear { max, .. }
            | Self::Composer { max, .. }
            | Self::DeepSpeedRoot { max, .. }
            | Self::Olmo { max, .. } => *max,
            Self::Discrete { difficulty, .. } => difficulty.last().copied().unwrap_or(1),
        }
    }

    /// The smallest length the curve yields.
    pub(crate) fn first_len(&self) -> u64 {
        self.len_at(0)
    }
}

/// The first position after `from` at which `len_at` differs from `len_at(from)`, or `None`
/// when it never changes again, for a non-decreasing `len_at` that settles at `final_len`.
/// O(log) evaluations: exponential then binary search, since the positions whose length
/// exceeds the current one form an upper interval.
pub(crate) fn next_change(len_at: impl Fn(u64) -> u64, final_len: u64, from: u64) -> Option<u64> {
    let current = len_at(from);
    if current >= final_len {
        return None;
    }
    let mut low = from; // len_at(low) == current
    let mut span: u64 = 1;
    let high = loop {
        let probe = from.saturating_add(span);
        if len_at(probe) != current {
            break probe;
        }
        if probe == u64::MAX {
            return None;
        }
        low = probe;
        span = span.saturating_mul(2);
    };
    let mut high = high;
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if len_at(mid) == current {
            low = mid;
        } else {
            high = mid;
        }
    }
    Some(high)
}
