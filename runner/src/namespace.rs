//! The socket fence: each run's CLI in its own user and mount namespace.
//!
//! Landlock below ABI 9 (Linux 7.1) does not govern `connect(2)` on
//! pathname Unix sockets, so without this a CLI could drive every same-uid
//! service (the systemd user manager, the D-Bus session bus, ssh/gpg agents,
//! tmux, docker; security review H4). In the child, before Landlock:
//! `unshare(CLONE_NEWUSER | CLONE_NEWNS)` with uid and gid mapped 1:1 to the
//! real ids (setgroups denied), every mount made private, then the masks of
//! [`masks::plan`] (tmpfs over socket directories, `/dev/null` over single
//! sockets), and `user.max_user_namespaces = 0` inside the run's namespace.
//!
//! The namespace is also the run's identity (review M5): every process a CLI
//! forks stays in it, whatever `setsid`/`setpgid` it calls, and cannot make
//! a nested one to leave it, so [`members`] kills a run by namespace at its
//! end and after a runner restart.
//!
//! Everything the child needs (paths as `CString`s, the id maps) is prepared
//! in the parent; [`Fence::enter`] makes only async-signal-safe system calls
//! and reports the step that failed through a shared page, so the parent can
//! name it in the run's error. [`detect`] checks once at start that the
//! kernel allows all of it (unprivileged user namespaces can be off: Ubuntu's
//! AppArmor restriction, `kernel.unprivileged_userns_clone = 0`, containers);
//! without it runs go on unfenced and [`members`] falls back to the subreaper.
//!
//! Landlock keeps a fenced CLI from undoing the masks (no `mount`/`umount`
//! in a Landlock domain, no access to `/proc/<outside pid>/root`); a CLI
//! running as root additionally loses `CAP_SYS_ADMIN` and `CAP_SYS_RESOURCE`.

pub mod masks;
pub mod members;

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use ductor_daemon::config::SandboxMode;

pub use masks::MaskPlan;

/// Whether runs get the fence, decided once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fencing {
    /// Runs get their own user and mount namespace.
    pub available: bool,
    /// What is covered and what is not, for the sandbox detail and `doctor`.
    pub detail: String,
}

/// What the fence covers; the marker `socket fence` is what `doctor` looks for.
const COVERED: &str = "socket fence: each run in its own user+mount namespace; hidden: \
    the runtime directory (/run/user/<uid>), /run/dbus, /tmp/.X11-unix, /tmp/.ICE-unix, \
    /tmp/tmux-<uid>, /run/screen, ~/.gnupg, and every pathname socket found at spawn under \
    /tmp, /var/tmp and /run (depth 3) plus docker.sock and $SSH_AUTH_SOCK, except core.sock; \
    nested user namespaces refused, so every process of a run is killed with it";

/// What it does not cover.
const NOT_COVERED: &str = "not covered: sockets created after a run starts outside the \
    hidden directories, pathname sockets elsewhere (e.g. under $HOME), abstract sockets and \
    signals (those are Landlock's scopes, ABI 6); fencing connect() itself needs Landlock \
    ABI 9 (Linux 7.1)";

/// Checks the fence against the kernel (a forked child tries every step).
pub fn detect(sandbox: SandboxMode) -> Fencing {
    if sandbox == SandboxMode::None {
        return Fencing {
            available: false,
            detail: "socket fence off ([runner].sandbox = \"none\")".into(),
        };
    }
    match probe() {
        Ok(()) => Fencing { available: true, detail: format!("{COVERED}; {NOT_COVERED}") },
        Err(reason) => Fencing {
            available: false,
            detail: format!(
                "socket fence unavailable ({reason}): runs can connect to same-uid Unix \
                 sockets (D-Bus, systemd --user, ssh-agent, docker), and a process that leaves \
                 its run's process group is caught only by the subreaper while the runner lives"
            ),
        },
    }
}

/// The steps of [`Fence::enter`], as reported through the shared page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Unshare = 1,
    Setgroups,
    UidMap,
    GidMap,
    Private,
    Tmpfs,
    Null,
    NoNesting,
    NestingAllowed,
    ProbeMount,
}

impl Step {
    fn from_u32(value: u32) -> Option<Self> {
        const ALL: [Step; 10] = [
            Step::Unshare,
            Step::Setgroups,
            Step::UidMap,
            Step::GidMap,
            Step::Private,
            Step::Tmpfs,
            Step::Null,
            Step::NoNesting,
            Step::NestingAllowed,
            Step::ProbeMount,
        ];
        ALL.into_iter().find(|step| *step as u32 == value)
    }

    fn describe(self) -> &'static str {
        match self {
            Step::Unshare => "create a user and mount namespace",
            Step::Setgroups => "deny setgroups in the new user namespace",
            Step::UidMap => "map the uid into the new user namespace",
            Step::GidMap => "map the gid into the new user namespace",
            Step::Private => "make the run's mounts private",
            Step::Tmpfs => "mount a tmpfs over",
            Step::Null => "mount /dev/null over",
            Step::NoNesting => "set user.max_user_namespaces = 0 in the run's namespace",
            Step::NestingAllowed => "refuse nested user namespaces (one was created)",
            Step::ProbeMount => "mount a tmpfs in a new mount namespace",
        }
    }
}

/// One page shared between the parent and a forked child (`MAP_SHARED`), in
/// which the child leaves the step that failed and its errno.
struct Report {
    page: NonNull<[AtomicU32; 2]>,
}

// SAFETY: the page holds only atomics and lives until `Drop`.
unsafe impl Send for Report {}
// SAFETY: as above; every access is an atomic load or store.
unsafe impl Sync for Report {}

const PAGE: usize = 4096;

impl Report {
    fn new() -> io::Result<Self> {
        // SAFETY: an anonymous shared mapping; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Self { page })
    }

    fn cells(&self) -> &[AtomicU32; 2] {
        // SAFETY: the mapping is page-sized, zero-filled, aligned and alive.
        unsafe { self.page.as_ref() }
    }

    /// Async-signal-safe: two atomic stores.
    fn fail(&self, step: Step, index: usize, error: &io::Error) -> io::Error {
        let cells = self.cells();
        cells[0].store(step as u32 | ((index as u32) << 8), Ordering::SeqCst);
        cells[1].store(error.raw_os_error().unwrap_or(0) as u32, Ordering::SeqCst);
        io::Error::from_raw_os_error(error.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The failed step, the mask index and the errno, if the child failed.
    fn read(&self) -> Option<(Step, usize, i32)> {
        let cells = self.cells();
        let word = cells[0].load(Ordering::SeqCst);
        let step = Step::from_u32(word & 0xff)?;
        Some((step, (word >> 8) as usize, cells[1].load(Ordering::SeqCst) as i32))
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE) };
    }
}

/// The uid/gid maps of the current credentials ("<id> <id> 1").
struct Maps {
    uid: Vec<u8>,
    gid: Vec<u8>,
}

impl Maps {
    fn current() -> Self {
        // SAFETY: getters without arguments.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Self {
            uid: format!("{uid} {uid} 1\n").into_bytes(),
            gid: format!("{gid} {gid} 1\n").into_bytes(),
        }
    }
}

/// A run's fence, prepared in the parent and entered in the child.
pub struct Fence {
    maps: Maps,
    tmpfs: Vec<CString>,
    null: Vec<CString>,
    plan: MaskPlan,
    report: Report,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("plan", &self.plan).finish_non_exhaustive()
    }
}

impl Fence {
    /// A fence applying `plan`.
    pub fn new(plan: MaskPlan) -> Result<Self, String> {
        let cstring = |path: &PathBuf| {
            CString::new(path.as_os_str().as_bytes())
                .map_err(|_| format!("{} contains a NUL byte", path.display()))
        };
        let tmpfs = plan.tmpfs.iter().map(cstring).collect::<Result<_, _>>()?;
        let null = plan.null.iter().map(cstring).collect::<Result<_, _>>()?;
        let report = Report::new().map_err(|e| format!("map the fence's report page: {e}"))?;
        Ok(Self { maps: Maps::current(), tmpfs, null, plan, report })
    }

    /// The masks this fence applies.
    pub fn plan(&self) -> &MaskPlan {
        &self.plan
    }

    /// Explains a failed spawn: the step the child reported, else `error` itself.
    pub fn explain(&self, error: &io::Error) -> String {
        match self.report.read() {
            Some((step @ Step::Tmpfs, index, errno)) => {
                describe(step, self.plan.tmpfs.get(index), errno)
            }
            Some((step @ Step::Null, index, errno)) => {
                describe(step, self.plan.null.get(index), errno)
            }
            Some((step, _, errno)) => describe(step, None, errno),
            None => error.to_string(),
        }
    }

    /// Enters the fence; runs in the forked child before `exec`.
    ///
    /// Async-signal-safe: system calls on memory prepared before the fork,
    /// atomic stores into the report page.
    pub fn enter(&self) -> io::Result<()> {
        let report = &self.report;
        enter_namespaces(&self.maps, report)?;
        for (index, dir) in self.tmpfs.iter().enumerate() {
            mask(dir, Kind::Dir).map_err(|e| report.fail(Step::Tmpfs, index, &e))?;
        }
        for (index, socket) in self.null.iter().enumerate() {
            mask(socket, Kind::Socket).map_err(|e| report.fail(Step::Null, index, &e))?;
        }
        forbid_nesting().map_err(|e| report.fail(Step::NoNesting, 0, &e))?;
        drop_root_caps();
        Ok(())
    }
}

fn describe(step: Step, path: Option<&PathBuf>, errno: i32) -> String {
    let error = io::Error::from_raw_os_error(errno);
    match path {
        Some(path) => {
            format!("fence the run's sockets: {} {}: {error}", step.describe(), path.display())
        }
        None => format!("fence the run's sockets: {}: {error}", step.describe()),
    }
}

// === The child's system calls (async-signal-safe only) ===

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Writes `data` to a `/proc` file.
fn write_proc(path: &CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        let error = io::Error::last_os_error();
        libc::close(fd);
        if written != data.len() as isize {
            return Err(error);
        }
    }
    Ok(())
}

/// New user and mount namespaces with 1:1 maps and private propagation.
fn enter_namespaces(maps: &Maps, report: &Report) -> io::Result<()> {
    // SAFETY: plain system calls with integer arguments or static C strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS))
            .map_err(|e| report.fail(Step::Unshare, 0, &e))?;
        // The runner is non-dumpable, which makes /proc/self/* root-owned: allow
        // the map writes, then close that door again before exec opens it anyway.
        libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0);
        let maps_written = write_proc(c"/proc/self/setgroups", b"deny")
            .map_err(|e| report.fail(Step::Setgroups, 0, &e))
            .and_then(|()| {
                write_proc(c"/proc/self/uid_map", &maps.uid)
                    .map_err(|e| report.fail(Step::UidMap, 0, &e))
            })
            .and_then(|()| {
                write_proc(c"/proc/self/gid_map", &maps.gid)
                    .map_err(|e| report.fail(Step::GidMap, 0, &e))
            });
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        maps_written?;
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        ))
        .map_err(|e| report.fail(Step::Private, 0, &e))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Socket,
}

/// Hides `path` (a directory under a tmpfs, a socket under /dev/null).
///
/// The target is opened `O_PATH | O_NOFOLLOW` and mounted over through
/// `/proc/self/fd/<n>`, so a link swapped in since the plan is never
/// followed; a target that is gone, unreachable or no longer of its kind is
/// skipped.
fn mask(path: &CStr, kind: Kind) -> io::Result<()> {
    let mut flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if kind == Kind::Dir {
        flags |= libc::O_DIRECTORY;
    }
    // SAFETY: open/fstat/mount/close on NUL-terminated paths and stack buffers.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags);
        if fd < 0 {
            let error = io::Error::last_os_error();
            let skip = [libc::ENOENT, libc::ENOTDIR, libc::ELOOP, libc::EACCES];
            return if skip.contains(&error.raw_os_error().unwrap_or(0)) {
                Ok(())
            } else {
                Err(error)
            };
        }
        let mut stat: libc::stat = std::mem::zeroed();
        let expected = if kind == Kind::Dir { libc::S_IFDIR } else { libc::S_IFSOCK };
        if libc::fstat(fd, &mut stat) < 0 || stat.st_mode & libc::S_IFMT != expected {
            libc::close(fd);
            return Ok(());
        }
        let mut buf = [0u8; 32];
        let target = fd_path(fd, &mut buf);
        let rc = match kind {
            Kind::Dir => libc::mount(
                c"ductor-fence".as_ptr(),
                target,
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=16k,nr_inodes=16,mode=0700".as_ptr().cast(),
            ),
            Kind::Socket => libc::mount(
                c"/dev/null".as_ptr(),
                target,
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ),
        };
        let error = io::Error::last_os_error();
        libc::close(fd);
        if rc < 0 { Err(error) } else { Ok(()) }
    }
}

/// `/proc/self/fd/<fd>` as a C string in `buf` (no allocation).
fn fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> *const libc::c_char {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
    buf.as_ptr().cast()
}

/// No process of the run may create a user namespace (and so leave the run's).
fn forbid_nesting() -> io::Result<()> {
    write_proc(c"/proc/sys/user/max_user_namespaces", b"0\n")
}

/// `CAP_SYS_ADMIN` and `CAP_SYS_RESOURCE` from `linux/capability.h`.
const CAP_SYS_ADMIN: libc::c_ulong = 21;
const CAP_SYS_RESOURCE: libc::c_ulong = 24;

/// A CLI that is root in its namespace keeps the bounding set across exec:
/// without these it cannot unmount the masks or lift the nesting limit.
fn drop_root_caps() {
    // SAFETY: getter and prctl with integer arguments.
    unsafe {
        if libc::geteuid() == 0 {
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0);
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
        }
    }
}

// === The start-up probe ===

/// Forks a child that goes through every step of a fence (and checks that a
/// nested user namespace is refused); `Err` names the step that failed.
fn probe() -> Result<(), String> {
    let report = Report::new().map_err(|e| format!("map a report page: {e}"))?;
    let maps = Maps::current();
    // SAFETY: the child makes only async-signal-safe calls on memory prepared
    // above, then `_exit`s; the parent waits for exactly that pid.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let code = i32::from(probe_child(&maps, &report).is_err());
        // SAFETY: leaving the forked child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child by pid.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(format!("wait for the probe: {error}"));
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    match report.read() {
        Some((step, _, errno)) => {
            Err(format!("{}: {}", step.describe(), io::Error::from_raw_os_error(errno)))
        }
        None => Err(format!("the probe ended with wait status {status}")),
    }
}

fn probe_child(maps: &Maps, report: &Report) -> io::Result<()> {
    enter_namespaces(maps, report)?;
    // SAFETY: mount/unshare with static C strings and integer flags.
    unsafe {
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        check(libc::mount(
            c"ductor-fence".as_ptr(),
            c"/".as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            std::ptr::null(),
        ))
        .map_err(|e| report.fail(Step::ProbeMount, 0, &e))?;
        forbid_nesting().map_err(|e| report.fail(Step::NoNesting, 0, &e))?;
        if libc::unshare(libc::CLONE_NEWUSER) == 0 {
            let error = io::Error::from_raw_os_error(libc::EEXIST);
            return Err(report.fail(Step::NestingAllowed, 0, &error));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
