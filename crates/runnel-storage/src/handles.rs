//! File handles of segment logs, pooled: a broker with thousands of partitions, each with
//! several segments, would otherwise hold a file open for every segment it has.
//!
//! A [`SegmentFile`] opens its file on first use and keeps it open. Once the log marks it
//! closable (a sealed segment all of whose data is fsynced), it joins its pool's queue, and
//! when more closable files are open than the pool allows, the one opened longest ago is
//! closed; its next use opens it again. Only fully fsynced files are closed: after a failed
//! writeback, an fsync through a descriptor opened later may not report the error, so a file
//! with unsynced data keeps the descriptor its fsync will go through. Readers that hold the
//! file (a fetch in progress) keep it open until they drop it.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::fs::{DataFile, FileSystem, OpenMode};

/// The pool: how many closable files may be open at once, and which are, oldest first.
pub struct FileHandles {
    capacity: usize,
    open: Mutex<VecDeque<Weak<SegmentFile>>>,
}

impl fmt::Debug for FileHandles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileHandles")
            .field("capacity", &self.capacity)
            .field("queued", &lock(&self.open).len())
            .finish()
    }
}

impl FileHandles {
    /// A pool keeping at most `capacity` closable files open (at least one).
    pub fn new(capacity: usize) -> Arc<FileHandles> {
        Arc::new(FileHandles {
            capacity: capacity.max(1),
            open: Mutex::new(VecDeque::new()),
        })
    }

    /// Closable files open now (or not yet found closed: a dropped file leaves its place
    /// until it reaches the front).
    #[cfg(test)]
    fn open_closable(&self) -> usize {
        lock(&self.open).len()
    }

    /// A closable file was opened: queue it, and close the oldest beyond the capacity.
    fn opened(&self, file: Weak<SegmentFile>) {
        let mut open = lock(&self.open);
        open.push_back(file);
        while open.len() > self.capacity {
            if let Some(oldest) = open.pop_front().and_then(|oldest| oldest.upgrade()) {
                oldest.close();
            }
        }
    }
}

/// One segment log file, opened on use.
pub(crate) struct SegmentFile {
    fs: Arc<dyn FileSystem>,
    path: PathBuf,
    pool: Arc<FileHandles>,
    file: Mutex<Option<Arc<dyn DataFile>>>,
    /// Sealed and fsynced: the pool may close it.
    closable: AtomicBool,
}

impl fmt::Debug for SegmentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentFile")
            .field("path", &self.path)
            .field("open", &lock(&self.file).is_some())
            .field("closable", &self.closable.load(Ordering::Relaxed))
            .finish()
    }
}

impl SegmentFile {
    /// Opens `path` in `mode` now (not closable).
    pub(crate) fn open(
        fs: &Arc<dyn FileSystem>,
        pool: &Arc<FileHandles>,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<Arc<SegmentFile>> {
        let file = fs.open(path, mode)?;
        Ok(Arc::new(SegmentFile {
            fs: Arc::clone(fs),
            path: path.to_path_buf(),
            pool: Arc::clone(pool),
            file: Mutex::new(Some(file)),
            closable: AtomicBool::new(false),
        }))
    }

    /// The open file, opened again if the pool closed it.
    pub(crate) fn get(self: &Arc<Self>) -> io::Result<Arc<dyn DataFile>> {
        let mut slot = lock(&self.file);
        if let Some(file) = &*slot {
            return Ok(Arc::clone(file));
        }
        let file = self.fs.open(&self.path, OpenMode::Existing)?;
        *slot = Some(Arc::clone(&file));
        drop(slot);
        if self.closable.load(Ordering::Acquire) {
            self.pool.opened(Arc::downgrade(self));
        }
        Ok(file)
    }

    /// Lets the pool close the file: every byte of it is fsynced and no more will be written.
    pub(crate) fn set_closable(self: &Arc<Self>) {
        if self.closable.swap(true, Ordering::AcqRel) {
            return;
        }
        let open = lock(&self.file).is_some();
        if open {
            self.pool.opened(Arc::downgrade(self));
        }
    }

    pub(crate) fn is_closable(&self) -> bool {
        self.closable.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.file).is_some()
    }

    /// The segment is written to again (a truncation made it active): never closed until
    /// it is closable again.
    pub(crate) fn pin(&self) {
        self.closable.store(false, Ordering::Release);
    }

    fn close(&self) {
        let mut slot = lock(&self.file);
        // Pinned since it was queued: it keeps its file.
        if self.closable.load(Ordering::Acquire) {
            *slot = None;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is one assignment or queue operation.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFileSystem;

    #[test]
    fn only_closable_files_are_closed_oldest_first_and_reopen_on_use() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fs: Arc<dyn FileSystem> = Arc::new(OsFileSystem);
        let pool = FileHandles::new(2);
        let files: Vec<Arc<SegmentFile>> = (0..4)
            .map(|index| {
                let path = dir.path().join(format!("{index}.log"));
                SegmentFile::open(&fs, &pool, &path, OpenMode::Truncate)
            })
            .collect::<io::Result<_>>()?;
        files[0].get()?.write_all_at(b"zero", 0)?;
        // Not closable: however many there are, they stay open.
        assert!(files.iter().all(|file| file.is_open()));
        for file in &files[..3] {
            file.set_closable();
        }
        assert_eq!(pool.open_closable(), 2);
        assert!(!files[0].is_open(), "the oldest closable file was closed");
        assert!(files[1].is_open() && files[2].is_open());
        assert!(files[3].is_open(), "an active file is never closed");
        // Used again: it opens, and the oldest other one closes.
        let mut bytes = [0u8; 4];
        files[0].get()?.read_exact_at(&mut bytes, 0)?;
        assert_eq!(&bytes, b"zero");
        assert!(files[0].is_open() && !files[1].is_open());
        // A reader's handle outlives the pool's.
        let held = files[2].get()?;
        files[1].get()?;
        assert!(!files[2].is_open());
        held.read_exact_at(&mut bytes[..0], 0)?;
        Ok(())
    }
}
