//! The Health service every ductor process serves, and the client-side wait
//! for readiness.
//!
//! Readiness is "Health answers SERVING", never "the socket file exists".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::pb;
use crate::pb::health_client::HealthClient;
use crate::pb::health_server::{Health, HealthServer};
use crate::transport::Backoff;

/// A shared, cheap-to-clone source of the health answer.
pub trait HealthDetail: Send + Sync + 'static {
    /// Free text for `ductorctl status`, e.g. "3 runs active".
    fn detail(&self) -> String;
}

impl<F: Fn() -> String + Send + Sync + 'static> HealthDetail for F {
    fn detail(&self) -> String {
        self()
    }
}

/// Serves `ductor.v1.Health` for one process.
#[derive(Clone)]
pub struct HealthService {
    service: &'static str,
    version: &'static str,
    started: Instant,
    serving: Arc<AtomicBool>,
    detail: Arc<dyn HealthDetail>,
}

impl HealthService {
    /// `service` is one of "runner", "core", "telegram", "matrix".
    pub fn new(service: &'static str, version: &'static str) -> Self {
        Self {
            service,
            version,
            started: Instant::now(),
            serving: Arc::new(AtomicBool::new(true)),
            detail: Arc::new(String::new),
        }
    }

    /// Sets the provider of the free-text detail.
    pub fn with_detail(mut self, detail: impl HealthDetail) -> Self {
        self.detail = Arc::new(detail);
        self
    }

    /// Switches between SERVING and NOT_SERVING (e.g. while shutting down).
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// The tonic service to add to a server.
    pub fn into_server(self) -> HealthServer<Self> {
        HealthServer::new(self)
    }
}

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _request: tonic::Request<pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<pb::HealthCheckResponse>, tonic::Status> {
        let status = if self.serving.load(Ordering::Relaxed) {
            pb::ServingStatus::Serving
        } else {
            pb::ServingStatus::NotServing
        };
        Ok(tonic::Response::new(pb::HealthCheckResponse {
            service: self.service.to_owned(),
            status: status as i32,
            version: self.version.to_owned(),
            pid: std::process::id(),
            uptime_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            detail: self.detail.detail(),
        }))
    }
}

/// Asks once; `None` when the service does not answer within `timeout`.
pub async fn check(channel: crate::Channel, timeout: Duration) -> Option<pb::HealthCheckResponse> {
    let mut client = HealthClient::new(channel);
    match tokio::time::timeout(timeout, client.check(pb::HealthCheckRequest {})).await {
        Ok(Ok(response)) => Some(response.into_inner()),
        _ => None,
    }
}

/// Polls Health with capped backoff until it answers SERVING or `deadline` passes.
pub async fn wait_serving(
    channel: crate::Channel,
    deadline: Duration,
) -> Option<pb::HealthCheckResponse> {
    let start = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
    loop {
        let remaining = deadline.saturating_sub(start.elapsed());
        if let Some(answer) = check(channel.clone(), remaining.min(Duration::from_secs(2))).await
            && answer.status == pb::ServingStatus::Serving as i32
        {
            return Some(answer);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(backoff.next_delay().min(deadline.saturating_sub(start.elapsed())))
            .await;
    }
}
