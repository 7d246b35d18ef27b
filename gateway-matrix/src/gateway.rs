//! Wiring of one gateway run: open the session, resolve the allowlists,
//! start the link to core (the shared `ductor-gateway-link`), register the
//! event handlers, sync once, start delivering core's actions, then sync
//! until shutdown (transient sync errors are retried; a revoked access token
//! ends the run with an error that says how to log in again).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::MatrixError;
use ductor_daemon::config::{MatrixConfig, MatrixStreaming};
use ductor_daemon::daemon::RestartSwitch;
use ductor_daemon::sync::Locked as _;
use ductor_daemon::{Config, DuctorHome, ServiceName};
use ductor_gateway_link::{InboundSender, LinkOptions, LinkStatus};
use ductor_proto::pb;
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::ruma::{MilliSecondsSinceUnixEpoch, OwnedUserId};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::buttons::ButtonTracker;
use crate::outbound::Dispatcher;
use crate::session::Session;
use crate::{inbound, send};

/// State shared by the event handlers and the outbound workers.
pub struct Shared {
    /// The logged-in client.
    pub client: Client,
    /// The bot's own user id.
    pub own_user: OwnedUserId,
    /// `[matrix]` as the gateway started with it (`streaming` is declared to
    /// core in `Hello`, so it stays); the keys a reload changes are in `knobs`.
    pub config: MatrixConfig,
    /// The `[matrix]` settings a reload changes while the gateway runs.
    pub knobs: Knobs,
    /// The allowlists.
    pub access: Access,
    /// Reaction buttons of recent bot messages.
    pub buttons: Mutex<ButtonTracker>,
    /// Inbound events to the core link.
    pub inbound: InboundSender,
    /// `workspace/matrix_files`.
    pub files_dir: PathBuf,
    /// Events older than this are skipped, during the first sync of a new
    /// device only (afterwards the sync token says what is new, and a
    /// homeserver clock behind ours must not drop fresh messages).
    pub cutoff: Mutex<Option<MilliSecondsSinceUnixEpoch>>,
}

/// `max_edits`, `max_download_bytes` and `show_tool_markers`, as the last
/// valid `config.toml` has them.
#[derive(Debug)]
pub struct Knobs {
    max_edits: AtomicU32,
    max_download_bytes: AtomicU64,
    show_tool_markers: AtomicBool,
}

impl Knobs {
    /// The settings of `config`.
    pub fn of(config: &MatrixConfig) -> Self {
        Self {
            max_edits: AtomicU32::new(config.max_edits),
            max_download_bytes: AtomicU64::new(config.max_download_bytes),
            show_tool_markers: AtomicBool::new(config.show_tool_markers),
        }
    }

    /// Takes the settings of a reloaded `config`.
    pub fn set(&self, config: &MatrixConfig) {
        self.max_edits.store(config.max_edits, Ordering::Relaxed);
        self.max_download_bytes.store(config.max_download_bytes, Ordering::Relaxed);
        self.show_tool_markers.store(config.show_tool_markers, Ordering::Relaxed);
    }

    /// Edits of one message before rolling over (edit streaming).
    pub fn max_edits(&self) -> u32 {
        self.max_edits.load(Ordering::Relaxed)
    }

    /// Largest incoming file downloaded, in bytes.
    pub fn max_download_bytes(&self) -> u64 {
        self.max_download_bytes.load(Ordering::Relaxed)
    }

    /// Whether a tool's start is posted.
    pub fn show_tool_markers(&self) -> bool {
        self.show_tool_markers.load(Ordering::Relaxed)
    }
}

/// What Health reports.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// A sync completed recently.
    pub syncing: Arc<AtomicBool>,
    /// The link to core.
    pub link: Arc<LinkStatus>,
}

impl Status {
    /// One line for Health's detail.
    pub fn detail(&self) -> String {
        let sync = if self.syncing.load(Ordering::Relaxed) { "ok" } else { "down" };
        format!("homeserver sync {sync}, {}", self.link.detail())
    }
}

/// The Matrix directory under `$DUCTOR_HOME` (session, store).
pub fn matrix_dir(home: &DuctorHome) -> PathBuf {
    home.matrix_dir()
}

/// The capabilities announced to core.
fn capabilities(config: &MatrixConfig) -> pb::Capabilities {
    pb::Capabilities {
        max_message_len: u32::try_from(send::MAX_CHARS).unwrap_or(u32::MAX),
        can_edit: config.streaming == MatrixStreaming::Edit,
        buttons: pb::ButtonStyle::Reactions as i32,
        topics: true,
        file_upload: true,
    }
}

/// Runs the gateway until `shutdown`; core's `/restart` flips `restart`.
pub async fn run(
    home: &DuctorHome,
    config: MatrixConfig,
    updates: watch::Receiver<Arc<Config>>,
    shutdown: CancellationToken,
    status: Status,
    restart: RestartSwitch,
) -> Result<(), MatrixError> {
    let session = Session::open(&matrix_dir(home), &config).await?;
    let client = session.client.clone();
    let own_user = client
        .user_id()
        .ok_or_else(|| MatrixError::refused("the session has no user id"))?
        .to_owned();
    let access =
        Access::new(&config.allowed_users, &config.allowed_rooms, config.group_mention_only);
    access.resolve_aliases(&client).await;
    let link_shutdown = shutdown.child_token();
    let _stop_link = link_shutdown.clone().drop_guard();
    let hello = pb::Hello {
        agent: home.agent().to_owned(),
        ..ductor_gateway_link::hello("matrix", capabilities(&config), env!("CARGO_PKG_VERSION"))
    };
    let link = ductor_gateway_link::spawn(
        ductor_proto::transport::connect(home.socket(ServiceName::Core)),
        hello,
        LinkOptions::default(),
        status.link.clone(),
        link_shutdown,
    );
    // Core's `/restart`: stop like at shutdown, then exit 42.
    let asked = link.restart.clone();
    let (stop, ended) = (restart.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = asked.cancelled() => stop.ask("core asked the gateway to restart"),
            () = ended.cancelled() => {}
        }
    });
    let shared = Arc::new(Shared {
        client: client.clone(),
        own_user,
        access,
        buttons: Mutex::new(ButtonTracker::load(matrix_dir(home).join("buttons.json"))),
        inbound: link.inbound,
        files_dir: home.workspace().join("matrix_files"),
        cutoff: Mutex::new((!session.synced_before).then(MilliSecondsSinceUnixEpoch::now)),
        knobs: Knobs::of(&config),
        config,
    });
    let handlers = inbound::register(&shared);
    let follow = tokio::spawn(follow_config(updates, shared.clone()));
    let _stop_follow = AbortOnDrop(follow);

    let first = tokio::select! {
        () = shutdown.cancelled() => None,
        result = client.sync_once(SyncSettings::default()) => Some(result),
    };
    let Some(first) = first else {
        handlers.into_iter().for_each(|h| client.remove_event_handler(h));
        return Ok(());
    };
    if let Err(error) = first {
        handlers.into_iter().for_each(|h| client.remove_event_handler(h));
        return Err(fatal_or("first sync with the homeserver", error));
    }
    *shared.cutoff.locked() = None;
    session.mark_synced()?;
    status.syncing.store(true, Ordering::Relaxed);
    tracing::info!(user = %shared.own_user, device = ?client.device_id(), "synced with the homeserver");

    // Core's actions wait in the link until the rooms are known.
    let delivery = tokio::spawn(deliver(link.actions, Dispatcher::new(shared.clone(), link.acks)));
    let result = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        result = sync_forever(&client, &status) => result,
    };
    delivery.abort();
    for handler in handlers {
        client.remove_event_handler(handler);
    }
    result
}

/// Applies the live `[matrix]` keys (`ductor_daemon::reload`) from every
/// valid change of `config.toml`: the allowlists, `group_mention_only` and
/// the [`Knobs`].
async fn follow_config(mut updates: watch::Receiver<Arc<Config>>, shared: Arc<Shared>) {
    while updates.changed().await.is_ok() {
        let config = updates.borrow_and_update().matrix.clone();
        shared.knobs.set(&config);
        let (users, rooms) = (&config.allowed_users, &config.allowed_rooms);
        shared.access.set(&shared.client, users, rooms, config.group_mention_only).await;
    }
}

/// Aborts a task when dropped (every way out of [`run`]).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Hands core's actions to their rooms' workers, in order.
async fn deliver(mut actions: mpsc::Receiver<pb::OutboundAction>, mut dispatcher: Dispatcher) {
    while let Some(action) = actions.recv().await {
        dispatcher.dispatch(action);
    }
}

/// A revoked token is [`MatrixError::TokenRejected`]; anything else failed `action`.
fn fatal_or(action: &str, error: matrix_sdk::Error) -> MatrixError {
    if matches!(error.client_api_error_kind(), Some(ErrorKind::UnknownToken(_))) {
        MatrixError::TokenRejected
    } else {
        MatrixError::Failed { action: action.to_owned(), source: Box::new(error) }
    }
}

/// Syncs until a fatal error; transient errors are logged and retried.
///
/// A loop of `sync_once` rather than `Client::sync`: the latter sleeps a full
/// second whenever two syncs come less than a second apart, which would add up
/// to a second to every answer. Here only a sync that returns almost at once
/// (a server not honouring the long-poll timeout) is followed by a short pause.
async fn sync_forever(client: &Client, status: &Status) -> Result<(), MatrixError> {
    let settings = SyncSettings::default().timeout(Duration::from_secs(30));
    let mut backoff =
        ductor_proto::transport::Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let started = std::time::Instant::now();
        match client.sync_once(settings.clone()).await {
            Ok(_) => {
                status.syncing.store(true, Ordering::Relaxed);
                backoff.reset();
                if started.elapsed() < Duration::from_millis(20) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(error)
                if matches!(error.client_api_error_kind(), Some(ErrorKind::UnknownToken(_))) =>
            {
                return Err(fatal_or("sync with the homeserver", error));
            }
            Err(error) => {
                status.syncing.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(%error, ?delay, "sync with the homeserver failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
