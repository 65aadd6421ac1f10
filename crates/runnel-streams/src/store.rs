//! State stores: what a task's stateful processors keep between records. A store holds
//! bytes (its key and value serdes are the processor's), in key-byte order.
//!
//! Every write is noted for the store's changelog topic, which the runtime sends it to, so
//! that a task moved elsewhere, or started again, is restored from it. Today's store is in
//! memory (every start restores); a store on an embedded engine on disk comes next.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// The stores of global tables, by store name: each holds every partition of its topic and
/// is shared by all the tasks of an instance; the runtime's global reader (or the test
/// driver) writes them, tasks only read them.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobalStores(Arc<RwLock<BTreeMap<String, KeyValueStore>>>);

impl GlobalStores {
    /// Sets `key` to `value` (`None` deletes it) in global store `store`.
    pub(crate) fn apply(&self, store: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
        let mut stores = self.0.write().unwrap_or_else(PoisonError::into_inner);
        stores
            .entry(store.to_owned())
            .or_default()
            .restore(key, value);
    }

    /// `key`'s value in global store `store`.
    pub(crate) fn get(&self, store: &str, key: &[u8]) -> Option<Vec<u8>> {
        let stores = self.0.read().unwrap_or_else(PoisonError::into_inner);
        stores.get(store)?.get(key).map(<[u8]>::to_vec)
    }

    /// Every entry of global store `store`, in key order; `None` if nothing was written.
    pub(crate) fn entries(&self, store: &str) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
        let stores = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let store = stores.get(store)?;
        Some(
            store
                .entries()
                .map(|(key, value)| (key.to_vec(), value.to_vec()))
                .collect(),
        )
    }
}

/// A key-value store of one task.
#[derive(Debug, Default)]
pub(crate) struct KeyValueStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Writes since the runtime last took them, for the store's changelog: `(key, value)`,
    /// `None` for a delete.
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KeyValueStore {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to `value`; `None` deletes it.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.changes.push((key.clone(), value.clone()));
        self.restore(key, value);
    }

    /// Sets `key` to `value` as its changelog says, which is not a change to log again.
    pub(crate) fn restore(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match value {
            Some(value) => {
                self.entries.insert(key, value);
            }
            None => {
                self.entries.remove(&key);
            }
        }
    }

    /// The writes since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.changes)
    }

    /// The entries with keys in `from..to`, in key order.
    pub(crate) fn range(&self, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        if from >= to {
            return Vec::new();
        }
        self.entries
            .range::<[u8], _>((
                std::ops::Bound::Included(from),
                std::ops::Bound::Excluded(to),
            ))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub(crate) fn prefixed<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.entries
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }
}
