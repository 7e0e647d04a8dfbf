//! Where tests keep their files: one directory per test process under
//! `$TMPDIR/badge-tests/`. A test that fails (or is killed) cannot clean
//! up after itself, and a log directory holds a zero-filled spare segment,
//! so each test process first removes the directories of test processes
//! that are gone: what the tests leave on disk is bounded by the ones
//! running, not by how often they ran.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let parent = std::env::temp_dir().join("badge-tests");
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let gone = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let mine = parent.join(std::process::id().to_string());
        std::fs::create_dir_all(&mine).expect("the tests' scratch directory");
        mine
    })
}

/// A fresh, empty directory of this test process.
pub fn dir(tag: &str) -> PathBuf {
    let d = path(tag);
    std::fs::create_dir_all(&d).expect("a scratch directory");
    d
}

/// A fresh path of this test process, not created.
pub fn path(tag: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let p = root().join(format!("{tag}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&p);
    let _ = std::fs::remove_file(&p);
    p
}
