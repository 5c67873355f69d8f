//! The journal directory's `LOCK` file: a writer holds an exclusive `flock(2)` on it for its
//! whole life; a reader takes it only while it truncates a torn tail, so that it never
//! truncates under a live writer. The kernel drops the lock when its holder dies, so a
//! crashed writer never leaves the journal locked.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Name of the lock file inside a journal directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held exclusive lock; released when dropped (the file is closed).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the exclusive lock on `dir/LOCK` without waiting. `Ok(None)` when another
    /// process (or another handle in this one) holds it.
    pub fn try_exclusive(dir: &Path) -> io::Result<Option<Self>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        if try_flock_exclusive(&file)? {
            Ok(Some(Self { _file: file }))
        } else {
            Ok(None)
        }
    }
}

/// Whether a writer holds `dir/LOCK` now (the journal has a live writer). Creates nothing:
/// no `LOCK` file means no writer ever ran there. Takes the lock for an instant when it is
/// free.
pub fn held(dir: &Path) -> io::Result<bool> {
    let file = match File::open(dir.join(LOCK_FILE)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    Ok(!try_flock_exclusive(&file)?)
}

#[cfg(unix)]
fn try_flock_exclusive(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` reads no memory of ours; the descriptor is valid while `file` lives,
    // which spans the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(not(unix))]
fn try_flock_exclusive(_file: &File) -> io::Result<bool> {
    // No advisory locks here: the caller's documentation says a journal has one writer.
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_exclusive_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(!held(dir.path()).expect("no LOCK file"), "no writer yet");
        assert!(
            !dir.path().join(LOCK_FILE).exists(),
            "held() creates nothing"
        );
        let first = DirLock::try_exclusive(dir.path()).expect("lock file");
        assert!(first.is_some());
        assert!(held(dir.path()).expect("probe"), "a live writer");
        assert!(
            DirLock::try_exclusive(dir.path())
                .expect("lock file")
                .is_none()
        );
        drop(first);
        assert!(!held(dir.path()).expect("probe"), "released");
        assert!(
            DirLock::try_exclusive(dir.path())
                .expect("lock file")
                .is_some()
        );
    }
}
