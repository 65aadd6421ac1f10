//! Client-side partition assignors of the classic consumer group protocol, and the `consumer`
//! protocol payloads they read and write.
//!
//! In a classic group the coordinator only relays: each member sends a [`Subscription`] with its
//! JoinGroup request, the member elected leader runs an [`Assignor`] over all of them, and sends
//! each member its share with SyncGroup, encoded by [`encode_assignment`]. The payloads are
//! Kafka's `ConsumerProtocolSubscription` and `ConsumerProtocolAssignment` (versions 0-3), each
//! after an `i16` version, exactly as Kafka's `ConsumerProtocol` writes them, so a group can mix
//! this client with the Java client, librdkafka and the rest.
//!
//! Three assignors, named as every Kafka client names them:
//!
//! - [`RangeAssignor`] (`range`, eager): for each topic, its subscribers sorted by member id get
//!   contiguous ranges of partitions, the first `partitions % subscribers` one extra.
//! - [`RoundRobinAssignor`] (`roundrobin`, eager): every subscribed partition, sorted by topic
//!   and partition, dealt in turn to the members sorted by member id, skipping members not
//!   subscribed to the partition's topic.
//! - [`CooperativeStickyAssignor`] (`cooperative-sticky`, cooperative, KIP-429): balanced, and
//!   sticky to the partitions each member says it owns. A partition moving from one member to
//!   another is only revoked in this rebalance; the new owner gets it in the follow-up rebalance
//!   the revoking member triggers, so no partition ever has two consumers.
//!
//! Assignors are pure functions: no I/O, no clock, no randomness; ties are broken by member id,
//! topic and partition, so the same input always gives the same assignment.
//!
//! Not here: rack-aware assignment (KIP-881; partition racks are not part of this input) and
//! ordering members by `group.instance.id` (the input is keyed by member id alone).
//!
//! ```
//! use std::collections::BTreeMap;
//! use runnel_client::consumer::assignor::{
//!     decode_assignment, encode_assignment, Assignor, RangeAssignor, Subscription,
//! };
//!
//! let member = Subscription::new(["orders"]);
//! let joined = Subscription::decode(&member.encode(3).unwrap()).unwrap();
//! let members = BTreeMap::from([("a".to_owned(), joined.clone()), ("b".to_owned(), joined)]);
//! let partitions_per_topic = BTreeMap::from([("orders".to_owned(), 3)]);
//! let assignment = RangeAssignor.assign(&partitions_per_topic, &members);
//! assert_eq!(assignment["a"], [("orders".to_owned(), vec![0, 1])]);
//! assert_eq!(assignment["b"], [("orders".to_owned(), vec![2])]);
//! let sent = encode_assignment(&assignment["b"]);
//! assert_eq!(decode_assignment(&sent).unwrap(), assignment["b"]);
//! ```

use crate::wire::str_bytes;
use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message};

/// The highest `ConsumerProtocolSubscription`/`ConsumerProtocolAssignment` version known here.
pub const CONSUMER_PROTOCOL_VERSION_MAX: i16 = 3;

/// Partition numbers by topic: a member's assignment or the partitions it owns.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// How members hand partitions over during a rebalance.
///
/// ```
/// use runnel_client::consumer::assignor::{
///     Assignor, CooperativeStickyAssignor, RangeAssignor, RebalanceProtocol,
/// };
///
/// assert_eq!(RangeAssignor.protocol(), RebalanceProtocol::Eager);
/// assert_eq!(CooperativeStickyAssignor.protocol(), RebalanceProtocol::Cooperative);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RebalanceProtocol {
    /// Every member gives up all its partitions before the group syncs (the original protocol).
    Eager,
    /// Members keep their partitions across a rebalance and give up only those the new
    /// assignment moves (KIP-429).
    Cooperative,
}

/// A `consumer` protocol payload that could not be read or written.
///
/// ```
/// use runnel_client::consumer::assignor::{ConsumerProtocolError, Subscription};
///
/// let subscription = Subscription::new(["orders"]);
/// assert_eq!(subscription.encode(4), Err(ConsumerProtocolError::UnsupportedVersion(4)));
/// // Version 0, then a topic count of 1 and nothing after it.
/// let error = Subscription::decode(&[0, 0, 0, 0, 0, 1]).unwrap_err();
/// assert!(matches!(error, ConsumerProtocolError::Malformed { what: "subscription", .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumerProtocolError {
    /// A version this client cannot write (above [`CONSUMER_PROTOCOL_VERSION_MAX`]), or a
    /// negative version read from a payload.
    #[error("consumer protocol version {0} is not supported (0 to 3 are)")]
    UnsupportedVersion(i16),
    /// The bytes do not hold what their version says they hold.
    #[error("malformed consumer protocol {what}: {reason}")]
    Malformed {
        /// `subscription` or `assignment`.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// What one member sends when it joins: the topics it wants and what it owns now.
///
/// ```
/// use runnel_client::consumer::assignor::Subscription;
///
/// let mut subscription = Subscription::new(["orders", "refunds"]);
/// subscription.owned = vec![("orders".to_owned(), vec![0, 2])];
/// subscription.generation = 7;
/// subscription.rack = Some("eu-west-1a".to_owned());
///
/// // Version 3 carries every field.
/// let bytes = subscription.encode(3).unwrap();
/// assert_eq!(Subscription::decode(&bytes).unwrap(), subscription);
/// // Version 0 knows only topics and user data.
/// let v0 = Subscription::decode(&subscription.encode(0).unwrap()).unwrap();
/// assert_eq!(v0, Subscription::new(["orders", "refunds"]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics the member subscribes to (a regex subscription sends the matching names).
    pub topics: Vec<String>,
    /// The partitions the member owns now (version 1 and later); cooperative assignors keep
    /// them where balance allows.
    pub owned: TopicPartitions,
    /// The generation in which the member got `owned` (version 2 and later), -1 if unknown.
    pub generation: i32,
    /// Opaque data for the assignor.
    pub user_data: Option<Bytes>,
    /// The member's `client.rack` (version 3 and later).
    pub rack: Option<String>,
}

impl Subscription {
    /// A subscription to `topics` that owns nothing, in no generation.
    pub fn new<T: Into<String>>(topics: impl IntoIterator<Item = T>) -> Subscription {
        Subscription {
            topics: topics.into_iter().map(Into::into).collect(),
            owned: Vec::new(),
            generation: -1,
            user_data: None,
            rack: None,
        }
    }

    /// The JoinGroup protocol metadata: `version` as an `i16`, then the subscription at that
    /// version (fields the version lacks are left out).
    pub fn encode(&self, version: i16) -> Result<Bytes, ConsumerProtocolError> {
        if !(0..=CONSUMER_PROTOCOL_VERSION_MAX).contains(&version) {
            return Err(ConsumerProtocolError::UnsupportedVersion(version));
        }
        let message = ConsumerProtocolSubscription::default()
            .with_topics(self.topics.iter().map(|t| str_bytes(t)).collect())
            .with_user_data(self.user_data.clone())
            .with_owned_partitions(
                self.owned
                    .iter()
                    .map(|(topic, partitions)| {
                        OwnedPartitions::default()
                            .with_topic(TopicName(str_bytes(topic)))
                            .with_partitions(partitions.clone())
                    })
                    .collect(),
            )
            .with_generation_id(self.generation)
            .with_rack_id(self.rack.as_deref().map(str_bytes));
        let mut out = BytesMut::new();
        out.put_i16(version);
        message
            .encode(&mut out, version)
            .map_err(|error| malformed("subscription", &error))?;
        Ok(out.freeze())
    }

    /// Reads a member's JoinGroup protocol metadata. A version above 3 is read as version 3,
    /// as Kafka's `ConsumerProtocol` does: later versions only append fields.
    pub fn decode(bytes: &[u8]) -> Result<Subscription, ConsumerProtocolError> {
        let (version, mut body) = split_version("subscription", bytes)?;
        check_subscription_counts(body, version).map_err(|reason| {
            ConsumerProtocolError::Malformed {
                what: "subscription",
                reason: reason.to_owned(),
            }
        })?;
        let message = ConsumerProtocolSubscription::decode(&mut body, version)
            .map_err(|error| malformed("subscription", &error))?;
        Ok(Subscription {
            topics: message
                .topics
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            owned: message
                .owned_partitions
                .into_iter()
                .map(|owned| (owned.topic.0.as_str().to_owned(), owned.partitions))
                .collect(),
            generation: message.generation_id,
            user_data: message.user_data,
            rack: message.rack_id.map(|rack| rack.as_str().to_owned()),
        })
    }
}

/// The SyncGroup assignment of one member: version 3 (whose layout versions 0-2 share) as an
/// `i16`, then `ConsumerProtocolAssignment` without user data.
///
/// A topic name longer than a Kafka string holds (32767 bytes) cannot be written and is left
/// out; names that came from cluster metadata never are.
pub fn encode_assignment(partitions: &[(String, Vec<i32>)]) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .filter(|(topic, _)| topic.len() <= i16::MAX as usize)
            .map(|(topic, partitions)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partitions(partitions.clone())
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(CONSUMER_PROTOCOL_VERSION_MAX);
    // Strings are within their limit and arrays within i32 (a Vec of i32 partitions cannot
    // reach 2^31 elements and stay in memory): the encoder has nothing to refuse.
    if message
        .encode(&mut out, CONSUMER_PROTOCOL_VERSION_MAX)
        .is_err()
    {
        debug_assert!(false, "an assignment failed to encode");
        out.truncate(2);
        out.put_i32(0);
        out.put_i32(-1);
    }
    out.freeze()
}

/// Reads the assignment a SyncGroup response carries. Empty bytes are an empty assignment (the
/// coordinator sends them to a member the leader gave nothing). Never panics and never
/// allocates more than a small multiple of `bytes.len()`, whatever the bytes claim.
pub fn decode_assignment(bytes: &[u8]) -> Result<TopicPartitions, ConsumerProtocolError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (version, mut body) = split_version("assignment", bytes)?;
    check_assignment_counts(body).map_err(|reason| ConsumerProtocolError::Malformed {
        what: "assignment",
        reason: reason.to_owned(),
    })?;
    let message = ConsumerProtocolAssignment::decode(&mut body, version)
        .map_err(|error| malformed("assignment", &error))?;
    Ok(message
        .assigned_partitions
        .into_iter()
        .map(|assigned| (assigned.topic.0.as_str().to_owned(), assigned.partitions))
        .collect())
}

/// kafka-protocol's codec errors (`anyhow::Error`, taken as `Display` to keep `anyhow` out of
/// this crate's dependencies), with their causes.
fn malformed(what: &'static str, error: &dyn std::fmt::Display) -> ConsumerProtocolError {
    ConsumerProtocolError::Malformed {
        what,
        reason: format!("{error:#}"),
    }
}

/// The version prefix, clamped to the highest version known (later versions append fields),
/// and the body after it.
fn split_version<'a>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(i16, &'a [u8]), ConsumerProtocolError> {
    let (version, body) = match bytes {
        [high, low, body @ ..] => (i16::from_be_bytes([*high, *low]), body),
        _ => {
            return Err(ConsumerProtocolError::Malformed {
                what,
                reason: format!("{} bytes cannot hold the version", bytes.len()),
            })
        }
    };
    if version < 0 {
        return Err(ConsumerProtocolError::UnsupportedVersion(version));
    }
    Ok((
        version.min(ConsumerProtocolSubscription::VERSIONS.max),
        body,
    ))
}

// kafka-protocol sizes each array with `Vec::with_capacity(count)` before reading its elements,
// so a payload claiming two billion topics would make the decoder ask for tens of gigabytes and
// abort the process. The walks below read the same grammar without allocating and refuse any
// count the remaining bytes cannot hold, so the decoder runs only on payloads whose claims are
// backed by bytes.

/// Bytes the smallest element of each array takes: a string is at least its i16 length, a
/// topic's partitions at least that plus an i32 count.
const STRING_MIN_BYTES: usize = 2;
const TOPIC_PARTITIONS_MIN_BYTES: usize = 6;
const PARTITION_BYTES: usize = 4;

fn check_subscription_counts(body: &[u8], version: i16) -> Result<(), &'static str> {
    let mut reader = CountReader { rest: body };
    reader.array(STRING_MIN_BYTES, |reader| reader.string())?;
    reader.bytes()?;
    if version >= 1 {
        reader.array(TOPIC_PARTITIONS_MIN_BYTES, CountReader::topic_partitions)?;
    }
    if version >= 2 {
        reader.take(4)?;
    }
    if version >= 3 {
        reader.string()?;
    }
    Ok(())
}

fn check_assignment_counts(body: &[u8]) -> Result<(), &'static str> {
    let mut reader = CountReader { rest: body };
    reader.array(TOPIC_PARTITIONS_MIN_BYTES, CountReader::topic_partitions)?;
    reader.bytes()?;
    Ok(())
}

struct CountReader<'a> {
    rest: &'a [u8],
}

impl CountReader<'_> {
    fn take(&mut self, len: usize) -> Result<&[u8], &'static str> {
        if self.rest.len() < len {
            return Err("ends early");
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn i16(&mut self) -> Result<i16, &'static str> {
        let bytes = self.take(2)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    fn i32(&mut self) -> Result<i32, &'static str> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A (nullable) string: i16 length, -1 for null.
    fn string(&mut self) -> Result<(), &'static str> {
        let len = self.i16()?;
        if len > 0 {
            self.take(len as usize)?;
        }
        Ok(())
    }

    /// Nullable bytes: i32 length, -1 for null.
    fn bytes(&mut self) -> Result<(), &'static str> {
        let len = self.i32()?;
        if len > 0 {
            self.take(len as usize)?;
        }
        Ok(())
    }

    /// An array: i32 count (-1 for null), then the elements `element` reads.
    fn array(
        &mut self,
        element_min_bytes: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), &'static str>,
    ) -> Result<(), &'static str> {
        let count = self.i32()?;
        if count <= 0 {
            return Ok(());
        }
        if count as usize > self.rest.len() / element_min_bytes {
            return Err("an array claims more elements than the bytes hold");
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    fn topic_partitions(&mut self) -> Result<(), &'static str> {
        self.string()?;
        self.array(PARTITION_BYTES, |reader| {
            reader.take(PARTITION_BYTES).map(drop)
        })
    }
}

/// An assignor the group leader runs over every member's subscription.
///
/// Contract, checked for every implementation by this module's tests: every member of `members`
/// gets an entry (possibly empty); a member only gets partitions of topics it subscribes to that
/// appear in `partitions_per_topic` (subscribed topics missing from it are unknown and ignored);
/// no partition goes to two members; under [`RebalanceProtocol::Eager`] every partition of a
/// subscribed topic goes to exactly one member. The same input gives the same output.
///
/// A user-defined assignor that gives every partition to the member with the smallest id
/// (a hot standby setup); offer it through
/// [`ConsumerConfig::assignors`](crate::ConsumerConfig::assignors):
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::Arc;
/// use runnel_client::consumer::assignor::{
///     Assignor, RebalanceProtocol, Subscription, TopicPartitions,
/// };
/// use runnel_client::ConsumerConfig;
///
/// struct FirstTakesAll;
///
/// impl Assignor for FirstTakesAll {
///     fn name(&self) -> &'static str {
///         "first-takes-all"
///     }
///     fn protocol(&self) -> RebalanceProtocol {
///         RebalanceProtocol::Eager
///     }
///     fn assign(
///         &self,
///         partitions_per_topic: &BTreeMap<String, i32>,
///         members: &BTreeMap<String, Subscription>,
///     ) -> BTreeMap<String, TopicPartitions> {
///         let mut assignment: BTreeMap<String, TopicPartitions> =
///             members.keys().map(|member| (member.clone(), Vec::new())).collect();
///         if let Some((first, subscription)) = members.iter().next() {
///             assignment.insert(
///                 first.clone(),
///                 partitions_per_topic
///                     .iter()
///                     .filter(|(topic, _)| subscription.topics.contains(topic))
///                     .map(|(topic, &count)| (topic.clone(), (0..count).collect()))
///                     .collect(),
///             );
///         }
///         assignment
///     }
/// }
///
/// let members = BTreeMap::from([
///     ("a".to_owned(), Subscription::new(["t"])),
///     ("b".to_owned(), Subscription::new(["t"])),
/// ]);
/// let assignment = FirstTakesAll.assign(&BTreeMap::from([("t".to_owned(), 2)]), &members);
/// assert_eq!(assignment["a"], [("t".to_owned(), vec![0, 1])]);
/// assert!(assignment["b"].is_empty());
///
/// let mut config = ConsumerConfig::new("localhost:9092").group("standby");
/// config.assignors = vec![Arc::new(FirstTakesAll)];
/// ```
pub trait Assignor: Send + Sync {
    /// The protocol name members advertise in JoinGroup (`partition.assignment.strategy`).
    fn name(&self) -> &'static str;

    /// How members hand partitions over when the assignment changes.
    fn protocol(&self) -> RebalanceProtocol;

    /// Each member's partitions, by topic (topics sorted, partitions ascending), given the
    /// partition count of every topic and each member's subscription keyed by member id.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, TopicPartitions>;
}

/// Kafka's `range` assignor: per topic, contiguous ranges by member id. Members subscribed to
/// the same co-partitioned topics get the same partition numbers of each.
///
/// ```
/// use std::collections::BTreeMap;
/// use runnel_client::consumer::assignor::{Assignor, RangeAssignor, Subscription};
///
/// let both = Subscription::new(["clicks", "views"]);
/// let members = BTreeMap::from([("a".to_owned(), both.clone()), ("b".to_owned(), both)]);
/// let topics = BTreeMap::from([("clicks".to_owned(), 3), ("views".to_owned(), 3)]);
/// let assignment = RangeAssignor.assign(&topics, &members);
/// // Co-partitioned: "a" reads partitions 0 and 1 of both topics.
/// assert_eq!(
///     assignment["a"],
///     [("clicks".to_owned(), vec![0, 1]), ("views".to_owned(), vec![0, 1])],
/// );
/// assert_eq!(RangeAssignor.name(), "range");
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, TopicPartitions> {
        let mut assignment = empty_assignment(members);
        for (topic, &count) in partitions_per_topic {
            // BTreeMap order is member-id order, the order Kafka's RangeAssignor sorts by.
            let subscribers: Vec<&String> = members
                .iter()
                .filter(|(_, subscription)| subscribes_to(subscription, topic))
                .map(|(member, _)| member)
                .collect();
            if subscribers.is_empty() || count <= 0 {
                continue;
            }
            let per_member = count / subscribers.len() as i32;
            let with_extra = count % subscribers.len() as i32;
            for (index, member) in subscribers.into_iter().enumerate() {
                let index = index as i32;
                let start = per_member * index + index.min(with_extra);
                let len = per_member + i32::from(index < with_extra);
                if len > 0 {
                    assignment
                        .entry(member.clone())
                        .or_default()
                        .insert(topic.as_str(), (start..start + len).collect());
                }
            }
        }
        into_topic_partitions(assignment)
    }
}

/// Kafka's `roundrobin` assignor: all subscribed partitions sorted by topic and partition,
/// dealt to the members in member-id order, each partition to the next member subscribed to
/// its topic.
///
/// ```
/// use std::collections::BTreeMap;
/// use runnel_client::consumer::assignor::{Assignor, RoundRobinAssignor, Subscription};
///
/// let both = Subscription::new(["clicks", "views"]);
/// let members = BTreeMap::from([("a".to_owned(), both.clone()), ("b".to_owned(), both)]);
/// let topics = BTreeMap::from([("clicks".to_owned(), 3), ("views".to_owned(), 1)]);
/// let assignment = RoundRobinAssignor.assign(&topics, &members);
/// // clicks-0 to a, clicks-1 to b, clicks-2 to a, views-0 to b.
/// assert_eq!(assignment["a"], [("clicks".to_owned(), vec![0, 2])]);
/// assert_eq!(
///     assignment["b"],
///     [("clicks".to_owned(), vec![1]), ("views".to_owned(), vec![0])],
/// );
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, TopicPartitions> {
        let mut assignment = empty_assignment(members);
        let ordered: Vec<(&String, &Subscription)> = members.iter().collect();
        let mut next = 0;
        for (topic, &count) in partitions_per_topic {
            if !ordered.iter().any(|(_, s)| subscribes_to(s, topic)) {
                continue;
            }
            for partition in 0..count.max(0) {
                // Some member subscribes, so this finds one within a lap.
                while !subscribes_to(ordered[next % ordered.len()].1, topic) {
                    next += 1;
                }
                let member = ordered[next % ordered.len()].0;
                next += 1;
                assignment
                    .entry(member.clone())
                    .or_default()
                    .entry(topic.as_str())
                    .or_default()
                    .push(partition);
            }
        }
        into_topic_partitions(assignment)
    }
}

/// Kafka's `cooperative-sticky` assignor: balanced, sticky to owned partitions, and safe under
/// the cooperative protocol.
///
/// The target assignment keeps every partition with the member that validly owns it (the
/// highest generation claiming it, if exactly one member of that generation does), deals the
/// unowned partitions to the least-loaded subscribers, then moves partitions from the most- to
/// the least-loaded members while that narrows the spread. With equal subscriptions the loads
/// end within one of each other, and a member joining a balanced group takes at most
/// `ceil(partitions / members)` partitions from the others.
///
/// Then the cooperative adjustment: a partition that another member still lists as owned is
/// withheld from its new owner in this rebalance. Its previous owner, finding it missing from
/// its assignment, revokes it and rejoins; in that follow-up rebalance nobody owns it and it is
/// assigned.
///
/// ```
/// use std::collections::BTreeMap;
/// use runnel_client::consumer::assignor::{Assignor, CooperativeStickyAssignor, Subscription};
///
/// let topics = BTreeMap::from([("t".to_owned(), 4)]);
/// let count = |partitions: &Vec<(String, Vec<i32>)>| -> usize {
///     partitions.iter().map(|(_, p)| p.len()).sum()
/// };
///
/// // "a" owns all four partitions; "b" joins.
/// let mut a = Subscription::new(["t"]);
/// a.owned = vec![("t".to_owned(), vec![0, 1, 2, 3])];
/// a.generation = 1;
/// let members = BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), Subscription::new(["t"]))]);
/// let first = CooperativeStickyAssignor.assign(&topics, &members);
/// // "a" keeps two and must revoke the others; "b" gets nothing yet.
/// assert_eq!((count(&first["a"]), count(&first["b"])), (2, 0));
///
/// // Follow-up rebalance: "a" owns only what it kept, so the rest goes to "b".
/// let mut a = Subscription::new(["t"]);
/// a.owned = first["a"].clone();
/// a.generation = 2;
/// let members = BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), Subscription::new(["t"]))]);
/// let second = CooperativeStickyAssignor.assign(&topics, &members);
/// assert_eq!(second["a"], first["a"]);
/// assert_eq!(count(&second["b"]), 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }

    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }

    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeMap<String, TopicPartitions> {
        let sticky = StickyState::new(partitions_per_topic, members);
        let mut target = sticky.balanced_target();
        // The cooperative adjustment: nothing is given while someone else may still be reading it.
        for (member, partitions) in &mut target.by_member {
            partitions.retain(|tp| {
                let claimed_elsewhere = sticky
                    .claimants
                    .get(tp)
                    .is_some_and(|claimants| claimants.iter().any(|c| c != member));
                !claimed_elsewhere || sticky.previous_owner.get(tp) == Some(member)
            });
        }
        let mut assignment = empty_assignment(members);
        for (member, partitions) in target.by_member {
            let entry = assignment.entry(member.to_owned()).or_default();
            for (topic, partition) in partitions {
                entry.entry(topic).or_default().push(partition);
            }
        }
        into_topic_partitions(assignment)
    }
}

type Tp<'a> = (&'a str, i32);

/// What the sticky assignor derives from the subscriptions before assigning.
struct StickyState<'a> {
    /// Member id → the known topics it subscribes to.
    subscribed: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Every partition of a topic some member subscribes to.
    partitions: Vec<Tp<'a>>,
    /// The valid owner of each owned partition.
    previous_owner: BTreeMap<Tp<'a>, &'a str>,
    /// Every member listing each partition as owned, valid or not.
    claimants: BTreeMap<Tp<'a>, BTreeSet<&'a str>>,
}

struct Target<'a> {
    by_member: BTreeMap<&'a str, BTreeSet<Tp<'a>>>,
}

impl<'a> StickyState<'a> {
    fn new(
        partitions_per_topic: &'a BTreeMap<String, i32>,
        members: &'a BTreeMap<String, Subscription>,
    ) -> StickyState<'a> {
        let subscribed: BTreeMap<&str, BTreeSet<&str>> = members
            .iter()
            .map(|(member, subscription)| {
                let topics = subscription
                    .topics
                    .iter()
                    .filter_map(|topic| partitions_per_topic.get_key_value(topic))
                    .map(|(topic, _)| topic.as_str())
                    .collect();
                (member.as_str(), topics)
            })
            .collect();
        let wanted: BTreeSet<&str> = subscribed.values().flatten().copied().collect();
        let partitions = wanted
            .iter()
            .flat_map(|&topic| (0..partitions_per_topic[topic].max(0)).map(move |p| (topic, p)))
            .collect();

        let mut claimants: BTreeMap<Tp, BTreeSet<&str>> = BTreeMap::new();
        // Partition → (generation, owner), owner None when two members of that generation claim it.
        let mut claims: BTreeMap<Tp, (i32, Option<&str>)> = BTreeMap::new();
        for (member, subscription) in members {
            let generation = member_generation(subscription);
            for (topic, owned) in &subscription.owned {
                let Some((topic, &count)) = partitions_per_topic.get_key_value(topic) else {
                    continue;
                };
                for &partition in owned {
                    if !(0..count).contains(&partition) {
                        continue;
                    }
                    let tp = (topic.as_str(), partition);
                    claimants.entry(tp).or_default().insert(member.as_str());
                    if !subscribed[member.as_str()].contains(tp.0) {
                        continue;
                    }
                    let claim = (generation, Some(member.as_str()));
                    claims
                        .entry(tp)
                        .and_modify(|current| match current.0.cmp(&generation) {
                            std::cmp::Ordering::Less => *current = claim,
                            std::cmp::Ordering::Equal if current.1 != claim.1 => current.1 = None,
                            _ => {}
                        })
                        .or_insert(claim);
                }
            }
        }
        let previous_owner = claims
            .into_iter()
            .filter_map(|(tp, (_, owner))| owner.map(|owner| (tp, owner)))
            .collect();
        StickyState {
            subscribed,
            partitions,
            previous_owner,
            claimants,
        }
    }

    fn balanced_target(&self) -> Target<'a> {
        let mut by_member: BTreeMap<&str, BTreeSet<Tp>> = self
            .subscribed
            .keys()
            .map(|&member| (member, BTreeSet::new()))
            .collect();
        let mut unowned = Vec::new();
        for &tp in &self.partitions {
            match self.previous_owner.get(&tp) {
                Some(&owner) => {
                    by_member.entry(owner).or_default().insert(tp);
                }
                None => unowned.push(tp),
            }
        }
        // Partitions with the fewest possible owners first, so they are not crowded out.
        let subscriber_count = |topic: &str| {
            self.subscribed
                .values()
                .filter(|topics| topics.contains(topic))
                .count()
        };
        unowned
            .sort_by_cached_key(|&(topic, partition)| (subscriber_count(topic), topic, partition));
        for tp in unowned {
            let least_loaded = by_member
                .iter()
                .filter(|(member, _)| self.subscribed[*member].contains(tp.0))
                .min_by_key(|(member, assigned)| (assigned.len(), **member))
                .map(|(member, _)| *member);
            if let Some(member) = least_loaded {
                by_member.entry(member).or_default().insert(tp);
            }
        }
        while let Some((from, tp, to)) = self.best_move(&by_member) {
            by_member.entry(from).or_default().remove(&tp);
            by_member.entry(to).or_default().insert(tp);
        }
        Target { by_member }
    }

    /// A partition to move from a most-loaded member to a member with at least two fewer,
    /// preferring partitions the source did not own before. Each move lowers the sum of squared
    /// loads, so repeating this ends.
    fn best_move(
        &self,
        by_member: &BTreeMap<&'a str, BTreeSet<Tp<'a>>>,
    ) -> Option<(&'a str, Tp<'a>, &'a str)> {
        let mut sources: Vec<(&str, usize)> =
            by_member.iter().map(|(m, a)| (*m, a.len())).collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for &(source, load) in &sources {
            let mut destinations: Vec<(&str, usize)> = sources
                .iter()
                .filter(|(_, other)| other + 2 <= load)
                .copied()
                .collect();
            if destinations.is_empty() {
                continue;
            }
            destinations.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
            let assigned = &by_member[source];
            let newly_assigned = assigned
                .iter()
                .rev()
                .filter(|tp| self.previous_owner.get(*tp) != Some(&source));
            let kept = assigned
                .iter()
                .rev()
                .filter(|tp| self.previous_owner.get(*tp) == Some(&source));
            for &tp in newly_assigned.chain(kept) {
                if let Some(&(destination, _)) = destinations
                    .iter()
                    .find(|(member, _)| self.subscribed[member].contains(tp.0))
                {
                    return Some((source, tp, destination));
                }
            }
        }
        None
    }
}

/// The generation a member's owned partitions are from: the subscription's field (v2+), else
/// what Kafka's CooperativeStickyAssignor puts in user data for older versions (an i32).
fn member_generation(subscription: &Subscription) -> i32 {
    if subscription.generation >= 0 {
        return subscription.generation;
    }
    match subscription.user_data.as_deref() {
        Some(&[a, b, c, d]) => i32::from_be_bytes([a, b, c, d]),
        _ => -1,
    }
}

fn subscribes_to(subscription: &Subscription, topic: &str) -> bool {
    subscription.topics.iter().any(|t| t == topic)
}

fn empty_assignment<'a>(
    members: &BTreeMap<String, Subscription>,
) -> BTreeMap<String, BTreeMap<&'a str, Vec<i32>>> {
    members
        .keys()
        .map(|member| (member.clone(), BTreeMap::new()))
        .collect()
}

fn into_topic_partitions(
    assignment: BTreeMap<String, BTreeMap<&str, Vec<i32>>>,
) -> BTreeMap<String, TopicPartitions> {
    assignment
        .into_iter()
        .map(|(member, topics)| {
            let topics = topics
                .into_iter()
                .filter(|(_, partitions)| !partitions.is_empty())
                .map(|(topic, mut partitions)| {
                    partitions.sort_unstable();
                    (topic.to_owned(), partitions)
                })
                .collect();
            (member, topics)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tps(entries: &[(&str, &[i32])]) -> TopicPartitions {
        entries
            .iter()
            .map(|(topic, partitions)| (topic.to_string(), partitions.to_vec()))
            .collect()
    }

    fn members(entries: &[(&str, &[&str])]) -> BTreeMap<String, Subscription> {
        entries
            .iter()
            .map(|(member, topics)| {
                (
                    member.to_string(),
                    Subscription::new(topics.iter().copied()),
                )
            })
            .collect()
    }

    fn counts(entries: &[(&str, i32)]) -> BTreeMap<String, i32> {
        entries.iter().map(|(t, c)| (t.to_string(), *c)).collect()
    }

    fn full_subscription() -> Subscription {
        Subscription {
            topics: vec!["orders".into(), "payments".into()],
            owned: tps(&[("orders", &[0, 2]), ("payments", &[1])]),
            generation: 7,
            user_data: Some(Bytes::from_static(b"opaque")),
            rack: Some("eu-west-1a".into()),
        }
    }

    #[test]
    fn subscription_round_trips_at_every_version_keeping_what_the_version_holds() {
        let full = full_subscription();
        for version in 0..=3 {
            let decoded = Subscription::decode(&full.encode(version).unwrap()).unwrap();
            let expected = Subscription {
                owned: if version >= 1 {
                    full.owned.clone()
                } else {
                    Vec::new()
                },
                generation: if version >= 2 { 7 } else { -1 },
                rack: if version >= 3 {
                    full.rack.clone()
                } else {
                    None
                },
                ..full.clone()
            };
            assert_eq!(decoded, expected, "version {version}");
        }
    }

    #[test]
    fn subscription_bytes_are_kafkas() {
        // Version 0, topics ["a"], null user data: what Kafka's ConsumerProtocol writes.
        let v0 = Subscription::new(["a"]).encode(0).unwrap();
        assert_eq!(
            &v0[..],
            b"\x00\x00\x00\x00\x00\x01\x00\x01a\xff\xff\xff\xff"
        );
        // Version 3 appends owned partitions, generation and rack.
        let mut subscription = Subscription::new(["a"]);
        subscription.owned = tps(&[("a", &[5])]);
        subscription.generation = 2;
        let v3 = subscription.encode(3).unwrap();
        assert_eq!(
            &v3[..],
            b"\x00\x03\x00\x00\x00\x01\x00\x01a\xff\xff\xff\xff\
              \x00\x00\x00\x01\x00\x01a\x00\x00\x00\x01\x00\x00\x00\x05\
              \x00\x00\x00\x02\xff\xff"
        );
    }

    #[test]
    fn assignment_bytes_are_kafkas_and_round_trip() {
        let assignment = tps(&[("a", &[0, 1])]);
        let bytes = encode_assignment(&assignment);
        assert_eq!(
            &bytes[..],
            b"\x00\x03\x00\x00\x00\x01\x00\x01a\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff\xff\xff"
        );
        assert_eq!(decode_assignment(&bytes).unwrap(), assignment);
        // Versions 0-2 share the layout.
        let mut v0 = bytes.to_vec();
        v0[1] = 0;
        assert_eq!(decode_assignment(&v0).unwrap(), assignment);
    }

    #[test]
    fn empty_assignment_bytes_are_no_partitions() {
        assert_eq!(decode_assignment(b"").unwrap(), Vec::new());
        assert_eq!(
            decode_assignment(&encode_assignment(&[])).unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn later_versions_are_read_as_version_3_ignoring_appended_fields() {
        let mut bytes = full_subscription().encode(3).unwrap().to_vec();
        bytes[..2].copy_from_slice(&9i16.to_be_bytes());
        bytes.extend_from_slice(b"a field from the future");
        assert_eq!(Subscription::decode(&bytes).unwrap(), full_subscription());

        let mut assignment = encode_assignment(&tps(&[("t", &[3])])).to_vec();
        assignment[..2].copy_from_slice(&4i16.to_be_bytes());
        assignment.extend_from_slice(b"\x00\x00\x00\x07");
        assert_eq!(decode_assignment(&assignment).unwrap(), tps(&[("t", &[3])]));
    }

    #[test]
    fn bad_versions_and_short_payloads_are_errors() {
        assert_eq!(
            Subscription::new(["a"]).encode(4),
            Err(ConsumerProtocolError::UnsupportedVersion(4))
        );
        assert_eq!(
            Subscription::decode(b"\xff\xff\x00\x00\x00\x00"),
            Err(ConsumerProtocolError::UnsupportedVersion(-1))
        );
        assert!(matches!(
            Subscription::decode(b"\x00"),
            Err(ConsumerProtocolError::Malformed {
                what: "subscription",
                ..
            })
        ));
        assert!(matches!(
            decode_assignment(b"\x00\x00\x00\x00\x00\x01\x00\x05ab"),
            Err(ConsumerProtocolError::Malformed {
                what: "assignment",
                ..
            })
        ));
    }

    #[test]
    fn claimed_counts_beyond_the_bytes_are_refused_before_decoding() {
        // Two billion topics, in six bytes: decoding would first reserve ~64 GiB.
        let error = Subscription::decode(b"\x00\x00\x7f\xff\xff\xff").unwrap_err();
        assert!(
            error.to_string().contains("claims more elements"),
            "{error}"
        );
        let error =
            decode_assignment(b"\x00\x03\x00\x00\x00\x01\x00\x01a\x7f\xff\xff\xff").unwrap_err();
        assert!(
            error.to_string().contains("claims more elements"),
            "{error}"
        );
    }

    #[test]
    fn range_follows_kafkas_example() {
        // Kafka's RangeAssignor javadoc: C0 and C1 on t0 and t1 of 3 partitions each.
        let members = members(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let assignment = RangeAssignor.assign(&counts(&[("t0", 3), ("t1", 3)]), &members);
        assert_eq!(assignment["C0"], tps(&[("t0", &[0, 1]), ("t1", &[0, 1])]));
        assert_eq!(assignment["C1"], tps(&[("t0", &[2]), ("t1", &[2])]));
    }

    #[test]
    fn range_sorts_by_member_id_and_ignores_unknown_topics() {
        let members = members(&[("b", &["t", "gone"]), ("a", &["t"]), ("c", &["u"])]);
        let assignment = RangeAssignor.assign(&counts(&[("t", 5)]), &members);
        assert_eq!(assignment["a"], tps(&[("t", &[0, 1, 2])]));
        assert_eq!(assignment["b"], tps(&[("t", &[3, 4])]));
        assert_eq!(assignment["c"], tps(&[]));
    }

    #[test]
    fn roundrobin_follows_kafkas_examples() {
        // Equal subscriptions: C0 and C1 on t0 and t1 of 3 partitions each.
        let equal = members(&[("C0", &["t0", "t1"]), ("C1", &["t0", "t1"])]);
        let assignment = RoundRobinAssignor.assign(&counts(&[("t0", 3), ("t1", 3)]), &equal);
        assert_eq!(assignment["C0"], tps(&[("t0", &[0, 2]), ("t1", &[1])]));
        assert_eq!(assignment["C1"], tps(&[("t0", &[1]), ("t1", &[0, 2])]));
        // Unequal subscriptions, from Kafka's RoundRobinAssignor javadoc.
        let unequal = members(&[
            ("C0", &["t0"]),
            ("C1", &["t0", "t1"]),
            ("C2", &["t0", "t1", "t2"]),
        ]);
        let assignment =
            RoundRobinAssignor.assign(&counts(&[("t0", 1), ("t1", 2), ("t2", 3)]), &unequal);
        assert_eq!(assignment["C0"], tps(&[("t0", &[0])]));
        assert_eq!(assignment["C1"], tps(&[("t1", &[0])]));
        assert_eq!(assignment["C2"], tps(&[("t1", &[1]), ("t2", &[0, 1, 2])]));
    }

    #[test]
    fn names_and_protocols() {
        assert_eq!(
            (RangeAssignor.name(), RangeAssignor.protocol()),
            ("range", RebalanceProtocol::Eager)
        );
        assert_eq!(
            (RoundRobinAssignor.name(), RoundRobinAssignor.protocol()),
            ("roundrobin", RebalanceProtocol::Eager)
        );
        assert_eq!(
            (
                CooperativeStickyAssignor.name(),
                CooperativeStickyAssignor.protocol()
            ),
            ("cooperative-sticky", RebalanceProtocol::Cooperative)
        );
    }

    #[test]
    fn cooperative_sticky_revokes_first_and_assigns_in_the_follow_up() {
        let partitions = counts(&[("t", 4)]);
        let mut group = members(&[("a", &["t"])]);
        let first = CooperativeStickyAssignor.assign(&partitions, &group);
        assert_eq!(first["a"], tps(&[("t", &[0, 1, 2, 3])]));

        // b joins; a owns everything.
        let a = group.get_mut("a").unwrap();
        a.owned = first["a"].clone();
        a.generation = 1;
        group.insert("b".into(), Subscription::new(["t"]));
        let second = CooperativeStickyAssignor.assign(&partitions, &group);
        // a keeps two, gives up two; b gets nothing yet.
        assert_eq!(second["a"], tps(&[("t", &[0, 1])]));
        assert_eq!(second["b"], tps(&[]));

        // a revoked 2 and 3 and rejoins: now b gets them.
        for (member, assignment) in &second {
            let subscription = group.get_mut(member).unwrap();
            subscription.owned = assignment.clone();
            subscription.generation = 2;
        }
        let third = CooperativeStickyAssignor.assign(&partitions, &group);
        assert_eq!(third["a"], tps(&[("t", &[0, 1])]));
        assert_eq!(third["b"], tps(&[("t", &[2, 3])]));
    }

    #[test]
    fn cooperative_sticky_prefers_the_newest_generation_and_drops_contested_claims() {
        let partitions = counts(&[("t", 3)]);
        let mut group = members(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        // A stale member claims p0 from generation 1; a claims it from generation 3.
        group.get_mut("a").unwrap().owned = tps(&[("t", &[0])]);
        group.get_mut("a").unwrap().generation = 3;
        group.get_mut("c").unwrap().owned = tps(&[("t", &[0, 1])]);
        group.get_mut("c").unwrap().generation = 1;
        // b also claims p1 in generation 3... as does nobody else valid: b keeps p1.
        group.get_mut("b").unwrap().owned = tps(&[("t", &[1])]);
        group.get_mut("b").unwrap().generation = 3;
        let assignment = CooperativeStickyAssignor.assign(&partitions, &group);
        assert_eq!(assignment["a"], tps(&[("t", &[0])]));
        assert_eq!(assignment["b"], tps(&[("t", &[1])]));
        assert_eq!(assignment["c"], tps(&[("t", &[2])]));

        // Two members of one generation both claim p0: neither may keep it this round.
        let mut group = members(&[("a", &["t"]), ("b", &["t"])]);
        for member in ["a", "b"] {
            group.get_mut(member).unwrap().owned = tps(&[("t", &[0])]);
            group.get_mut(member).unwrap().generation = 4;
        }
        let assignment = CooperativeStickyAssignor.assign(&partitions, &group);
        let all: Vec<i32> = assignment
            .values()
            .flatten()
            .flat_map(|(_, p)| p.clone())
            .collect();
        assert!(!all.contains(&0), "{assignment:?}");
    }

    #[test]
    fn cooperative_sticky_reads_the_generation_from_user_data_before_version_2() {
        let mut subscription = Subscription::new(["t"]);
        subscription.user_data = Some(Bytes::from_static(&[0, 0, 0, 9]));
        assert_eq!(member_generation(&subscription), 9);
        subscription.generation = 3;
        assert_eq!(member_generation(&subscription), 3);
    }

    const TOPICS: [&str; 4] = ["t0", "t1", "t2", "t3"];

    fn assignors() -> [&'static dyn Assignor; 3] {
        [
            &RangeAssignor,
            &RoundRobinAssignor,
            &CooperativeStickyAssignor,
        ]
    }

    /// Partition counts for the four topics (some unknown to the cluster), and members with
    /// random subscriptions and random (possibly nonsensical) owned partitions.
    fn scenario() -> impl Strategy<Value = (BTreeMap<String, i32>, BTreeMap<String, Subscription>)>
    {
        let counts = proptest::collection::vec(proptest::option::weighted(0.9, 0i32..12), 4);
        let member = (
            proptest::sample::subsequence(TOPICS.to_vec(), 0..=4),
            proptest::collection::vec((0usize..4, 0i32..14), 0..6),
            -1i32..4,
        );
        (counts, proptest::collection::vec(member, 1..7)).prop_map(|(counts, members)| {
            let counts = TOPICS
                .iter()
                .zip(counts)
                .filter_map(|(topic, count)| count.map(|count| (topic.to_string(), count)))
                .collect();
            let members = members
                .into_iter()
                .enumerate()
                .map(|(index, (topics, owned, generation))| {
                    let mut subscription = Subscription::new(topics);
                    subscription.owned = owned
                        .into_iter()
                        .map(|(topic, partition)| (TOPICS[topic].to_string(), vec![partition]))
                        .collect();
                    subscription.generation = generation;
                    (format!("member-{index}"), subscription)
                })
                .collect();
            (counts, members)
        })
    }

    /// Every partition of a subscribed, known topic with the members subscribed to it.
    fn subscribed_partitions(
        counts: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
    ) -> BTreeSet<(String, i32)> {
        counts
            .iter()
            .filter(|(topic, _)| members.values().any(|s| subscribes_to(s, topic)))
            .flat_map(|(topic, &count)| (0..count).map(move |p| (topic.clone(), p)))
            .collect()
    }

    /// Checks the trait's contract and returns each assigned partition's member.
    fn check_contract(
        counts: &BTreeMap<String, i32>,
        members: &BTreeMap<String, Subscription>,
        assignment: &BTreeMap<String, TopicPartitions>,
    ) -> Result<BTreeMap<(String, i32), String>, TestCaseError> {
        prop_assert_eq!(
            assignment.keys().collect::<Vec<_>>(),
            members.keys().collect::<Vec<_>>()
        );
        let mut owners = BTreeMap::new();
        for (member, topics) in assignment {
            for (topic, partitions) in topics {
                prop_assert!(
                    subscribes_to(&members[member], topic),
                    "{} got {}",
                    member,
                    topic
                );
                prop_assert!(!partitions.is_empty());
                prop_assert!(partitions.windows(2).all(|w| w[0] < w[1]));
                for &partition in partitions {
                    prop_assert!((0..counts[topic]).contains(&partition));
                    let previous = owners.insert((topic.clone(), partition), member.clone());
                    prop_assert!(previous.is_none(), "{}-{} assigned twice", topic, partition);
                }
            }
        }
        Ok(owners)
    }

    /// Runs cooperative rebalances, each member owning what the last one gave it, until the
    /// assignment stops changing. Checks on the way that nothing is given while another member
    /// still owns it. Returns the stable assignment and the rebalances it took, counting the
    /// last one, which changed nothing.
    fn until_stable(
        counts: &BTreeMap<String, i32>,
        members: &mut BTreeMap<String, Subscription>,
    ) -> Result<(BTreeMap<String, TopicPartitions>, usize), TestCaseError> {
        for round in 1..=6 {
            let assignment = CooperativeStickyAssignor.assign(counts, members);
            let owners = check_contract(counts, members, &assignment)?;
            let owns = |subscription: &Subscription, topic: &str, partition: i32| {
                subscription
                    .owned
                    .iter()
                    .any(|(t, ps)| t == topic && ps.contains(&partition))
            };
            for ((topic, partition), member) in &owners {
                if owns(&members[member], topic, *partition) {
                    continue; // kept, not given
                }
                for (other, subscription) in members.iter() {
                    prop_assert!(
                        !owns(subscription, topic, *partition),
                        "{}-{} given to {} while {} owns it",
                        topic,
                        partition,
                        member,
                        other
                    );
                }
            }
            let stable = members.iter().all(|(m, s)| s.owned == assignment[m]);
            if stable {
                return Ok((assignment, round));
            }
            for (member, subscription) in members.iter_mut() {
                subscription.owned = assignment[member].clone();
                subscription.generation += 1;
            }
        }
        Err(TestCaseError::fail(
            "no stable assignment after 6 rebalances",
        ))
    }

    fn loads(assignment: &BTreeMap<String, TopicPartitions>) -> Vec<usize> {
        assignment
            .values()
            .map(|topics| topics.iter().map(|(_, p)| p.len()).sum())
            .collect()
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = Subscription::decode(&bytes);
            let _ = decode_assignment(&bytes);
        }

        #[test]
        fn garbage_after_a_valid_version_never_panics(version in 0i16..6, body: Vec<u8>) {
            let mut bytes = version.to_be_bytes().to_vec();
            bytes.extend_from_slice(&body);
            let _ = Subscription::decode(&bytes);
            let _ = decode_assignment(&bytes);
        }

        #[test]
        fn payloads_round_trip(
            topics in proptest::collection::vec("[a-z._-]{1,12}", 0..5),
            owned in proptest::collection::vec(("[a-z]{1,5}", proptest::collection::vec(any::<i32>(), 0..5)), 0..4),
            generation: i32,
            user_data in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..16)),
            rack in proptest::option::of("[a-z0-9-]{0,10}"),
        ) {
            let subscription = Subscription {
                topics, owned: owned.clone(), generation, user_data: user_data.map(Bytes::from), rack,
            };
            prop_assert_eq!(Subscription::decode(&subscription.encode(3).unwrap()).unwrap(), subscription);
            prop_assert_eq!(decode_assignment(&encode_assignment(&owned)).unwrap(), owned);
        }

        #[test]
        fn every_assignor_keeps_the_contract((counts, members) in scenario()) {
            for assignor in assignors() {
                let assignment = assignor.assign(&counts, &members);
                let owners = check_contract(&counts, &members, &assignment)?;
                prop_assert_eq!(&assignment, &assignor.assign(&counts, &members), "{} is not deterministic", assignor.name());
                if assignor.protocol() == RebalanceProtocol::Eager {
                    let expected = subscribed_partitions(&counts, &members);
                    prop_assert_eq!(owners.keys().cloned().collect::<BTreeSet<_>>(), expected, "{}", assignor.name());
                }
            }
        }

        #[test]
        fn cooperative_sticky_assigns_everything_after_the_follow_up(
            (counts, mut members) in scenario()
        ) {
            let (assignment, _) = until_stable(&counts, &mut members)?;
            let owners = check_contract(&counts, &members, &assignment)?;
            prop_assert_eq!(
                owners.keys().cloned().collect::<BTreeSet<_>>(),
                subscribed_partitions(&counts, &members)
            );
        }

        #[test]
        fn equal_subscriptions_are_balanced_within_one(
            partition_counts in proptest::collection::vec(0i32..20, 1..4),
            member_count in 1usize..8,
        ) {
            let topics: Vec<String> = (0..partition_counts.len()).map(|i| format!("t{i}")).collect();
            let counts: BTreeMap<String, i32> = topics.iter().cloned().zip(partition_counts).collect();
            let mut members: BTreeMap<String, Subscription> = (0..member_count)
                .map(|i| (format!("m{i}"), Subscription::new(topics.clone())))
                .collect();
            let round_robin = loads(&RoundRobinAssignor.assign(&counts, &members));
            prop_assert!(round_robin.iter().max().unwrap() - round_robin.iter().min().unwrap() <= 1);
            let (sticky, rounds) = until_stable(&counts, &mut members)?;
            let sticky = loads(&sticky);
            prop_assert!(sticky.iter().max().unwrap() - sticky.iter().min().unwrap() <= 1);
            // From nothing owned, nothing needs revoking: one rebalance, then one that confirms.
            prop_assert!(rounds <= 2);
        }

        #[test]
        fn a_joining_member_takes_at_most_its_share_and_the_rest_stay(
            partition_counts in proptest::collection::vec(0i32..20, 1..4),
            member_count in 1usize..7,
        ) {
            let topics: Vec<String> = (0..partition_counts.len()).map(|i| format!("t{i}")).collect();
            let counts: BTreeMap<String, i32> = topics.iter().cloned().zip(partition_counts).collect();
            let mut members: BTreeMap<String, Subscription> = (0..member_count)
                .map(|i| (format!("m{i}"), Subscription::new(topics.clone())))
                .collect();
            let (before, _) = until_stable(&counts, &mut members)?;
            let before = check_contract(&counts, &members, &before)?;

            members.insert("new".into(), Subscription::new(topics.clone()));
            let (after, rounds) = until_stable(&counts, &mut members)?;
            let loads_after = loads(&after);
            prop_assert!(loads_after.iter().max().unwrap() - loads_after.iter().min().unwrap() <= 1);
            // Revoke, assign, confirm.
            prop_assert!(rounds <= 3);
            let after = check_contract(&counts, &members, &after)?;
            let total: usize = before.len();
            let share = total.div_ceil(member_count + 1);
            let moved = before.iter().filter(|(tp, owner)| after.get(*tp) != Some(*owner)).count();
            prop_assert!(moved <= share, "moved {} of {}, share {}", moved, total, share);
            prop_assert!(after.iter().filter(|(_, owner)| *owner == "new").count() == moved);
        }
    }
}
