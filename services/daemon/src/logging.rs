//! The one tracing setup. `DUCTOR_LOG` takes an `EnvFilter` directive (default
//! [`DEFAULT_FILTER`]); `DUCTOR_LOG_FORMAT` is `plain` (default) or `json`. Output goes to
//! stderr: the launcher redirects it to `$DUCTOR_HOME/logs/<service>.log`,
//! systemd to the journal, docker to its log driver.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// Reads `DUCTOR_LOG_FORMAT`; an unknown value is an error naming it.
pub fn format_from_env() -> Result<LogFormat, String> {
    match std::env::var("DUCTOR_LOG_FORMAT").as_deref() {
        Err(_) | Ok("") | Ok("plain") => Ok(LogFormat::Plain),
        Ok("json") => Ok(LogFormat::Json),
        Ok(other) => Err(format!("DUCTOR_LOG_FORMAT: expected `plain` or `json`, got `{other}`")),
    }
}

/// The filter used when `DUCTOR_LOG` is unset or empty: `info`, except that
/// matrix-sdk's key-backup module is limited to errors, because without a
/// server-side key backup (the bot never sets one up) it warns "no backup key
/// was found" for every room key it receives.
pub const DEFAULT_FILTER: &str = "info,matrix_sdk_crypto::backups=error";

/// Reads `DUCTOR_LOG`; an invalid directive is an error naming it.
pub fn filter_from_env() -> Result<EnvFilter, String> {
    match std::env::var("DUCTOR_LOG") {
        Ok(directives) if !directives.is_empty() => {
            EnvFilter::try_new(&directives).map_err(|e| format!("DUCTOR_LOG: {e}"))
        }
        _ => Ok(EnvFilter::new(DEFAULT_FILTER)),
    }
}

/// Installs the global subscriber. Call once, first thing in `main`.
/// `service` is the instance name; a sub-agent's gateway (`telegram@name`)
/// starts every plain line with `[telegram@name]`, so its lines name the
/// agent wherever they end up (JSON lines: the launcher's per-instance log
/// file or the systemd unit names it).
pub fn init(service: &str, format: LogFormat, filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_span_events(FmtSpan::NONE)
        .with_target(true);
    let result = match format {
        LogFormat::Plain => {
            let tag = service.contains('@').then(|| format!("[{service}] "));
            let inner = tracing_subscriber::fmt::format().with_ansi(false).with_target(true);
            builder.with_ansi(false).event_format(Tagged { tag, inner }).try_init()
        }
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if result.is_ok() {
        tracing::debug!(service, "tracing initialised");
    }
}

/// The default plain format, with an optional tag before each line.
struct Tagged<F> {
    tag: Option<String>,
    inner: F,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Tagged<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if let Some(tag) = &self.tag {
            writer.write_str(tag)?;
        }
        self.inner.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_parses_and_quiets_key_backup_warnings() {
        let filter = EnvFilter::try_new(DEFAULT_FILTER).expect("the default filter parses");
        let shown = filter.to_string();
        assert!(shown.contains("matrix_sdk_crypto::backups=error"), "{shown}");
        assert!(shown.split(',').any(|d| d == "info"), "{shown}");
    }
}
