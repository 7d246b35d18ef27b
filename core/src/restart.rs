//! `/restart`: an admin chat restarts ductor (every service), core alone, the
//! runner, or one gateway, and hears when what it restarted is back.
//!
//! Every service restarts the same way: it exits with status 42, which each
//! supervisor (`ductorctl up`, systemd's `RestartForceExitStatus`, compose's
//! restart policy) answers with a fresh start not counted as a crash. Core
//! asks a gateway through its `Attach` stream (`RestartGateway`, never stored,
//! so a restarted gateway is not asked again) and the runner through
//! `Runner.Restart`; core itself shuts down. So no supervisor needs to be
//! told anything, and none is assumed.
//!
//! "Back" is observed, not assumed: a gateway is back when a new connection
//! of its transport attaches, the runner when its Health answers SERVING from
//! another pid, core (and with it the whole stack) when the next core starts
//! with the marker this one left in `$DUCTOR_HOME/restart-requested` and the
//! runner answers. A part that does not come back within [`BACK_PATIENCE`]
//! is reported as such.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ductor_daemon::DuctorHome;
use ductor_proto::{Channel, pb};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{OutKind, Outbound, SessionKey};
use crate::outbox::Outbox;
use crate::runner::RunnerLink;

/// How long a restarted part may take to be back before the chat is told it is not.
const BACK_PATIENCE: Duration = Duration::from_secs(60);

/// How often a restart checks whether the part is back.
const BACK_POLL: Duration = Duration::from_millis(100);

/// What `/restart` restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every service: the gateways, the runner, then core.
    All,
    /// Core alone.
    Core,
    /// The runner alone (its live runs are stopped).
    Runner,
    /// The gateway of this transport.
    Gateway(String),
}

impl Target {
    /// The target named by `/restart`'s argument: none or `all`, `core`,
    /// `runner`, or a transport name (checked against the attached gateways
    /// by the caller).
    pub fn parse(arg: Option<&str>) -> Self {
        match arg.map(|a| a.trim().to_ascii_lowercase()).as_deref() {
            None | Some("" | "all" | "ductor") => Self::All,
            Some("core") => Self::Core,
            Some("runner") => Self::Runner,
            Some(other) => Self::Gateway(other.to_owned()),
        }
    }

    /// How the chat is told what restarts.
    pub fn label(&self) -> String {
        match self {
            Self::All => "ductor (gateways, runner and core)".to_owned(),
            Self::Core => "ductor's core".to_owned(),
            Self::Runner => "the runner".to_owned(),
            Self::Gateway(transport) => format!("the {transport} gateway"),
        }
    }

    fn marker_name(&self) -> &str {
        match self {
            Self::All => "all",
            _ => "core",
        }
    }
}

/// One `/restart`, from the driver.
#[derive(Debug, Clone)]
pub struct Request {
    /// The chat that asked; it hears the outcome.
    pub key: SessionKey,
    /// What to restart.
    pub target: Target,
}

/// Carries out restarts; see the module documentation.
pub struct Restarter {
    /// Where the notices go, and the gateways' connections.
    pub outbox: Arc<Outbox>,
    /// `Runner.Restart`.
    pub runner: RunnerLink,
    /// The runner's socket, for its Health.
    pub runner_channel: Channel,
    /// Where the marker for the next core goes.
    pub home: DuctorHome,
    /// Core's own shutdown.
    pub shutdown: CancellationToken,
}

impl Restarter {
    /// Serves requests until one restarts core; `true` means core should now
    /// exit for a restart.
    pub async fn run(self, mut requests: mpsc::UnboundedReceiver<Request>) -> bool {
        let me = Arc::new(self);
        while let Some(request) = requests.recv().await {
            tracing::info!(session = %request.key, target = ?request.target, "restart asked");
            match request.target.clone() {
                Target::Gateway(transport) => {
                    tokio::spawn(me.clone().gateway(request.key, transport));
                }
                Target::Runner => {
                    tokio::spawn(me.clone().runner(request.key));
                }
                Target::Core => return me.exit_core(&request).await,
                Target::All => {
                    for transport in me.outbox.gateways().await {
                        me.outbox
                            .restart_gateway(&transport, "an admin chat restarts ductor")
                            .await;
                    }
                    if let Err(error) = me.runner.restart("an admin chat restarts ductor").await {
                        tracing::warn!(error = error.message(), "failed to restart the runner");
                    }
                    return me.exit_core(&request).await;
                }
            }
        }
        false
    }

    /// Leaves the marker, gives the "restarting" notice a moment to reach the
    /// gateway (it is durable either way), and begins core's shutdown.
    async fn exit_core(&self, request: &Request) -> bool {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let key = &request.key;
        let marker = format!(
            "{}\n{}\n{}\n{}\n",
            key.transport,
            key.chat_id,
            key.topic_id,
            request.target.marker_name()
        );
        if let Err(error) =
            ductor_daemon::paths::write_private(&marker_path(&self.home), marker.as_bytes())
        {
            tracing::warn!(%error, "failed to remember who asked for the restart");
        }
        tracing::info!(session = %key, "restarting on a chat's request");
        self.shutdown.cancel();
        true
    }

    async fn gateway(self: Arc<Self>, key: SessionKey, transport: String) {
        let reason = format!("an admin chat restarts the {transport} gateway");
        let Some(old) = self.outbox.restart_gateway(&transport, &reason).await else {
            let text =
                format!("⚠️ No {transport} gateway is attached, so there is none to restart.");
            return self.notice(key, text).await;
        };
        let start = Instant::now();
        let mut back = None;
        while back.is_none() && self.waiting(start) {
            if self.outbox.gateway_conn(&transport).await.is_some_and(|conn| conn > old) {
                back = Some(start.elapsed());
            } else {
                tokio::time::sleep(BACK_POLL).await;
            }
        }
        let text = match back {
            Some(took) => format!("✅ The {transport} gateway restarted ({}).", seconds(took)),
            None => not_back(&format!("the {transport} gateway")),
        };
        self.notice(key, text).await;
    }

    async fn runner(self: Arc<Self>, key: SessionKey) {
        let old = match self.runner.restart("an admin chat restarts the runner").await {
            Ok(answer) => answer.pid,
            Err(error) => {
                let text = format!("⚠️ The runner could not be restarted: {}", error.message());
                return self.notice(key, text).await;
            }
        };
        let start = Instant::now();
        let mut back = None;
        while back.is_none() && self.waiting(start) {
            let answer =
                ductor_proto::health::check(self.runner_channel.clone(), BACK_POLL * 10).await;
            if answer.is_some_and(|a| a.status == pb::ServingStatus::Serving as i32 && a.pid != old)
            {
                back = Some(start.elapsed());
            } else {
                tokio::time::sleep(BACK_POLL).await;
            }
        }
        let text = match back {
            Some(took) => format!("✅ The runner restarted ({}).", seconds(took)),
            None => not_back("the runner"),
        };
        self.notice(key, text).await;
    }

    /// Whether a wait begun at `start` goes on: within [`BACK_PATIENCE`],
    /// and core is not shutting down.
    fn waiting(&self, start: Instant) -> bool {
        start.elapsed() < BACK_PATIENCE && !self.shutdown.is_cancelled()
    }

    async fn notice(&self, key: SessionKey, text: String) {
        if let Err(error) = send_notice(&self.outbox, key, text).await {
            tracing::warn!(%error, "failed to report a restart");
        }
    }
}

fn seconds(took: Duration) -> String {
    format!("{:.1} s", took.as_secs_f64())
}

fn not_back(what: &str) -> String {
    format!(
        "⚠️ {what} is not back after {} s. Check `ductorctl status` and its log.",
        BACK_PATIENCE.as_secs()
    )
}

async fn send_notice(
    outbox: &Outbox,
    key: SessionKey,
    text: String,
) -> Result<u64, crate::store::StoreError> {
    let kind = OutKind::Notice { text, notify: true };
    outbox.send(Outbound { key, turn_id: String::new(), reply_to: String::new(), kind }).await
}

/// Where core remembers, across its restart, which chat asked and for what.
fn marker_path(home: &DuctorHome) -> std::path::PathBuf {
    home.root().join("restart-requested")
}

/// At start, after a `/restart`: tells the chat that asked that core is back
/// (for a restart of everything, once the runner answers too).
pub async fn announce(
    outbox: Arc<Outbox>,
    home: &DuctorHome,
    runner_channel: Channel,
    version: &'static str,
) -> anyhow::Result<()> {
    let marker = marker_path(home);
    let Ok(text) = std::fs::read_to_string(&marker) else { return Ok(()) };
    let _ = std::fs::remove_file(&marker);
    let mut lines = text.lines();
    let (Some(transport), Some(chat_id)) = (lines.next(), lines.next()) else { return Ok(()) };
    let key = SessionKey::new(transport, chat_id, lines.next().unwrap_or(""));
    if lines.next() != Some("all") {
        send_notice(&outbox, key, format!("✅ ductor {version} restarted.")).await?;
        return Ok(());
    }
    tokio::spawn(async move {
        let up = ductor_proto::health::wait_serving(runner_channel, BACK_PATIENCE).await;
        let text = if up.is_some() {
            format!("✅ ductor {version} restarted: gateways, runner and core.")
        } else {
            format!("✅ ductor {version}'s core restarted. {}", not_back("The runner"))
        };
        if let Err(error) = send_notice(&outbox, key, text).await {
            tracing::warn!(%error, "failed to report the restart");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn the_argument_names_the_target() {
        assert_eq!(Target::parse(None), Target::All);
        assert_eq!(Target::parse(Some(" ALL ")), Target::All);
        assert_eq!(Target::parse(Some("core")), Target::Core);
        assert_eq!(Target::parse(Some("Runner")), Target::Runner);
        assert_eq!(Target::parse(Some("telegram")), Target::Gateway("telegram".into()));
    }
}
