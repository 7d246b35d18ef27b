//! An in-process gateway (`ductor_gateway_matrix::run`) in a temporary
//! `$DUCTOR_HOME`, the `[matrix]` settings it starts with, and the test log
//! setup: shared by the Synapse tests (`tests/synapse.rs`) and the
//! mock-homeserver tests (`tests/mock.rs`).

use std::time::Duration;

use ductor_daemon::config::MatrixStreaming;
use ductor_daemon::daemon::ServiceContext;
use ductor_daemon::{Config, DuctorHome, Secret, ServiceName};
use ductor_proto::health::HealthService;
use tokio_util::sync::CancellationToken;

/// Logs to the test output, filtered by `DUCTOR_TEST_LOG` (default `warn`;
/// `DUCTOR_TEST_LOG=ductor_gateway_matrix=debug` shows the gateway's logs).
pub fn init_logging() {
    let filter = std::env::var("DUCTOR_TEST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// A gateway running in this process.
pub struct Gateway {
    pub home: DuctorHome,
    /// What a reload of `config.toml` would publish (`ServiceContext::config_updates`).
    #[allow(dead_code, reason = "tests/mock.rs reloads; tests/synapse.rs does not")]
    pub config: tokio::sync::watch::Sender<std::sync::Arc<Config>>,
    stop: CancellationToken,
    #[allow(dead_code, reason = "read by tests/mock.rs only")]
    restart: ductor_daemon::daemon::RestartSwitch,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The `[matrix]` settings for a test gateway on `homeserver` (a base URL).
pub fn matrix_config(homeserver: &str, bot: &str, password: &str, allowed: &[&str]) -> Config {
    let mut config = Config::default();
    config.matrix.enabled = true;
    config.matrix.homeserver = homeserver.to_owned();
    config.matrix.user_id = bot.to_owned();
    config.matrix.password = Secret::new(password);
    config.matrix.allowed_users = allowed.iter().map(|u| (*u).to_owned()).collect();
    config.matrix.streaming = MatrixStreaming::Segment;
    config
}

impl Gateway {
    /// Starts `ductor_gateway_matrix::run` on `home` with `config`.
    pub fn start(home: &DuctorHome, config: Config) -> Self {
        let stop = CancellationToken::new();
        let (updates, config_updates) =
            tokio::sync::watch::channel(std::sync::Arc::new(config.clone()));
        let restart = ductor_daemon::daemon::RestartSwitch::new(stop.clone());
        let context = ServiceContext {
            service: ServiceName::Matrix,
            home: home.clone(),
            config_updates,
            config,
            shutdown: stop.clone(),
            health: HealthService::new("matrix", "test"),
            restart: restart.clone(),
        };
        let task = tokio::spawn(ductor_gateway_matrix::run(context));
        Self { home: home.clone(), config: updates, stop, restart, task }
    }

    /// Waits until the gateway ends on its own; whether it asked to be
    /// restarted (exit status 42 in the real binary).
    #[allow(dead_code, reason = "used by tests/mock.rs only")]
    pub async fn ended_for_restart(self) -> bool {
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the gateway ends within 20 s")
            .expect("the gateway task does not panic");
        result.expect("the gateway ends without error");
        self.restart.asked()
    }

    /// Stops it and waits until it has ended.
    pub async fn stop(self) {
        self.stop.cancel();
        let result = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the gateway stops within 20 s")
            .expect("the gateway task does not panic");
        result.expect("the gateway ends without error");
    }

    /// The device id the gateway saved.
    pub fn device_id(&self) -> String {
        let path = self.home.root().join("matrix/session.json");
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("session.json exists"))
                .expect("session json");
        json["device_id"].as_str().expect("device_id").to_owned()
    }
}
