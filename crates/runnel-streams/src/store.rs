//! State stores: what a task's stateful processors keep between records. A store holds
//! bytes (its key and value serdes are the processor's), in key-byte order.
//!
//! Every write is noted for the store's changelog topic, which the runtime sends it to, so
//! that a task moved elsewhere, or started again, is restored from it: the changelog is the
//! truth, and a task's local copy a cache of it that saves reading it all again.
//!
//! A store lives in memory (the test driver's, the global tables', and the runtime's when
//! told so) or on disk: one fjall keyspace per application instance ([`LocalState`]), a
//! partition per task and store (`<task>#<store>`). On disk, writes wait in memory until the
//! runtime commits; then they go to the keyspace in one atomic batch with each store's
//! checkpoint: the changelog offset up to which it holds the changelog. A task started
//! again reads its changelogs only from there, and a copy that cannot be trusted (no
//! checkpoint, or one outside the changelog) is emptied and restored from the start.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use fjall::{Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use crate::error::StreamsError;
use crate::serdes::{Serde, SerdeError};
use crate::topology::GlobalSource;

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

    /// Applies a record of `global`'s topic: its key and value as the table's serdes write
    /// them (a null value deleting the key); a key that serializes to null is not kept.
    pub(crate) fn apply_record(
        &self,
        global: &GlobalSource,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), SerdeError> {
        if let Some((key, value)) = (global.canonical)(key, value)? {
            self.apply(&global.store, key, value);
        }
        Ok(())
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
    /// A partition of the instance's keyspace, and the writes not in it yet (`None`
    /// deletes).
    Disk {
        task: TaskState,
        partition: OnceLock<PartitionHandle>,
        pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        pending_bytes: usize,
    },
}

/// A key-value store of one task.
pub(crate) struct KeyValueStore {
    /// The store's name (the topology's).
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

    /// Store `name` of `task`, on disk.
    pub(crate) fn on_disk(name: &str, task: TaskState) -> Self {
        KeyValueStore {
            name: name.to_owned(),
            backend: Backend::Disk {
                task,
                partition: OnceLock::new(),
                pending: BTreeMap::new(),
                pending_bytes: 0,
            },
            changes: Vec::new(),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StreamsError> {
        match &self.backend {
            Backend::Memory(entries) => Ok(entries.get(key).cloned()),
            Backend::Disk {
                task,
                partition,
                pending,
                ..
            } => {
                if let Some(pending) = pending.get(key) {
                    return Ok(pending.clone());
                }
                let partition = task.partition(partition, &self.name)?;
                let value = partition.get(key).map_err(state_error)?;
                Ok(value.map(|value| value.to_vec()))
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
        if to.is_some_and(|to| from >= to) {
            return Ok(Vec::new());
        }
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        let bounds = (Bound::Included(from), upper);
        match &self.backend {
            Backend::Memory(entries) => Ok(entries
                .range::<[u8], _>(bounds)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()),
            Backend::Disk {
                task,
                partition,
                pending,
                ..
            } => {
                let partition = task.partition(partition, &self.name)?;
                let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                for entry in partition.range::<&[u8], _>(bounds) {
                    let (key, value) = entry.map_err(state_error)?;
                    merged.insert(key.to_vec(), value.to_vec());
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

    /// How many bytes of writes wait for [`TaskState::commit`] (0 in memory).
    pub(crate) fn pending_bytes(&self) -> usize {
        match self.backend {
            Backend::Memory(_) => 0,
            Backend::Disk { pending_bytes, .. } => pending_bytes,
        }
    }

    /// Adds what waits to `batch`, to be written with it.
    fn flush(&mut self, batch: &mut fjall::Batch) -> Result<(), StreamsError> {
        let Backend::Disk {
            task,
            partition,
            pending,
            pending_bytes,
        } = &mut self.backend
        else {
            return Ok(());
        };
        let partition = task.partition(partition, &self.name)?;
        for (key, value) in std::mem::take(pending) {
            match value {
                Some(value) => batch.insert(partition, key, value),
                None => batch.remove(partition, key),
            }
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

/// Whether `name` may name a store: as the changelog topic `<application id>-<name>-changelog`
/// must be a legal topic name, ASCII letters, digits, `.`, `_` and `-`, at most 200 of them.
/// (The keyspace's partition names allow those too, and `#`, which separates a task from a
/// store in them.)
pub(crate) fn is_legal_store_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'))
}

/// How a store's partition is made: uncompressed (values are the application's serialized
/// state, often compressed already or small; lz4 halved the restore rate of incompressible
/// values), and a 64 MiB memtable, flushed to a segment in one piece.
fn store_options() -> PartitionCreateOptions {
    PartitionCreateOptions::default()
        .compression(fjall::CompressionType::None)
        .max_memtable_size(64 << 20)
}

/// The partition of the stores' checkpoints: keys `<task>#<store>`, values the offset.
const CHECKPOINTS: &str = "#checkpoints";

/// An application instance's state on disk: one fjall keyspace, a partition per task and
/// store, and the checkpoints. Two instances need two directories: the directory is locked
/// (`flock` on `.lock`) while any of its handles lives, as Kafka Streams locks its state
/// directory, since two keyspaces on one directory would corrupt it.
#[derive(Clone)]
pub(crate) struct LocalState {
    keyspace: Keyspace,
    _lock: Arc<std::fs::File>,
}

impl fmt::Debug for LocalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalState")
    }
}

impl LocalState {
    /// Opens (or creates) the keyspace in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, StreamsError> {
        let failed = |what: &str, error: std::io::Error| {
            StreamsError::LocalState(format!("{what} {}: {error}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|error| failed("creating", error))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .map_err(|error| failed("opening the lock of", error))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                StreamsError::LocalState(format!(
                    "{} is in use by another instance of the application: give each its own state directory",
                    dir.display()
                ))
            },
        )?;
        let keyspace = fjall::Config::new(dir).open().map_err(state_error)?;
        Ok(LocalState {
            keyspace,
            _lock: Arc::new(lock),
        })
    }

    /// Task `task`'s part of it.
    pub(crate) fn task(&self, task: &str) -> TaskState {
        TaskState {
            keyspace: self.keyspace.clone(),
            _instance: self.clone(),
            task: task.to_owned(),
        }
    }
}

/// One task's stores on disk, and their checkpoints.
#[derive(Clone)]
pub(crate) struct TaskState {
    keyspace: Keyspace,
    /// Holds the directory's lock while the task lives.
    _instance: LocalState,
    /// The task's id, `0_<partition>`.
    task: String,
}

impl fmt::Debug for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskState({})", self.task)
    }
}

impl TaskState {
    fn partition_name(&self, store: &str) -> String {
        format!("{}#{store}", self.task)
    }

    /// Store `store`'s partition, opened once into `cell`.
    fn partition<'a>(
        &self,
        cell: &'a OnceLock<PartitionHandle>,
        store: &str,
    ) -> Result<&'a PartitionHandle, StreamsError> {
        if let Some(partition) = cell.get() {
            return Ok(partition);
        }
        let name = self.partition_name(store);
        // The keyspace panics on a name it does not take: the topology refuses such stores.
        assert!(
            is_legal_store_name(store),
            "store name {store:?} reached the keyspace"
        );
        let partition = self
            .keyspace
            .open_partition(&name, store_options())
            .map_err(state_error)?;
        Ok(cell.get_or_init(|| partition))
    }

    fn checkpoint_partition(&self) -> Result<PartitionHandle, StreamsError> {
        self.keyspace
            .open_partition(CHECKPOINTS, PartitionCreateOptions::default())
            .map_err(state_error)
    }

    /// Each of the task's stores' checkpoints.
    pub(crate) fn checkpoints(&self) -> Result<BTreeMap<String, i64>, StreamsError> {
        let prefix = format!("{}#", self.task);
        let mut checkpoints = BTreeMap::new();
        for entry in self.checkpoint_partition()?.prefix(prefix.as_bytes()) {
            let (key, offset) = entry.map_err(state_error)?;
            let store = key.get(prefix.len()..).unwrap_or_default();
            // A malformed checkpoint is no checkpoint: its store is restored from the start.
            if let Ok(offset) = <[u8; 8]>::try_from(&*offset).map(i64::from_be_bytes) {
                checkpoints.insert(String::from_utf8_lossy(store).into_owned(), offset);
            }
        }
        Ok(checkpoints)
    }

    /// Empties store `store` and forgets its checkpoint: its copy cannot be trusted. Before
    /// the task opens the store.
    pub(crate) fn wipe(&self, store: &str) -> Result<(), StreamsError> {
        let name = self.partition_name(store);
        if self.keyspace.partition_exists(&name) {
            let partition = self
                .keyspace
                .open_partition(&name, PartitionCreateOptions::default())
                .map_err(state_error)?;
            self.keyspace
                .delete_partition(partition)
                .map_err(state_error)?;
        }
        self.checkpoint_partition()?
            .remove(self.partition_name(store))
            .map_err(state_error)
    }

    /// Writes every store's waiting writes and the new `checkpoints` in one atomic batch: a
    /// store's entries and its checkpoint never disagree. Flushed to the operating system,
    /// not synced: a power cut may take the keyspace back to an earlier batch, whole, whose
    /// checkpoints say how much to restore.
    pub(crate) fn commit<'a>(
        &self,
        stores: impl IntoIterator<Item = &'a mut KeyValueStore>,
        checkpoints: &BTreeMap<String, i64>,
    ) -> Result<(), StreamsError> {
        let mut batch = self.keyspace.batch().durability(Some(PersistMode::Buffer));
        for store in stores {
            store.flush(&mut batch)?;
        }
        let checkpoint_partition = self.checkpoint_partition()?;
        for (store, offset) in checkpoints {
            batch.insert(
                &checkpoint_partition,
                self.partition_name(store),
                offset.to_be_bytes().to_vec(),
            );
        }
        batch.commit().map_err(state_error)
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
        let state = LocalState::open(dir.path()).expect("opened").task("0_0");
        let mut store = KeyValueStore::on_disk("counts", state.clone());
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
        let state = LocalState::open(dir.path()).expect("reopened").task("0_0");
        assert_eq!(state.checkpoints().expect("read"), checkpoints);
        let other = LocalState::open(dir.path()).ok();
        assert!(other.is_none(), "one instance at a time in a directory");
        let store = KeyValueStore::on_disk("counts", state.clone());
        assert_eq!(
            scan_all(&store),
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        drop(store);
        state.wipe("counts").expect("wiped");
        assert!(state.checkpoints().expect("read").is_empty());
        let store = KeyValueStore::on_disk("counts", state.clone());
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
