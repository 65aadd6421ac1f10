//! The real file system, writing down what each fsync made durable: with it a test can
//! `kill -9` real broker processes and then cut their files back to what a power cut could
//! have kept, which `kill -9` alone never loses (the page cache survives the process).
//!
//! The ledger is one text file, appended to by every operation that changes what a power
//! cut keeps, one line each, fields separated by tabs, paths absolute:
//!
//! ```text
//! created   PATH         a file created or truncated: nothing of it is durable yet
//! synced    LEN  PATH    the first LEN bytes of PATH are durable
//! renamed   FROM TO      what was known of FROM is now known of TO
//! removed   PATH         a file or a directory tree is gone
//! ```
//!
//! A file the ledger never names existed before this process started, whole. `synced` writes
//! the size the file had *before* the fsync began, a lower bound of what it made durable
//! (writes racing the fsync may or may not be in it). Renames and creations count as durable
//! at once, which is kinder than a real power cut, and overwrites inside the synced length
//! are not undone: the ledger tears append-only files (logs, the metadata log), which is
//! where acknowledged records live. A failed ledger write is logged, never fatal: the
//! ledger is a testing aid and must not change what the broker does.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::fs::{DataFile, DirEntry, DiskSpace, FileSystem, OpenMode, OsFileSystem};

/// [`OsFileSystem`], writing to a ledger at each creation, fsync, rename and removal.
#[derive(Debug, Clone)]
pub struct SyncLedgerFileSystem {
    ledger: Arc<Ledger>,
}

struct Ledger {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    fn write(&self, fields: &[&dyn fmt::Display]) {
        let mut line = String::new();
        for (index, field) in fields.iter().enumerate() {
            if index > 0 {
                line.push('\t');
            }
            line.push_str(&field.to_string());
        }
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = file.write_all(line.as_bytes()) {
            tracing::error!(ledger = %self.path.display(), %error, "cannot write the sync ledger");
        }
    }
}

/// A path as the ledger writes it: absolute, so that a test reads it from anywhere.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

impl SyncLedgerFileSystem {
    /// Appends to the ledger at `ledger`, creating it if missing.
    pub fn open(ledger: &Path) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ledger)?;
        Ok(SyncLedgerFileSystem {
            ledger: Arc::new(Ledger {
                path: ledger.to_path_buf(),
                file: Mutex::new(file),
            }),
        })
    }
}

impl FileSystem for SyncLedgerFileSystem {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DataFile>> {
        let path = absolute(path);
        let is_new = match mode {
            OpenMode::Existing => false,
            OpenMode::Create => !path.try_exists()?,
            OpenMode::Truncate => true,
        };
        let file = OsFileSystem.open(&path, mode)?;
        if is_new {
            self.ledger.write(&[&"created", &path.display()]);
        }
        Ok(Arc::new(LedgerFile {
            file,
            path,
            ledger: Arc::clone(&self.ledger),
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        OsFileSystem.create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        OsFileSystem.list(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        OsFileSystem.exists(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        OsFileSystem.remove_file(path)?;
        self.ledger.write(&[&"removed", &absolute(path).display()]);
        Ok(())
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        OsFileSystem.remove_dir_all(path)?;
        self.ledger.write(&[&"removed", &absolute(path).display()]);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFileSystem.rename(from, to)?;
        self.ledger.write(&[
            &"renamed",
            &absolute(from).display(),
            &absolute(to).display(),
        ]);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFileSystem.sync_dir(dir)
    }

    fn space(&self, path: &Path) -> io::Result<DiskSpace> {
        OsFileSystem.space(path)
    }
}

#[derive(Debug)]
struct LedgerFile {
    file: Arc<dyn DataFile>,
    path: PathBuf,
    ledger: Arc<Ledger>,
}

impl DataFile for LedgerFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.file.size()
    }

    fn sync_data(&self) -> io::Result<()> {
        let before = self.file.size()?;
        self.file.sync_data()?;
        self.ledger
            .write(&[&"synced", &before, &self.path.display()]);
        Ok(())
    }

    fn modified_ms(&self) -> io::Result<i64> {
        self.file.modified_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_names_creations_syncs_renames_and_removals_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = dir.path().join("ledger");
        let fs = SyncLedgerFileSystem::open(&ledger).expect("ledger");
        let data = dir.path().join("data");
        let file = fs.open(&data, OpenMode::Create).expect("create");
        file.write_all_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        file.write_all_at(b" and not", 7).expect("write");
        fs.rename(&data, &dir.path().join("moved")).expect("rename");
        fs.remove_file(&dir.path().join("moved")).expect("remove");
        let _existing = fs
            .open(&ledger, OpenMode::Create)
            .expect("an existing file is not created");

        let root = std::path::absolute(dir.path()).expect("absolute");
        let expected = format!(
            "created\t{root}/data\nsynced\t7\t{root}/data\nrenamed\t{root}/data\t{root}/moved\nremoved\t{root}/moved\n",
            root = root.display()
        );
        assert_eq!(std::fs::read_to_string(&ledger).expect("read"), expected);
    }
}
