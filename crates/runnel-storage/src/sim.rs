//! A simulated disk that loses exactly what a power cut may lose, for tests and for the
//! whole-cluster simulation to come.
//!
//! [`SimFileSystem`] keeps every file and directory in memory twice: as the running process
//! sees it, and as it would be found after a power cut (the durable state). Data written to a
//! file becomes durable on [`DataFile::sync_data`]; a name created, removed or renamed becomes
//! durable on [`FileSystem::sync_dir`] of its directory. [`SimFileSystem::crash`] cuts the
//! power: the running view fails every later call, and the returned file system holds the
//! durable state plus an arbitrary, seeded subset of the operations not yet synced, each write
//! possibly torn at any byte, applied in the order they were made.
//!
//! Faults can be injected ([`SimFileSystem::inject`]): an operation on a matching path then
//! fails with EIO. A failed `sync_data` also drops the pages it was to write, as Linux does
//! ("fsyncgate"): the process still reads them, but no crash will ever find them.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{Clock, DataFile, DirEntry, DiskSpace, FileSystem, OpenMode};

/// A clock a test moves by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        ManualClock(AtomicI64::new(now_ms))
    }

    pub fn advance(&self, millis: i64) {
        self.0.fetch_add(millis, Ordering::Relaxed);
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Which operation an injected fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimOp {
    Open,
    Read,
    Write,
    SyncData,
}

#[derive(Debug, Clone)]
struct Fault {
    op: SimOp,
    path_contains: String,
}

type NodeId = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    File(NodeId),
    Dir(NodeId),
}

#[derive(Debug, Clone)]
enum DataOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl DataOp {
    fn apply_to(&self, data: &mut Vec<u8>) {
        match self {
            DataOp::Write { offset, bytes } => write_into(data, *offset, bytes),
            DataOp::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

#[derive(Debug, Clone, Default)]
struct FileState {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Operations since the last sync, in order.
    pending: Vec<DataOp>,
    modified_ms: i64,
}

#[derive(Debug, Clone)]
enum MetaOp {
    Link {
        dir: NodeId,
        name: OsString,
        node: Node,
    },
    Unlink {
        dir: NodeId,
        name: OsString,
    },
    Rename {
        from_dir: NodeId,
        from_name: OsString,
        to_dir: NodeId,
        to_name: OsString,
    },
}

impl MetaOp {
    fn touches(&self, dir: NodeId) -> bool {
        match self {
            MetaOp::Link { dir: d, .. } | MetaOp::Unlink { dir: d, .. } => *d == dir,
            MetaOp::Rename {
                from_dir, to_dir, ..
            } => *from_dir == dir || *to_dir == dir,
        }
    }

    /// Applies the operation to a directory table; an operation whose source is gone (because
    /// an earlier one did not survive a crash) does nothing.
    fn apply(&self, dirs: &mut HashMap<NodeId, BTreeMap<OsString, Node>>) {
        match self {
            MetaOp::Link { dir, name, node } => {
                if let Node::Dir(id) = node {
                    dirs.entry(*id).or_default();
                }
                if let Some(entries) = dirs.get_mut(dir) {
                    entries.insert(name.clone(), *node);
                }
            }
            MetaOp::Unlink { dir, name } => {
                if let Some(entries) = dirs.get_mut(dir) {
                    entries.remove(name);
                }
            }
            MetaOp::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
            } => {
                let node = dirs
                    .get_mut(from_dir)
                    .and_then(|entries| entries.remove(from_name));
                if let (Some(node), Some(entries)) = (node, dirs.get_mut(to_dir)) {
                    entries.insert(to_name.clone(), node);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<NodeId, FileState>,
    /// Directory contents as the running process sees them.
    dirs: HashMap<NodeId, BTreeMap<OsString, Node>>,
    /// Directory contents as a crash would find them, before pending operations.
    durable_dirs: HashMap<NodeId, BTreeMap<OsString, Node>>,
    pending_meta: Vec<MetaOp>,
    next_id: NodeId,
    crashed: bool,
    /// Mutating operations left before the power goes (see `SimFileSystem::cut_power_after`).
    power_left: Option<u64>,
    faults: Vec<Fault>,
}

const ROOT: NodeId = 0;

impl State {
    fn new() -> Self {
        let mut state = State {
            next_id: ROOT + 1,
            ..State::default()
        };
        state.dirs.insert(ROOT, BTreeMap::new());
        state.durable_dirs.insert(ROOT, BTreeMap::new());
        state
    }

    fn check(&self, op: SimOp, path: &Path) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        let path = path.to_string_lossy();
        if self
            .faults
            .iter()
            .any(|fault| fault.op == op && path.contains(&fault.path_contains))
        {
            return Err(io::Error::from_raw_os_error(libc_eio()));
        }
        Ok(())
    }

    fn check_alive(&self) -> io::Result<()> {
        if self.crashed {
            return Err(io::Error::other("simulated power loss: the machine is off"));
        }
        Ok(())
    }

    /// Accounts for one operation that changes the disk; fails once the power is out.
    fn spend_power(&mut self) -> io::Result<()> {
        if let Some(left) = &mut self.power_left {
            if *left == 0 {
                self.crashed = true;
            } else {
                *left -= 1;
            }
        }
        self.check_alive()
    }

    /// The directory holding `path`'s last component, and that component.
    fn parent_of(&self, path: &Path) -> io::Result<(NodeId, OsString)> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
        let parent = path.parent().unwrap_or(Path::new(""));
        match self.resolve(parent)? {
            Node::Dir(id) => Ok((id, name.to_os_string())),
            Node::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", parent.display()),
            )),
        }
    }

    fn resolve(&self, path: &Path) -> io::Result<Node> {
        let mut node = Node::Dir(ROOT);
        for component in path.components() {
            let name = match component {
                Component::Normal(name) => name,
                Component::RootDir | Component::CurDir => continue,
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "the simulated file system takes plain paths only",
                    ))
                }
            };
            let Node::Dir(dir) = node else {
                return Err(not_found(path));
            };
            node = *self
                .dirs
                .get(&dir)
                .and_then(|entries| entries.get(name))
                .ok_or_else(|| not_found(path))?;
        }
        Ok(node)
    }

    fn meta(&mut self, op: MetaOp) {
        op.apply(&mut self.dirs);
        self.pending_meta.push(op);
    }

    fn file(&mut self, id: NodeId) -> &mut FileState {
        self.files.entry(id).or_default()
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

fn libc_eio() -> i32 {
    5 // EIO on Linux
}

/// The simulated file system. Clones share the same disk.
#[derive(Debug, Clone)]
pub struct SimFileSystem {
    state: Arc<Mutex<State>>,
    clock: Arc<dyn Clock>,
}

impl SimFileSystem {
    /// An empty disk whose files take their modification times from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        SimFileSystem {
            state: Arc::new(Mutex::new(State::new())),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now on, `op` on any path containing `path_contains` fails with EIO.
    pub fn inject(&self, op: SimOp, path_contains: &str) {
        self.lock().faults.push(Fault {
            op,
            path_contains: path_contains.to_string(),
        });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The power goes out just before the `operations + 1`-th operation that would change the
    /// disk: that one and every later call fail, as on a machine that stopped mid-request.
    /// [`Self::crash`] then gives what the next boot finds.
    pub fn cut_power_after(&self, operations: u64) {
        self.lock().power_left = Some(operations);
    }

    /// Whether the power is out.
    pub fn is_off(&self) -> bool {
        self.lock().crashed
    }

    /// Cuts the power. This file system fails every call from now on; the returned one is
    /// what the next boot finds: everything synced, plus a subset of the rest chosen by
    /// `seed`, each write kept whole, torn at a random byte, or lost.
    pub fn crash(&self, seed: u64) -> SimFileSystem {
        let mut state = self.lock();
        state.crashed = true;
        let mut rng = SplitMix64(seed);
        let mut dirs = state.durable_dirs.clone();
        for op in &state.pending_meta {
            if rng.chance(1, 2) {
                op.apply(&mut dirs);
            }
        }
        let mut files = HashMap::with_capacity(state.files.len());
        // In id order: the seed must decide the same fate for the same files on every run,
        // and a HashMap's order differs from one process to the next.
        let mut ids: Vec<NodeId> = state.files.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(file) = state.files.get(&id) else {
                continue;
            };
            let mut data = file.durable.clone();
            for op in &file.pending {
                if !rng.chance(1, 2) {
                    continue;
                }
                match op {
                    DataOp::Write { offset, bytes } if rng.chance(1, 3) => {
                        let kept = rng.below(bytes.len() as u64 + 1) as usize;
                        write_into(&mut data, *offset, &bytes[..kept]);
                    }
                    op => op.apply_to(&mut data),
                }
            }
            files.insert(
                id,
                FileState {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                    modified_ms: file.modified_ms,
                },
            );
        }
        SimFileSystem {
            state: Arc::new(Mutex::new(State {
                files,
                durable_dirs: dirs.clone(),
                dirs,
                pending_meta: Vec::new(),
                next_id: state.next_id,
                crashed: false,
                power_left: None,
                faults: Vec::new(),
            })),
            clock: Arc::clone(&self.clock),
        }
    }

    /// Writes a file and makes it and its name durable at once: for building a disk image.
    pub fn put(&self, path: &Path, contents: &[u8]) -> io::Result<()> {
        if let Some(parent) = path.parent() {
            self.create_dir_all(parent)?;
        }
        let file = self.open(path, OpenMode::Truncate)?;
        file.write_all_at(contents, 0)?;
        file.sync_data()?;
        let mut state = self.lock();
        let pending = std::mem::take(&mut state.pending_meta);
        for op in &pending {
            op.apply(&mut state.durable_dirs);
        }
        Ok(())
    }

    /// The files directly in `dir`, as one byte string: for each, its name's length (u8), the
    /// name, its contents' length (u32, big-endian) and the contents. The fuzzer's and the
    /// simulator's format for a directory image.
    pub fn image(&self, dir: &Path) -> io::Result<Vec<u8>> {
        let mut image = Vec::new();
        for entry in self.list(dir)? {
            let name = entry.name.to_string_lossy().into_owned();
            if entry.is_dir || name.len() > usize::from(u8::MAX) {
                continue;
            }
            let contents = self.contents(&dir.join(&name))?;
            image.push(name.len() as u8);
            image.extend_from_slice(name.as_bytes());
            image.extend_from_slice(&(contents.len() as u32).to_be_bytes());
            image.extend_from_slice(&contents);
        }
        Ok(image)
    }

    /// A disk holding, durably, the files an [`Self::image`] describes in `dir`. Any bytes
    /// make some image: a name or contents cut short by the end of the input are taken as they
    /// are, names that are not plain file names are skipped.
    pub fn from_image(dir: &Path, image: &[u8], clock: Arc<dyn Clock>) -> io::Result<Self> {
        let fs = SimFileSystem::new(clock);
        fs.create_dir_all(dir)?;
        let mut rest = image;
        while let Some((&name_len, after)) = rest.split_first() {
            let (name, after) = after.split_at(usize::from(name_len).min(after.len()));
            let (len, after) = after.split_at(4.min(after.len()));
            let mut len_bytes = [0u8; 4];
            len_bytes[..len.len()].copy_from_slice(len);
            let len = (u32::from_be_bytes(len_bytes) as usize).min(after.len());
            let (contents, after) = after.split_at(len);
            rest = after;
            let name = String::from_utf8_lossy(name);
            let plain = !name.is_empty()
                && !name.contains('/')
                && name != "."
                && name != ".."
                && !name.contains('\0');
            if plain {
                fs.put(&dir.join(name.as_ref()), contents)?;
            }
        }
        let mut state = fs.lock();
        let pending = std::mem::take(&mut state.pending_meta);
        for op in &pending {
            op.apply(&mut state.durable_dirs);
        }
        drop(state);
        Ok(fs)
    }

    /// A file's contents as the running process sees them.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        match state.resolve(path)? {
            Node::File(id) => Ok(state
                .files
                .get(&id)
                .map(|f| f.data.clone())
                .unwrap_or_default()),
            Node::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let offset = offset as usize;
    let end = offset + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset..end].copy_from_slice(bytes);
}

impl FileSystem for SimFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DataFile>> {
        let mut state = self.lock();
        state.check(SimOp::Open, path)?;
        if mode != OpenMode::Existing {
            state.spend_power()?;
        }
        let (dir, name) = state.parent_of(path)?;
        let existing = state
            .dirs
            .get(&dir)
            .and_then(|entries| entries.get(&name))
            .copied();
        let id = match (existing, mode) {
            (Some(Node::Dir(_)), _) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                ))
            }
            (Some(Node::File(id)), OpenMode::Truncate) => {
                let now = self.clock.now_ms();
                let file = state.file(id);
                file.data.clear();
                file.pending.push(DataOp::SetLen(0));
                file.modified_ms = now;
                id
            }
            (Some(Node::File(id)), _) => id,
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, _) => {
                let id = state.next_id;
                state.next_id += 1;
                state.files.insert(
                    id,
                    FileState {
                        modified_ms: self.clock.now_ms(),
                        ..FileState::default()
                    },
                );
                state.meta(MetaOp::Link {
                    dir,
                    name,
                    node: Node::File(id),
                });
                id
            }
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            id,
            path: path.to_path_buf(),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend_power()?;
        let mut dir = ROOT;
        for component in path.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            let entry = state
                .dirs
                .get(&dir)
                .and_then(|entries| entries.get(name))
                .copied();
            dir = match entry {
                Some(Node::Dir(id)) => id,
                Some(Node::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} is a file", path.display()),
                    ))
                }
                None => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.durable_dirs.insert(id, BTreeMap::new());
                    state.meta(MetaOp::Link {
                        dir,
                        name: name.to_os_string(),
                        node: Node::Dir(id),
                    });
                    id
                }
            };
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let state = self.lock();
        state.check_alive()?;
        let Node::Dir(id) = state.resolve(dir)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        };
        Ok(state.dirs[&id]
            .iter()
            .map(|(name, node)| DirEntry {
                name: name.clone(),
                is_dir: matches!(node, Node::Dir(_)),
            })
            .collect())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let state = self.lock();
        state.check_alive()?;
        Ok(state.resolve(path).is_ok())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend_power()?;
        let (dir, name) = state.parent_of(path)?;
        match state.dirs[&dir].get(&name) {
            Some(Node::File(_)) => {
                state.meta(MetaOp::Unlink { dir, name });
                Ok(())
            }
            Some(Node::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            )),
            None => Err(not_found(path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend_power()?;
        let (dir, name) = state.parent_of(path)?;
        if !state.dirs[&dir].contains_key(&name) {
            return Err(not_found(path));
        }
        state.meta(MetaOp::Unlink { dir, name });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend_power()?;
        let (from_dir, from_name) = state.parent_of(from)?;
        let (to_dir, to_name) = state.parent_of(to)?;
        if !state.dirs[&from_dir].contains_key(&from_name) {
            return Err(not_found(from));
        }
        if let Some(Node::Dir(_)) = state.dirs[&to_dir].get(&to_name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a directory", to.display()),
            ));
        }
        state.meta(MetaOp::Rename {
            from_dir,
            from_name,
            to_dir,
            to_name,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.spend_power()?;
        let Node::Dir(id) = state.resolve(dir)? else {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        };
        let pending = std::mem::take(&mut state.pending_meta);
        let (synced, still_pending): (Vec<MetaOp>, Vec<MetaOp>) =
            pending.into_iter().partition(|op| op.touches(id));
        for op in &synced {
            op.apply(&mut state.durable_dirs);
        }
        state.pending_meta = still_pending;
        Ok(())
    }

    fn space(&self, _path: &Path) -> io::Result<DiskSpace> {
        self.lock().check_alive()?;
        Ok(DiskSpace {
            total_bytes: 1 << 40,
            usable_bytes: 1 << 39,
        })
    }
}

/// An open file of a [`SimFileSystem`].
#[derive(Debug)]
struct SimFile {
    fs: SimFileSystem,
    id: NodeId,
    /// The path it was opened by, for fault matching.
    path: PathBuf,
}

impl DataFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.fs.lock();
        state.check(SimOp::Read, &self.path)?;
        let data = &state.file(self.id).data;
        let start = (offset as usize).min(data.len());
        let count = buf.len().min(data.len() - start);
        buf[..count].copy_from_slice(&data[start..start + count]);
        Ok(count)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let now = self.fs.clock.now_ms();
        let mut state = self.fs.lock();
        state.check(SimOp::Write, &self.path)?;
        state.spend_power()?;
        let file = state.file(self.id);
        write_into(&mut file.data, offset, buf);
        file.pending.push(DataOp::Write {
            offset,
            bytes: buf.to_vec(),
        });
        file.modified_ms = now;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.check(SimOp::Write, &self.path)?;
        state.spend_power()?;
        let file = state.file(self.id);
        file.data.resize(len as usize, 0);
        file.pending.push(DataOp::SetLen(len));
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.fs.lock();
        state.check_alive()?;
        Ok(state.file(self.id).data.len() as u64)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.spend_power()?;
        let failed = state.check(SimOp::SyncData, &self.path);
        let file = state.file(self.id);
        if let Err(error) = failed {
            // The kernel forgets pages whose write-back failed: nothing pending ever lands.
            file.pending.clear();
            return Err(error);
        }
        // What reaches the disk is what was pending, not what the process reads: pages lost
        // to an earlier failed write-back stay lost.
        for op in std::mem::take(&mut file.pending) {
            op.apply_to(&mut file.durable);
        }
        Ok(())
    }

    fn modified_ms(&self) -> io::Result<i64> {
        let mut state = self.fs.lock();
        state.check_alive()?;
        Ok(state.file(self.id).modified_ms)
    }
}

/// A small seeded generator (SplitMix64): the simulation's randomness must replay from a seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs() -> SimFileSystem {
        SimFileSystem::new(Arc::new(ManualClock::new(0)))
    }

    #[test]
    fn synced_data_and_names_survive_every_crash() {
        for seed in 0..50 {
            let fs = fs();
            fs.create_dir_all(Path::new("d")).unwrap();
            fs.sync_dir(Path::new("")).unwrap();
            let file = fs.open(Path::new("d/f"), OpenMode::Create).unwrap();
            file.write_all_at(b"hello", 0).unwrap();
            file.sync_data().unwrap();
            fs.sync_dir(Path::new("d")).unwrap();
            file.write_all_at(b" world", 5).unwrap();
            let after = fs.crash(seed);
            assert!(
                file.write_all_at(b"x", 0).is_err(),
                "the crashed disk is off"
            );
            let contents = after.contents(Path::new("d/f")).unwrap();
            assert!(contents.starts_with(b"hello"), "seed {seed}: {contents:?}");
            assert!(
                b"hello world".starts_with(&contents),
                "seed {seed}: {contents:?}"
            );
        }
    }

    #[test]
    fn unsynced_names_and_writes_may_vanish() {
        let (mut name_lost, mut data_torn) = (false, false);
        for seed in 0..200 {
            let fs = fs();
            let file = fs.open(Path::new("f"), OpenMode::Create).unwrap();
            file.write_all_at(&[7; 100], 0).unwrap();
            file.sync_data().unwrap();
            let after = fs.crash(seed);
            match after.contents(Path::new("f")) {
                Err(_) => name_lost = true,
                Ok(contents) => assert_eq!(contents, vec![7; 100]),
            }
            let fs = fs_with_durable_file();
            let file = fs.open(Path::new("f"), OpenMode::Existing).unwrap();
            file.write_all_at(&[9; 100], 0).unwrap();
            let contents = fs.crash(seed).contents(Path::new("f")).unwrap();
            data_torn |= contents.contains(&9) && contents.contains(&7);
        }
        assert!(name_lost && data_torn);
    }

    fn fs_with_durable_file() -> SimFileSystem {
        let fs = fs();
        fs.put(Path::new("f"), &[7; 100]).unwrap();
        fs
    }

    #[test]
    fn a_failed_fsync_loses_its_pages_for_good() {
        let fs = fs_with_durable_file();
        let file = fs.open(Path::new("f"), OpenMode::Existing).unwrap();
        file.write_all_at(&[9; 100], 0).unwrap();
        fs.inject(SimOp::SyncData, "f");
        assert!(file.sync_data().is_err());
        fs.clear_faults();
        file.sync_data().unwrap(); // "succeeds", as a retry does on Linux
        assert_eq!(fs.contents(Path::new("f")).unwrap(), vec![9; 100]);
        for seed in 0..20 {
            let fs = fs_with_durable_file();
            let file = fs.open(Path::new("f"), OpenMode::Existing).unwrap();
            file.write_all_at(&[9; 100], 0).unwrap();
            fs.inject(SimOp::SyncData, "f");
            let _ = file.sync_data();
            fs.clear_faults();
            file.sync_data().unwrap();
            assert_eq!(
                fs.crash(seed).contents(Path::new("f")).unwrap(),
                vec![7; 100]
            );
        }
    }

    #[test]
    fn images_round_trip_and_any_bytes_make_one() {
        let fs = fs();
        fs.put(Path::new("p/a.log"), b"batches").unwrap();
        fs.put(Path::new("p/partition.checkpoint"), b"0\n0 0\n")
            .unwrap();
        let image = fs.image(Path::new("p")).unwrap();
        let copy = SimFileSystem::from_image(Path::new("q"), &image, Arc::new(ManualClock::new(0)))
            .unwrap();
        assert_eq!(copy.contents(Path::new("q/a.log")).unwrap(), b"batches");
        assert_eq!(copy.image(Path::new("q")).unwrap(), image);
        for garbage in [
            &b""[..],
            b"\x05ab",
            b"\x02..\x00\x00\x00\x01x",
            b"\xff\xff\xff",
        ] {
            SimFileSystem::from_image(Path::new("q"), garbage, Arc::new(ManualClock::new(0)))
                .unwrap();
        }
    }

    #[test]
    fn renames_are_atomic_and_directories_move_whole() {
        for seed in 0..50 {
            let fs = fs();
            fs.put(Path::new("t-0/a.log"), b"data").unwrap();
            fs.rename(Path::new("t-0"), Path::new("t-0.x-delete"))
                .unwrap();
            let after = fs.crash(seed);
            let old = after.exists(Path::new("t-0/a.log")).unwrap();
            let new = after.exists(Path::new("t-0.x-delete/a.log")).unwrap();
            assert!(old != new, "seed {seed}: exactly one name survives");
        }
    }
}
