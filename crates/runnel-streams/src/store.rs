//! State stores: what a task's stateful processors keep between records. A store holds
//! bytes (its key and value serdes are the processor's), in key-byte order.
//!
//! Today's store is in memory. Next come a store on an embedded engine on disk, and its
//! changelog topic (every write sent there, so that a task moved elsewhere, or a wiped disk,
//! is restored from it).

use std::collections::BTreeMap;

/// A key-value store of one task.
#[derive(Debug, Default)]
pub(crate) struct KeyValueStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KeyValueStore {
    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }

    /// Sets `key` to `value`; `None` deletes it.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match value {
            Some(value) => {
                self.entries.insert(key, value);
            }
            None => {
                self.entries.remove(&key);
            }
        }
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

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_slice()))
    }
}
