//! systemd readiness. Under a `Type=notify` unit `NOTIFY_SOCKET` is set and we
//! send `READY=1` once the service answers Health; elsewhere these are no-ops.

/// Tells systemd the service is ready.
pub fn ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready])
    {
        tracing::warn!(%error, "failed to notify systemd of readiness");
    }
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
}
