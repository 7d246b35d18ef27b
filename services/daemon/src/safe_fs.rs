//! Files in trees an agent can write (the workspace and everything in it),
//! touched by ductor's own, unconfined processes. An agent can plant a link,
//! a FIFO or a huge sparse file anywhere in such a tree, so nothing here
//! follows a link or blocks:
//!
//! - a [`Tree`] is a directory descriptor; below the trusted root every
//!   component is opened with `O_NOFOLLOW|O_DIRECTORY` relative to its parent
//!   (a linked component is refused, not followed), and a missing one is
//!   made with `mkdirat`;
//! - files are read only when `fstat` says regular and small enough, opened
//!   `O_NONBLOCK` (a FIFO cannot hang the reader);
//! - new files are `O_CREAT|O_EXCL|O_NOFOLLOW`; a replaced file is written to
//!   a fresh temporary name and `renameat`ed over the entry, so a planted
//!   link is replaced, never written through;
//! - [`open_checked`] reopens a file core approved earlier and insists it is
//!   still the same one (`dev`, `ino`), for files sent later by a gateway.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};

/// Why a workspace file operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct SafeFsError {
    /// The path concerned.
    pub path: PathBuf,
    /// What went wrong, for the user.
    pub what: String,
    /// The OS error, when there was one.
    pub errno: Option<nix::Error>,
}

impl SafeFsError {
    fn os(path: &Path, action: &str, errno: nix::Error) -> Self {
        let what = match errno {
            nix::Error::ELOOP | nix::Error::ENOTDIR => {
                format!("{action}: a symbolic link or not a directory (refused)")
            }
            other => format!("{action}: {}", other.desc()),
        };
        Self { path: path.to_path_buf(), what, errno: Some(errno) }
    }

    fn refused(path: &Path, what: impl Into<String>) -> Self {
        Self { path: path.to_path_buf(), what: what.into(), errno: None }
    }

    /// The entry does not exist.
    pub fn is_not_found(&self) -> bool {
        self.errno == Some(nix::Error::ENOENT)
    }

    /// An entry of that name exists (a new file was asked for).
    pub fn already_exists(&self) -> bool {
        self.errno == Some(nix::Error::EEXIST)
    }
}

type Result<T> = std::result::Result<T, SafeFsError>;

/// Deepest directory [`Tree::remove_tree`] descends into.
pub const MAX_REMOVE_DEPTH: usize = 64;

const DIR: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);
const READ: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_NOFOLLOW).union(OFlag::O_NONBLOCK).union(OFlag::O_CLOEXEC);

/// Who a file is: what [`open_checked`] compares. Inode numbers are reused
/// after a delete, so the status-change time is part of it (a file replaced,
/// or changed after it was approved, is another file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_ctime` in nanoseconds.
    pub changed_ns: i64,
}

/// A directory, held by descriptor.
#[derive(Debug)]
pub struct Tree {
    fd: OwnedFd,
    path: PathBuf,
}

fn one_name(path: &Path, name: &str) -> Result<()> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => Err(SafeFsError::refused(path, format!("{name:?} is not a plain file name"))),
    }
}

impl Tree {
    /// The trusted root of an agent-writable tree (the workspace): its own
    /// path is the operator's, so links above and at it are followed.
    pub fn root(path: &Path) -> Result<Self> {
        let flags = DIR.difference(OFlag::O_NOFOLLOW);
        let fd = open(path, flags, Mode::empty()).map_err(|e| SafeFsError::os(path, "open", e))?;
        Ok(Self { fd, path: path.to_path_buf() })
    }

    /// Like [`Tree::root`], first making the root (the operator's path, not
    /// the agent's) and its parents with `mode` when they are missing.
    pub fn root_or_make(path: &Path, mode: u32) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        if !path.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path)
                .map_err(|e| SafeFsError::refused(path, format!("create: {e}")))?;
        }
        Self::root(path)
    }

    /// A second handle on the same directory.
    pub fn try_clone(&self) -> Result<Self> {
        let fd =
            self.fd.try_clone().map_err(|e| SafeFsError::refused(&self.path, e.to_string()))?;
        Ok(Self { fd, path: self.path.clone() })
    }

    /// The path this tree was opened as (for messages and for other processes).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The subdirectory `relative` (one or more plain components), never
    /// through a link.
    pub fn dir(&self, relative: &str) -> Result<Self> {
        self.walk(relative, None)
    }

    /// Like [`Tree::dir`], making missing components with `mode`.
    pub fn dir_or_make(&self, relative: &str, mode: u32) -> Result<Self> {
        self.walk(relative, Some(mode))
    }

    fn walk(&self, relative: &str, make: Option<u32>) -> Result<Self> {
        let mut fd =
            self.fd.try_clone().map_err(|e| SafeFsError::refused(&self.path, e.to_string()))?;
        let mut path = self.path.clone();
        for part in Path::new(relative).components() {
            let Component::Normal(name) = part else {
                return Err(SafeFsError::refused(
                    &path,
                    format!("{relative:?} must be relative and plain"),
                ));
            };
            path.push(name);
            if let Some(mode) = make {
                match mkdirat(fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(e) => return Err(SafeFsError::os(&path, "create", e)),
                }
            }
            fd = openat(fd.as_fd(), name, DIR, Mode::empty())
                .map_err(|e| SafeFsError::os(&path, "open", e))?;
        }
        Ok(Self { fd, path })
    }

    /// Opens `name` for reading: a regular file (not a link, FIFO or
    /// device) of at most `max` bytes. Returns it with its identity and size.
    pub fn open_regular(&self, name: &str, max: u64) -> Result<(File, FileId, u64)> {
        one_name(&self.path, name)?;
        let path = self.path.join(name);
        let fd = openat(self.fd.as_fd(), name, READ, Mode::empty())
            .map_err(|e| SafeFsError::os(&path, "open", e))?;
        checked(File::from(fd), &path, max)
    }

    /// The contents of `name` (see [`Tree::open_regular`]); `None` when missing.
    pub fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let (mut file, _, size) = match self.open_regular(name, max) {
            Ok(opened) => opened,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut bytes = Vec::with_capacity(size as usize);
        // Bounded even if the file grows meanwhile.
        std::io::Read::by_ref(&mut file)
            .take(max)
            .read_to_end(&mut bytes)
            .map_err(|e| SafeFsError::refused(&self.path.join(name), e.to_string()))?;
        Ok(Some(bytes))
    }

    /// Creates `name`, which must not exist (not even as a dangling link).
    pub fn create_new(&self, name: &str, mode: u32) -> Result<File> {
        one_name(&self.path, name)?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let path = self.path.join(name);
        openat(self.fd.as_fd(), name, flags, Mode::from_bits_truncate(mode))
            .map(File::from)
            .map_err(|e| SafeFsError::os(&path, "create", e))
    }

    /// Writes `bytes` as `name` unless an entry of that name exists; true
    /// when written.
    pub fn write_new(&self, name: &str, bytes: &[u8], mode: u32) -> Result<bool> {
        match self.create_new(name, mode) {
            Ok(mut file) => {
                file.write_all(bytes)
                    .map_err(|e| SafeFsError::refused(&self.path.join(name), e.to_string()))?;
                Ok(true)
            }
            Err(error) if error.already_exists() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Replaces the entry `name` (whatever it was: a file, a planted link)
    /// with a regular file holding `bytes`.
    pub fn replace(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        one_name(&self.path, name)?;
        let temp = format!(".{name}.{:08x}.tmp", rand_suffix());
        let mut file = self.create_new(&temp, mode)?;
        let written = file.write_all(bytes).and_then(|()| file.sync_data());
        let path = self.path.join(name);
        if let Err(error) = written {
            let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(SafeFsError::refused(&path, error.to_string()));
        }
        renameat(self.fd.as_fd(), temp.as_str(), self.fd.as_fd(), name).map_err(|e| {
            let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            SafeFsError::os(&path, "replace", e)
        })
    }

    /// Replaces `name` only when its contents differ from `bytes` (a link
    /// or anything unreadable counts as different).
    pub fn refresh(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let same = self.read(name, bytes.len() as u64 + 1).ok().flatten().as_deref() == Some(bytes);
        if same { Ok(()) } else { self.replace(name, bytes, mode) }
    }

    /// `(name, is_dir, is_link, mtime seconds)` of the entries, not following links.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let listing =
            self.fd.try_clone().map_err(|e| SafeFsError::refused(&self.path, e.to_string()))?;
        let mut dir =
            nix::dir::Dir::from_fd(listing).map_err(|e| SafeFsError::os(&self.path, "list", e))?;
        let mut out = Vec::new();
        for entry in dir.iter().filter_map(std::result::Result::ok) {
            let Ok(name) = entry.file_name().to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
            let Ok(stat) = nix::sys::stat::fstatat(self.fd.as_fd(), name, flags) else { continue };
            out.push(Entry::of(name, &stat));
        }
        Ok(out)
    }

    /// The entry `name` itself (a link is described, not followed); `None` when missing.
    pub fn entry(&self, name: &str) -> Result<Option<Entry>> {
        one_name(&self.path, name)?;
        let flags = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        match nix::sys::stat::fstatat(self.fd.as_fd(), name, flags) {
            Ok(stat) => Ok(Some(Entry::of(name, &stat))),
            Err(nix::Error::ENOENT) => Ok(None),
            Err(e) => Err(SafeFsError::os(&self.path.join(name), "stat", e)),
        }
    }

    /// Replaces the entry `name` (whatever it was) with a symbolic link to
    /// `target`, atomically. Nothing is followed: the link is made under a
    /// fresh name and renamed over the entry.
    pub fn link(&self, name: &str, target: &Path) -> Result<()> {
        one_name(&self.path, name)?;
        let temp = format!(".{name}.{:08x}.tmp", rand_suffix());
        let path = self.path.join(name);
        nix::unistd::symlinkat(target, self.fd.as_fd(), temp.as_str())
            .map_err(|e| SafeFsError::os(&path, "link", e))?;
        renameat(self.fd.as_fd(), temp.as_str(), self.fd.as_fd(), name).map_err(|e| {
            let _ = unlinkat(self.fd.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
            SafeFsError::os(&path, "replace", e)
        })
    }

    /// Like [`Tree::dir_or_make`] for one component; also says whether it
    /// was made just now (no extra system call for an existing one).
    pub fn dir_or_make_new(&self, name: &str, mode: u32) -> Result<(Self, bool)> {
        one_name(&self.path, name)?;
        let path = self.path.join(name);
        let made = match mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => true,
            Err(nix::Error::EEXIST) => false,
            Err(e) => return Err(SafeFsError::os(&path, "create", e)),
        };
        let fd = openat(self.fd.as_fd(), name, DIR, Mode::empty())
            .map_err(|e| SafeFsError::os(&path, "open", e))?;
        Ok((Self { fd, path }, made))
    }

    /// Makes the directory `name`, which must not exist, and opens it.
    pub fn make_dir(&self, name: &str, mode: u32) -> Result<Self> {
        one_name(&self.path, name)?;
        let path = self.path.join(name);
        mkdirat(self.fd.as_fd(), name, Mode::from_bits_truncate(mode))
            .map_err(|e| SafeFsError::os(&path, "create", e))?;
        self.dir(name)
    }

    /// The target of the link `name` (not followed); `None` when `name` is
    /// missing or not a link.
    pub fn read_link(&self, name: &str) -> Result<Option<PathBuf>> {
        one_name(&self.path, name)?;
        match nix::fcntl::readlinkat(self.fd.as_fd(), name) {
            Ok(target) => Ok(Some(PathBuf::from(target))),
            Err(nix::Error::ENOENT | nix::Error::EINVAL) => Ok(None),
            Err(e) => Err(SafeFsError::os(&self.path.join(name), "read link", e)),
        }
    }

    /// Moves the entry `name` (whatever it is, never followed) to `to` in
    /// `dest`: refused when `to` exists (`exchange = false`), or swapped
    /// atomically with the existing `to` (`exchange = true`). Across file
    /// systems it fails with `EXDEV` (see [`SafeFsError::errno`]).
    pub fn rename(&self, name: &str, dest: &Tree, to: &str, exchange: bool) -> Result<()> {
        one_name(&self.path, name)?;
        one_name(&dest.path, to)?;
        let flags = if exchange {
            nix::fcntl::RenameFlags::RENAME_EXCHANGE
        } else {
            nix::fcntl::RenameFlags::RENAME_NOREPLACE
        };
        nix::fcntl::renameat2(self.fd.as_fd(), name, dest.fd.as_fd(), to, flags)
            .map_err(|e| SafeFsError::os(&self.path.join(name), "rename", e))
    }

    /// Removes the entry `name` and, for a directory, everything in it.
    /// Links are removed as themselves, never followed; a tree deeper than
    /// [`MAX_REMOVE_DEPTH`] is refused (what was removed stays removed).
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        self.remove_below(name, 0)
    }

    fn remove_below(&self, name: &str, depth: usize) -> Result<()> {
        let Some(entry) = self.entry(name)? else { return Ok(()) };
        if entry.is_dir {
            if depth >= MAX_REMOVE_DEPTH {
                return Err(SafeFsError::refused(&self.path.join(name), "too deep to remove"));
            }
            let dir = self.dir(name)?;
            for inner in dir.entries()? {
                dir.remove_below(&inner.name, depth + 1)?;
            }
        }
        self.remove(name, entry.is_dir)
    }

    /// Makes the new symbolic link `name` to `target`; fails (`EEXIST`) when
    /// any entry of that name exists, so nothing is ever replaced.
    pub fn link_new(&self, name: &str, target: &Path) -> Result<()> {
        one_name(&self.path, name)?;
        nix::unistd::symlinkat(target, self.fd.as_fd(), name)
            .map_err(|e| SafeFsError::os(&self.path.join(name), "link", e))
    }

    /// Removes the entry `name`: a file or link as itself, an empty directory.
    pub fn remove(&self, name: &str, is_dir: bool) -> Result<()> {
        one_name(&self.path, name)?;
        let flag = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
        unlinkat(self.fd.as_fd(), name, flag)
            .map_err(|e| SafeFsError::os(&self.path.join(name), "remove", e))
    }
}

/// One directory entry (see [`Tree::entries`]).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub is_link: bool,
    /// Seconds since the epoch.
    pub modified: i64,
    /// Bytes.
    pub size: u64,
    /// A regular file (not a link, directory, FIFO, socket or device).
    pub is_file: bool,
    /// `st_mtime` in nanoseconds since the epoch.
    pub modified_ns: i64,
    /// `st_ctime` in nanoseconds (changes with every write, rename or chmod).
    pub changed_ns: i64,
    /// `st_ino`.
    pub ino: u64,
    /// `st_nlink`: more than one means a hard link shares the file.
    pub links: u64,
}

impl Entry {
    fn of(name: &str, stat: &nix::sys::stat::FileStat) -> Self {
        let kind = stat.st_mode & libc::S_IFMT;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Self {
            name: name.to_owned(),
            is_dir: kind == libc::S_IFDIR,
            is_link: kind == libc::S_IFLNK,
            modified: stat.st_mtime,
            size: u64::try_from(stat.st_size).unwrap_or(0),
            is_file: kind == libc::S_IFREG,
            modified_ns: ns(stat.st_mtime, stat.st_mtime_nsec),
            changed_ns: ns(stat.st_ctime, stat.st_ctime_nsec),
            ino: stat.st_ino,
            // `nlink_t` is 32 bits on some targets (aarch64).
            #[allow(clippy::useless_conversion)]
            links: u64::from(stat.st_nlink),
        }
    }
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

fn checked(file: File, path: &Path, max: u64) -> Result<(File, FileId, u64)> {
    let meta = file.metadata().map_err(|e| SafeFsError::refused(path, e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(SafeFsError::refused(path, "not a regular file (refused)"));
    }
    if meta.len() > max {
        return Err(SafeFsError::refused(
            path,
            format!("{} bytes, more than the {max} allowed", meta.len()),
        ));
    }
    if meta.nlink() > 1 {
        return Err(SafeFsError::refused(path, "has other hard links (refused)"));
    }
    let changed_ns = meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec());
    Ok((file, FileId { dev: meta.dev(), ino: meta.ino(), changed_ns }, meta.len()))
}

/// The identity and size of the regular file at `path` (final component
/// not followed), for a later [`open_checked`].
pub fn identify(path: &Path, max: u64) -> Result<(FileId, u64)> {
    let fd = open(path, READ, Mode::empty()).map_err(|e| SafeFsError::os(path, "open", e))?;
    let (_, id, size) = checked(File::from(fd), path, max)?;
    Ok((id, size))
}

/// Opens `path` for sending: still a regular file of at most `max` bytes,
/// and still the very file (`id`) that was approved, whatever happened to
/// its path since.
pub fn open_checked(path: &Path, id: FileId, max: u64) -> Result<(File, u64)> {
    let fd = open(path, READ, Mode::empty()).map_err(|e| SafeFsError::os(path, "open", e))?;
    let (file, found, size) = checked(File::from(fd), path, max)?;
    if found != id {
        return Err(SafeFsError::refused(
            path,
            "is not the file that was approved (replaced since)",
        ));
    }
    Ok((file, size))
}

/// Opens an attachment for sending: [`open_checked`] against the identity
/// core recorded, or, for an action from a core that recorded none, at least
/// a regular, unlinked file within `max`.
pub fn open_attachment(path: &Path, id: Option<FileId>, max: u64) -> Result<(File, u64)> {
    match id {
        Some(id) => open_checked(path, id, max),
        None => {
            let fd =
                open(path, READ, Mode::empty()).map_err(|e| SafeFsError::os(path, "open", e))?;
            let (file, _, size) = checked(File::from(fd), path, max)?;
            Ok((file, size))
        }
    }
}

/// The identity a proto `Attachment` carries (`dev`, `ino`, `changed_ns`;
/// all zero = none recorded).
pub fn attachment_id(dev: u64, ino: u64, changed_ns: i64) -> Option<FileId> {
    (dev != 0 || ino != 0).then_some(FileId { dev, ino, changed_ns })
}

#[cfg(test)]
#[path = "safe_fs_tests.rs"]
mod tests;
