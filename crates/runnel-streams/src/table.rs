//! [`KTable`]: a changelog stream read as a table, the latest value per key, kept in a state
//! store of the task. What flows between a table's processors is each key's change, new
//! value and old, so that later operators can use both; joins read the other side's store.
//!
//! Joins of tables (inner, left, outer) keep their own result table: an update on either
//! side recomputes the key's result from both stores, and a change goes downstream only if
//! the result changed (a delete where there was a result, nothing where there was none).

use std::fmt;
use std::sync::{Arc, Mutex};

use crate::error::StreamsError;
use crate::grouped::store_name;
use crate::processor::{Children, Downstream, Instances, Node, Record, Shared, TaskContext};
use crate::serdes::Serde;
use crate::stream::KStream;
use crate::topology::SharedDescription;

/// A key's new value and the one it replaced; `None` where there is none (a new key; a
/// delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change<V> {
    pub(crate) new: Option<V>,
    pub(crate) old: Option<V>,
}

impl<K, V> Record<K, Change<V>> {
    /// The record of a key's change from `old` to `new`.
    pub(crate) fn change(key: K, new: Option<V>, old: Option<V>, timestamp: i64) -> Self {
        Record::new(key, Change { new, old }, timestamp)
    }
}

/// A table: for each key, its latest value, kept in the state store named
/// [`KTable::store_name`], which tests and interactive queries read.
pub struct KTable<K, V> {
    description: SharedDescription,
    children: Children<K, Change<V>>,
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KTable({})", self.store)
    }
}

/// A table of every partition of a topic, in each task ([`crate::StreamsBuilder::global_table`]),
/// for streams to join by a key they compute.
pub struct GlobalKTable<K, V> {
    store: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
}

impl<K, V> fmt::Debug for GlobalKTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GlobalKTable({})", self.store)
    }
}

impl<K, V> GlobalKTable<K, V> {
    pub(crate) fn new(store: String, key: Arc<dyn Serde<K>>, value: Arc<dyn Serde<V>>) -> Self {
        GlobalKTable { store, key, value }
    }

    /// The store holding the table.
    pub fn store_name(&self) -> &str {
        &self.store
    }

    pub(crate) fn key_serde(&self) -> &Arc<dyn Serde<K>> {
        &self.key
    }

    pub(crate) fn value_serde(&self) -> &Arc<dyn Serde<V>> {
        &self.value
    }
}

/// Reads `key`'s value in `store`.
pub(crate) fn lookup<K: 'static, V: 'static>(
    context: &mut TaskContext,
    store: &str,
    key: &K,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
) -> Result<Option<V>, StreamsError> {
    let Some(key_bytes) = key_serde.serialize(key) else {
        return Ok(None);
    };
    context.store(store).read(&key_bytes, value_serde)
}

/// Reads `key`'s value in global store `store`.
pub(crate) fn lookup_global<K: 'static, V: 'static>(
    context: &TaskContext,
    store: &str,
    key: &K,
    key_serde: &dyn Serde<K>,
    value_serde: &dyn Serde<V>,
) -> Result<Option<V>, StreamsError> {
    let Some(key_bytes) = key_serde.serialize(key) else {
        return Ok(None);
    };
    context
        .globals
        .get(store, &key_bytes)?
        .map(|bytes| value_serde.deserialize(Some(&bytes)))
        .transpose()
        .map_err(|source| StreamsError::Store {
            store: store.to_owned(),
            source,
        })
}

/// How a join treats a key missing on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinKind {
    /// A result only where both sides have the key.
    Inner,
    /// A result wherever the left side has the key.
    Left,
    /// A result wherever either side has the key.
    Outer,
}

impl JoinKind {
    fn takes(self, left: bool, right: bool) -> bool {
        match self {
            JoinKind::Inner => left && right,
            JoinKind::Left => left,
            JoinKind::Outer => left || right,
        }
    }
}

impl<K, V> KTable<K, V>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub(crate) fn new(
        description: SharedDescription,
        children: Children<K, Change<V>>,
        store: String,
        key: Arc<dyn Serde<K>>,
        value: Arc<dyn Serde<V>>,
    ) -> Self {
        KTable {
            description,
            children,
            store,
            key,
            value,
        }
    }

    /// The state store holding the table.
    pub fn store_name(&self) -> &str {
        &self.store
    }

    pub(crate) fn key_serde(&self) -> &Arc<dyn Serde<K>> {
        &self.key
    }

    pub(crate) fn value_serde(&self) -> &Arc<dyn Serde<V>> {
        &self.value
    }

    pub(crate) fn description(&self) -> &SharedDescription {
        &self.description
    }

    /// The table's changes, as the stream its processors are fed by.
    pub(crate) fn changes(&self) -> KStream<K, Change<V>> {
        KStream::new(Arc::clone(&self.description), Arc::clone(&self.children))
    }

    /// Every update of the table as a record: the key and its new value, `None` for a
    /// delete (a tombstone when written to a topic).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        self.changes().map_values(|change: Change<V>| change.new)
    }

    /// The table of keys both tables have, with `joiner(left, right)`.
    pub fn join<VO, VR>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        result: impl Serde<VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.join_with(other, JoinKind::Inner, result, move |left, right| {
            joiner(left.expect("inner"), right.expect("inner"))
        })
    }

    /// The table of this table's keys, with `joiner(left, right)`, `right` `None` where the
    /// other table lacks the key.
    pub fn left_join<VO, VR>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        result: impl Serde<VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.join_with(other, JoinKind::Left, result, move |left, right| {
            joiner(left.expect("left"), right)
        })
    }

    /// The table of keys either table has, with `joiner(left, right)`.
    pub fn outer_join<VO, VR>(
        &self,
        other: &KTable<K, VO>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
        result: impl Serde<VR>,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        self.join_with(other, JoinKind::Outer, result, joiner)
    }

    fn join_with<VO, VR>(
        &self,
        other: &KTable<K, VO>,
        kind: JoinKind,
        result: impl Serde<VR>,
        joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
    ) -> KTable<K, VR>
    where
        VO: Clone + Send + 'static,
        VR: Clone + Send + 'static,
    {
        let store = store_name(&self.description, None, "KTABLE-JOIN");
        let join = Arc::new(TableJoin {
            kind,
            store: store.clone(),
            key: Arc::clone(&self.key),
            result: Arc::new(result) as Arc<dyn Serde<VR>>,
            left_store: self.store.clone(),
            left_value: Arc::clone(&self.value),
            right_store: other.store.clone(),
            right_value: Arc::clone(&other.value),
            joiner: Arc::new(joiner) as Joiner<V, VO, VR>,
        });
        let children = self.changes().add_changes({
            let join = Arc::clone(&join);
            move |downstream, _: &mut Instances| {
                Arc::new(Mutex::new(JoinSide::<K, V, VO, VR, true> {
                    join: Arc::clone(&join),
                    downstream,
                })) as Shared<K, Change<V>>
            }
        });
        let joined: KStream<K, Change<VR>> =
            KStream::new(Arc::clone(&self.description), Arc::clone(&children));
        other.changes().feed(&joined, {
            let join = Arc::clone(&join);
            move |downstream, _: &mut Instances| {
                Arc::new(Mutex::new(JoinSide::<K, V, VO, VR, false> {
                    join: Arc::clone(&join),
                    downstream,
                })) as Shared<K, Change<VO>>
            }
        });
        KTable::new(
            Arc::clone(&self.description),
            children,
            store,
            Arc::clone(&self.key),
            Arc::clone(&join.result),
        )
    }
}

type Joiner<V, VO, VR> = Arc<dyn Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync>;

/// What both sides of a table-table join share.
struct TableJoin<K, V, VO, VR> {
    kind: JoinKind,
    store: String,
    key: Arc<dyn Serde<K>>,
    result: Arc<dyn Serde<VR>>,
    left_store: String,
    left_value: Arc<dyn Serde<V>>,
    right_store: String,
    right_value: Arc<dyn Serde<VO>>,
    joiner: Joiner<V, VO, VR>,
}

/// One side of a table-table join: an update on it recomputes the key's result.
struct JoinSide<K, V, VO, VR, const LEFT: bool> {
    join: Arc<TableJoin<K, V, VO, VR>>,
    downstream: Downstream<K, Change<VR>>,
}

impl<K, V, VO, VR, const LEFT: bool> JoinSide<K, V, VO, VR, LEFT>
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
    VO: Clone + Send + 'static,
    VR: Clone + Send + 'static,
{
    fn recompute(
        &self,
        key: K,
        timestamp: i64,
        context: &mut TaskContext,
    ) -> Result<(), StreamsError> {
        let join = &self.join;
        let left = lookup(
            context,
            &join.left_store,
            &key,
            &*join.key,
            &*join.left_value,
        )?;
        let right = lookup(
            context,
            &join.right_store,
            &key,
            &*join.key,
            &*join.right_value,
        )?;
        let new = join
            .kind
            .takes(left.is_some(), right.is_some())
            .then(|| (join.joiner)(left.as_ref(), right.as_ref()));
        let old = lookup(context, &join.store, &key, &*join.key, &*join.result)?;
        if new.is_none() && old.is_none() {
            return Ok(());
        }
        if let Some(key_bytes) = join.key.serialize(&key) {
            let value = new.as_ref().and_then(|new| join.result.serialize(new));
            context.store(&join.store).put(key_bytes, value);
        }
        self.downstream
            .forward(Record::change(key, new, old, timestamp), context)
    }
}

macro_rules! join_side {
    ($side:ty, $left:literal) => {
        impl<K, V, VO, VR> Node<K, Change<$side>> for JoinSide<K, V, VO, VR, $left>
        where
            K: Clone + Send + 'static,
            V: Clone + Send + 'static,
            VO: Clone + Send + 'static,
            VR: Clone + Send + 'static,
        {
            fn process(
                &mut self,
                record: Record<K, Change<$side>>,
                context: &mut TaskContext,
            ) -> Result<(), StreamsError> {
                self.recompute(record.key, record.timestamp, context)
            }
        }
    };
}

join_side!(V, true);
join_side!(VO, false);
