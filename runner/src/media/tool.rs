//! The helper programs of media preparation (ffmpeg, a transcription
//! command): started through the spawn site in their own process group,
//! confined to their private directory (Landlock: the run's read set to
//! read, that directory alone to write), with a minimal environment that
//! holds no secret, bounded in time and output, and killed as a group once
//! they exit or time out. A recording is untrusted input; a decoder bug it
//! triggers stays inside that fence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::sandbox::{self, Limits, Spawn};

/// Most of a tool's standard output kept (a transcript), in bytes.
const MAX_STDOUT: u64 = 1024 * 1024;
/// Most of its standard error kept for an error message, in bytes.
const MAX_STDERR: u64 = 8 * 1024;

/// Where tools may run and what they may read.
#[derive(Debug, Clone, Default)]
pub struct ToolFence {
    /// Apply Landlock.
    pub landlock: bool,
    /// Trees no broad rule may reach (`$DUCTOR_HOME`, the run dir).
    pub excluded: Vec<PathBuf>,
    /// Trees agents can write: a tool found there is never run.
    pub agent_writable: Vec<PathBuf>,
    /// `[runner].extra_readable_paths` (a whisper model file, say).
    pub extra_readable: Vec<String>,
    /// The PATH tools are looked up in (the runner's).
    pub path: Option<String>,
    /// Why no tool may run (`sandbox = "auto"` without Landlock: nothing
    /// would confine it).
    pub refused: Option<String>,
}

/// Why a tool gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Not found on PATH (or not executable).
    #[error("{0} is not installed (not found on PATH)")]
    NotFound(String),
    /// It lies in a tree an agent can write.
    #[error("{0} lies in a folder agents can write, so it is never run")]
    AgentWritable(PathBuf),
    /// The sandbox could not be set up, or the spawn failed.
    #[error("could not start {program}: {message}")]
    Start {
        /// The program.
        program: String,
        /// Why.
        message: String,
    },
    /// It exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// It ran out of time and was killed.
    #[error("{program} took longer than {}s and was stopped", .after.as_secs())]
    TimedOut {
        /// The program.
        program: String,
        /// The timeout.
        after: Duration,
    },
}

/// What a tool printed, and how long it took.
#[derive(Debug)]
pub struct ToolOutput {
    /// Standard output (at most 1 MiB, lossily UTF-8).
    pub stdout: String,
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
}

impl ToolFence {
    /// Runs `program args` in `dir` (its private directory, the only place
    /// it may write) for at most `timeout`.
    pub async fn run(
        &self,
        program: &str,
        args: &[String],
        dir: &Path,
        timeout: Duration,
    ) -> Result<ToolOutput, ToolError> {
        if let Some(why) = &self.refused {
            return Err(ToolError::Start { program: program.to_owned(), message: why.clone() });
        }
        let binary = sandbox::resolve_binary(program, self.path.as_deref())
            .ok_or_else(|| ToolError::NotFound(program.to_owned()))?;
        if sandbox::writable_root_holding(&binary, &self.agent_writable).is_some() {
            return Err(ToolError::AgentWritable(binary));
        }
        let env = self.env(dir);
        let ruleset = self.ruleset(&binary, &env, dir)?;
        let started = Instant::now();
        let mut command = sandbox::command(Spawn {
            program: &binary,
            args,
            env: &env,
            cwd: dir,
            limits: Limits { max_processes: 256, max_file_bytes: 1024 * 1024 * 1024 },
            ruleset,
            stdin: sandbox::StdinFrom::Null,
        });
        let start_error = |e: std::io::Error| ToolError::Start {
            program: program.to_owned(),
            message: e.to_string(),
        };
        let mut child = command.spawn().map_err(start_error)?;
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let outcome = tokio::time::timeout(timeout, async {
            let (out, err, status) = tokio::join!(
                read_bounded(stdout, MAX_STDOUT),
                read_bounded(stderr, MAX_STDERR),
                child.wait()
            );
            (out, err, status)
        })
        .await;
        if let Some(group) = group {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let Ok((stdout, stderr, status)) = outcome else {
            return Err(ToolError::TimedOut { program: program.to_owned(), after: timeout });
        };
        let status = status.map_err(start_error)?;
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr);
            let tail = tail(stderr.trim(), 400);
            return Err(ToolError::Failed {
                program: program.to_owned(),
                status: status.to_string(),
                stderr: tail.to_owned(),
            });
        }
        Ok(ToolOutput {
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            elapsed: started.elapsed(),
        })
    }

    /// PATH, a locale, and `dir` as home and temporary directory: nothing else.
    fn env(&self, dir: &Path) -> BTreeMap<String, String> {
        let dir = dir.display().to_string();
        let mut env = BTreeMap::new();
        if let Some(path) = &self.path {
            env.insert("PATH".to_owned(), path.clone());
        }
        for name in ["HOME", "TMPDIR", "TMP", "TEMP"] {
            env.insert(name.to_owned(), dir.clone());
        }
        env.insert("LC_ALL".to_owned(), "C.UTF-8".to_owned());
        env
    }

    fn ruleset(
        &self,
        binary: &Path,
        env: &BTreeMap<String, String>,
        dir: &Path,
    ) -> Result<Option<std::os::fd::OwnedFd>, ToolError> {
        if !self.landlock {
            return Ok(None);
        }
        let policy = sandbox::tool_policy(
            binary,
            env,
            &self.extra_readable,
            &[dir.to_path_buf()],
            &self.excluded,
        );
        sandbox::landlock_ruleset(&policy)
            .map(Some)
            .map_err(|message| ToolError::Start { program: binary.display().to_string(), message })
    }
}

/// Reads at most `max` bytes of `pipe` and drains the rest, so a chatty
/// tool never blocks on a full pipe nor fills our memory.
async fn read_bounded(pipe: Option<impl AsyncRead + Unpin>, max: u64) -> Vec<u8> {
    let Some(mut pipe) = pipe else { return Vec::new() };
    let mut kept = Vec::new();
    let _ = (&mut pipe).take(max).read_to_end(&mut kept).await;
    let _ = tokio::io::copy(&mut pipe, &mut tokio::io::sink()).await;
    kept
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub(super) fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    &text[start..]
}
