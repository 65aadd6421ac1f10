//! What a consumer reads, and from where: its subscription (topics, a pattern, or partitions
//! assigned by hand), the partitions it has now, and for each of them the next offset to fetch.
//!
//! [`SubscriptionState`] is plain data, changed by the consumer's shell as events arrive (an
//! assignment from the group, a fetch response, a user's `seek` or `pause`) and asked what to do
//! next: which partitions to fetch from and at which offsets, which need a starting position
//! (from the committed offset or by `auto.offset.reset`), which offsets to commit. It performs
//! no I/O and reads no clock.
//!
//! The three ways to subscribe are exclusive, as in Kafka: subscribing to topics or a pattern
//! while partitions are assigned by hand, or the reverse, is an error until
//! [`unsubscribe`](SubscriptionState::unsubscribe).
//!
//! ```
//! use runnel_client::consumer::subscription::{
//!     OffsetReset, PositionNeeded, SubscriptionState, TopicPartition,
//! };
//!
//! let mut state = SubscriptionState::new(OffsetReset::Earliest, true);
//! state.subscribe(["orders"]).unwrap();
//! let orders_0 = TopicPartition::new("orders", 0);
//! state.assign_from_group([orders_0.clone()]).unwrap();
//! // No position yet: ask the coordinator for the committed offset.
//! assert_eq!(state.partitions_needing_position(), [(orders_0.clone(), PositionNeeded::FetchCommitted)]);
//! state.set_committed(&orders_0, Some(42));
//! assert_eq!(state.partitions_needing_position(), [(orders_0.clone(), PositionNeeded::Committed(42))]);
//! state.seek(&orders_0, 42).unwrap();
//! assert_eq!(state.fetchable_partitions().collect::<Vec<_>>(), [(&orders_0, 42)]);
//! state.update_position(&orders_0, 50, Some(0));
//! state.update_high_watermark(&orders_0, 60);
//! assert_eq!(state.lag(&orders_0), Some(10));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use regex::{Regex, RegexBuilder};

/// The most memory a compiled subscription pattern may take.
const PATTERN_SIZE_LIMIT_BYTES: usize = 1 << 20;

/// One partition of one topic.
///
/// ```
/// use runnel_client::TopicPartition;
///
/// let tp = TopicPartition::new("orders", 3);
/// assert_eq!(tp.to_string(), "orders-3");
/// // Ordered by topic, then partition.
/// assert!(TopicPartition::new("orders", 10) > tp);
/// assert!(TopicPartition::new("audit", 99) < tp);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index, from 0.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    /// `topic-partition`, as Kafka prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where to start reading a partition that has no position: Kafka's `auto.offset.reset`, and
/// what `seek_to_beginning`/`seek_to_end` ask for.
///
/// ```
/// use runnel_client::OffsetReset;
///
/// assert_eq!(OffsetReset::from_config("earliest"), Some(OffsetReset::Earliest));
/// assert_eq!(OffsetReset::from_config("smallest"), None); // the pre-0.9 name is not taken
/// assert_eq!(OffsetReset::Latest.to_string(), "latest");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end offset (the last stable offset under `read_committed`): only new records.
    Latest,
    /// No automatic choice: a partition with no committed offset is an error.
    None,
}

impl OffsetReset {
    /// The `auto.offset.reset` value: `earliest`, `latest` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
            OffsetReset::None => "none",
        }
    }

    /// The reset an `auto.offset.reset` value names.
    pub fn from_config(value: &str) -> Option<OffsetReset> {
        [
            OffsetReset::Earliest,
            OffsetReset::Latest,
            OffsetReset::None,
        ]
        .into_iter()
        .find(|reset| reset.as_str() == value)
    }
}

impl fmt::Display for OffsetReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the consumer chose what to read.
///
/// ```
/// use runnel_client::consumer::subscription::{OffsetReset, Subscribed, SubscriptionState};
///
/// let mut state = SubscriptionState::new(OffsetReset::Latest, true);
/// assert!(matches!(state.subscribed(), Subscribed::Nothing));
/// state.subscribe_pattern("orders-.*").unwrap();
/// assert!(matches!(state.subscribed(), Subscribed::Pattern(_)));
/// assert!(state.is_subscribed_to("orders-eu"));
/// assert!(!state.is_subscribed_to("audit-orders-eu")); // the whole name must match
/// ```
#[derive(Debug, Clone, Default)]
pub enum Subscribed {
    /// Nothing yet, or unsubscribed.
    #[default]
    Nothing,
    /// These topics, through a group.
    Topics(BTreeSet<String>),
    /// Every topic whose whole name matches, through a group.
    Pattern(Regex),
    /// Partitions the user assigned; no group assignment.
    Manual,
}

/// A request the subscription's current mode cannot take.
///
/// ```
/// use runnel_client::consumer::subscription::{
///     OffsetReset, SubscriptionError, SubscriptionState, TopicPartition,
/// };
///
/// let mut state = SubscriptionState::new(OffsetReset::Latest, false);
/// state.assign([TopicPartition::new("orders", 0)]).unwrap();
/// assert_eq!(state.subscribe(["orders"]), Err(SubscriptionError::Exclusive));
/// let elsewhere = TopicPartition::new("orders", 1);
/// assert_eq!(state.seek(&elsewhere, 0), Err(SubscriptionError::NotAssigned(elsewhere)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Topics, a pattern and manual assignment are exclusive.
    #[error("subscription to topics, a pattern and manual assignment are mutually exclusive; unsubscribe first")]
    Exclusive,
    /// The pattern does not compile (or compiles too large).
    #[error("invalid subscription pattern: {0}")]
    InvalidPattern(String),
    /// The operation needs the partition to be assigned to this consumer.
    #[error("partition {0} is not assigned to this consumer")]
    NotAssigned(TopicPartition),
    /// A group assignment arrived while the consumer subscribes to nothing (or assigns by hand).
    #[error("a group assignment needs a subscription to topics or a pattern")]
    NotSubscribed,
    /// The group assigned a partition of a topic this consumer does not subscribe to (the
    /// leader saw another subscription): rejoin rather than read it.
    #[error("the group assigned {0}, whose topic this consumer does not subscribe to")]
    UnsubscribedTopic(TopicPartition),
}

/// The consumer's state for one assigned partition.
///
/// ```
/// use runnel_client::consumer::subscription::{OffsetReset, SubscriptionState, TopicPartition};
///
/// let mut state = SubscriptionState::new(OffsetReset::Earliest, false);
/// let tp = TopicPartition::new("orders", 0);
/// state.assign([tp.clone()]).unwrap();
/// state.seek(&tp, 100).unwrap();
/// state.pause(&[tp.clone()]).unwrap();
/// let partition = state.partition(&tp).unwrap();
/// assert_eq!(partition.position, Some(100));
/// assert!(partition.paused);
/// assert_eq!(partition.high_watermark, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to fetch, once known.
    pub position: Option<i64>,
    /// The leader epoch of the last fetched batch, sent with commits and used to detect log
    /// truncation.
    pub leader_epoch: Option<i32>,
    /// The group's committed offset, once fetched (`None` also while unknown, see
    /// [`committed_known`](Self::committed_known)).
    pub committed: Option<i64>,
    /// Whether `committed` is the coordinator's answer (an absent offset is an answer too).
    pub committed_known: bool,
    /// Paused by the user: stays assigned, is not fetched.
    pub paused: bool,
    /// A reset asked for by `seek_to_beginning`/`seek_to_end` or an out-of-range fetch, not yet
    /// done.
    pub pending_reset: Option<OffsetReset>,
    /// The high watermark the last fetch response reported.
    pub high_watermark: Option<i64>,
}

/// What a partition without a position needs before it can be fetched.
///
/// ```
/// use runnel_client::consumer::subscription::{
///     OffsetReset, PositionNeeded, SubscriptionState, TopicPartition,
/// };
///
/// // Without a group there are no committed offsets: `auto.offset.reset` decides at once.
/// let mut state = SubscriptionState::new(OffsetReset::Latest, false);
/// let tp = TopicPartition::new("orders", 0);
/// state.assign([tp.clone()]).unwrap();
/// assert_eq!(
///     state.partitions_needing_position(),
///     [(tp.clone(), PositionNeeded::Reset(OffsetReset::Latest))],
/// );
/// // ListOffsets answered 500: the partition starts there.
/// state.seek(&tp, 500).unwrap();
/// assert!(state.partitions_needing_position().is_empty());
///
/// // A user's `seek_to_beginning` is a pending reset, completed by its own lookup.
/// state.seek_to_beginning(&[tp.clone()]).unwrap();
/// assert_eq!(
///     state.partitions_needing_position(),
///     [(tp.clone(), PositionNeeded::Reset(OffsetReset::Earliest))],
/// );
/// assert!(state.complete_reset(&tp, OffsetReset::Earliest, 0));
/// assert_eq!(state.position(&tp), Some(0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionNeeded {
    /// Ask the group coordinator (OffsetFetch), then call
    /// [`SubscriptionState::set_committed`].
    FetchCommitted,
    /// Start at this committed offset ([`SubscriptionState::seek`]).
    Committed(i64),
    /// Look the offset up (ListOffsets, earliest or latest), then call
    /// [`SubscriptionState::complete_reset`].
    Reset(OffsetReset),
    /// No committed offset and `auto.offset.reset=none`: report Kafka's
    /// `NoOffsetForPartition` error to the user.
    NoOffset,
}

/// The next offset to read and the leader epoch it was read under: what a commit sends.
///
/// ```
/// use runnel_client::consumer::subscription::{
///     OffsetAndEpoch, OffsetReset, SubscriptionState, TopicPartition,
/// };
///
/// let mut state = SubscriptionState::new(OffsetReset::Earliest, true);
/// let tp = TopicPartition::new("orders", 0);
/// state.assign([tp.clone()]).unwrap();
/// state.seek(&tp, 10).unwrap();
/// state.update_position(&tp, 25, Some(3));
/// let to_commit = state.all_consumed_offsets();
/// assert_eq!(to_commit[&tp], OffsetAndEpoch { offset: 25, leader_epoch: Some(3) });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAndEpoch {
    /// The next offset to read: the last record consumed plus one, as Kafka commits it.
    pub offset: i64,
    /// The leader epoch of the last batch read, when known (KIP-320).
    pub leader_epoch: Option<i32>,
}

/// Partitions an assignment adds and takes away, for the rebalance callbacks.
///
/// ```
/// use runnel_client::consumer::subscription::{OffsetReset, SubscriptionState, TopicPartition};
///
/// let mut state = SubscriptionState::new(OffsetReset::Latest, true);
/// state.subscribe(["orders"]).unwrap();
/// let tp = |p| TopicPartition::new("orders", p);
/// state.assign_from_group([tp(0), tp(1)]).unwrap();
/// let change = state.assign_from_group([tp(1), tp(2)]).unwrap();
/// assert_eq!(change.added, [tp(2)]);
/// assert_eq!(change.revoked, [tp(0)]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentChange {
    /// Partitions newly assigned, sorted.
    pub added: Vec<TopicPartition>,
    /// Partitions no longer assigned, sorted.
    pub revoked: Vec<TopicPartition>,
}

/// The consumer's subscription and its assigned partitions' positions. See the module docs
/// for a group-driven walk-through; by hand:
///
/// ```
/// use runnel_client::consumer::subscription::{OffsetReset, SubscriptionState, TopicPartition};
///
/// let mut state = SubscriptionState::new(OffsetReset::Earliest, false);
/// let (a, b) = (TopicPartition::new("orders", 0), TopicPartition::new("orders", 1));
/// state.assign([a.clone(), b.clone()]).unwrap();
/// state.seek(&a, 0).unwrap();
/// state.seek(&b, 7).unwrap();
/// state.pause(&[b.clone()]).unwrap();
/// // Paused partitions stay assigned but are not fetched.
/// assert_eq!(state.fetchable_partitions().collect::<Vec<_>>(), [(&a, 0)]);
/// assert!(state.has_all_positions());
/// state.seek_to_end(&[a.clone()]).unwrap();
/// assert_eq!(state.position(&a), None); // until ListOffsets answers
/// ```
#[derive(Debug, Clone)]
pub struct SubscriptionState {
    subscribed: Subscribed,
    auto_offset_reset: OffsetReset,
    /// Whether starting positions come from a group's committed offsets (a `group.id` is set).
    group_offsets: bool,
    assignment: BTreeMap<TopicPartition, PartitionState>,
}

impl SubscriptionState {
    /// An empty state. `auto_offset_reset` says where to start a partition with no committed
    /// offset; `group_offsets` whether committed offsets exist at all (a consumer with a
    /// `group.id`, subscribed or assigning by hand).
    pub fn new(auto_offset_reset: OffsetReset, group_offsets: bool) -> SubscriptionState {
        SubscriptionState {
            subscribed: Subscribed::Nothing,
            auto_offset_reset,
            group_offsets,
            assignment: BTreeMap::new(),
        }
    }

    /// How the consumer chose what to read.
    pub fn subscribed(&self) -> &Subscribed {
        &self.subscribed
    }

    /// Subscribes to `topics`, replacing an earlier topic subscription; no topics is
    /// [`unsubscribe`](Self::unsubscribe). Returns whether the topics changed (then the
    /// consumer rejoins its group). Assigned partitions stay until the group reassigns.
    pub fn subscribe<T: Into<String>>(
        &mut self,
        topics: impl IntoIterator<Item = T>,
    ) -> Result<bool, SubscriptionError> {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        match &self.subscribed {
            Subscribed::Pattern(_) | Subscribed::Manual => {
                return Err(SubscriptionError::Exclusive)
            }
            Subscribed::Topics(current) if *current == topics => return Ok(false),
            _ => {}
        }
        if topics.is_empty() {
            self.unsubscribe();
        } else {
            self.subscribed = Subscribed::Topics(topics);
        }
        Ok(true)
    }

    /// Subscribes to every topic whose whole name matches `pattern` (as Java's
    /// `Pattern.matches`), replacing an earlier pattern. Returns whether the pattern changed.
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<bool, SubscriptionError> {
        match &self.subscribed {
            Subscribed::Topics(_) | Subscribed::Manual => return Err(SubscriptionError::Exclusive),
            Subscribed::Pattern(current) if current.as_str() == anchored(pattern) => {
                return Ok(false)
            }
            _ => {}
        }
        let regex = RegexBuilder::new(&anchored(pattern))
            .size_limit(PATTERN_SIZE_LIMIT_BYTES)
            .build()
            .map_err(|error| SubscriptionError::InvalidPattern(error.to_string()))?;
        self.subscribed = Subscribed::Pattern(regex);
        Ok(true)
    }

    /// Reads exactly `partitions`, without a group assignment; no partitions is
    /// [`unsubscribe`](Self::unsubscribe). Partitions already assigned keep their state.
    pub fn assign(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<AssignmentChange, SubscriptionError> {
        if matches!(
            self.subscribed,
            Subscribed::Topics(_) | Subscribed::Pattern(_)
        ) {
            return Err(SubscriptionError::Exclusive);
        }
        let partitions: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        if partitions.is_empty() {
            let revoked = self.assignment.keys().cloned().collect();
            self.unsubscribe();
            return Ok(AssignmentChange {
                added: Vec::new(),
                revoked,
            });
        }
        self.subscribed = Subscribed::Manual;
        Ok(self.replace_assignment(partitions))
    }

    /// Forgets the subscription and every assigned partition.
    pub fn unsubscribe(&mut self) {
        self.subscribed = Subscribed::Nothing;
        self.assignment.clear();
    }

    /// Whether the subscription covers `topic`: named, or matching the pattern. Under manual
    /// assignment, whether one of its partitions is assigned.
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed {
            Subscribed::Nothing => false,
            Subscribed::Topics(topics) => topics.contains(topic),
            Subscribed::Pattern(regex) => regex.is_match(topic),
            Subscribed::Manual => self.assignment.keys().any(|tp| tp.topic == topic),
        }
    }

    /// The topics among `known` (from cluster metadata) this consumer wants: what it sends in
    /// its JoinGroup subscription. Named topics are included even if unknown yet.
    pub fn subscribed_topics<'a>(
        &self,
        known: impl IntoIterator<Item = &'a str>,
    ) -> BTreeSet<String> {
        match &self.subscribed {
            Subscribed::Topics(topics) => topics.clone(),
            Subscribed::Pattern(regex) => known
                .into_iter()
                .filter(|topic| regex.is_match(topic))
                .map(str::to_owned)
                .collect(),
            Subscribed::Nothing | Subscribed::Manual => BTreeSet::new(),
        }
    }

    /// Takes the partitions the group assigned. Partitions still assigned keep their position,
    /// pause and committed offset (the cooperative protocol keeps them across a rebalance);
    /// the others are dropped. On error (no subscription, or a partition of a topic not
    /// subscribed to) nothing changes.
    pub fn assign_from_group(
        &mut self,
        partitions: impl IntoIterator<Item = TopicPartition>,
    ) -> Result<AssignmentChange, SubscriptionError> {
        if !matches!(
            self.subscribed,
            Subscribed::Topics(_) | Subscribed::Pattern(_)
        ) {
            return Err(SubscriptionError::NotSubscribed);
        }
        let partitions: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        if let Some(foreign) = partitions
            .iter()
            .find(|tp| !self.is_subscribed_to(&tp.topic))
        {
            return Err(SubscriptionError::UnsubscribedTopic(foreign.clone()));
        }
        Ok(self.replace_assignment(partitions))
    }

    /// Gives up `partitions` (a cooperative revocation, or every partition before an eager
    /// rejoin). Partitions not assigned are ignored. Returns those that were assigned.
    pub fn revoke<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = &'a TopicPartition>,
    ) -> Vec<TopicPartition> {
        partitions
            .into_iter()
            .filter(|tp| self.assignment.remove(*tp).is_some())
            .cloned()
            .collect()
    }

    fn replace_assignment(&mut self, partitions: BTreeSet<TopicPartition>) -> AssignmentChange {
        let revoked: Vec<TopicPartition> = self
            .assignment
            .keys()
            .filter(|tp| !partitions.contains(*tp))
            .cloned()
            .collect();
        for tp in &revoked {
            self.assignment.remove(tp);
        }
        let mut added = Vec::new();
        for tp in partitions {
            if let std::collections::btree_map::Entry::Vacant(entry) = self.assignment.entry(tp) {
                added.push(entry.key().clone());
                entry.insert(PartitionState::default());
            }
        }
        AssignmentChange { added, revoked }
    }

    /// The assigned partitions, sorted.
    pub fn assigned_partitions(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.assignment.keys()
    }

    /// The assigned partitions by topic: the `owned_partitions` of a JoinGroup subscription.
    pub fn owned_partitions(&self) -> Vec<(String, Vec<i32>)> {
        let mut owned: Vec<(String, Vec<i32>)> = Vec::new();
        for tp in self.assignment.keys() {
            match owned.last_mut() {
                Some((topic, partitions)) if *topic == tp.topic => partitions.push(tp.partition),
                _ => owned.push((tp.topic.clone(), vec![tp.partition])),
            }
        }
        owned
    }

    /// Whether `tp` is assigned.
    pub fn is_assigned(&self, tp: &TopicPartition) -> bool {
        self.assignment.contains_key(tp)
    }

    /// The state of an assigned partition.
    pub fn partition(&self, tp: &TopicPartition) -> Option<&PartitionState> {
        self.assignment.get(tp)
    }

    fn assigned_mut(
        &mut self,
        tp: &TopicPartition,
    ) -> Result<&mut PartitionState, SubscriptionError> {
        self.assignment
            .get_mut(tp)
            .ok_or_else(|| SubscriptionError::NotAssigned(tp.clone()))
    }

    /// Fetches `tp` from `offset` next, cancelling a pending reset.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), SubscriptionError> {
        let state = self.assigned_mut(tp)?;
        state.position = Some(offset);
        state.leader_epoch = None;
        state.pending_reset = None;
        Ok(())
    }

    /// Asks for `partitions` to be read from their log start offsets; none means every
    /// assigned partition, as in Kafka. The offsets are looked up before the next fetch.
    pub fn seek_to_beginning(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), SubscriptionError> {
        self.request_reset(partitions, OffsetReset::Earliest)
    }

    /// Asks for `partitions` to be read from their log end offsets; none means every assigned
    /// partition, as in Kafka.
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<(), SubscriptionError> {
        self.request_reset(partitions, OffsetReset::Latest)
    }

    fn request_reset(
        &mut self,
        partitions: &[TopicPartition],
        reset: OffsetReset,
    ) -> Result<(), SubscriptionError> {
        if let Some(missing) = partitions.iter().find(|tp| !self.is_assigned(tp)) {
            return Err(SubscriptionError::NotAssigned(missing.clone()));
        }
        let reset_one = |state: &mut PartitionState| {
            state.position = None;
            state.leader_epoch = None;
            state.pending_reset = Some(reset);
        };
        if partitions.is_empty() {
            self.assignment.values_mut().for_each(reset_one);
        } else {
            for tp in partitions {
                if let Some(state) = self.assignment.get_mut(tp) {
                    reset_one(state);
                }
            }
        }
        Ok(())
    }

    /// A fetch found `tp`'s position out of range (OFFSET_OUT_OF_RANGE): forget it and reset
    /// by `auto.offset.reset`. Returns false if `tp` is no longer assigned.
    pub fn offset_out_of_range(&mut self, tp: &TopicPartition) -> bool {
        let reset = self.auto_offset_reset;
        match self.assignment.get_mut(tp) {
            Some(state) => {
                state.position = None;
                state.leader_epoch = None;
                state.pending_reset = Some(reset);
                true
            }
            None => false,
        }
    }

    /// The offset a reset looked up arrived. It applies only if the same reset is still
    /// pending (a `seek` in between wins); returns whether it applied.
    pub fn complete_reset(&mut self, tp: &TopicPartition, reset: OffsetReset, offset: i64) -> bool {
        match self.assignment.get_mut(tp) {
            Some(state) if state.position.is_none() && state.pending_reset == Some(reset) => {
                state.position = Some(offset);
                state.pending_reset = None;
                true
            }
            _ => false,
        }
    }

    /// Stops fetching `partitions` until resumed; they stay assigned.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<(), SubscriptionError> {
        self.set_paused(partitions, true)
    }

    /// Fetches `partitions` again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<(), SubscriptionError> {
        self.set_paused(partitions, false)
    }

    fn set_paused(
        &mut self,
        partitions: &[TopicPartition],
        paused: bool,
    ) -> Result<(), SubscriptionError> {
        if let Some(missing) = partitions.iter().find(|tp| !self.is_assigned(tp)) {
            return Err(SubscriptionError::NotAssigned(missing.clone()));
        }
        for tp in partitions {
            if let Some(state) = self.assignment.get_mut(tp) {
                state.paused = paused;
            }
        }
        Ok(())
    }

    /// Whether `tp` is assigned and paused.
    pub fn is_paused(&self, tp: &TopicPartition) -> bool {
        self.assignment.get(tp).is_some_and(|state| state.paused)
    }

    /// The paused partitions.
    pub fn paused_partitions(&self) -> impl Iterator<Item = &TopicPartition> + '_ {
        self.assignment
            .iter()
            .filter(|(_, state)| state.paused)
            .map(|(tp, _)| tp)
    }

    /// The partitions to fetch now, with their positions: assigned, not paused, positioned.
    pub fn fetchable_partitions(&self) -> impl Iterator<Item = (&TopicPartition, i64)> + '_ {
        self.assignment
            .iter()
            .filter(|(_, state)| !state.paused)
            .filter_map(|(tp, state)| state.position.map(|position| (tp, position)))
    }

    /// Each assigned partition without a position, and what it needs: an explicit reset first,
    /// then the committed offset (fetched if not known yet), then `auto.offset.reset`.
    pub fn partitions_needing_position(&self) -> Vec<(TopicPartition, PositionNeeded)> {
        self.assignment
            .iter()
            .filter(|(_, state)| state.position.is_none())
            .map(|(tp, state)| {
                let needed = match (state.pending_reset, state.committed) {
                    (Some(OffsetReset::None), _) => PositionNeeded::NoOffset,
                    (Some(reset), _) => PositionNeeded::Reset(reset),
                    (None, _) if self.group_offsets && !state.committed_known => {
                        PositionNeeded::FetchCommitted
                    }
                    (None, Some(committed)) if self.group_offsets => {
                        PositionNeeded::Committed(committed)
                    }
                    (None, _) => match self.auto_offset_reset {
                        OffsetReset::None => PositionNeeded::NoOffset,
                        reset => PositionNeeded::Reset(reset),
                    },
                };
                (tp.clone(), needed)
            })
            .collect()
    }

    /// Whether every assigned partition has a position.
    pub fn has_all_positions(&self) -> bool {
        self.assignment
            .values()
            .all(|state| state.position.is_some())
    }

    /// Records the group's committed offset for `tp` (None: the group has none), from an
    /// OffsetFetch answer or after a successful commit. Ignored if `tp` is not assigned.
    pub fn set_committed(&mut self, tp: &TopicPartition, committed: Option<i64>) {
        if let Some(state) = self.assignment.get_mut(tp) {
            state.committed = committed;
            state.committed_known = true;
        }
    }

    /// The next offset to fetch from `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.assignment.get(tp).and_then(|state| state.position)
    }

    /// Moves `tp`'s position after a fetch to `next_offset`, with the leader epoch of the last
    /// batch read (None keeps the one known). Returns false if `tp` is no longer assigned or has
    /// no position (a seek reset it while the fetch was out): drop the records then.
    pub fn update_position(
        &mut self,
        tp: &TopicPartition,
        next_offset: i64,
        leader_epoch: Option<i32>,
    ) -> bool {
        match self.assignment.get_mut(tp) {
            Some(state) if state.position.is_some() => {
                state.position = Some(next_offset);
                if leader_epoch.is_some() {
                    state.leader_epoch = leader_epoch;
                }
                true
            }
            _ => false,
        }
    }

    /// Records the high watermark a fetch response reported for `tp`.
    pub fn update_high_watermark(&mut self, tp: &TopicPartition, high_watermark: i64) {
        if let Some(state) = self.assignment.get_mut(tp) {
            state.high_watermark = Some(high_watermark);
        }
    }

    /// What to commit: the position of each assigned partition that has one.
    pub fn all_consumed_offsets(&self) -> BTreeMap<TopicPartition, OffsetAndEpoch> {
        self.assignment
            .iter()
            .filter_map(|(tp, state)| {
                state.position.map(|offset| {
                    let consumed = OffsetAndEpoch {
                        offset,
                        leader_epoch: state.leader_epoch,
                    };
                    (tp.clone(), consumed)
                })
            })
            .collect()
    }

    /// Records between `tp`'s position and its high watermark, when both are known.
    pub fn lag(&self, tp: &TopicPartition) -> Option<i64> {
        let state = self.assignment.get(tp)?;
        Some(state.high_watermark? - state.position?)
    }
}

/// The names among `topics` that the whole of `pattern` matches, in their order: what
/// [`SubscriptionState::subscribe_pattern`] would read of them now, for a consumer that
/// assigns partitions by hand and resolves a pattern once.
///
/// ```
/// use runnel_client::consumer::subscription::topics_matching;
///
/// let topics = ["orders.eu", "orders.us", "xorders.eu", "payments"];
/// assert_eq!(
///     topics_matching(r"orders\..*", topics).unwrap(),
///     ["orders.eu", "orders.us"]
/// );
/// assert!(topics_matching("(", topics).is_err());
/// ```
pub fn topics_matching<'a>(
    pattern: &str,
    topics: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<String>, SubscriptionError> {
    let regex = RegexBuilder::new(&anchored(pattern))
        .size_limit(PATTERN_SIZE_LIMIT_BYTES)
        .build()
        .map_err(|error| SubscriptionError::InvalidPattern(error.to_string()))?;
    Ok(topics
        .into_iter()
        .filter(|topic| regex.is_match(topic))
        .map(str::to_owned)
        .collect())
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    fn subscribed(topics: &[&str]) -> SubscriptionState {
        let mut state = SubscriptionState::new(OffsetReset::Latest, true);
        state.subscribe(topics.iter().copied()).unwrap();
        state
    }

    #[test]
    fn topics_pattern_and_manual_assignment_are_exclusive() {
        let mut state = subscribed(&["a"]);
        assert_eq!(
            state.assign([tp("a", 0)]),
            Err(SubscriptionError::Exclusive)
        );
        assert_eq!(
            state.subscribe_pattern("a.*"),
            Err(SubscriptionError::Exclusive)
        );
        assert_eq!(state.subscribe(["b"]), Ok(true));
        assert_eq!(state.subscribe(["b"]), Ok(false));

        state.unsubscribe();
        state.assign([tp("a", 0)]).unwrap();
        assert_eq!(state.subscribe(["a"]), Err(SubscriptionError::Exclusive));
        assert_eq!(
            state.subscribe_pattern("a"),
            Err(SubscriptionError::Exclusive)
        );
        assert_eq!(
            state.assign_from_group([tp("a", 0)]),
            Err(SubscriptionError::NotSubscribed)
        );
        // Assigning nothing is unsubscribing.
        state.assign([]).unwrap();
        assert!(matches!(state.subscribed(), Subscribed::Nothing));
        state.subscribe_pattern("a").unwrap();
    }

    #[test]
    fn patterns_match_whole_topic_names() {
        let mut state = SubscriptionState::new(OffsetReset::Latest, true);
        assert_eq!(state.subscribe_pattern("orders.*"), Ok(true));
        assert_eq!(state.subscribe_pattern("orders.*"), Ok(false));
        assert!(state.is_subscribed_to("orders-eu"));
        assert!(!state.is_subscribed_to("old-orders"));
        assert_eq!(
            state.subscribed_topics(["orders", "payments", "orders.v2", "xorders"]),
            BTreeSet::from(["orders".to_owned(), "orders.v2".to_owned()])
        );
        // An alternation is anchored as a whole, not just its first branch.
        state.subscribe_pattern("a|b").unwrap();
        assert!(state.is_subscribed_to("b") && !state.is_subscribed_to("ab"));
        assert!(matches!(
            state.subscribe_pattern("orders("),
            Err(SubscriptionError::InvalidPattern(_))
        ));
    }

    #[test]
    fn group_assignment_keeps_positions_of_partitions_still_assigned() {
        let mut state = subscribed(&["a", "b"]);
        let change = state.assign_from_group([tp("a", 0), tp("a", 1)]).unwrap();
        assert_eq!(change.added, [tp("a", 0), tp("a", 1)]);
        assert!(change.revoked.is_empty());
        state.seek(&tp("a", 0), 100).unwrap();
        state.pause(&[tp("a", 0)]).unwrap();
        state.set_committed(&tp("a", 0), Some(90));

        let change = state.assign_from_group([tp("a", 0), tp("b", 0)]).unwrap();
        assert_eq!(change.added, [tp("b", 0)]);
        assert_eq!(change.revoked, [tp("a", 1)]);
        let kept = state.partition(&tp("a", 0)).unwrap();
        assert_eq!(
            (kept.position, kept.paused, kept.committed),
            (Some(100), true, Some(90))
        );
        assert_eq!(
            state.partition(&tp("b", 0)),
            Some(&PartitionState::default())
        );
        assert_eq!(
            state.owned_partitions(),
            [("a".to_owned(), vec![0]), ("b".to_owned(), vec![0])]
        );
    }

    #[test]
    fn an_assignment_outside_the_subscription_changes_nothing() {
        let mut state = subscribed(&["a"]);
        state.assign_from_group([tp("a", 0)]).unwrap();
        assert_eq!(
            state.assign_from_group([tp("a", 1), tp("c", 0)]),
            Err(SubscriptionError::UnsubscribedTopic(tp("c", 0)))
        );
        assert_eq!(
            state.assigned_partitions().collect::<Vec<_>>(),
            [&tp("a", 0)]
        );
    }

    #[test]
    fn manual_assignment_keeps_the_state_of_partitions_it_keeps() {
        let mut state = SubscriptionState::new(OffsetReset::Earliest, false);
        state.assign([tp("a", 0), tp("a", 1)]).unwrap();
        state.seek(&tp("a", 1), 5).unwrap();
        let change = state.assign([tp("a", 1), tp("a", 2)]).unwrap();
        assert_eq!(
            (change.added, change.revoked),
            (vec![tp("a", 2)], vec![tp("a", 0)])
        );
        assert_eq!(state.position(&tp("a", 1)), Some(5));
        assert!(state.is_subscribed_to("a") && !state.is_subscribed_to("b"));
    }

    #[test]
    fn revoked_partitions_are_forgotten_and_late_fetches_ignored() {
        let mut state = subscribed(&["a"]);
        state.assign_from_group([tp("a", 0), tp("a", 1)]).unwrap();
        state.seek(&tp("a", 0), 10).unwrap();
        assert_eq!(state.revoke(&[tp("a", 0), tp("z", 9)]), [tp("a", 0)]);
        assert!(!state.update_position(&tp("a", 0), 20, None));
        assert_eq!(state.position(&tp("a", 0)), None);
        assert_eq!(
            state.seek(&tp("a", 0), 1),
            Err(SubscriptionError::NotAssigned(tp("a", 0)))
        );
        assert_eq!(
            state.pause(&[tp("a", 0)]),
            Err(SubscriptionError::NotAssigned(tp("a", 0)))
        );
    }

    #[test]
    fn starting_positions_come_from_resets_then_committed_offsets_then_the_policy() {
        let mut state = subscribed(&["a"]);
        state
            .assign_from_group([tp("a", 0), tp("a", 1), tp("a", 2)])
            .unwrap();
        state.set_committed(&tp("a", 1), Some(7));
        state.set_committed(&tp("a", 2), None);
        assert_eq!(
            state.partitions_needing_position(),
            [
                (tp("a", 0), PositionNeeded::FetchCommitted),
                (tp("a", 1), PositionNeeded::Committed(7)),
                (tp("a", 2), PositionNeeded::Reset(OffsetReset::Latest)),
            ]
        );
        // An explicit seek_to_beginning wins over the committed offset.
        state.seek_to_beginning(&[tp("a", 1)]).unwrap();
        assert_eq!(
            state.partitions_needing_position()[1],
            (tp("a", 1), PositionNeeded::Reset(OffsetReset::Earliest))
        );
        assert!(!state.has_all_positions());

        // Without a group there are no committed offsets; with `none` there is no default.
        let mut manual = SubscriptionState::new(OffsetReset::None, false);
        manual.assign([tp("a", 0)]).unwrap();
        assert_eq!(
            manual.partitions_needing_position(),
            [(tp("a", 0), PositionNeeded::NoOffset)]
        );
        manual.seek_to_end(&[]).unwrap();
        assert_eq!(
            manual.partitions_needing_position(),
            [(tp("a", 0), PositionNeeded::Reset(OffsetReset::Latest))]
        );
    }

    #[test]
    fn a_reset_applies_only_if_still_pending() {
        let mut state = SubscriptionState::new(OffsetReset::Earliest, false);
        state.assign([tp("a", 0), tp("a", 1)]).unwrap();
        state.seek(&tp("a", 0), 50).unwrap();
        state.seek(&tp("a", 1), 50).unwrap();
        // No partitions: every assigned one, as in Kafka.
        state.seek_to_end(&[]).unwrap();
        assert_eq!(state.position(&tp("a", 0)), None);
        assert_eq!(
            state.partition(&tp("a", 1)).unwrap().pending_reset,
            Some(OffsetReset::Latest)
        );

        // The user seeks while the ListOffsets is out: the seek wins.
        state.seek(&tp("a", 0), 3).unwrap();
        assert!(!state.complete_reset(&tp("a", 0), OffsetReset::Latest, 99));
        assert_eq!(state.position(&tp("a", 0)), Some(3));
        // A reset superseded by another kind is not applied either.
        state.seek_to_beginning(&[tp("a", 1)]).unwrap();
        assert!(!state.complete_reset(&tp("a", 1), OffsetReset::Latest, 99));
        assert!(state.complete_reset(&tp("a", 1), OffsetReset::Earliest, 0));
        assert_eq!(state.position(&tp("a", 1)), Some(0));
        assert!(state.has_all_positions());
    }

    #[test]
    fn out_of_range_resets_by_the_policy() {
        let mut state = SubscriptionState::new(OffsetReset::Earliest, true);
        state.assign([tp("a", 0)]).unwrap();
        state.seek(&tp("a", 0), 1_000).unwrap();
        assert!(state.offset_out_of_range(&tp("a", 0)));
        assert_eq!(
            state.partitions_needing_position(),
            [(tp("a", 0), PositionNeeded::Reset(OffsetReset::Earliest))]
        );
        assert!(!state.offset_out_of_range(&tp("b", 0)));
    }

    #[test]
    fn only_unpaused_positioned_partitions_are_fetched() {
        let mut state = subscribed(&["a"]);
        state
            .assign_from_group([tp("a", 0), tp("a", 1), tp("a", 2)])
            .unwrap();
        state.seek(&tp("a", 0), 10).unwrap();
        state.seek(&tp("a", 1), 20).unwrap();
        state.pause(&[tp("a", 1)]).unwrap();
        assert_eq!(
            state.fetchable_partitions().collect::<Vec<_>>(),
            [(&tp("a", 0), 10)]
        );
        assert_eq!(state.paused_partitions().collect::<Vec<_>>(), [&tp("a", 1)]);
        state.resume(&[tp("a", 1)]).unwrap();
        assert!(!state.is_paused(&tp("a", 1)));
        assert_eq!(
            state.fetchable_partitions().collect::<Vec<_>>(),
            [(&tp("a", 0), 10), (&tp("a", 1), 20)]
        );
    }

    #[test]
    fn consumed_offsets_carry_the_leader_epoch_and_lag_needs_both_ends() {
        let mut state = subscribed(&["a"]);
        state.assign_from_group([tp("a", 0), tp("a", 1)]).unwrap();
        state.seek(&tp("a", 0), 10).unwrap();
        assert!(state.update_position(&tp("a", 0), 15, Some(3)));
        assert!(state.update_position(&tp("a", 0), 16, None));
        assert_eq!(state.lag(&tp("a", 0)), None);
        state.update_high_watermark(&tp("a", 0), 20);
        assert_eq!(state.lag(&tp("a", 0)), Some(4));
        assert_eq!(state.lag(&tp("a", 1)), None);
        assert_eq!(
            state.all_consumed_offsets(),
            BTreeMap::from([(
                tp("a", 0),
                OffsetAndEpoch {
                    offset: 16,
                    leader_epoch: Some(3)
                }
            )])
        );
        // A seek forgets the epoch: the new position was not read under it.
        state.seek(&tp("a", 0), 2).unwrap();
        assert_eq!(state.all_consumed_offsets()[&tp("a", 0)].leader_epoch, None);
    }

    #[test]
    fn names_print_as_kafka_prints_them() {
        assert_eq!(tp("orders", 3).to_string(), "orders-3");
        assert_eq!(
            OffsetReset::from_config("earliest"),
            Some(OffsetReset::Earliest)
        );
        assert_eq!(OffsetReset::from_config("none"), Some(OffsetReset::None));
        assert_eq!(OffsetReset::from_config("smallest"), None);
        assert_eq!(OffsetReset::Latest.to_string(), "latest");
    }
}
