//! The ductor Telegram gateway: Bot API updates in, rendered replies out.
//!
//! Everything Telegram-specific lives here and nowhere else: the access gate
//! ([`gate`]), Markdown to Telegram HTML ([`render`]) and the 4096-unit cut
//! ([`split`]), inline keyboards ([`buttons`]), edit pacing and 429 pauses
//! ([`api`]), the paced, retried Bot API calls ([`telegram`]), per-chat
//! delivery lanes with streaming previews ([`deliver`], [`progress`]),
//! and update intake and media download ([`inbound`]); the `Core.Attach`
//! link that survives core restarts is the shared `ductor-gateway-link`.
//! Core only ever sees transport-neutral inbound events and sends
//! transport-neutral actions.

pub mod api;
pub mod buttons;
pub mod deliver;
pub mod gate;
pub mod inbound;
pub mod pace;
pub mod progress;
pub mod render;
pub mod split;
pub mod telegram;

#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use ductor_daemon::ServiceName;
use ductor_daemon::config::TelegramConfig;
use ductor_daemon::daemon::{ServiceContext, serve};
use ductor_gateway_link::{LinkOptions, LinkStatus};
use ductor_proto::pb;
use ductor_proto::transport::Backoff;
use teloxide::Bot;
use teloxide::prelude::Requester;
use teloxide::types::{BotCommand, Me};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::api::{Pacer, Scrubber};
use crate::gate::Gate;
use crate::inbound::{Inbound, InboundConfig};
use crate::telegram::Telegram;

/// Long-poll wait of getUpdates (below teloxide's 17 s client timeout).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the Bot API handle from `[telegram]`.
pub fn telegram_from_config(config: &TelegramConfig) -> anyhow::Result<Telegram> {
    anyhow::ensure!(
        !config.token.is_empty(),
        "start without a bot token (set telegram.token, DUCTOR_TELEGRAM_TOKEN or telegram.token_file)"
    );
    let api_url = reqwest::Url::parse(&config.api_url).context("parse telegram.api_url")?;
    let bot = Bot::new(config.token.expose()).set_api_url(api_url);
    Ok(Telegram {
        bot,
        scrubber: Scrubber::new(config.token.expose()),
        pacer: Arc::new(Pacer::new(Duration::from_millis(config.edit_interval_ms), config.burst)),
    })
}

/// Asks getMe until it answers (or shutdown); `None` on shutdown.
pub async fn wait_for_me(telegram: &Telegram, shutdown: &CancellationToken) -> Option<Me> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        match telegram.bot.get_me().await {
            Ok(me) => return Some(me),
            Err(error) => {
                let delay = backoff.next_delay();
                let failure = telegram.scrubber.classify(error);
                tracing::warn!(%failure, retry_in_ms = delay.as_millis() as u64, "Telegram getMe failed");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// Keeps Telegram's command menu equal to the command list core sends in
/// its `Welcome` (core is the one place commands are defined): registered
/// on the first `Welcome`, and again when a (re)attached core offers a
/// different list. A failed registration is logged and tried at the next
/// `Welcome`.
pub async fn sync_commands(telegram: Telegram, mut welcome: watch::Receiver<Option<pb::Welcome>>) {
    let mut registered: Option<Vec<BotCommand>> = None;
    while welcome.changed().await.is_ok() {
        let commands: Vec<BotCommand> = match &*welcome.borrow_and_update() {
            Some(welcome) if !welcome.commands.is_empty() => welcome
                .commands
                .iter()
                .map(|command| BotCommand::new(&command.name, &command.description))
                .collect(),
            _ => continue,
        };
        if registered.as_ref() == Some(&commands) {
            continue;
        }
        match telegram.bot.set_my_commands(commands.clone()).await {
            Ok(_) => registered = Some(commands),
            Err(error) => {
                tracing::warn!(failure = %telegram.scrubber.classify(error), "setMyCommands failed");
            }
        }
    }
}

/// Telegram's capabilities, as announced to core.
pub fn capabilities() -> pb::Capabilities {
    pb::Capabilities {
        max_message_len: split::TELEGRAM_LIMIT as u32,
        can_edit: true,
        buttons: pb::ButtonStyle::Keyboard as i32,
        topics: true,
        file_upload: true,
    }
}

/// Everything the gateway runs besides its Health socket.
pub struct Gateway {
    pub telegram: Telegram,
    pub inbound: InboundConfig,
    pub core: ductor_proto::Channel,
    pub version: String,
    /// The agent this bot serves (`main` or an `[[agents]]` name).
    pub agent: String,
    pub link: Arc<LinkStatus>,
    pub telegram_reachable: Arc<AtomicBool>,
    pub delivery: deliver::DeliveryOptions,
}

impl Gateway {
    /// Runs polling, delivery and the core link until shutdown; `true` when
    /// it ended because core asked this gateway to restart.
    pub async fn run(self, shutdown: CancellationToken) -> bool {
        let Some(me) = wait_for_me(&self.telegram, &shutdown).await else { return false };
        self.telegram_reachable.store(true, Ordering::Relaxed);
        tracing::info!(bot = %me.username(), "connected to Telegram");
        let hello = pb::Hello {
            agent: self.agent.clone(),
            ..ductor_gateway_link::hello("telegram", capabilities(), &self.version)
        };
        let link = ductor_gateway_link::spawn(
            self.core.clone(),
            hello,
            LinkOptions::default(),
            self.link.clone(),
            shutdown.clone(),
        );
        let menu = tokio::spawn(sync_commands(self.telegram.clone(), link.welcome));
        let restart = link.restart.clone();
        tokio::spawn(stop_on(restart.clone(), shutdown.clone()));
        let delivery = tokio::spawn(deliver::dispatch(
            self.telegram.clone(),
            link.actions,
            link.acks,
            self.delivery,
        ));
        let inbound = Inbound::new(self.telegram.clone(), self.inbound.clone(), me, link.inbound);
        inbound.poll(self.telegram_reachable.clone(), shutdown.clone()).await;
        let _ = link.task.await;
        delivery.abort();
        menu.abort();
        restart.is_cancelled()
    }
}

/// Begins shutdown when `asked` is cancelled (core asked for a restart).
async fn stop_on(asked: CancellationToken, shutdown: CancellationToken) {
    tokio::select! {
        () = asked.cancelled() => shutdown.cancel(),
        () = shutdown.cancelled() => {}
    }
}

/// Applies the `[telegram]` keys that are live (`ductor_daemon::reload`)
/// from every valid change of `config.toml`: the access gate, the download
/// limit, `notify_final` and the pace (`edit_interval_ms`, `burst`). The
/// rest waits for a restart.
pub async fn follow_config(
    mut updates: watch::Receiver<Arc<ductor_daemon::Config>>,
    inbound: InboundConfig,
    delivery: deliver::DeliveryOptions,
    pacer: Arc<Pacer>,
) {
    while updates.changed().await.is_ok() {
        let config = updates.borrow_and_update().telegram.clone();
        inbound.gate.set(
            &config.allowed_user_ids,
            &config.allowed_group_ids,
            config.group_mention_only,
        );
        inbound.max_download_bytes.store(config.max_download_bytes, Ordering::Relaxed);
        delivery.notify_final.store(config.notify_final, Ordering::Relaxed);
        pacer.set_rate(Duration::from_millis(config.edit_interval_ms), config.burst);
    }
}

/// Runs the service until shutdown.
pub async fn run(context: ServiceContext) -> anyhow::Result<()> {
    let config = &context.config.telegram;
    let telegram = telegram_from_config(config)?;
    let link = Arc::new(LinkStatus::default());
    let telegram_reachable = Arc::new(AtomicBool::new(false));
    let health = {
        let link = link.clone();
        let reachable = telegram_reachable.clone();
        context.health.clone().with_detail(move || {
            format!(
                "{}, telegram {}",
                link.detail(),
                if reachable.load(Ordering::Relaxed) { "reachable" } else { "unreachable" },
            )
        })
    };
    let gateway = Gateway {
        telegram,
        inbound: InboundConfig {
            gate: Gate::new(
                &config.allowed_user_ids,
                &config.allowed_group_ids,
                config.group_mention_only,
            ),
            workspace: context.home.workspace(),
            max_download_bytes: Arc::new(config.max_download_bytes.into()),
            poll_timeout: POLL_TIMEOUT,
        },
        core: ductor_proto::transport::connect(context.home.socket(ServiceName::Core)),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        agent: context.home.agent().to_owned(),
        link,
        telegram_reachable,
        delivery: deliver::DeliveryOptions::new(config.notify_final),
    };
    tokio::spawn(follow_config(
        context.config_updates.clone(),
        gateway.inbound.clone(),
        gateway.delivery.clone(),
        gateway.telegram.pacer.clone(),
    ));
    let router = tonic::transport::Server::builder().add_service(health.into_server());
    let (served, restart) =
        tokio::join!(serve(&context, router), gateway.run(context.shutdown.clone()));
    if restart {
        context.restart.ask("core asked the gateway to restart");
    }
    served
}
