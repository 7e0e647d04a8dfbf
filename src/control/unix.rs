//! Binding the Unix control socket safely: with its permissions set before
//! anyone can reach it, without ever deleting what is not a stale socket of
//! ours, and removed at the end only if it is still the one we made.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::ControlError;

/// The socket file as we made it, to recognise it at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    dev: u64,
    ino: u64,
}

fn unsafe_path(path: &Path, reason: impl Into<String>) -> ControlError {
    ControlError::SocketPath {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Whether `path` is free for the socket, or holds a stale socket that
/// [`bind`] will replace, without touching anything: the same refusals as
/// [`bind`], to be had before the rest of the server starts.
pub fn check(path: &Path) -> Result<(), ControlError> {
    inspect(path).map(|_| ())
}

/// Makes room at `path`: nothing there is fine; a socket nobody listens on
/// (left by a crashed run) is removed; anything else — a live socket,
/// a regular file, a directory, a symlink — refuses the start, naming the
/// path, and is left as it is.
fn clear_stale(path: &Path) -> Result<(), ControlError> {
    if inspect(path)? {
        // Stale. Between the check and the removal it could only have been
        // replaced by someone who can write this directory anyway.
        std::fs::remove_file(path)
            .map_err(|e| unsafe_path(path, format!("cannot remove the stale socket: {e}")))?;
        tracing::info!(path = %path.display(), "removed a stale control socket");
    }
    Ok(())
}

/// `Ok(false)`: nothing at `path`; `Ok(true)`: a stale socket; otherwise
/// why the path must be left alone.
fn inspect(path: &Path) -> Result<bool, ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unsafe_path(path, format!("cannot inspect it: {e}"))),
    };
    if !meta.file_type().is_socket() {
        let kind = if meta.file_type().is_symlink() {
            "a symbolic link"
        } else if meta.is_dir() {
            "a directory"
        } else if meta.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        return Err(unsafe_path(
            path,
            format!("the path exists and is {kind}; refusing to replace it (remove it or choose another server.control)"),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(unsafe_path(
            path,
            "another process is listening on this socket (is another badge-ingest running?)",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(true),
        Err(e) => Err(unsafe_path(
            path,
            format!("a socket is there and connecting to it failed ({e}); refusing to replace it"),
        )),
    }
}

/// Binds a listening socket at `path` with permissions `mode`.
///
/// There must never be a moment when the socket is reachable with looser
/// permissions than `mode`. `bind` creates the file with `0777 & !umask`,
/// and the umask is process-wide (changing it would race every other
/// thread creating files), so the socket is bound inside a fresh directory
/// of our own with mode 0700, next to `path` (same filesystem), where nobody
/// else can reach it; there it is given `mode` and starts listening; only
/// then is it hard-linked to `path` — with its final mode already — and the
/// private directory removed. `link` fails rather than replace anything
/// that appeared at `path` in the meantime.
pub fn bind(path: &Path, mode: u32) -> Result<(UnixListener, Identity), ControlError> {
    clear_stale(path)?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let private = private_dir(&parent).map_err(|e| {
        unsafe_path(
            path,
            format!(
                "cannot create a private directory in {}: {e}",
                parent.display()
            ),
        )
    })?;
    let inner = private.join("s");
    let result = (|| {
        let bind_err = |source| ControlError::Bind {
            addr: format!("unix:{}", path.display()),
            source,
        };
        let listener = UnixListener::bind(&inner).map_err(bind_err)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(mode))
            .map_err(|e| unsafe_path(path, format!("cannot set mode {mode:o}: {e}")))?;
        std::fs::hard_link(&inner, path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                unsafe_path(
                    path,
                    "something appeared at the path while binding; refusing to replace it",
                )
            } else {
                unsafe_path(path, format!("cannot link the socket into place: {e}"))
            }
        })?;
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| unsafe_path(path, format!("cannot inspect the new socket: {e}")))?;
        Ok((
            listener,
            Identity {
                dev: meta.dev(),
                ino: meta.ino(),
            },
        ))
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    result
}

/// A new directory with mode 0700 in `parent`.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let mut last = None;
    for _ in 0..16 {
        let dir = parent.join(format!(
            ".ctl-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // create (not create_all): it must be new, never one that exists.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                // The umask can only have narrowed 0700; make sure.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free name")))
}

/// Removes the socket at `path` if it is still the one [`bind`] made.
pub fn remove(path: &Path, made: Identity) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() && meta.dev() == made.dev && meta.ino() == made.ino {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("badge-unix-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn binds_with_the_mode_and_leaves_no_private_directory() {
        let d = dir("mode");
        let path = d.join("ctl.sock");
        let (_l, id) = bind(&path, 0o640).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o640);
        let left: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from("ctl.sock")]);
        UnixStream::connect(&path).expect("the linked path reaches the listener");
        remove(&path, id);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_other_files_and_live_sockets_and_replaces_stale_ones() {
        let d = dir("stale");
        let file = d.join("file");
        std::fs::write(&file, "keep me").unwrap();
        let e = bind(&file, 0o600).unwrap_err().to_string();
        assert!(
            e.contains(&file.display().to_string()) && e.contains("regular file"),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

        let live = d.join("live.sock");
        let (_l, _) = bind(&live, 0o600).unwrap();
        let e = bind(&live, 0o600).unwrap_err().to_string();
        assert!(e.contains("another process is listening"), "{e}");

        let stale = d.join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let (_l2, id) = bind(&stale, 0o600).unwrap();
        UnixStream::connect(&stale).unwrap();
        // Not ours any more: left alone.
        std::fs::remove_file(&stale).unwrap();
        std::fs::write(&stale, "other").unwrap();
        remove(&stale, id);
        assert!(stale.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
