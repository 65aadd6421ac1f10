//! Transaction coordinators (KIP-98, transaction version 1) as a sans-IO state machine: for
//! each `transactional.id`, its producer id and epoch, its state (Kafka's `TransactionState`),
//! the partitions of its open transaction, and its timeout.
//!
//! Every change is two-phase, as offset commits are: a call returns a [`Transition`] whose
//! record the shell appends to the id's partition of `__transaction_state`
//! ([`coordinator_partition`]); once the record is in the log the shell calls
//! [`TransactionCoordinator::apply`], or [`TransactionCoordinator::abandon`] if it could not be
//! written. While a transition is being written the id answers CONCURRENT_TRANSACTIONS.
//! Ending a transaction goes PrepareCommit/PrepareAbort (written), then markers to every
//! partition of the transaction ([`Markers`], the shape of a WriteTxnMarkers request, so that
//! in a cluster the shell sends them to the partitions' leaders), then
//! CompleteCommit/CompleteAbort (written). A transaction open past its timeout is aborted with
//! the producer's epoch bumped, which fences the producer that let it hang.
//!
//! No I/O, no clock: time arrives with each call; new producer ids come from the caller.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use crate::records::RecordFormatError;
use crate::txn_log::{self, TransactionLogValue};

/// The internal topic transaction coordinators keep their state in.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
pub const DEFAULT_MAX_TIMEOUT_MS: i32 = 15 * 60 * 1000;

/// `transactional.id.expiration.ms`: a transactional id with no transaction open and no
/// change for this long is forgotten (7 days).
pub const DEFAULT_ID_EXPIRATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Kafka's transaction states, with the ids `__transaction_state` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        Self::ALL
            .iter()
            .position(|state| *state == self)
            .unwrap_or(0) as i8
    }

    pub fn from_id(id: i8) -> Option<TxnState> {
        usize::try_from(id)
            .ok()
            .and_then(|index| Self::ALL.get(index))
            .copied()
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        Self::ALL.into_iter().find(|state| state.name() == name)
    }
}

/// What a coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open (or ending) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// When the open transaction started (its first AddPartitionsToTxn); -1 when none.
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// A change to one transactional id, to be written to `__transaction_state` before it takes
/// effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub transactional_id: String,
    pub next: TxnMetadata,
}

impl Transition {
    /// The record to append: key and value in Kafka's format.
    pub fn record(&self) -> (Bytes, Option<Bytes>) {
        let value = TransactionLogValue {
            producer_id: self.next.producer_id,
            producer_epoch: self.next.producer_epoch,
            timeout_ms: self.next.timeout_ms,
            status: self.next.state.id(),
            partitions: self.next.partitions.clone(),
            last_update_ms: self.next.last_update_ms,
            start_ms: self.next.start_ms,
        };
        (
            txn_log::encode_key(&self.transactional_id),
            Some(txn_log::encode_value(&value)),
        )
    }
}

/// The markers a transaction's end needs: one control batch per partition, of this producer
/// id and epoch (a WriteTxnMarkers request's content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// What an InitProducerId needs written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write it, then answer with its producer id and epoch.
    Write(Transition),
    /// The id has a transaction open: it is aborted with a bumped epoch first (this
    /// transition, then its markers, then the completion). Answer CONCURRENT_TRANSACTIONS; the
    /// producer retries and then gets its new epoch.
    FenceFirst(Transition),
}

/// What an EndTxn needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write it, then the markers, then the completion.
    Write(Transition),
    /// The transaction already ended this way (a retried EndTxn): answer at once.
    AlreadyDone,
}

#[derive(Debug)]
struct Entry {
    metadata: TxnMetadata,
    busy: Busy,
    /// Created by the transition being written: abandoning it removes the entry.
    fresh: bool,
}

/// Whether a job owns an id, during which its other requests get CONCURRENT_TRANSACTIONS
/// (Kafka's pending state). The shell writes without the coordinator's lock, so this, not
/// the lock, keeps two writers of one id apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Idle,
    /// A transition is being written.
    Writing,
    /// The transaction's end is written and its markers are being written: the id must not
    /// begin another transaction, which a late marker of this one would end.
    Markers,
}

/// Every transactional id this coordinator owns.
#[derive(Debug)]
pub struct TransactionCoordinator {
    max_timeout_ms: i32,
    entries: HashMap<String, Entry>,
    /// Producer id → transactional id, for checking transactional produce requests.
    by_producer: HashMap<i64, String>,
}

type Result<T> = std::result::Result<T, ResponseError>;

impl TransactionCoordinator {
    pub fn new(max_timeout_ms: i32) -> Self {
        TransactionCoordinator {
            max_timeout_ms,
            entries: HashMap::new(),
            by_producer: HashMap::new(),
        }
    }

    /// Takes in a record read back from `__transaction_state` at start (in log order). A
    /// tombstone removes the id.
    pub fn replay(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> std::result::Result<(), RecordFormatError> {
        let id = txn_log::decode_key(key)?;
        let Some(value) = value else {
            self.forget(&id);
            return Ok(());
        };
        let value = txn_log::decode_value(value)?;
        let state = TxnState::from_id(value.status)
            .ok_or(RecordFormatError::InvalidLength("transaction status"))?;
        let metadata = TxnMetadata {
            producer_id: value.producer_id,
            producer_epoch: value.producer_epoch,
            timeout_ms: value.timeout_ms,
            state,
            partitions: value.partitions,
            start_ms: value.start_ms,
            last_update_ms: value.last_update_ms,
        };
        self.install(&id, metadata);
        Ok(())
    }

    fn install(&mut self, id: &str, metadata: TxnMetadata) {
        self.by_producer
            .insert(metadata.producer_id, id.to_string());
        if let Some(previous) = self.entries.insert(
            id.to_string(),
            Entry {
                metadata,
                busy: Busy::Idle,
                fresh: false,
            },
        ) {
            let producer_id = previous.metadata.producer_id;
            if self.entries[id].metadata.producer_id != producer_id {
                self.by_producer.remove(&producer_id);
            }
        }
    }

    /// InitProducerId with a transactional id. `expected` is the producer id and epoch a
    /// producer that already had one names (KIP-360, v3+); `allocate` hands out a new
    /// producer id.
    pub fn init_producer_id(
        &mut self,
        now_ms: i64,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: &mut dyn FnMut() -> Result<i64>,
    ) -> Result<InitOutcome> {
        if id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let Some(entry) = self.entries.get(id) else {
            let next = TxnMetadata {
                producer_id: allocate()?,
                producer_epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now_ms,
            };
            return Ok(InitOutcome::Write(self.begin(id, next)));
        };
        if entry.busy != Busy::Idle {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let current = entry.metadata.clone();
        if let Some((producer_id, epoch)) = expected.filter(|(producer_id, _)| *producer_id >= 0) {
            if producer_id != current.producer_id || epoch != current.producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                let next = TxnMetadata {
                    producer_epoch: current.producer_epoch.saturating_add(1),
                    state: TxnState::PrepareAbort,
                    last_update_ms: now_ms,
                    ..current
                };
                Ok(InitOutcome::FenceFirst(self.begin(id, next)))
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                // An epoch about to run out starts a new producer id instead.
                let (producer_id, producer_epoch) = if current.producer_epoch >= i16::MAX - 1 {
                    (allocate()?, 0)
                } else {
                    (current.producer_id, current.producer_epoch + 1)
                };
                let next = TxnMetadata {
                    producer_id,
                    producer_epoch,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms,
                };
                Ok(InitOutcome::Write(self.begin(id, next)))
            }
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's `__consumer_offsets`
    /// partition). `None` when every partition is already in the open transaction.
    pub fn add_partitions(
        &mut self,
        now_ms: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Option<Transition>> {
        let current = self.check_producer(id, producer_id, epoch)?;
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Dead => return Err(ResponseError::InvalidProducerIdMapping),
            TxnState::Empty
            | TxnState::Ongoing
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort => {}
        }
        let ongoing = current.state == TxnState::Ongoing;
        if ongoing && partitions.iter().all(|p| current.partitions.contains(p)) {
            return Ok(None);
        }
        let mut next = current;
        if !ongoing {
            next.partitions.clear();
            next.start_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.state = TxnState::Ongoing;
        next.last_update_ms = now_ms;
        Ok(Some(self.begin(id, next)))
    }

    /// EndTxn: commit or abort the open transaction.
    pub fn end_transaction(
        &mut self,
        now_ms: i64,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<EndOutcome> {
        let current = self.check_producer(id, producer_id, epoch)?;
        let outcome = match (current.state, commit) {
            (TxnState::Ongoing, _) => {
                let next = TxnMetadata {
                    state: if commit {
                        TxnState::PrepareCommit
                    } else {
                        TxnState::PrepareAbort
                    },
                    last_update_ms: now_ms,
                    ..current
                };
                EndOutcome::Write(self.begin(id, next))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                EndOutcome::AlreadyDone
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(ResponseError::ConcurrentTransactions)
            }
            _ => return Err(ResponseError::InvalidTxnState),
        };
        Ok(outcome)
    }

    /// The producer named in a request must be the id's current one.
    fn check_producer(&self, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMetadata> {
        let entry = self
            .entries
            .get(id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if entry.busy != Busy::Idle {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if entry.metadata.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if entry.metadata.producer_epoch != epoch {
            return Err(ResponseError::ProducerFenced);
        }
        Ok(entry.metadata.clone())
    }

    /// Marks the id busy while `next` is written.
    fn begin(&mut self, id: &str, next: TxnMetadata) -> Transition {
        match self.entries.get_mut(id) {
            Some(entry) => entry.busy = Busy::Writing,
            None => {
                self.entries.insert(
                    id.to_string(),
                    Entry {
                        metadata: next.clone(),
                        busy: Busy::Writing,
                        fresh: true,
                    },
                );
            }
        }
        Transition {
            transactional_id: id.to_string(),
            next,
        }
    }

    /// The transition's record is in the log: it takes effect. Returns the markers to write
    /// when the transaction is now ending; the id stays busy until the caller reports them
    /// written ([`Self::markers_written`]) or not ([`Self::markers_failed`]).
    pub fn apply(&mut self, transition: Transition) -> Option<Markers> {
        let Transition {
            transactional_id,
            next,
        } = transition;
        let markers = markers_of(&transactional_id, &next);
        self.install(&transactional_id, next);
        if markers.is_some() {
            if let Some(entry) = self.entries.get_mut(&transactional_id) {
                entry.busy = Busy::Markers;
            }
        }
        markers
    }

    /// The transition could not be written: nothing changes.
    pub fn abandon(&mut self, transition: &Transition) {
        let id = &transition.transactional_id;
        let fresh = self.entries.get(id).is_some_and(|entry| entry.fresh);
        if fresh {
            self.entries.remove(id);
        } else {
            self.release(id);
        }
    }

    /// Every marker of the ending transaction is written: CompleteCommit or CompleteAbort.
    /// `None` unless the caller holds the id's markers job.
    pub fn markers_written(&mut self, now_ms: i64, id: &str) -> Option<Transition> {
        let entry = self.entries.get(id)?;
        let state = match entry.metadata.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        if entry.busy != Busy::Markers {
            return None;
        }
        let next = TxnMetadata {
            state,
            partitions: BTreeSet::new(),
            start_ms: -1,
            last_update_ms: now_ms,
            ..entry.metadata.clone()
        };
        Some(self.begin(id, next))
    }

    /// Not every marker of the ending transaction could be written: the id is free again,
    /// still ending, for [`Self::take_unfinished`] to hand out once more.
    pub fn markers_failed(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id) {
            if entry.busy == Busy::Markers {
                entry.busy = Busy::Idle;
            }
        }
    }

    /// Transactions open longer than their timeout at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, entry)| {
                entry.busy == Busy::Idle
                    && entry.metadata.state == TxnState::Ongoing
                    && now_ms.saturating_sub(entry.metadata.start_ms)
                        >= i64::from(entry.metadata.timeout_ms)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Aborts a transaction that outlived its timeout, bumping the epoch so that the producer
    /// that left it open is fenced.
    pub fn abort_expired(&mut self, now_ms: i64, id: &str) -> Option<Transition> {
        let entry = self.entries.get(id)?;
        if entry.busy != Busy::Idle || entry.metadata.state != TxnState::Ongoing {
            return None;
        }
        let next = TxnMetadata {
            producer_epoch: entry.metadata.producer_epoch.saturating_add(1),
            state: TxnState::PrepareAbort,
            last_update_ms: now_ms,
            ..entry.metadata.clone()
        };
        Some(self.begin(id, next))
    }

    /// Transactional ids idle (no transaction open, no change) for `expiration_ms` at
    /// `now_ms`, each busy from now on: the shell writes its tombstone, then calls
    /// [`Self::forget`], or [`Self::release`] if the tombstone could not be written.
    pub fn take_idle(&mut self, now_ms: i64, expiration_ms: i64) -> Vec<String> {
        self.entries
            .iter_mut()
            .filter(|(_, entry)| {
                entry.busy == Busy::Idle
                    && matches!(
                        entry.metadata.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                    && now_ms.saturating_sub(entry.metadata.last_update_ms) >= expiration_ms
            })
            .map(|(id, entry)| {
                entry.busy = Busy::Writing;
                id.clone()
            })
            .collect()
    }

    /// A write for an existing id (its tombstone, or a transition: see [`Self::abandon`])
    /// failed: the id is unchanged, and free for its next request.
    pub fn release(&mut self, id: &str) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.busy = Busy::Idle;
        }
    }

    /// The tombstone that removes `id` from `__transaction_state`.
    pub fn tombstone(id: &str) -> (Bytes, Option<Bytes>) {
        (txn_log::encode_key(id), None)
    }

    /// Forgets an idle id whose tombstone is in the log; its next InitProducerId gets a new
    /// producer id.
    pub fn forget(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id) {
            self.by_producer.remove(&entry.metadata.producer_id);
        }
    }

    /// Forgets every transactional id `moved` names: another broker leads its partition of
    /// `__transaction_state` now, and coordinates it from the log.
    pub fn unload(&mut self, moved: impl Fn(&str) -> bool) {
        let leaving: Vec<String> = self
            .entries
            .keys()
            .filter(|id| moved(id))
            .cloned()
            .collect();
        for id in leaving {
            self.forget(&id);
        }
    }

    /// Transactions whose end was written but whose markers may not all be (a restart in
    /// between, a marker refused): the shell writes them again (a second marker is harmless
    /// while the transaction is still ending) and completes them. Each id handed out is busy
    /// until the shell reports its markers written or failed.
    pub fn take_unfinished(&mut self) -> Vec<Markers> {
        self.entries
            .iter_mut()
            .filter(|(_, entry)| entry.busy == Busy::Idle)
            .filter_map(|(id, entry)| {
                let markers = markers_of(id, &entry.metadata)?;
                entry.busy = Busy::Markers;
                Some(markers)
            })
            .collect()
    }

    /// Whether `producer_id` at `epoch` may write a transactional batch to this partition
    /// now: its transaction is open and holds the partition (KIP-890's server-side check,
    /// which keeps a late batch from hanging a transaction that already ended).
    pub fn verify(&self, producer_id: i64, epoch: i16, topic: &str, partition: i32) -> Result<()> {
        let metadata = self
            .by_producer
            .get(&producer_id)
            .and_then(|id| self.entries.get(id))
            .map(|entry| &entry.metadata)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if epoch < metadata.producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        let holds = metadata.state == TxnState::Ongoing
            && epoch == metadata.producer_epoch
            && metadata
                .partitions
                .contains(&(topic.to_string(), partition));
        if !holds {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    pub fn describe(&self, id: &str) -> Option<&TxnMetadata> {
        self.entries
            .get(id)
            .filter(|entry| !entry.fresh)
            .map(|entry| &entry.metadata)
    }

    /// Every transactional id and its state, sorted by id.
    pub fn list(&self) -> Vec<(&str, &TxnMetadata)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.fresh)
            .map(|(id, entry)| (id.as_str(), &entry.metadata))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }
}

/// The markers a transaction in PrepareCommit or PrepareAbort needs; `None` in any other state.
fn markers_of(id: &str, metadata: &TxnMetadata) -> Option<Markers> {
    let commit = match metadata.state {
        TxnState::PrepareCommit => true,
        TxnState::PrepareAbort => false,
        _ => return None,
    };
    Some(Markers {
        transactional_id: id.to_string(),
        producer_id: metadata.producer_id,
        producer_epoch: metadata.producer_epoch,
        commit,
        partitions: metadata.partitions.iter().cloned().collect(),
    })
}

/// The partition of an internal topic that a coordinator key (a group id, a transactional
/// id) maps to: `abs(key.hashCode()) % partitions` with Java's `String.hashCode`, as Kafka
/// maps it, so a cluster finds the same coordinator Kafka would.
pub fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "an internal topic has {partitions} partitions"
    );
    let hash = key.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    });
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests;
