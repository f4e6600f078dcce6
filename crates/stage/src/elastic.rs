//! Elastic resume: the checkpoints that `N` ranks took at one step, combined into one state
//! that does not depend on the number of ranks ([`MergedState::merge`]), from which any number
//! of ranks resume ([`EpochPlan::resume_merged`]): every token of the epoch emitted once or
//! counted as dropped.
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
//! What the old ranks leave is dealt to the `M` new ranks by load (`deal`): the pieces each old
//! rank held (its packer's pieces and ready rows and its shuffle buffer's documents one by one;
//! a repacker's carried run whole) and each unit of the epoch's rest (the untouched and partly
//! read units, in the epoch's order, each skipping the documents already taken), largest
//! first, to the new rank holding the least so far. A new rank starts with the pieces it took
//! over; each old rank's counters go to one new rank, and the tokens of pieces that changed
//! hands move between `tokens_in`s with them (so every rank's counters still add up, and the
//! counters of all ranks together are those of the old ranks). Each rank reads its units in the
//! rest's order. Every rank
//! computes the same deal from the merged state, and each entry of the rest names its rank,
//! so that a checkpoint of the resumed ranks resumes, and merges, the same way. From the next
//! epoch on, units are dealt to `M` ranks as usual.
//!
//! **Progress.** The schedule continues from the same step: every rank resumes at step `k`
//! (the ranks were in lockstep). Samples and tokens, which each rank counts for itself, resume
//! at the old ranks' mean, so that a schedule measured in samples or tokens keeps its place
//! (a fraction of the same `total`); when the batch per rank changes with the number of ranks,
//! those counts advance at the new per-rank rate from there.
//!
//! **The epoch's end.** With several new ranks, the batches each emits in the rest of the
//! epoch are what the rank with the least data is sure to fill (as at an epoch's start): the
//! tokens of its units by their footers (a partly read unit's less the tokens its old rank
//! had taken, which every checkpoint records; as empty for a state written before that) and
//! of what it inherits. What is left when the epoch ends, the units a rank did not reach
//! included, is dropped and counted, as always with several ranks. A rest that leaves some
//! rank less than one batch is refused when no epoch follows (every rank would emit nothing);
//! with a later epoch, that rest is dropped and counted, and the next epoch dealt anew.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::{CoreState, WarmupCore};
use crate::epochs::EpochConfig;
use crate::error::{Result, StageError};
use crate::plan::{EpochPlan, PlanState, UnitInfo};
use crate::rest::RestUnit;
use crate::shuffle::ShuffleState;
use crate::sink::{ModeCarry, ModeSink};
use crate::stats::Stats;

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
    /// Each old rank's tokens (EOS not counted) of the documents it had taken from the unit at
    /// its position, when known; empty in states merged before they were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unit_tokens: Vec<Option<u64>>,
    /// Each old rank's core: progress, carried tokens, shuffle buffer, counters.
    cores: Vec<CoreState>,
}

impl MergedState {
    /// The token ids every old rank held (see [`CoreState::token_ids`]).
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.cores.iter().flat_map(CoreState::token_ids)
    }

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
            unit_tokens: states.iter().map(PlanState::unit_tokens).collect(),
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

    /// The epoch's rest: `list` (the units in the order the old ranks dealt them, each to the
    /// rank it names, or entry `i` to rank `i % N`) without what the old ranks had read, in
    /// the same order, each with the documents (and their tokens) already taken. The ranks
    /// `list` names must be below `N` (checked by `resume_merged`).
    fn rest_of(&self, list: &[RestUnit]) -> Vec<RestUnit> {
        let n = self.positions.len().max(1);
        // How many entries of its share each old rank has passed so far.
        let mut seen = vec![0u64; n];
        list.iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let r = item.rank.unwrap_or(i % n);
                let at = seen[r];
                seen[r] += 1;
                let (position, taken) = self.positions[r];
                let unread = RestUnit {
                    rank: None,
                    ..*item
                };
                match at.cmp(&position) {
                    std::cmp::Ordering::Less => None,
                    std::cmp::Ordering::Equal if taken > item.taken => Some(RestUnit {
                        taken,
                        taken_tokens: self.unit_tokens.get(r).copied().flatten(),
                        ..unread
                    }),
                    std::cmp::Ordering::Equal | std::cmp::Ordering::Greater => Some(unread),
                }
            })
            .collect()
    }

    /// The core rank `rank` resumes with, as [`deal`] dealt it: the held pieces it took over
    /// (carries and shuffle buffers combined, in the old ranks' order), the counters of the
    /// old ranks it took those of, summed, with the tokens of the pieces that changed hands
    /// moved between `tokens_in`s (so every rank's counters add up, and all ranks' together
    /// are the old ones), the progress at the step, samples and tokens the old ranks' mean.
    fn core_for(&self, rank: usize, dealt: &Dealt, eos: bool) -> Result<CoreState> {
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
        let (mut carries, mut shuffles) = (Vec::new(), Vec::new());
        let mut stats = Stats::default();
        for (r, core) in self.cores.iter().enumerate() {
            let pieces = held_pieces(core, eos);
            if dealt.counters.get(r) == Some(&rank) {
                let held: u64 = pieces.iter().map(|p| p.tokens).sum();
                let mut own = core.stats();
                own.tokens_in = own.tokens_in.saturating_sub(held);
                stats = add(stats, own);
            }
            let owners = dealt.held.get(r).map_or(&[][..], Vec::as_slice);
            for (piece, _) in pieces.into_iter().zip(owners).filter(|(_, o)| **o == rank) {
                stats.tokens_in = stats.tokens_in.saturating_add(piece.tokens);
                carries.extend(piece.carry);
                shuffles.extend(piece.shuffle);
            }
        }
        let carry = ModeCarry::concat(&carries, first.carry()).map_err(|e| StageError::State {
            reason: format!("the ranks' carried tokens do not combine: {e}"),
        })?;
        let shuffle = match first.shuffle() {
            Some(_) => Some(ShuffleState::concat(&shuffles, rank as u64)?),
            None => None,
        };
        Ok(CoreState::from_parts(
            progress,
            first.step(),
            carry,
            shuffle,
            stats,
            self.cores.iter().map(CoreState::epoch).max().unwrap_or(0),
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

/// One piece of what an old rank held, which one new rank takes over: a packed piece or ready
/// row of its carry, a document of its shuffle buffer, or (the repacker's run, or a hold
/// whose pieces do not add up to its counters) all of it.
struct HeldPiece {
    tokens: u64,
    carry: Option<ModeCarry>,
    shuffle: Option<ShuffleState>,
}

/// What `core` held, as pieces (`eos`: the stage appends an EOS to each document, which a
/// shuffled document's count includes). The same on every rank, so that indices agree.
fn held_pieces(core: &CoreState, eos: bool) -> Vec<HeldPiece> {
    let carry = core
        .carry()
        .items()
        .into_iter()
        .map(|(tokens, carry)| HeldPiece {
            tokens,
            carry: Some(carry),
            shuffle: None,
        });
    let shuffle = core
        .shuffle()
        .map(|s| s.items(eos))
        .unwrap_or_default()
        .into_iter()
        .map(|(tokens, state)| HeldPiece {
            tokens,
            carry: None,
            shuffle: Some(state),
        });
    let pieces: Vec<HeldPiece> = carry.chain(shuffle).collect();
    let held = buffered(&core.stats());
    if pieces.iter().map(|p| p.tokens).sum::<u64>() == held {
        pieces
    } else {
        // The pieces do not account for the counters (a state edited by hand, say): handed
        // over whole, as one piece, which keeps the counters exactly as they were.
        vec![HeldPiece {
            tokens: held,
            carry: Some(core.carry().clone()),
            shuffle: core.shuffle().cloned(),
        }]
    }
}

/// Which new rank takes each thing the old ranks leave ([`deal`]).
pub(crate) struct Dealt {
    /// Each old rank's counters (emitted, cut, dropped, documents...).
    counters: Vec<usize>,
    /// Each old rank's held pieces ([`held_pieces`]), in order.
    held: Vec<Vec<usize>>,
}

/// Deals what the old ranks leave of the epoch to `world` ranks by load, and says the least
/// any rank then holds: the pieces the old ranks held (their carries' packed pieces and ready
/// rows, their shuffle buffers' documents; a repacker's carried run whole) and the units of
/// the rest are taken largest first (held pieces before units on ties, then in order), each
/// going to the rank holding the least so far (the lowest rank on ties); each old rank's
/// counters go to some rank too, at no weight. This keeps the least any rank holds, and so the
/// rest's batch count, as high as the pieces allow (what every other rank holds beyond it is
/// dropped at the epoch's end). Each rank still reads its units in the list's order. Lower
/// bounds throughout: a unit's rest is its footer's tokens less those already taken, and a
/// partly read unit whose taken tokens are not known (a state written before they were
/// recorded) counts as empty. Returns the rest with each unit's rank, where everything held
/// went, and the least. O(pieces log pieces) whatever the number of new ranks, and the same on
/// every rank.
fn deal(
    units: &[UnitInfo],
    merged: &MergedState,
    mut rest: Vec<RestUnit>,
    world: usize,
    eos: bool,
) -> (Vec<RestUnit>, Dealt, u64) {
    /// A piece to deal, ordered for ties: held pieces, then counters, then units.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Piece {
        Held(usize, usize),
        Counters(usize),
        Unit(usize),
    }
    let world = world.max(1);
    let left = |item: &RestUnit| match (item.taken, item.taken_tokens) {
        (0, _) => units[item.unit].tokens,
        (_, Some(taken)) => units[item.unit].tokens.saturating_sub(taken),
        (_, None) => 0,
    };
    let held: Vec<Vec<HeldPiece>> = merged
        .cores
        .iter()
        .map(|core| held_pieces(core, eos))
        .collect();
    let mut pieces: Vec<(u64, Piece)> = Vec::new();
    for (r, held) in held.iter().enumerate() {
        pieces.push((0, Piece::Counters(r)));
        pieces.extend(
            held.iter()
                .enumerate()
                .map(|(i, piece)| (piece.tokens, Piece::Held(r, i))),
        );
    }
    pieces.extend(
        rest.iter()
            .enumerate()
            .map(|(i, item)| (left(item), Piece::Unit(i))),
    );
    pieces.sort_by_key(|&(tokens, piece)| (Reverse(tokens), piece));
    let mut least_first: BinaryHeap<Reverse<(u64, usize)>> =
        (0..world).map(|rank| Reverse((0, rank))).collect();
    let mut dealt = Dealt {
        counters: vec![0; held.len()],
        held: held.iter().map(|h| vec![0; h.len()]).collect(),
    };
    for (tokens, piece) in pieces {
        let Some(Reverse((load, rank))) = least_first.pop() else {
            break;
        };
        match piece {
            Piece::Held(r, i) => dealt.held[r][i] = rank,
            Piece::Counters(r) => dealt.counters[r] = rank,
            Piece::Unit(i) => rest[i].rank = Some(rank),
        }
        least_first.push(Reverse((load.saturating_add(tokens), rank)));
    }
    let least = least_first
        .into_iter()
        .map(|Reverse((tokens, _))| tokens)
        .min()
        .unwrap_or(0);
    (rest, dealt, least)
}

impl EpochPlan<ModeSink> {
    /// Rank `config.rank()` of `config.world_size()` resuming from the merged checkpoints of
    /// another number of ranks (or the same); see the module documentation. `units` and the
    /// settings other than the rank and the number of ranks must be the old ranks'. A rest of
    /// the last epoch that leaves some rank less than one batch is an error (every rank would
    /// emit nothing), as more ranks than units is.
    pub fn resume_merged(
        units: impl Into<Arc<[UnitInfo]>>,
        config: EpochConfig,
        mut core: WarmupCore<ModeSink>,
        merged: &MergedState,
    ) -> Result<Self> {
        let units: Arc<[UnitInfo]> = units.into();
        // The rank and the number of ranks first, as for a plain state: more ranks than units
        // is refused at once, and everything below is bounded by the units, not by the number
        // of ranks (looping over the ranks, 2^40 of them never returned).
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
        let n = merged.positions.len();
        if n == 0 || merged.cores.len() != n {
            return Err(out_of_range(format!(
                "{n} ranks' positions and {} ranks' cores",
                merged.cores.len()
            )));
        }
        if !merged.unit_tokens.is_empty() && merged.unit_tokens.len() != n {
            return Err(out_of_range(format!(
                "{n} ranks' positions and {} ranks' unit tokens",
                merged.unit_tokens.len()
            )));
        }
        if let Some(bad) = merged.rest.iter().flatten().find(|r| r.unit >= units.len()) {
            return Err(out_of_range(format!(
                "unit {} of {}",
                bad.unit,
                units.len()
            )));
        }
        if let Some(rank) = merged
            .rest
            .iter()
            .flatten()
            .find_map(|r| r.rank.filter(|&k| k >= n))
        {
            return Err(out_of_range(format!(
                "a unit of the epoch's list dealt to rank {rank} of {n}"
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
        let list = match &merged.rest {
            Some(rest) => rest.clone(),
            None => Self::epoch_order(&units, &config, merged.epoch)
                .into_iter()
                .map(|unit| RestUnit {
                    unit,
                    taken: 0,
                    taken_tokens: None,
                    rank: None,
                })
                .collect(),
        };
        // Each old rank's share of the list, its position within it (just past it when the
        // rank read all of it), and the documents within that unit.
        let mut shares: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, item) in list.iter().enumerate() {
            shares[item.rank.unwrap_or(i % n)].push(item.unit);
        }
        for (r, (&(position, document), share)) in merged.positions.iter().zip(&shares).enumerate()
        {
            let len = share.len() as u64;
            let documents = usize::try_from(position)
                .ok()
                .and_then(|at| share.get(at))
                .map_or(0, |&unit| units[unit].documents);
            let read_again = position >= len;
            if (!read_again && document > documents) || position > crate::stats::MAX_COUNT {
                return Err(out_of_range(format!(
                    "rank {r} of {n}: document {document} of row group position {position} \
                     (its share has {len})"
                )));
            }
        }
        // A unit an old rank had read to its end is not dealt again as an empty entry: the
        // rank given it would have less to read than the deal counts on.
        let rest: Vec<RestUnit> = merged
            .rest_of(&list)
            .into_iter()
            .filter(|r| r.taken < units[r.unit].documents)
            .collect();
        let eos = core.warmup().eos_id().is_some();
        let (rest, dealt, least) = deal(&units, merged, rest, world, eos);
        core.restore(&merged.core_for(rank, &dealt, eos)?)?;
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
            unit_tokens: Vec::new(),
            cores: Vec::new(),
        }
    }

    fn at(unit: usize, taken: u64) -> RestUnit {
        RestUnit {
            unit,
            taken,
            taken_tokens: None,
            rank: None,
        }
    }

    #[test]
    fn the_rest_leaves_out_what_each_rank_read_and_keeps_the_order() {
        let list: Vec<RestUnit> = (0..10).map(|unit| at(unit, 0)).collect();
        // Two ranks: rank 0 read 0, 2 and 3 documents of 4; rank 1 read 1 and nothing of 3.
        let mut two = merged(vec![(2, 3), (1, 0)]);
        two.unit_tokens = vec![Some(42), Some(0)];
        let rest = two.rest_of(&list);
        let got: Vec<(usize, u64)> = rest.iter().map(|r| (r.unit, r.taken)).collect();
        assert_eq!(
            got,
            vec![(3, 0), (4, 3), (5, 0), (6, 0), (7, 0), (8, 0), (9, 0)]
        );
        // With the tokens of the documents taken.
        assert_eq!(rest[1].taken_tokens, Some(42));
        // Dealt by rank rather than round-robin: rank 1 of 2 reads units 0, 1 and 2.
        let dealt: Vec<RestUnit> = (0..5)
            .map(|unit| RestUnit {
                rank: Some(usize::from(unit < 3)),
                ..at(unit, 0)
            })
            .collect();
        let rest = merged(vec![(0, 0), (2, 0)]).rest_of(&dealt);
        let units: Vec<usize> = rest.iter().map(|r| r.unit).collect();
        assert_eq!(units, vec![2, 3, 4]);
        // A rank that read its whole share (and went round again) leaves none of it.
        let rest = merged(vec![(7, 0), (0, 0)]).rest_of(&list);
        let units: Vec<usize> = rest.iter().map(|r| r.unit).collect();
        assert_eq!(units, vec![1, 3, 5, 7, 9]);
        // Documents taken from a unit before (an earlier elastic resume) still count.
        let earlier = vec![at(4, 5), at(6, 0)];
        let rest = merged(vec![(0, 2), (0, 0)]).rest_of(&earlier);
        assert_eq!(rest, earlier);
    }

    #[test]
    fn the_rest_is_dealt_by_load_and_a_partly_read_unit_counts_what_is_left_of_it() {
        let units: Vec<UnitInfo> = [100, 10, 10, 10, 10, 60]
            .into_iter()
            .map(|tokens| UnitInfo {
                documents: 5,
                tokens,
            })
            .collect();
        let all: Vec<RestUnit> = (0..6).map(|unit| at(unit, 0)).collect();
        // Round-robin would leave rank 1 with 80 tokens (and rank 0 with 120): by load, 100
        // each, and each rank reads its units in the list's order.
        let (dealt, _, least) = deal(&units, &merged(vec![(0, 0)]), all, 2, false);
        let ranks: Vec<Option<usize>> = dealt.iter().map(|r| r.rank).collect();
        assert_eq!(
            ranks,
            vec![Some(0), Some(1), Some(1), Some(1), Some(1), Some(1)]
        );
        assert_eq!(least, 100);
        // A partly read unit counts its footer's tokens less those taken, or nothing when
        // those are not known.
        let partly = vec![
            RestUnit {
                taken_tokens: Some(45),
                ..at(5, 2)
            },
            at(0, 2),
        ];
        let (_, _, least) = deal(&units, &merged(vec![(0, 0)]), partly, 1, false);
        assert_eq!(least, 15);
    }
}
