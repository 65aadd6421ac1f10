//! [`KTable`]: a changelog stream read as a table, the latest value per key. What flows
//! between a table's processors is each key's change, new value and old, so that later
//! operators (joins, re-aggregations that subtract the old value) can use both.

use std::fmt;
use std::sync::Arc;

use crate::processor::{Children, Record};
use crate::stream::KStream;
use crate::topology::SharedDescription;

/// A key's new value and the one it replaced; `None` where there is none (a new key; a
/// delete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change<V> {
    pub(crate) new: Option<V>,
    pub(crate) old: Option<V>,
}

/// A table: for each key, its latest value, kept in the state store named
/// [`KTable::store_name`], which tests and interactive queries read.
pub struct KTable<K, V> {
    description: SharedDescription,
    children: Children<K, Change<V>>,
    store: String,
}

impl<K, V> fmt::Debug for KTable<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KTable({})", self.store)
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
    ) -> Self {
        KTable {
            description,
            children,
            store,
        }
    }

    /// The state store holding the table.
    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// Every update of the table as a record: the key and its new value, `None` for a
    /// delete (a tombstone when written to a topic).
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let changes: KStream<K, Change<V>> =
            KStream::new(Arc::clone(&self.description), Arc::clone(&self.children));
        changes.map_values(|change: Change<V>| change.new)
    }
}

impl<K, V> Record<K, Change<V>> {
    /// The record of a key's change from `old` to `new`.
    pub(crate) fn change(key: K, new: Option<V>, old: Option<V>, timestamp: i64) -> Self {
        Record::new(key, Change { new, old }, timestamp)
    }
}
