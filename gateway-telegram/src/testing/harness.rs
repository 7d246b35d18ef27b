//! Starts a whole gateway (real teloxide client, real delivery lanes) against
//! a [`super::FakeBotApi`] and a [`super::FakeCore`], in-process.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use ductor_daemon::Secret;
use ductor_daemon::config::TelegramConfig;
use ductor_proto::pb;
use tokio_util::sync::CancellationToken;

use super::{FakeBotApi, FakeCore};
use crate::Gateway;
use crate::gate::Gate;
use crate::inbound::InboundConfig;

/// The token the harness uses.
pub const TOKEN: &str = "123456:TEST-SECRET-TOKEN-abcdef";

/// The command list the harness's fake core offers.
pub const COMMANDS: &[(&str, &str)] =
    &[("new", "Fresh session"), ("stop", "Stop the turn"), ("model", "Pick a model")];

/// Gateway settings a test may vary.
#[derive(Debug, Clone)]
pub struct Options {
    pub allowed_user_ids: Vec<i64>,
    pub allowed_group_ids: Vec<i64>,
    pub group_mention_only: bool,
    pub edit_interval: Duration,
    pub max_download_bytes: u64,
    pub notify_final: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allowed_user_ids: vec![1],
            allowed_group_ids: vec![-100],
            group_mention_only: false,
            edit_interval: Duration::from_millis(300),
            max_download_bytes: 1 << 20,
            notify_final: true,
        }
    }
}

/// A running gateway with its fakes; stops on drop.
pub struct Harness {
    pub api: FakeBotApi,
    pub core: FakeCore,
    pub workspace: tempfile::TempDir,
    shutdown: CancellationToken,
    next_action: std::sync::atomic::AtomicU64,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Harness {
    /// Starts the fakes and the gateway; returns once the gateway is attached.
    pub async fn start(options: Options) -> Self {
        let api = FakeBotApi::start(TOKEN).await;
        let core = FakeCore::default();
        core.set_commands(COMMANDS);
        let workspace = tempfile::tempdir().expect("create a temporary workspace");
        let config = TelegramConfig {
            enabled: true,
            token: Secret::new(TOKEN),
            api_url: api.url.clone(),
            allowed_user_ids: options.allowed_user_ids.clone(),
            allowed_group_ids: options.allowed_group_ids.clone(),
            group_mention_only: options.group_mention_only,
            edit_interval_ms: u64::try_from(options.edit_interval.as_millis()).unwrap_or(1000),
            max_download_bytes: options.max_download_bytes,
            ..TelegramConfig::default()
        };
        let gateway = Gateway {
            telegram: crate::telegram_from_config(&config).expect("the harness config is valid"),
            inbound: InboundConfig {
                gate: Gate::new(
                    &config.allowed_user_ids,
                    &config.allowed_group_ids,
                    config.group_mention_only,
                ),
                workspace: PathBuf::from(workspace.path()),
                max_download_bytes: Arc::new(config.max_download_bytes.into()),
                poll_timeout: Duration::from_secs(5),
            },
            core: core.channel().await,
            version: "test".to_owned(),
            agent: "main".to_owned(),
            link: Arc::default(),
            delivery: crate::deliver::DeliveryOptions::new(options.notify_final),
            telegram_reachable: Arc::new(AtomicBool::new(false)),
        };
        let shutdown = CancellationToken::new();
        tokio::spawn(gateway.run(shutdown.clone()));
        assert!(core.wait_attached(Duration::from_secs(20)).await, "the gateway attaches to core");
        Self { api, core, workspace, shutdown, next_action: std::sync::atomic::AtomicU64::new(1) }
    }

    /// Sends an action of `kind` for `chat` (topic may be empty); returns its id.
    pub fn act(&self, chat: i64, topic: &str, turn: &str, kind: pb::outbound_action::Kind) -> u64 {
        let action_id = self.next_action.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let action = pb::OutboundAction {
            action_id,
            chat: Some(pb::ChatRef { chat_id: chat.to_string(), topic_id: topic.to_owned() }),
            turn_id: turn.to_owned(),
            durable: matches!(kind, pb::outbound_action::Kind::FinalReply(_)),
            kind: Some(kind),
            ..Default::default()
        };
        assert!(self.core.send(action), "the gateway is attached");
        action_id
    }
}

/// Shorthand for a final reply action.
pub fn final_reply(text: &str) -> pb::outbound_action::Kind {
    pb::outbound_action::Kind::FinalReply(pb::FinalReply {
        text: text.to_owned(),
        notify: true,
        ..Default::default()
    })
}

/// Shorthand for a text delta action.
pub fn delta(text: &str) -> pb::outbound_action::Kind {
    pb::outbound_action::Kind::TextDelta(pb::TextDeltaAction { text: text.to_owned() })
}
