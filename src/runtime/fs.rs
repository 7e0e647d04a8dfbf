//! Files for the durable log: `O_DIRECT` writes of aligned buffers, and
//! syncs, on the ring (a sync takes a fraction of a millisecond here, far
//! too long to block a shard for). Opening, renaming and removing are rare
//! and quick, and are plain system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use io_uring::{opcode, types};

use super::ring;

/// What `O_DIRECT` needs of buffers, offsets and lengths here: whole pages
/// cover every device's logical block size.
pub const ALIGN: usize = 4096;

/// A zeroed, page-aligned buffer for a direct write.
pub struct DmaBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl DmaBuf {
    /// `len` bytes (rounded up to whole pages), zeroed.
    pub fn new(len: usize) -> Self {
        let len = len.div_ceil(ALIGN).max(1) * ALIGN;
        let layout =
            std::alloc::Layout::from_size_align(len, ALIGN).expect("a page-aligned layout");
        // SAFETY: the layout is not zero-sized.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: our allocation of `len` bytes, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, ALIGN).expect("as allocated");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) };
    }
}

/// An open file of the log, written with `O_DIRECT`.
pub struct File {
    fd: OwnedFd,
    path: std::cell::RefCell<PathBuf>,
}

fn open(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: a valid C string; open returns a new descriptor or -1.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: new and ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl File {
    /// A new, empty file at `path` (an old one is truncated).
    pub fn create(path: &Path) -> io::Result<Self> {
        let fd = open(
            path,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_DIRECT,
        )?;
        Ok(Self {
            fd,
            path: std::cell::RefCell::new(path.to_owned()),
        })
    }

    /// An existing file at `path`, for writing, with `flags` besides
    /// (`O_DSYNC`, say).
    pub fn open_write(path: &Path, flags: libc::c_int) -> io::Result<Self> {
        let fd = open(path, libc::O_WRONLY | libc::O_DIRECT | flags)?;
        Ok(Self {
            fd,
            path: std::cell::RefCell::new(path.to_owned()),
        })
    }

    pub fn alignment(&self) -> u64 {
        ALIGN as u64
    }

    /// Writes `buf` at `pos` (both aligned); the bytes written.
    pub async fn write_at(&self, buf: DmaBuf, pos: u64) -> io::Result<usize> {
        let sqe = opcode::Write::new(
            types::Fd(self.fd.as_raw_fd()),
            buf.ptr.as_ptr(),
            buf.len as u32,
        )
        .offset(pos)
        .build();
        let (res, _, _) = ring::start(sqe, Some(Box::new(buf))).await;
        if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        }
    }

    pub async fn fdatasync(&self) -> io::Result<()> {
        fsync(self.fd.as_raw_fd(), true).await
    }

    /// Renames the file; it stays open under its new name.
    pub fn rename(&self, to: &Path) -> io::Result<()> {
        std::fs::rename(&*self.path.borrow(), to)?;
        *self.path.borrow_mut() = to.to_owned();
        Ok(())
    }

    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_file(&*self.path.borrow())
    }
}

async fn fsync(fd: libc::c_int, data_only: bool) -> io::Result<()> {
    let mut op = opcode::Fsync::new(types::Fd(fd));
    if data_only {
        op = op.flags(types::FsyncFlags::DATASYNC);
    }
    let (res, _, _) = ring::start(op.build(), None).await;
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(())
    }
}

/// Makes the names in `dir` durable (after a create or a rename).
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let fd = open(dir, libc::O_RDONLY | libc::O_DIRECTORY)?;
    fsync(fd.as_raw_fd(), false).await
}
