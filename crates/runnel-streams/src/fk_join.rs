//! The foreign-key join of two tables (KIP-213): each row of the left table joined with the
//! row of the right table whose key its value names. The tables are partitioned by
//! different keys, so the join goes through two internal topics, as Kafka Streams' does:
//!
//! 1. A change of a left row sends a subscription, keyed by the foreign key, to the
//!    `<name>-subscription-repartition` topic: "row K now points at you" (with a hash of
//!    the left value), and, if it pointed elsewhere before, "row K no longer does" to the
//!    old foreign key.
//! 2. The task holding the foreign key keeps the subscriptions in a store
//!    (`<name>-subscriptions`) and answers each with the right row's current value, keyed
//!    by the left key, on the `<name>-response-repartition` topic; a change of a right row
//!    answers every left row subscribed to it.
//! 3. The task holding the left row joins the answer with the row as it is now, unless the
//!    row changed since it asked (its hash differs: a newer answer is on its way), and
//!    keeps the result in the join's table.

use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::store_name;
use crate::processor::{Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::{BytesSerde, Serde};
use crate::table::{Change, KTable};
use crate::topology::describe;

/// What a subscription asks of the foreign key's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instruction {
    /// Row K points here now: keep it, and answer with the right row.
    Subscribe = 1,
    /// Row K points elsewhere now: forget it, answer nothing (the new key answers).
    Unsubscribe = 2,
    /// Row K was deleted: forget it, and answer "nothing", so that its result goes.
    UnsubscribeAndAnswer = 3,
}

/// A subscription on the wire: version, instruction, the left value's hash, the left key.
fn encode_subscription(instruction: Instruction, hash: u64, left_key: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, instruction as u8];
    bytes.extend_from_slice(&hash.to_be_bytes());
    bytes.extend_from_slice(left_key);
    bytes
}

fn decode_subscription(bytes: &[u8]) -> Option<(Instruction, u64, &[u8])> {
    let (&[0, instruction], rest) = bytes.split_first_chunk::<2>()? else {
        return None;
    };
    let instruction = match instruction {
        1 => Instruction::Subscribe,
        2 => Instruction::Unsubscribe,
        3 => Instruction::UnsubscribeAndAnswer,
        _ => return None,
    };
    let (hash, left_key) = rest.split_first_chunk::<8>()?;
    Some((instruction, u64::from_be_bytes(*hash), left_key))
}

/// An answer on the wire: version, the hash of the left value it answers, and the right
/// row's value if there is one.
fn encode_response(hash: u64, right: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = vec![0];
    bytes.extend_from_slice(&hash.to_be_bytes());
    if let Some(right) = right {
        bytes.push(1);
        bytes.extend_from_slice(right);
    } else {
        bytes.push(0);
    }
    bytes
}

fn decode_response(bytes: &[u8]) -> Option<(u64, Option<&[u8]>)> {
    let (&[0], rest) = bytes.split_first_chunk::<1>()? else {
        return None;
    };
    let (hash, rest) = rest.split_first_chunk::<8>()?;
    let right = match rest.split_first()? {
        (0, _) => None,
        (1, right) => Some(right),
        _ => return None,
    };
    Some((u64::from_be_bytes(*hash), right))
}

/// FNV-1a, 64 bits: which left value a subscription was made for. Stable across versions
/// and machines, as it must be: it travels through topics and changelogs.
fn value_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A subscription's place in the subscription store: the foreign key's length (4 bytes),
/// the foreign key, the left key; so that one foreign key's subscribers are one prefix.
fn subscription_key(foreign_key: &[u8], left_key: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(foreign_key.len()).ok()?;
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.extend_from_slice(foreign_key);
    bytes.extend_from_slice(left_key);
    Some(bytes)
}

fn store_error(store: &str, what: &str) -> StreamsError {
    StreamsError::Store {
        store: store.to_owned(),
        source: crate::serdes::SerdeError(format!("a malformed {what}")),
    }
}

type ForeignKey<V, KO> = Arc<dyn Fn(&V) -> KO + Send + Sync>;
type FkJoiner<V, VO, VR> = Arc<dyn Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync>;

impl<K, V> KTable<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The table of this table's rows whose foreign key (`foreign_key(value)`) is a key of
    /// `other`, each joined with that row: `joiner(value, other's value)`.
    pub fn join_foreign_key<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        result: impl Serde<VR>,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + 'static,
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.foreign_key_join(
            other,
            Arc::new(foreign_key),
            Arc::new(move |value: &V, other: Option<&VO>| other.map(|other| joiner(value, other))),
            Arc::new(result),
        )
    }

    /// The table of every row of this table, joined with the row of `other` its foreign key
    /// names: `joiner(value, None)` where there is none.
    pub fn left_join_foreign_key<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        result: impl Serde<VR>,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + 'static,
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.foreign_key_join(
            other,
            Arc::new(foreign_key),
            Arc::new(move |value: &V, other: Option<&VO>| Some(joiner(value, other))),
            Arc::new(result),
        )
    }

    fn foreign_key_join<KO, VO, VR>(
        &self,
        other: &KTable<KO, VO>,
        foreign_key: ForeignKey<V, KO>,
        joiner: FkJoiner<V, VO, VR>,
        result: Arc<dyn Serde<VR>>,
    ) -> KTable<K, VR>
    where
        KO: Clone + Send + 'static,
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        let description = Arc::clone(self.description());
        let name = store_name(&description, None, "KTABLE-FK-JOIN-OUTPUT");
        let subscriptions = format!("{name}-subscriptions");
        describe(&description).add_store(&subscriptions);

        // 1. Left changes into subscriptions, keyed by foreign key.
        let (left_key, left_value, fk_serde) = (
            Arc::clone(self.key_serde()),
            Arc::clone(self.value_serde()),
            Arc::clone(other.key_serde()),
        );
        let route = Arc::new(move |key: &K, change: &Change<V>| {
            subscriptions_for(
                &*left_key,
                &*left_value,
                &*fk_serde,
                &*foreign_key,
                key,
                change,
            )
        });
        let to_foreign = Arc::clone(&route);
        let subscribed = self
            .changes()
            .flat_map(move |key: K, change: Change<V>| to_foreign(&key, &change).0)
            .through_internal(
                &format!("{name}-subscription-repartition"),
                Arc::new(BytesSerde),
                Arc::new(BytesSerde),
            );

        // 2. The foreign key's task: subscriptions kept and answered; right changes answer
        // every subscriber.
        let right_store = other.store_name().to_owned();
        let store = subscriptions.clone();
        let answered = subscribed.add(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(SubscriptionNode {
                subscriptions: store.clone(),
                right_store: right_store.clone(),
                downstream,
            })) as Shared<Vec<u8>, Vec<u8>>
        });
        let (right_key, right_value) = (
            Arc::clone(other.key_serde()),
            Arc::clone(other.value_serde()),
        );
        let store = subscriptions.clone();
        other
            .changes()
            .feed(&answered, move |downstream, _: &mut Instances| {
                Arc::new(Mutex::new(RightChangeNode {
                    subscriptions: store.clone(),
                    key: Arc::clone(&right_key),
                    value: Arc::clone(&right_value),
                    downstream,
                })) as Shared<KO, Change<VO>>
            });

        // A row pointing nowhere is answered at once, by its own task: nothing to join.
        let unanswered = self
            .changes()
            .flat_map(move |key: K, change: Change<V>| route(&key, &change).1);

        // 3. The left key's task: answers joined with the row as it is now.
        let responses = answered.merge(&unanswered).through_internal(
            &format!("{name}-response-repartition"),
            Arc::new(BytesSerde),
            Arc::new(BytesSerde),
        );
        let (left_store, left_key, left_value, other_value) = (
            self.store_name().to_owned(),
            Arc::clone(self.key_serde()),
            Arc::clone(self.value_serde()),
            Arc::clone(other.value_serde()),
        );
        let (result_store, node_result) = (name.clone(), Arc::clone(&result));
        let children = responses.add_changes(move |downstream, _: &mut Instances| {
            Arc::new(Mutex::new(ResponseNode {
                left_store: left_store.clone(),
                result_store: result_store.clone(),
                left_key: Arc::clone(&left_key),
                left_value: Arc::clone(&left_value),
                right_value: Arc::clone(&other_value),
                result: Arc::clone(&node_result),
                joiner: Arc::clone(&joiner),
                downstream,
            })) as Shared<Vec<u8>, Vec<u8>>
        });
        KTable::new(
            description,
            children,
            name,
            Arc::clone(self.key_serde()),
            result,
        )
    }
}

/// Keyed messages for the foreign keys' tasks, and at most one for the row's own.
type Routed = (Vec<(Vec<u8>, Vec<u8>)>, Option<(Vec<u8>, Vec<u8>)>);

/// What a left row's change sends: subscriptions to foreign keys' tasks, `(foreign key,
/// subscription)`, and the answer "nothing to join" straight to its own task, `(left key,
/// answer)`, when it points nowhere and did not before either.
fn subscriptions_for<K: 'static, V: 'static, KO: 'static>(
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
    fk_serde: &dyn Serde<KO>,
    foreign_key: &(dyn Fn(&V) -> KO + Send + Sync),
    key: &K,
    change: &Change<V>,
) -> Routed {
    let Some(left_key) = key_serde.serialize(key) else {
        return (Vec::new(), None);
    };
    let new_fk = change
        .new
        .as_ref()
        .and_then(|new| fk_serde.serialize(&foreign_key(new)));
    let old_fk = change
        .old
        .as_ref()
        .and_then(|old| fk_serde.serialize(&foreign_key(old)));
    // The hash of the row as it is now, which the answer must match; 0 for a deleted row.
    let hash = change
        .new
        .as_ref()
        .and_then(|new| value_serde.serialize(new))
        .map_or(0, |bytes| value_hash(&bytes));
    let mut sent = Vec::new();
    match new_fk {
        Some(new_fk) => {
            if let Some(old_fk) = old_fk.filter(|old_fk| *old_fk != new_fk) {
                sent.push((
                    old_fk,
                    encode_subscription(Instruction::Unsubscribe, hash, &left_key),
                ));
            }
            sent.push((
                new_fk,
                encode_subscription(Instruction::Subscribe, hash, &left_key),
            ));
            (sent, None)
        }
        // Deleted, or pointing nowhere now: the result is recomputed without a right row,
        // answered by the old foreign key's task (which forgets the row) or, if there was
        // none, at once.
        None => match old_fk {
            Some(old_fk) => {
                let instruction = Instruction::UnsubscribeAndAnswer;
                sent.push((old_fk, encode_subscription(instruction, hash, &left_key)));
                (sent, None)
            }
            None => (sent, Some((left_key, encode_response(hash, None)))),
        },
    }
}

/// The foreign key's side: keeps subscriptions, answers them with the right row.
struct SubscriptionNode {
    subscriptions: String,
    right_store: String,
    downstream: Downstream<Vec<u8>, Vec<u8>>,
}

impl Node<Vec<u8>, Vec<u8>> for SubscriptionNode {
    fn process(
        &mut self,
        record: Record<Vec<u8>, Vec<u8>>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let foreign_key = &record.key;
        let (instruction, hash, left_key) = decode_subscription(&record.value)
            .ok_or_else(|| store_error(&self.subscriptions, "subscription"))?;
        let at = subscription_key(foreign_key, left_key)
            .ok_or_else(|| store_error(&self.subscriptions, "foreign key"))?;
        let answer = match instruction {
            Instruction::Subscribe => {
                context
                    .store(&self.subscriptions)
                    .put(at, Some(hash.to_be_bytes().to_vec()));
                let right = context.store(&self.right_store).get(foreign_key)?;
                Some(encode_response(hash, right.as_deref()))
            }
            Instruction::Unsubscribe => {
                context.store(&self.subscriptions).put(at, None);
                None
            }
            Instruction::UnsubscribeAndAnswer => {
                context.store(&self.subscriptions).put(at, None);
                Some(encode_response(hash, None))
            }
        };
        match answer {
            Some(answer) => {
                let left_key = left_key.to_vec();
                self.downstream
                    .forward(record.with(left_key, answer), context)
            }
            None => Ok(()),
        }
    }
}

/// A right row's change, answered to every left row subscribed to it.
struct RightChangeNode<KO, VO> {
    subscriptions: String,
    key: Arc<dyn Serde<KO>>,
    value: Arc<dyn Serde<VO>>,
    downstream: Downstream<Vec<u8>, Vec<u8>>,
}

impl<KO: Send + 'static, VO: Send + 'static> Node<KO, Change<VO>> for RightChangeNode<KO, VO> {
    fn process(
        &mut self,
        record: Record<KO, Change<VO>>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let Some(foreign_key) = self.key.serialize(&record.key) else {
            return Ok(());
        };
        let Some(prefix) = subscription_key(&foreign_key, &[]) else {
            return Ok(());
        };
        let right = record
            .value
            .new
            .as_ref()
            .and_then(|value| self.value.serialize(value));
        let subscribers: Vec<(Vec<u8>, u64)> = context
            .store(&self.subscriptions)
            .prefixed(&prefix)?
            .into_iter()
            .filter_map(|(at, hash)| {
                let hash = u64::from_be_bytes(<[u8; 8]>::try_from(hash.as_slice()).ok()?);
                Some((at.get(prefix.len()..)?.to_vec(), hash))
            })
            .collect();
        for (left_key, hash) in subscribers {
            let answer = encode_response(hash, right.as_deref());
            let out = Record {
                key: left_key,
                value: answer,
                timestamp: record.timestamp,
                headers: record.headers.clone(),
            };
            self.downstream.forward(out, context)?;
        }
        Ok(())
    }
}

/// The left key's side: an answer joined with the row as it is now, into the result table.
struct ResponseNode<K, V, VO, VR> {
    left_store: String,
    result_store: String,
    left_key: Arc<dyn Serde<K>>,
    left_value: Arc<dyn Serde<V>>,
    right_value: Arc<dyn Serde<VO>>,
    result: Arc<dyn Serde<VR>>,
    joiner: FkJoiner<V, VO, VR>,
    downstream: Downstream<K, Change<VR>>,
}

impl<K, V, VO, VR> Node<Vec<u8>, Vec<u8>> for ResponseNode<K, V, VO, VR>
where
    K: Clone + Send + 'static,
    V: Send + 'static,
    VO: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn process(
        &mut self,
        record: Record<Vec<u8>, Vec<u8>>,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let (hash, right) = decode_response(&record.value)
            .ok_or_else(|| store_error(&self.result_store, "foreign-key join answer"))?;
        let left_bytes = context.store(&self.left_store).get(&record.key)?;
        let current_hash = left_bytes.as_deref().map_or(0, value_hash);
        if current_hash != hash {
            // The row changed since it asked: the answer to its newer question follows.
            return Ok(());
        }
        let serde_error = |store: &str| {
            let store = store.to_owned();
            move |source| StreamsError::Store { store, source }
        };
        let key = self
            .left_key
            .deserialize(Some(&record.key))
            .map_err(serde_error(&self.left_store))?;
        let new = match &left_bytes {
            Some(bytes) => {
                let left = self
                    .left_value
                    .deserialize(Some(bytes))
                    .map_err(serde_error(&self.left_store))?;
                let right = right
                    .map(|bytes| self.right_value.deserialize(Some(bytes)))
                    .transpose()
                    .map_err(serde_error(&self.result_store))?;
                (self.joiner)(&left, right.as_ref())
            }
            None => None,
        };
        let store = context.store(&self.result_store);
        let old = store.read(&record.key, &*self.result)?;
        if new.is_none() && old.is_none() {
            return Ok(());
        }
        let value = new.as_ref().and_then(|new| self.result.serialize(new));
        store.put(record.key.clone(), value);
        self.downstream
            .forward(Record::change(key, new, old, record.timestamp), context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_and_answers_round_trip_and_refuse_garbage() {
        let subscription = encode_subscription(Instruction::Subscribe, 42, b"left");
        assert_eq!(
            decode_subscription(&subscription),
            Some((Instruction::Subscribe, 42, b"left".as_slice()))
        );
        assert_eq!(decode_subscription(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(decode_subscription(&[1]), None);
        let answer = encode_response(7, Some(b"right"));
        assert_eq!(
            decode_response(&answer),
            Some((7, Some(b"right".as_slice())))
        );
        assert_eq!(decode_response(&encode_response(7, None)), Some((7, None)));
        assert_eq!(decode_response(&[0, 1, 2]), None);
    }

    #[test]
    fn the_value_hash_is_fnv1a() {
        assert_eq!(value_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(value_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
