//! Asks the runner which provider CLIs it finds, for `ductorctl doctor`: the
//! running runner's `Probe` RPC, else a one-shot `ductor-runner probe` with
//! this home's config. `ductorctl` never runs an agent CLI itself, not even
//! for `--version`: only the runner spawns them, with the environment (and so
//! the PATH) that a run would get.

use std::process::Stdio;
use std::time::Duration;

use ductor_daemon::{DuctorHome, ServiceName};
use ductor_proto::pb;
use ductor_proto::pb::runner_client::RunnerClient;

use crate::bins::{BinDir, MissingBinary};
use crate::supervisor;

/// How long one probe may take: the runner asks each CLI for its version in
/// turn, each for up to 15 s.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which runner answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The runner serving this home.
    Running,
    /// A one-shot `ductor-runner probe` (no runner was running).
    Oneshot,
}

/// Why neither a running runner nor a one-shot probe answered.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `ductorctl` cannot tell where it is installed.
    #[error("cannot find the ductorctl executable: {0}")]
    Locate(#[source] std::io::Error),
    /// The runner binary is not next to `ductorctl`.
    #[error(transparent)]
    Missing(#[from] MissingBinary),
    /// The one-shot could not be started.
    #[error("cannot run `ductor-runner probe`: {0}")]
    Spawn(#[source] std::io::Error),
    /// The one-shot took too long (and was killed).
    #[error("`ductor-runner probe` did not answer within {} s", PROBE_TIMEOUT.as_secs())]
    Timeout,
    /// The one-shot failed; `stderr` is its last line.
    #[error("`ductor-runner probe` ended with {status}: {stderr}")]
    Failed {
        /// How it ended ("exit status 64").
        status: String,
        /// The last line it wrote to stderr.
        stderr: String,
    },
    /// The one-shot printed something that is not a probe answer.
    #[error("`ductor-runner probe` printed no probe answer: {0}")]
    Garbled(#[source] serde_json::Error),
}

/// The runner's `Probe` answer for `home`, and which runner gave it.
pub async fn probe(home: &DuctorHome) -> Result<(pb::ProbeResponse, Source), ProbeError> {
    if let Some(answer) = ask_running(home).await {
        return Ok((answer, Source::Running));
    }
    Ok((oneshot(home).await?, Source::Oneshot))
}

/// `Probe` on the runner's socket; `None` when nothing answers there.
async fn ask_running(home: &DuctorHome) -> Option<pb::ProbeResponse> {
    let socket = home.socket(ServiceName::Runner);
    if !socket.exists() {
        return None;
    }
    let mut client = RunnerClient::new(ductor_proto::transport::connect(&socket));
    // A socket file left by a killed runner refuses the connection at once.
    let answer = tokio::time::timeout(PROBE_TIMEOUT, client.probe(pb::ProbeRequest {})).await;
    Some(answer.ok()?.ok()?.into_inner())
}

/// Runs `ductor-runner probe --home <home>` and reads its JSON.
async fn oneshot(home: &DuctorHome) -> Result<pb::ProbeResponse, ProbeError> {
    let binary = BinDir::locate().map_err(ProbeError::Locate)?.service(ServiceName::Runner)?;
    let mut command = supervisor::service_command(&binary, home, ServiceName::Runner);
    command
        .arg("probe")
        .arg("--home")
        .arg(home.root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(PROBE_TIMEOUT, command.output())
        .await
        .map_err(|_| ProbeError::Timeout)?
        .map_err(ProbeError::Spawn)?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(ProbeError::Failed {
            status: supervisor::describe_exit(output.status),
            stderr: last.trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(ProbeError::Garbled)
}
