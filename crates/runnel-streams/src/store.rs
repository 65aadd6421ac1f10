//! State stores: what a task's stateful processors keep between records. A store holds
//! bytes (its key and value serdes are the processor's), in key-byte order.
//!
//! Every write is noted for the store's changelog topic, which the runtime sends it to, so
//! that a task moved elsewhere, or started again, is restored from it: the changelog is the
//! truth, and a task's local copy a cache of it that saves reading it all again.
//!
//! A store lives in memory (the test driver's, the global tables', and the runtime's when
//! told so) or on disk in the task's redb database ([`LocalState`]). On disk, writes wait in
//! memory until the runtime commits; then they go to the database in one transaction with
//! each store's checkpoint: the changelog offset up to which it holds the changelog. A task
//! started again reads its changelogs only from there, and a copy that cannot be trusted (no
//! checkpoint, or one outside the changelog) is emptied and restored from the start.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use redb::{Database, Durability, ReadableTable, TableDefinition};

use crate::error::StreamsError;
use crate::serdes::Serde;

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
            .or_insert_with(|| KeyValueStore::in_memory(store))
            .restore(key, value);
    }

    /// `key`'s value in global store `store`.
    pub(crate) fn get(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        let stores = self.0.read().unwrap_or_else(PoisonError::into_inner);
        match stores.get(store) {
            Some(store) => store.get(key),
            None => Ok(None),
        }
    }

    /// Every entry of global store `store`, in key order; `None` if nothing was written.
    pub(crate) fn entries(&self, store: &str) -> Result<Option<Entries>, StreamsError> {
        let stores = self.0.read().unwrap_or_else(PoisonError::into_inner);
        stores.get(store).map(KeyValueStore::entries).transpose()
    }
}

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// What went wrong with a task's local state.
fn state_error(error: impl fmt::Display) -> StreamsError {
    StreamsError::LocalState(error.to_string())
}

/// Where a store's entries live.
enum Backend {
    Memory(BTreeMap<Vec<u8>, Vec<u8>>),
    /// A table of the task's database, and the writes not in it yet (`None` deletes).
    Disk {
        db: Arc<Database>,
        pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        pending_bytes: usize,
    },
}

/// A key-value store of one task.
pub(crate) struct KeyValueStore {
    /// The store's name: on disk, its table's.
    name: String,
    backend: Backend,
    /// Writes since the runtime last took them, for the store's changelog: `(key, value)`,
    /// `None` for a delete.
    changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl fmt::Debug for KeyValueStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.backend {
            Backend::Memory(_) => "memory",
            Backend::Disk { .. } => "disk",
        };
        write!(f, "KeyValueStore({}, {backend})", self.name)
    }
}

impl KeyValueStore {
    pub(crate) fn in_memory(name: &str) -> Self {
        KeyValueStore {
            name: name.to_owned(),
            backend: Backend::Memory(BTreeMap::new()),
            changes: Vec::new(),
        }
    }

    /// Store `name` in the task's database.
    pub(crate) fn on_disk(name: &str, db: Arc<Database>) -> Self {
        KeyValueStore {
            name: name.to_owned(),
            backend: Backend::Disk {
                db,
                pending: BTreeMap::new(),
                pending_bytes: 0,
            },
            changes: Vec::new(),
        }
    }

    fn table(&self) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
        TableDefinition::new(&self.name)
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        match &self.backend {
            Backend::Memory(entries) => Ok(entries.get(key).cloned()),
            Backend::Disk { db, pending, .. } => {
                if let Some(pending) = pending.get(key) {
                    return Ok(pending.clone());
                }
                let read = db.begin_read().map_err(state_error)?;
                let table = match read.open_table(self.table()) {
                    Ok(table) => table,
                    Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                    Err(error) => return Err(state_error(error)),
                };
                let value = table.get(key).map_err(state_error)?;
                Ok(value.map(|value| value.value().to_vec()))
            }
        }
    }

    /// `key`'s value read with `serde`.
    pub(crate) fn read<T: 'static>(
        &self,
        key: &[u8],
        serde: &dyn Serde<T>,
    ) -> Result<Option<T>, StreamsError> {
        self.get(key)?
            .map(|bytes| self.decode(&bytes, serde))
            .transpose()
    }

    /// `bytes` of this store read with `serde`; an error names the store.
    pub(crate) fn decode<T: 'static>(
        &self,
        bytes: &[u8],
        serde: &dyn Serde<T>,
    ) -> Result<T, StreamsError> {
        serde
            .deserialize(Some(bytes))
            .map_err(|source| StreamsError::Store {
                store: self.name.clone(),
                source,
            })
    }

    /// Sets `key` to `value`; `None` deletes it.
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.changes.push((key.clone(), value.clone()));
        self.restore(key, value);
    }

    /// Sets `key` to `value` as its changelog says, which is not a change to log again.
    pub(crate) fn restore(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        match &mut self.backend {
            Backend::Memory(entries) => match value {
                Some(value) => {
                    entries.insert(key, value);
                }
                None => {
                    entries.remove(&key);
                }
            },
            Backend::Disk {
                pending,
                pending_bytes,
                ..
            } => {
                *pending_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
                pending.insert(key, value);
            }
        }
    }

    /// The writes since the last call, oldest first.
    pub(crate) fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.changes)
    }

    /// The entries with keys in `from..to` (`to` unbounded if `None`), in key order.
    fn scan(&self, from: &[u8], to: Option<&[u8]>) -> Result<Entries, StreamsError> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        if to.is_some_and(|to| from >= to) {
            return Ok(Vec::new());
        }
        let bounds = (Bound::Included(from), upper);
        match &self.backend {
            Backend::Memory(entries) => Ok(entries
                .range::<[u8], _>(bounds)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()),
            Backend::Disk { db, pending, .. } => {
                let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                let read = db.begin_read().map_err(state_error)?;
                match read.open_table(self.table()) {
                    Ok(table) => {
                        for entry in table.range::<&[u8]>(bounds).map_err(state_error)? {
                            let (key, value) = entry.map_err(state_error)?;
                            merged.insert(key.value().to_vec(), value.value().to_vec());
                        }
                    }
                    Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(error) => return Err(state_error(error)),
                }
                for (key, value) in pending.range::<[u8], _>(bounds) {
                    match value {
                        Some(value) => merged.insert(key.clone(), value.clone()),
                        None => merged.remove(key),
                    };
                }
                Ok(merged.into_iter().collect())
            }
        }
    }

    /// The entries with keys in `from..to`, in key order.
    pub(crate) fn range(&self, from: &[u8], to: &[u8]) -> Result<Entries, StreamsError> {
        self.scan(from, Some(to))
    }

    /// The entries whose keys start with `prefix`, in key order.
    pub(crate) fn prefixed(&self, prefix: &[u8]) -> Result<Entries, StreamsError> {
        let mut entries = self.scan(prefix, prefix_end(prefix).as_deref())?;
        entries.retain(|(key, _)| key.starts_with(prefix));
        Ok(entries)
    }

    /// Every entry, in key order.
    pub(crate) fn entries(&self) -> Result<Entries, StreamsError> {
        self.scan(&[], None)
    }

    /// How many bytes of writes wait for [`LocalState::commit`] (0 in memory).
    pub(crate) fn pending_bytes(&self) -> usize {
        match self.backend {
            Backend::Memory(_) => 0,
            Backend::Disk { pending_bytes, .. } => pending_bytes,
        }
    }

    /// Writes what waits into the database, in `write`'s transaction.
    fn flush(&mut self, write: &redb::WriteTransaction) -> Result<(), StreamsError> {
        let table_name = self.name.clone();
        let Backend::Disk {
            pending,
            pending_bytes,
            ..
        } = &mut self.backend
        else {
            return Ok(());
        };
        let definition: TableDefinition<'_, &'static [u8], &'static [u8]> =
            TableDefinition::new(&table_name);
        let mut table = write.open_table(definition).map_err(state_error)?;
        for (key, value) in std::mem::take(pending) {
            match value {
                Some(value) => table.insert(key.as_slice(), value.as_slice()),
                None => table.remove(key.as_slice()),
            }
            .map_err(state_error)?;
        }
        *pending_bytes = 0;
        Ok(())
    }
}

/// The first key after every key starting with `prefix`; `None` if there is none (the
/// prefix is all 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The table of each store's checkpoint: the changelog offset its table holds everything
/// before. A name no store can have: store names never start with a colon.
const CHECKPOINTS: TableDefinition<'static, &'static str, i64> =
    TableDefinition::new(":checkpoints");

/// A task's state on disk: one redb database holding a table per store and their
/// checkpoints.
#[derive(Clone)]
pub(crate) struct LocalState {
    db: Arc<Database>,
}

impl fmt::Debug for LocalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalState")
    }
}

impl LocalState {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StreamsError> {
        std::fs::create_dir_all(dir).map_err(|error| {
            StreamsError::LocalState(format!("creating {}: {error}", dir.display()))
        })?;
        let db = Database::create(dir.join("state.redb")).map_err(state_error)?;
        Ok(LocalState { db: Arc::new(db) })
    }

    pub(crate) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// Each store's checkpoint.
    pub(crate) fn checkpoints(&self) -> Result<BTreeMap<String, i64>, StreamsError> {
        let read = self.db.begin_read().map_err(state_error)?;
        let table = match read.open_table(CHECKPOINTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(error) => return Err(state_error(error)),
        };
        let mut checkpoints = BTreeMap::new();
        for entry in table.iter().map_err(state_error)? {
            let (store, offset) = entry.map_err(state_error)?;
            checkpoints.insert(store.value().to_owned(), offset.value());
        }
        Ok(checkpoints)
    }

    /// Empties store `store` and forgets its checkpoint: its copy cannot be trusted.
    pub(crate) fn wipe(&self, store: &str) -> Result<(), StreamsError> {
        let write = self.db.begin_write().map_err(state_error)?;
        let definition: TableDefinition<'_, &'static [u8], &'static [u8]> =
            TableDefinition::new(store);
        write.delete_table(definition).map_err(state_error)?;
        write
            .open_table(CHECKPOINTS)
            .map_err(state_error)?
            .remove(store)
            .map_err(state_error)?;
        write.commit().map_err(state_error)
    }

    /// Writes every store's waiting writes and the new `checkpoints`, in one transaction:
    /// a store's table and its checkpoint never disagree. Not synced at once (redb's
    /// eventual durability): a power cut may take the database back to an earlier commit,
    /// whole, whose checkpoints say how much to restore.
    pub(crate) fn commit<'a>(
        &self,
        stores: impl IntoIterator<Item = &'a mut KeyValueStore>,
        checkpoints: &BTreeMap<String, i64>,
    ) -> Result<(), StreamsError> {
        let mut write = self.db.begin_write().map_err(state_error)?;
        write.set_durability(Durability::Eventual);
        for store in stores {
            store.flush(&write)?;
        }
        {
            let mut table = write.open_table(CHECKPOINTS).map_err(state_error)?;
            for (store, offset) in checkpoints {
                table.insert(store.as_str(), *offset).map_err(state_error)?;
            }
        }
        write.commit().map_err(state_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(store: &KeyValueStore) -> Vec<(Vec<u8>, Vec<u8>)> {
        store.entries().expect("readable")
    }

    #[test]
    fn a_disk_store_reads_its_writes_before_and_after_they_are_committed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let state = LocalState::open(dir.path()).expect("opened");
        let mut store = KeyValueStore::on_disk("counts", state.database());
        store.put(b"a".to_vec(), Some(b"1".to_vec()));
        store.put(b"b".to_vec(), Some(b"2".to_vec()));
        assert_eq!(store.get(b"a").expect("read"), Some(b"1".to_vec()));
        let checkpoints = BTreeMap::from([("counts".to_owned(), 2)]);
        state.commit([&mut store], &checkpoints).expect("committed");
        assert_eq!(store.pending_bytes(), 0);
        store.put(b"a".to_vec(), None);
        store.put(b"ab".to_vec(), Some(b"3".to_vec()));
        assert_eq!(
            store.get(b"a").expect("read"),
            None,
            "a pending delete hides it"
        );
        assert_eq!(
            store.prefixed(b"a").expect("read"),
            [(b"ab".to_vec(), b"3".to_vec())]
        );
        assert_eq!(scan_all(&store).len(), 2);

        // Opened again: what was committed, and its checkpoint; not what was pending.
        drop(store);
        drop(state);
        let state = LocalState::open(dir.path()).expect("reopened");
        assert_eq!(state.checkpoints().expect("read"), checkpoints);
        let store = KeyValueStore::on_disk("counts", state.database());
        assert_eq!(
            scan_all(&store),
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        state.wipe("counts").expect("wiped");
        assert!(state.checkpoints().expect("read").is_empty());
        assert!(scan_all(&store).is_empty());
    }

    #[test]
    fn a_prefix_ends_where_its_last_byte_below_0xff_goes_up() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[]), None);
    }
}
