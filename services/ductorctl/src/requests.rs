//! The launcher's side of control requests (`ductor_daemon::control`): the
//! set of supervised instances of one `ductorctl up`, and what a `restart`,
//! `stop` or `start` of one of them does.
//!
//! `stop` ends an instance's supervision (state "stopped", no restart, not a
//! crash) until a `start`; `start` re-reads and validates `config.toml` and
//! starts the instance only if the file defines it, so an agent added while
//! `up` runs can be brought up without restarting anything else. Only
//! gateways can be stopped or started alone: runner and core are the
//! stack's spine (`ductorctl down` stops them).

use std::sync::Arc;

use ductor_daemon::Config;
use ductor_daemon::control::{Action, Request};

use crate::instance::{self, Instance};
use crate::state::ServiceState;
use crate::supervisor::{Context, ServiceHandle};

/// The instances one launcher supervises, in start order.
#[derive(Default)]
pub struct Supervised {
    handles: Vec<ServiceHandle>,
}

impl Supervised {
    /// Starts supervising `instance` (spawns it at once).
    pub fn spawn(&mut self, context: &Arc<Context>, instance: Instance) {
        context.shared.ensure_row(&context.home, &instance);
        self.handles.push(ServiceHandle::spawn(context.clone(), instance));
    }

    /// Stops every instance in reverse start order.
    pub async fn stop_all(self) {
        for handle in self.handles.into_iter().rev() {
            let instance = handle.instance().clone();
            handle.stop().await;
            tracing::info!("{instance} stopped");
        }
    }

    /// Carries out one request.
    pub async fn apply(&mut self, context: &Arc<Context>, request: Request) {
        let Some(instance) = Instance::parse(&request.service) else {
            tracing::warn!(
                "ignoring a {} request for {:?}: no such service",
                request.action.as_str(),
                request.service
            );
            return;
        };
        match request.action {
            Action::Restart => match self.find(&instance) {
                Some(handle) => {
                    tracing::info!("restart of {instance} requested");
                    handle.restart();
                }
                None => self.start(context, instance),
            },
            Action::Stop => self.stop(instance).await,
            Action::Start => self.start(context, instance),
        }
    }

    fn find(&self, instance: &Instance) -> Option<&ServiceHandle> {
        self.handles.iter().find(|h| h.instance() == instance)
    }

    async fn stop(&mut self, instance: Instance) {
        if !instance.is_gateway() {
            tracing::warn!(
                "refusing to stop {instance} alone: only gateways can be (`ductorctl down` stops everything)"
            );
            return;
        }
        let Some(index) = self.handles.iter().position(|h| *h.instance() == instance) else {
            tracing::info!("stop of {instance} requested, but it is not running");
            return;
        };
        let handle = self.handles.remove(index);
        handle.stop().await;
        tracing::info!("{instance} stopped on request; it stays stopped until it is started");
    }

    fn start(&mut self, context: &Arc<Context>, instance: Instance) {
        if let Some(handle) = self.find(&instance) {
            let row = context.shared.snapshot().get(&instance.name()).map(|r| r.state);
            if row == Some(ServiceState::Failed) {
                tracing::info!(
                    "start of {instance} requested; it had been given up, starting afresh"
                );
                handle.restart();
            } else {
                tracing::info!("start of {instance} requested, but it is already supervised");
            }
            return;
        }
        if !instance.is_gateway() {
            tracing::warn!("refusing to start {instance} alone: only gateways can be");
            return;
        }
        let config = match Config::load_from_env(&context.home.config_file()) {
            Ok(config) => config,
            Err(error) => {
                tracing::error!("not starting {instance}: invalid configuration: {error}");
                return;
            }
        };
        if !instance::enabled(&config).contains(&instance) {
            tracing::warn!(
                "not starting {instance}: config.toml defines no enabled gateway by that name"
            );
            return;
        }
        tracing::info!("starting {instance} on request");
        self.spawn(context, instance);
    }
}
