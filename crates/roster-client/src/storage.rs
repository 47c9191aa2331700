//! The storage directory (client-sdk.md §5.2): the exclusive lock file and the state file,
//! replaced atomically on every write (temp file, fsync, rename, fsync of the directory).

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{ErrorKind, Write},
    path::{Path, PathBuf},
};

use serde_json::Value;

use crate::RosterError;

/// The schema version this SDK writes.
pub(crate) const SCHEMA_VERSION: u64 = 1;

const STATE_FILE: &str = "state.json";
const TEMP_FILE: &str = "state.json.tmp";
const LOCK_FILE: &str = "roster.lock";

/// A locked storage directory. Dropping it releases the lock.
pub(crate) struct Storage {
    dir: PathBuf,
    _lock: File,
}

/// What `load` found.
pub(crate) enum Loaded {
    /// No state file.
    Missing,
    /// A parsed state file of a schema this SDK reads.
    Found(Value),
    /// The file was unreadable or unparsable; it was renamed aside.
    Quarantined,
}

impl Storage {
    /// Creates the directory if missing and takes the exclusive lock (`StorageLocked` when
    /// another live client holds it).
    pub(crate) fn open(dir: &Path) -> Result<Storage, RosterError> {
        fs::create_dir_all(dir).map_err(RosterError::storage)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(RosterError::storage)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(RosterError::StorageLocked),
            Err(TryLockError::Error(e)) => return Err(RosterError::storage(e)),
        }
        Ok(Storage {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Reads the state file. An unreadable or unparsable file is renamed
    /// `state.json.corrupt-<unix seconds>`; a higher `schemaVersion` is `StorageIncompatible`
    /// and the file is left alone.
    pub(crate) fn load(&self) -> Result<Loaded, RosterError> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(e) => {
                tracing::warn!(error = %e, "the state file is unreadable; starting fresh");
                self.quarantine()?;
                return Ok(Loaded::Quarantined);
            }
        };
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                tracing::warn!("the state file is not a JSON object; starting fresh");
                self.quarantine()?;
                return Ok(Loaded::Quarantined);
            }
        };
        match value.get("schemaVersion").and_then(Value::as_u64) {
            Some(v) if v > SCHEMA_VERSION => Err(RosterError::StorageIncompatible),
            Some(v) if v == SCHEMA_VERSION => Ok(Loaded::Found(value)),
            _ => {
                tracing::warn!("the state file has no valid schemaVersion; starting fresh");
                self.quarantine()?;
                Ok(Loaded::Quarantined)
            }
        }
    }

    /// Renames the state file aside (`state.json.corrupt-<unix seconds>`).
    pub(crate) fn quarantine(&self) -> Result<(), RosterError> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let from = self.dir.join(STATE_FILE);
        let to = self.dir.join(format!("{STATE_FILE}.corrupt-{secs}"));
        match fs::rename(&from, &to) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RosterError::storage(e)),
        }
    }

    /// Replaces the state file atomically: a crash leaves either the old or the new file.
    pub(crate) fn write(&self, state: &Value) -> Result<(), RosterError> {
        let bytes = serde_json::to_vec_pretty(state).expect("JSON always serialises");
        let tmp = self.dir.join(TEMP_FILE);
        let result = (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, self.dir.join(STATE_FILE))?;
            sync_dir(&self.dir)
        })();
        result.map_err(|e| {
            tracing::warn!(error = %e, "writing the state file failed");
            RosterError::storage(e)
        })
    }
}

/// Makes the rename durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened for fsync on this platform; the rename is as durable as the
/// file system makes it.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let a = Storage::open(dir.path()).unwrap();
        assert!(matches!(Storage::open(dir.path()), Err(RosterError::StorageLocked)));
        drop(a);
        assert!(Storage::open(dir.path()).is_ok());
    }

    #[test]
    fn corrupt_and_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        assert!(matches!(s.load().unwrap(), Loaded::Missing));
        fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(matches!(s.load().unwrap(), Loaded::Quarantined));
        assert!(!dir.path().join(STATE_FILE).exists());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("state.json.corrupt-")), "{names:?}");
        fs::write(dir.path().join(STATE_FILE), br#"{"schemaVersion":2}"#).unwrap();
        assert!(matches!(s.load(), Err(RosterError::StorageIncompatible)));
        assert!(dir.path().join(STATE_FILE).exists());
        s.write(&serde_json::json!({"schemaVersion": 1, "x": 1})).unwrap();
        assert!(matches!(s.load().unwrap(), Loaded::Found(v) if v["x"] == 1));
        assert!(!dir.path().join(TEMP_FILE).exists());
    }
}
