//! `ductorctl webhook …`: manage webhooks through core's `Automation` service
//! (same credentials as `ductorctl cron`). A hook is reached at
//! `http://[webhooks].host:port/hooks/<name>`.

use std::process::ExitCode;

use ductor_daemon::DuctorHome;
use ductor_proto::pb;

use super::cron::{Session, TargetArgs, connect, print_run, status_error, when};

/// `ductorctl webhook`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a webhook; prints its URL path and token (or HMAC secret).
    Add(AddArgs),
    /// List webhooks with auth mode, triggers and last error.
    List,
    /// Remove a webhook and its history.
    Remove(NameArg),
    /// Replace a webhook's bearer token (or HMAC secret) with a new one.
    RotateToken(NameArg),
    /// Enable a webhook (one an agent created waits for this, by the operator).
    Enable(NameArg),
    /// Disable a webhook: requests get 401 until it is enabled again.
    Disable(NameArg),
    /// Handle a payload as if the webhook had received it (auth skipped).
    Test(TestArgs),
    /// Show a webhook's run history.
    History(NameArg),
}

/// A webhook name.
#[derive(Debug, clap::Args)]
pub struct NameArg {
    /// The webhook name.
    pub name: String,
}

/// `webhook test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The webhook name.
    pub name: String,
    /// The JSON object to send.
    #[arg(long, default_value = "{}")]
    pub payload: String,
}

/// `webhook add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The webhook name (the URL is /hooks/<name>).
    pub name: String,
    /// wake: run in the chat's live session; cron_task: run isolated in a task folder.
    #[arg(long, value_parser = ["wake", "cron_task"])]
    pub mode: String,
    /// The prompt; {{field}} takes a top-level field of the JSON payload.
    #[arg(long)]
    pub prompt_template: String,
    #[arg(long, default_value = "")]
    pub title: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// cron_task: the task folder (default: the name).
    #[arg(long, default_value = "")]
    pub task_folder: String,
    /// How callers authenticate.
    #[arg(long, default_value = "bearer", value_parser = ["bearer", "hmac"])]
    pub auth: String,
    /// bearer: read the token from this file, or "-" for stdin (default: a
    /// generated one). Never on the command line: argv is visible to every
    /// local user and kept in shell history.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<String>,
    /// Refused: use --token-file.
    #[arg(long, hide = true)]
    pub token: Option<String>,
    /// hmac: the signing scheme: github (X-Hub-Signature-256 over the body),
    /// stripe (Stripe-Signature t=…,v1=…) or slack (X-Slack-Signature v0=…).
    #[arg(long, default_value = "github", value_parser = ["github", "stripe", "slack"])]
    pub hmac_preset: String,
    /// hmac: read the shared secret from this file, or "-" for stdin
    /// (default: a generated one).
    #[arg(long, value_name = "PATH")]
    pub hmac_secret_file: Option<String>,
    /// Refused: use --hmac-secret-file.
    #[arg(long, hide = true)]
    pub hmac_secret: Option<String>,
    /// hmac: the signature header (overrides the preset).
    #[arg(long, default_value = "")]
    pub hmac_header: String,
    #[arg(long, default_value = "", value_parser = ["", "sha1", "sha256", "sha512"])]
    pub hmac_algorithm: String,
    #[arg(long, default_value = "", value_parser = ["", "hex", "base64"])]
    pub hmac_encoding: String,
    /// hmac: prefix before the signature, e.g. "sha256=".
    #[arg(long)]
    pub hmac_sig_prefix: Option<String>,
    /// hmac: regex whose group 1 is the signature.
    #[arg(long, default_value = "")]
    pub hmac_sig_regex: String,
    /// hmac (stripe/slack): largest accepted timestamp age in seconds (0 = no check).
    #[arg(long)]
    pub hmac_max_age: Option<u32>,
    #[arg(long, default_value = "")]
    pub provider: String,
    #[arg(long, default_value = "")]
    pub model: String,
    #[arg(long, default_value = "")]
    pub effort: String,
    #[arg(long, requires = "quiet_end")]
    pub quiet_start: Option<u32>,
    #[arg(long, requires = "quiet_start")]
    pub quiet_end: Option<u32>,
    #[arg(long, default_value = "")]
    pub dependency: String,
    /// Create it disabled (requests answer 403).
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub target: TargetArgs,
}

fn print_hook(info: &pb::WebhookInfo, secrets: bool) {
    let Some(spec) = &info.spec else { return };
    println!(
        "{} {}  {}  {}  auth {}  triggers {}  last {}{}",
        if spec.enabled { "▶" } else { "⏸" },
        spec.id,
        info.path,
        spec.mode,
        spec.auth_mode,
        info.trigger_count,
        when(info.last_triggered_ms),
        if info.last_error.is_empty() {
            String::new()
        } else {
            format!("  last error: {}", info.last_error)
        }
    );
    if secrets {
        if spec.auth_mode == "bearer" {
            println!("    Authorization: Bearer {}", spec.token);
        } else {
            println!(
                "    {} ({} {}, payload {}) secret: {}",
                spec.hmac_header,
                spec.hmac_algorithm,
                spec.hmac_encoding,
                spec.hmac_signed_payload,
                spec.hmac_secret
            );
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    // ductorctl has no RNG crate; /dev/urandom is enough for a shared secret.
    if let Ok(mut file) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `ductorctl webhook …`.
pub async fn run(home: &DuctorHome, command: Command) -> anyhow::Result<ExitCode> {
    let Session { mut client, auth } = connect(home)?;
    let auth = Some(auth);
    match command {
        Command::Add(args) => {
            if args.token.is_some() || args.hmac_secret.is_some() {
                anyhow::bail!(
                    "secrets are not taken on the command line (every local user can read argv, \
                     and shells keep it): use --token-file PATH or --hmac-secret-file PATH \
                     (\"-\" reads stdin)"
                );
            }
            let args_disabled = args.disabled;
            let token = args.token_file.as_deref().map(read_secret).transpose()?;
            let secret = args.hmac_secret_file.as_deref().map(read_secret).transpose()?;
            let hmac = args.auth == "hmac";
            let payload = match args.hmac_preset.as_str() {
                "stripe" => "stripe",
                "slack" => "slack",
                _ => "body",
            };
            let spec = pb::WebhookSpec {
                id: args.name,
                title: args.title,
                description: args.description,
                mode: args.mode,
                prompt_template: args.prompt_template,
                enabled: !args.disabled,
                task_folder: args.task_folder,
                auth_mode: args.auth,
                token: token.unwrap_or_default(),
                hmac_secret: match secret {
                    Some(secret) => secret,
                    None if hmac => random_secret(),
                    None => String::new(),
                },
                hmac_header: args.hmac_header,
                hmac_algorithm: args.hmac_algorithm,
                hmac_encoding: args.hmac_encoding,
                hmac_sig_prefix: args.hmac_sig_prefix,
                hmac_sig_regex: args.hmac_sig_regex,
                hmac_signed_payload: if hmac { payload.into() } else { String::new() },
                hmac_max_age_seconds: args.hmac_max_age,
                hmac_payload_prefix_regex: String::new(),
                provider: args.provider,
                model: args.model,
                effort: args.effort,
                quiet_start: args.quiet_start,
                quiet_end: args.quiet_end,
                dependency: args.dependency,
                target: args.target.to_pb(),
            };
            let info = client
                .add_webhook(pb::AddWebhookRequest { auth, spec: Some(spec) })
                .await
                .map_err(status_error)?;
            if !info.get_ref().spec.as_ref().is_some_and(|s| s.enabled) && !args_disabled {
                println!(
                    "created disabled: the operator enables it with `ductorctl webhook enable {}` \
                     ([automation].agent_hooks_need_approval)",
                    info.get_ref().spec.as_ref().map_or("", |s| s.id.as_str())
                );
            }
            print!("added: ");
            print_hook(&info.into_inner(), true);
        }
        Command::List => {
            let hooks = client
                .list_webhooks(pb::ListWebhooksRequest { auth })
                .await
                .map_err(status_error)?
                .into_inner()
                .hooks;
            if hooks.is_empty() {
                println!("No webhooks.");
            }
            hooks.iter().for_each(|h| print_hook(h, false));
        }
        Command::Remove(NameArg { name }) => {
            let ack = client
                .remove_webhook(pb::WebhookRequest { auth, id: name })
                .await
                .map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::RotateToken(NameArg { name }) => {
            let info = client
                .rotate_webhook_token(pb::WebhookRequest { auth, id: name })
                .await
                .map_err(status_error)?;
            print!("rotated: ");
            print_hook(&info.into_inner(), true);
        }
        command @ (Command::Enable(_) | Command::Disable(_)) => {
            let enabled = matches!(command, Command::Enable(_));
            let (Command::Enable(NameArg { name }) | Command::Disable(NameArg { name })) = command
            else {
                unreachable!("matched above")
            };
            let request = pb::SetWebhookEnabledRequest { auth, id: name, enabled };
            let info = client.set_webhook_enabled(request).await.map_err(status_error)?;
            print!("{}: ", if enabled { "enabled" } else { "disabled" });
            print_hook(&info.into_inner(), false);
        }
        Command::Test(args) => {
            let request =
                pb::TestWebhookRequest { auth, id: args.name, payload_json: args.payload };
            let ack = client.test_webhook(request).await.map_err(status_error)?;
            println!("{}", ack.into_inner().message);
        }
        Command::History(NameArg { name }) => {
            let request =
                pb::AutomationHistoryRequest { auth, kind: "webhook".into(), id: name, limit: 20 };
            let runs =
                client.automation_history(request).await.map_err(status_error)?.into_inner().runs;
            if runs.is_empty() {
                println!("No runs yet.");
            }
            runs.iter().for_each(print_run);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A secret from `path` ("-": stdin), without its trailing newline.
fn read_secret(path: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let mut text = String::new();
    if path == "-" {
        std::io::stdin().read_to_string(&mut text).context("read the secret from stdin")?;
    } else {
        text = std::fs::read_to_string(path).with_context(|| format!("read the secret {path}"))?;
    }
    let secret = text.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(!secret.is_empty(), "the secret in {path} is empty");
    Ok(secret)
}
