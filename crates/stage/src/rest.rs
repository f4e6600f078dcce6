//! [`RestUnit`]: one unit of what is left of an epoch, as a checkpoint records it (the epoch
//! plan's state holds a list of them after an elastic resume; `elastic.rs` deals them).

use serde::{Deserialize, Serialize};

/// One unit of an epoch's rest: the unit, and the documents already taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestUnit {
    /// The unit's index.
    pub unit: usize,
    /// Documents already taken from its start.
    pub taken: u64,
    /// Tokens of those documents (EOS not counted), when known: the unit's rest holds at least
    /// its footer's count less these. `None` in states written before they were recorded (the
    /// rest of such a unit then counts as empty in the batch count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_tokens: Option<u64>,
    /// The rank that reads it, when the rest was dealt by load; `None`: entry `i` of the list
    /// goes to rank `i % world_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
}
