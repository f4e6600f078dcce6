//! Crash-safe file writes: a file appears whole or not at all.
//!
//! [`write_atomic`] writes a temporary file beside the target, flushes it to the disk, renames
//! it over the target and flushes the directory, so that a crash (or `kill -9`) at any moment
//! leaves either the old file or the new one, never a torn one. [`finish_atomic`] does the
//! same for a file already written under a temporary name (a shard).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, fsync of the
/// directory).
///
/// `path` must be a regular file or not exist: anything else (a device such as `/dev/full`, a
/// directory, a FIFO) is refused with `InvalidInput` before anything is written, since
/// renaming over it would replace the device node with a file and report success.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    refuse_unless_regular(path)?;
    let partial = partial_name(path);
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    finish_atomic(&partial, path)
}

/// Refuses a `path` that exists and is not a regular file (a symbolic link to one is fine).
fn refuse_unless_regular(path: &Path) -> std::io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a regular file (a device, directory or pipe): write to a file path",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Moves a completely written `partial` file to `path`: fsync of its data, rename, fsync of
/// the directory. A `path` that exists and is not a regular file is refused, as in
/// [`write_atomic`].
pub fn finish_atomic(partial: &Path, path: &Path) -> std::io::Result<()> {
    refuse_unless_regular(path)?;
    std::fs::File::open(partial)?.sync_all()?;
    std::fs::rename(partial, path)?;
    sync_directory(path)
}

/// Flushes the directory holding `path`, so that a rename into it survives a crash.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Directories cannot be opened for syncing on every platform; where they can, do it.
    match std::fs::File::open(dir) {
        Ok(handle) => handle.sync_all().or_else(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Ok(())
            } else {
                Err(e)
            }
        }),
        Err(_) => Ok(()),
    }
}

/// The temporary name beside `path`: `NAME.partial`.
pub fn partial_name(path: &Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_partial() {
        let dir = std::env::temp_dir().join(format!("seqwarm-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("record.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        assert!(!partial_name(&path).exists());
        assert_eq!(
            partial_name(&path).file_name().unwrap(),
            "record.json.partial"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_device_or_directory_is_refused_and_left_as_it_is() {
        let dir = std::env::temp_dir().join(format!("seqwarm-atomic-dev-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let err = write_atomic(&dir.join("sub"), b"x").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not a regular file"), "{err}");
        assert!(dir.join("sub").is_dir());
        assert!(!partial_name(&dir.join("sub")).exists());
        // A FIFO stands in for a device node (a rename replaces either with a file).
        let fifo = dir.join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = write_atomic(&fifo, b"x").unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
            assert!(!std::fs::metadata(&fifo).unwrap().is_file(), "still a pipe");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
