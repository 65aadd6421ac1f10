//! The file system and the clock as the storage layer (and the broker above it) reach them:
//! two small traits, so that a test, and later a whole-cluster simulation, can swap the real
//! disk for [`crate::sim::SimFileSystem`], which loses what a power cut loses, and the real
//! clock for one it moves by hand.
//!
//! The contract of [`FileSystem`] is POSIX's, and deliberately no stronger:
//! - data written to a file is durable only once that file's [`DataFile::sync_data`] returned
//!   `Ok`; a failed sync means the written pages may be gone and must not be retried over
//!   (Linux drops dirty pages whose write-back failed);
//! - a created, removed or renamed name is durable only once its directory's
//!   [`FileSystem::sync_dir`] returned `Ok`;
//! - operations on different files are not ordered: a crash keeps any subset of what was not
//!   yet synced, and a write may survive in part.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, for reading and writing.
    Existing,
    /// Created empty if missing; existing contents are kept.
    Create,
    /// Created empty, replacing any existing contents.
    Truncate,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: OsString,
    pub is_dir: bool,
}

/// The size of the file system holding a path, for DescribeLogDirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub total_bytes: u64,
    pub usable_bytes: u64,
}

/// Files and directories. Every method is a blocking system call on the real disk.
pub trait FileSystem: Send + Sync + fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DataFile>>;
    /// Creates `path` and any missing parents. Not durable until each new directory's parent
    /// is synced (see [`create_dir_durably`]).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>>;
    fn exists(&self, path: &Path) -> io::Result<bool>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the creations, removals and renames of names in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn space(&self, path: &Path) -> io::Result<DiskSpace>;
}

/// An open file, shared: readers keep reading it after its name is removed.
pub trait DataFile: Send + Sync + fmt::Debug {
    /// Reads into `buf` from `offset`; fewer bytes only at the end of the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Makes everything written so far durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Last modification, in milliseconds since the Unix epoch.
    fn modified_ms(&self) -> io::Result<i64>;

    /// Fills `buf` from `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file ends before the bytes wanted",
                    ))
                }
                read => {
                    buf = &mut buf[read..];
                    offset += read as u64;
                }
            }
        }
        Ok(())
    }
}

/// Wall-clock time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        millis_since_epoch(SystemTime::now())
    }
}

fn millis_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
    })
}

/// The operating system's file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFileSystem;

#[derive(Debug)]
struct OsFile(std::fs::File);

impl FileSystem for OsFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DataFile>> {
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                options.create(true).truncate(false);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Arc::new(OsFile(options.open(path)?)))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            entries.push(DirEntry {
                name: entry.file_name(),
                is_dir: entry.file_type()?.is_dir(),
            });
        }
        Ok(entries)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn space(&self, path: &Path) -> io::Result<DiskSpace> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(DiskSpace {
            total_bytes: stat.f_blocks.saturating_mul(stat.f_frsize),
            usable_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}

impl DataFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn modified_ms(&self) -> io::Result<i64> {
        Ok(millis_since_epoch(self.0.metadata()?.modified()?))
    }
}

/// Reads a whole (small) file; `None` if it does not exist.
pub fn read_optional(fs: &dyn FileSystem, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match fs.open(path, OpenMode::Existing) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let len = usize::try_from(file.size()?)
        .map_err(|_| io::Error::other("file too large to read whole"))?;
    let mut contents = vec![0; len];
    file.read_exact_at(&mut contents, 0)?;
    Ok(Some(contents))
}

/// Suffix of the temporary file [`write_atomically`] renames into place.
pub const TEMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` with `contents` so that a crash at any point leaves either the old or
/// the new file, and the new one is durable on return: write a temporary file, fsync it,
/// rename it over the old one, fsync the directory.
pub fn write_atomically(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> io::Result<()> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let file = fs.open(&temp, OpenMode::Truncate)?;
    file.write_all_at(contents, 0)?;
    file.sync_data()?;
    fs.rename(&temp, &path)?;
    fs.sync_dir(dir)
}

/// Creates `dir` (and missing parents) so that it survives a crash: each directory created is
/// made durable in its parent. Returns whether `dir` was created.
pub fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> io::Result<bool> {
    if fs.exists(dir)? {
        return Ok(false);
    }
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut current = Some(dir);
    while let Some(path) = current {
        if path.as_os_str().is_empty() || fs.exists(path)? {
            break;
        }
        missing.push(path.to_path_buf());
        current = path.parent();
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs.sync_dir(parent)?;
    }
    Ok(true)
}
