//! Elastic resume: the checkpoints that `N` ranks took at one step, combined into one state
//! that does not depend on the number of ranks ([`MergedState::merge`]), from which any number
//! of ranks resume ([`EpochPlan::resume_merged`]) with no token of the epoch lost or read twice.
//!
//! What the merged state holds, and why it is enough:
//!
//! - **Where each old rank stood in the epoch**: rank `r` of `N` reads the epoch's list (the
//!   units in the epoch's order) at indices `r, r + N, r + 2N, ...`; its checkpoint says how
//!   far it got (a position, and the documents taken from the unit there). Together these say
//!   which units are read, which are partly read (and how far), and which are untouched.
//! - **What each old rank held**: its carried tokens (the sink's), its shuffle buffer, its
//!   counters and its progress. These are tokens taken from the data but not yet emitted.
//!
//! A resumed rank `j` of `M` then reads every `M`-th unit of the epoch's rest (the untouched
//! and partly read units, in the epoch's order, each skipping the documents already taken),
//! and starts with the carried tokens and shuffle buffers of the old ranks `r` with
//! `r % M == j`, their counters summed (so every rank's counters still add up, and the
//! counters of all ranks together are those of the old ranks). A rank of a larger world that
//! inherits no old rank starts empty. From the next epoch on, units are dealt to `M` ranks as
//! usual.
//!
//! **Progress.** The schedule continues from the same step: every rank resumes at step `k`
//! (the ranks were in lockstep). Samples and tokens, which each rank counts for itself, resume
//! at the old ranks' mean, so that a schedule measured in samples or tokens keeps its place
//! (a fraction of the same `total`); when the batch per rank changes with the number of ranks,
//! those counts advance at the new per-rank rate from there.
//!
//! **The epoch's end.** With several new ranks, the batches each emits in the rest of the
//! epoch are what the rank with the least data is sure to fill (as at an epoch's start): the
//! tokens of its untouched units (a partly read unit counts as empty, a lower bound) and of
//! what it inherits. What is left when the epoch ends is dropped and counted, as always with
//! several ranks.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::{CoreState, WarmupCore};
use crate::epochs::EpochConfig;
use crate::error::{Result, StageError};
use crate::plan::{EpochPlan, PlanState, UnitInfo};
use crate::shuffle::ShuffleState;
use crate::sink::{ModeCarry, ModeSink};
use crate::stats::Stats;

/// One unit of an epoch's rest: the unit, and the documents already taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestUnit {
    /// The unit's index.
    pub unit: usize,
    /// Documents already taken from its start.
    pub taken: u64,
}

/// The checkpoints of all ranks at one step, as one state that any number of ranks resumes
/// from; see the module documentation. Opaque; serialize it with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergedState {
    epoch: u64,
    step_in_epoch: u64,
    /// The list the ranks dealt the epoch's units from, when it was not the epoch's order (an
    /// epoch that was itself resumed elastically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rest: Option<Vec<RestUnit>>,
    /// Each old rank's position in its share of the list, and the documents it had taken from
    /// the unit there.
    positions: Vec<(u64, u64)>,
    /// Each old rank's core: progress, carried tokens, shuffle buffer, counters.
    cores: Vec<CoreState>,
}

impl MergedState {
    /// Combines the states of ranks `0..N` (`states[r]` is rank `r`'s), taken at the same step
    /// of the same epoch by ranks in lockstep. States of different steps, epochs or phases
    /// are refused by name.
    pub fn merge(states: &[PlanState]) -> Result<Self> {
        let refuse = |reason: String| Err(StageError::State { reason });
        let Some(first) = states.first() else {
            return refuse("no states to merge".into());
        };
        for (rank, state) in states.iter().enumerate() {
            let what = |field: &str, a: String, b: String| {
                format!("rank {rank}'s {field} is {b}, rank 0's {a}: merge states of one step")
            };
            let pairs = [
                ("epoch", first.epoch(), state.epoch()),
                ("step", first.core().step(), state.core().step()),
                (
                    "step in the epoch",
                    first.step_in_epoch(),
                    state.step_in_epoch(),
                ),
            ];
            if let Some((field, a, b)) = pairs.iter().find(|(_, a, b)| a != b) {
                return refuse(what(field, a.to_string(), b.to_string()));
            }
            if state.rest() != first.rest() {
                return refuse(what(
                    "epoch list",
                    "another elastic resume's".into(),
                    "a different one".into(),
                ));
            }
            if !state.is_reading() {
                return refuse(format!(
                    "rank {rank}'s state is not inside an epoch (the run had ended, or a \
                     single rank was between epochs): resume it with the same ranks"
                ));
            }
        }
        Ok(Self {
            epoch: first.epoch(),
            step_in_epoch: first.step_in_epoch(),
            rest: first.rest().map(<[RestUnit]>::to_vec),
            positions: states.iter().map(PlanState::position).collect(),
            cores: states.iter().map(|s| s.core().clone()).collect(),
        })
    }

    /// The number of ranks whose states were merged.
    pub fn world_size(&self) -> usize {
        self.positions.len()
    }

    /// The epoch the ranks were in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches each rank had emitted.
    pub fn step(&self) -> u64 {
        self.cores.first().map_or(0, CoreState::step)
    }

    /// The epoch's rest: `list` (the units in the order the old ranks dealt them) without
    /// what the old ranks had read, in the same order.
    fn rest_of(&self, list: &[RestUnit]) -> Vec<RestUnit> {
        let n = self.positions.len().max(1);
        list.iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let (position, taken) = self.positions[i % n];
                let at = (i / n) as u64;
                match at.cmp(&position) {
                    std::cmp::Ordering::Less => None,
                    std::cmp::Ordering::Equal => Some(RestUnit {
                        unit: item.unit,
                        taken: item.taken.max(taken),
                    }),
                    std::cmp::Ordering::Greater => Some(*item),
                }
            })
            .collect()
    }

    /// The core rank `rank` of `world` resumes with: the old ranks `r` with
    /// `r % world == rank` handed over (carry, shuffle buffer, counters summed), the progress
    /// at the step, samples and tokens the old ranks' mean.
    fn core_for(&self, rank: usize, world: usize) -> Result<CoreState> {
        let donors: Vec<&CoreState> = self
            .cores
            .iter()
            .enumerate()
            .filter(|(r, _)| r % world.max(1) == rank)
            .map(|(_, core)| core)
            .collect();
        let Some(first) = self.cores.first() else {
            return Err(StageError::State {
                reason: "a merged state of no ranks".into(),
            });
        };
        let n = self.cores.len() as u128;
        let mean = |of: fn(&CoreState) -> u64| {
            let sum: u128 = self.cores.iter().map(|c| u128::from(of(c))).sum();
            u64::try_from(sum / n).unwrap_or(u64::MAX)
        };
        let mut progress = first.progress();
        progress.samples = mean(|c| c.progress().samples);
        progress.tokens = mean(|c| c.progress().tokens);
        let carry =
            ModeCarry::concat(donors.iter().map(|c| c.carry()), first.carry()).map_err(|e| {
                StageError::State {
                    reason: format!("the ranks' carried tokens do not combine: {e}"),
                }
            })?;
        let shuffle = match first.shuffle() {
            Some(_) => Some(ShuffleState::concat(
                donors.iter().filter_map(|c| c.shuffle()),
                rank as u64,
            )?),
            None => None,
        };
        let stats = donors
            .iter()
            .fold(Stats::default(), |sum, c| add(sum, c.stats()));
        Ok(CoreState::from_parts(
            progress,
            first.step(),
            carry,
            shuffle,
            stats,
            donors.iter().map(|c| c.epoch()).max().unwrap_or(0),
        ))
    }
}

/// Tokens a core holds without having emitted them (carried or in its shuffle buffer), by its
/// counters.
fn buffered(stats: &Stats) -> u64 {
    stats
        .tokens_in
        .saturating_sub(stats.tokens_out)
        .saturating_sub(stats.tokens_cut)
        .saturating_sub(stats.tokens_dropped)
}

fn add(a: Stats, b: Stats) -> Stats {
    Stats {
        documents: a.documents.saturating_add(b.documents),
        empty_documents: a.empty_documents.saturating_add(b.empty_documents),
        tokens_in: a.tokens_in.saturating_add(b.tokens_in),
        batches: a.batches.saturating_add(b.batches),
        tokens_out: a.tokens_out.saturating_add(b.tokens_out),
        tokens_cut: a.tokens_cut.saturating_add(b.tokens_cut),
        tokens_dropped: a.tokens_dropped.saturating_add(b.tokens_dropped),
        tokens_buffered: a.tokens_buffered.saturating_add(b.tokens_buffered),
        units_skipped: a.units_skipped.saturating_add(b.units_skipped),
        units_repeated: a.units_repeated.saturating_add(b.units_repeated),
    }
}

impl EpochPlan<ModeSink> {
    /// Rank `config.rank()` of `config.world_size()` resuming from the merged checkpoints of
    /// another number of ranks (or the same); see the module documentation. `units` and the
    /// settings other than the rank and the number of ranks must be the old ranks'.
    pub fn resume_merged(
        units: impl Into<Arc<[UnitInfo]>>,
        config: EpochConfig,
        mut core: WarmupCore<ModeSink>,
        merged: &MergedState,
    ) -> Result<Self> {
        let units: Arc<[UnitInfo]> = units.into();
        // First, as for a plain state: a world larger than the units (2^40 ranks, say) is
        // refused at once, and everything below is bounded by the units and the old ranks.
        config.check(units.len())?;
        let out_of_range = |what: String| StageError::State {
            reason: format!("{what} (a checkpoint of another data set, or edited by hand?)"),
        };
        let epochs = config.epochs();
        if epochs > 0 && merged.epoch >= epochs {
            return Err(out_of_range(format!(
                "epoch {} of a {epochs}-epoch run",
                merged.epoch
            )));
        }
        if let Some(bad) = merged.rest.iter().flatten().find(|r| r.unit >= units.len()) {
            return Err(out_of_range(format!(
                "unit {} of {}",
                bad.unit,
                units.len()
            )));
        }
        let n = merged.positions.len();
        if n == 0 || merged.cores.len() != n {
            return Err(out_of_range(format!(
                "{n} ranks' positions and {} ranks' cores",
                merged.cores.len()
            )));
        }
        if merged.step_in_epoch > merged.step() {
            return Err(out_of_range(format!(
                "batch {} of the epoch, after {} batches in all",
                merged.step_in_epoch,
                merged.step()
            )));
        }
        let (rank, world) = (config.rank(), config.world_size().max(1));
        core.restore(&merged.core_for(rank, world)?)?;
        let list = match &merged.rest {
            Some(rest) => rest.clone(),
            None => Self::epoch_order(&units, &config, merged.epoch)
                .into_iter()
                .map(|unit| RestUnit { unit, taken: 0 })
                .collect(),
        };
        // Each old rank's position within its share of the list (just past it when the rank
        // read all of it), and the documents within that unit.
        for (r, &(position, document)) in merged.positions.iter().enumerate() {
            let share = list.iter().skip(r).step_by(n);
            let len = share.clone().count() as u64;
            let documents = share
                .clone()
                .nth(usize::try_from(position).unwrap_or(usize::MAX))
                .map_or(0, |item| units[item.unit].documents);
            let read_again = position >= len;
            if (!read_again && document > documents) || position > crate::stats::MAX_COUNT {
                return Err(out_of_range(format!(
                    "rank {r} of {n}: document {document} of row group position {position} \
                     (its share has {len})"
                )));
            }
        }
        // A unit an old rank had read to its end is not dealt again as an empty entry: it
        // would shift every later unit to the next rank, and leave the ranks that get such
        // entries less to read.
        let rest: Vec<RestUnit> = merged
            .rest_of(&list)
            .into_iter()
            .filter(|r| r.taken < units[r.unit].documents)
            .collect();
        // With several ranks, the rest of the epoch's batch count: what the rank holding the
        // least is sure to fill, counting a partly read unit as empty.
        // One pass over the rest and one over the old ranks (`world` is at most the units).
        let mut held = vec![0u64; world];
        for (i, r) in rest.iter().enumerate() {
            if r.taken == 0 {
                held[i % world] = held[i % world].saturating_add(units[r.unit].tokens);
            }
        }
        for (r, c) in merged.cores.iter().enumerate() {
            held[r % world] = held[r % world].saturating_add(buffered(&c.stats()));
        }
        let least = held.into_iter().min().unwrap_or(0);
        Self::resume_rest(
            units,
            config,
            core,
            merged.epoch,
            merged.step_in_epoch,
            rest,
            least,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(positions: Vec<(u64, u64)>) -> MergedState {
        MergedState {
            epoch: 0,
            step_in_epoch: 0,
            rest: None,
            positions,
            cores: Vec::new(),
        }
    }

    #[test]
    fn the_rest_leaves_out_what_each_rank_read_and_keeps_the_order() {
        let list: Vec<RestUnit> = (0..10).map(|unit| RestUnit { unit, taken: 0 }).collect();
        // Two ranks: rank 0 read 0, 2 and 3 documents of 4; rank 1 read 1 and nothing of 3.
        let rest = merged(vec![(2, 3), (1, 0)]).rest_of(&list);
        let got: Vec<(usize, u64)> = rest.iter().map(|r| (r.unit, r.taken)).collect();
        assert_eq!(
            got,
            vec![(3, 0), (4, 3), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0)]
        );
        // A rank that read its whole share (and went round again) leaves none of it.
        let rest = merged(vec![(7, 0), (0, 0)]).rest_of(&list);
        let units: Vec<usize> = rest.iter().map(|r| r.unit).collect();
        assert_eq!(units, vec![1, 3, 5, 7, 9]);
        // Documents taken from a unit before (an earlier elastic resume) still count.
        let earlier = vec![
            RestUnit { unit: 4, taken: 5 },
            RestUnit { unit: 6, taken: 0 },
        ];
        let rest = merged(vec![(0, 2), (0, 0)]).rest_of(&earlier);
        assert_eq!(rest, earlier);
    }
}
