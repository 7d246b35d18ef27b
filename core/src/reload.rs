//! Core's side of config hot reload (`ductor_daemon::reload`): every valid
//! change of `config.toml` gives the state machine its new `[agent]` and
//! `[memory]` defaults (the next event on sees them; `file_access` moves the
//! roots `<file:...>` tags may point into), the one-shot runs their provider,
//! model, timeout and default permission, and automation its `[automation]`
//! limits, `[heartbeat]`, `[cleanup]` and time zone. Which keys these are
//! is the daemon's table; everything else core reads waits for a restart.

use std::sync::Arc;

use ductor_daemon::Config;
use tokio::sync::watch;

use crate::automation::engine::Automation;
use crate::driver::{CoreHandle, OneshotDefaults};

/// The `[agent]` defaults of one-shot runs.
pub fn oneshot_defaults(config: &Config) -> OneshotDefaults {
    OneshotDefaults {
        provider: config.agent.provider.clone(),
        model: config.agent.model.clone(),
        timeout_ms: config.agent.turn_timeout_seconds * 1000,
        agents: crate::agents::Directory::from_config(config, &ductor_daemon::DuctorHome::at("/"))
            .machine_defaults(),
    }
}

/// What core runs with after `new` was loaded: the start configuration with
/// the keys core applies live taken from `new`, so `/diagnose` and the
/// machine never show a value that is not in effect.
pub fn live_view(start: &Config, new: &Config) -> Config {
    let mut view = start.clone();
    view.agent = new.agent.clone();
    view.memory.flush = new.memory.flush;
    view.memory.flush_dedup_seconds = new.memory.flush_dedup_seconds;
    view.memory.check_every_messages = new.memory.check_every_messages;
    view
}

/// Applies each published change until the watch or core ends.
pub async fn follow(
    start: Config,
    mut updates: watch::Receiver<Arc<Config>>,
    handle: CoreHandle,
    automation: Automation,
) {
    while updates.changed().await.is_ok() {
        let new = updates.borrow_and_update().clone();
        automation.reconfigure(&new).await;
        let config = live_view(&start, &new);
        let permission = crate::wire::permission_to_pb(config.agent.permission_mode);
        let machine = crate::machine_config(&config);
        if handle.reconfigure(machine, oneshot_defaults(&config), permission).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ductor_daemon::config::{FileAccess, SandboxMode};

    #[test]
    fn only_live_keys_come_from_the_new_file() {
        let start = Config::default();
        let mut new = Config::default();
        new.agent.model = "m2".into();
        new.agent.timezone = "Europe/Berlin".into();
        new.agent.file_access = FileAccess::All;
        new.runner.sandbox = SandboxMode::None;
        new.memory.check_every_messages = 9;
        new.memory.compaction_trigger_lines = 500;
        let view = live_view(&start, &new);
        assert_eq!(view.agent.model, "m2");
        assert_eq!(view.memory.check_every_messages, 9);
        assert_eq!(view.agent.timezone, "Europe/Berlin", "the zone is live");
        assert_eq!(view.agent.file_access, FileAccess::All, "file_access is live");
        assert_eq!(view.runner.sandbox, start.runner.sandbox);
        assert_eq!(view.memory.compaction_trigger_lines, 70);
    }
}
