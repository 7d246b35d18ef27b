//! `ductorctl chat`: an interactive terminal chat with ductor, as transport
//! `cli`. Every command works (`/model`, `/stop`, `/status`, ...); menus and
//! agent buttons appear as numbered options, and typing the number presses
//! the button. Output streams as it arrives; a line typed while a turn runs
//! is queued by core like any chat message.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ductor_daemon::DuctorHome;
use ductor_proto::pb;

use super::ask::{Client, Incoming, new_event_id, print_extras};

/// `ductorctl chat`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The chat id (sessions are per chat and topic).
    #[arg(long, default_value = "default")]
    pub chat: String,

    /// The topic id within the chat.
    #[arg(long, default_value = "")]
    pub topic: String,

    /// Talk to this sub-agent (an `[[agents]]` name) instead of the main
    /// agent; core names the chat `cli@NAME:<chat>`.
    #[arg(long, value_name = "NAME", value_parser = crate::cmd::ask::parse_agent, default_value = "")]
    pub agent: String,
}

/// `ductorctl chat`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let patience = Duration::from_secs(30);
    let mut client = Client::connect(home, &args.agent, &args.chat, &args.topic, patience).await?;
    println!(
        "ductor chat `{}`{}: type a message, /help for commands, Ctrl-D to leave.",
        args.chat,
        if args.topic.is_empty() { String::new() } else { format!(" (topic {})", args.topic) }
    );
    let mut lines = stdin_lines();
    let mut view = View::default();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { return Ok(ExitCode::SUCCESS) };
                let text = line.trim();
                if text.is_empty() {
                    continue;
                }
                if matches!(text, "/quit" | "/exit") {
                    return Ok(ExitCode::SUCCESS);
                }
                client.send_text(&new_event_id(), text).await?;
            }
            incoming = client.next() => match incoming {
                Ok(Some(Incoming::Action(action))) => view.show(&action),
                Ok(Some(Incoming::Accepted(_))) => {}
                Ok(None) | Err(_) => {
                    eprintln!("(core went away; reconnecting…)");
                    client.reconnect(patience).await?;
                }
            }
        }
    }
}

/// Lines typed on stdin, read on a plain thread (a blocking read never holds
/// up the runtime); the channel closes at end of input.
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What the REPL has printed of the current turn.
#[derive(Debug, Default)]
struct View {
    streamed: String,
    /// The last delta did not end a line.
    mid_line: bool,
}

impl View {
    fn show(&mut self, action: &pb::OutboundAction) {
        use pb::outbound_action::Kind;
        let mut out = std::io::stdout().lock();
        let Some(kind) = action.kind.as_ref() else { return };
        let is_delta = matches!(kind, Kind::TextDelta(_) | Kind::FinalReply(_));
        if !is_delta && self.mid_line {
            // Something else arrived mid-stream: start it on its own line.
            let _ = writeln!(out);
            self.mid_line = false;
        }
        match kind {
            Kind::TurnStarted(started) => {
                self.streamed.clear();
                let model = if started.model.is_empty() { "default" } else { &started.model };
                let _ = writeln!(out, "· {} / {model}", started.provider);
            }
            Kind::TextDelta(delta) => {
                self.streamed.push_str(&delta.text);
                self.mid_line = !delta.text.ends_with('\n');
                let _ = write!(out, "{}", delta.text);
            }
            Kind::Tool(tool) if !tool.finished => {
                let _ = writeln!(out, "  [{}] {}", tool.name, tool.summary);
            }
            Kind::Tool(_) => {}
            Kind::Status(status) => {
                let _ = writeln!(out, "  ({}{})", status.status, detail(&status.detail));
            }
            Kind::FinalReply(reply) => {
                match reply.text.strip_prefix(self.streamed.as_str()) {
                    Some(rest) if !self.streamed.is_empty() => {
                        let _ = writeln!(out, "{rest}");
                    }
                    _ => {
                        if !self.streamed.is_empty() {
                            let _ = writeln!(out);
                        }
                        let _ = writeln!(out, "{}", reply.text);
                    }
                }
                print_extras(&mut out, reply);
                self.streamed.clear();
                self.mid_line = false;
            }
            Kind::Error(error) => {
                let _ = writeln!(out, "✗ {}", error.message);
                self.streamed.clear();
            }
            Kind::Notice(notice) => {
                let _ = writeln!(out, "{}", notice.text);
            }
            Kind::Selector(menu) => {
                let _ = writeln!(out, "{}", menu.text);
            }
            Kind::QueueNotice(queued) => {
                let _ = writeln!(out, "{}", queued.text);
            }
            Kind::QueueClear(clear) if clear.reason != "started" => {
                let _ = writeln!(out, "(queued message {})", clear.reason);
            }
            Kind::QueueClear(_) => {}
            // A terminal is no chat a bot can leave.
            Kind::LeaveChat(_) => {}
        }
        let _ = out.flush();
    }
}

fn detail(detail: &str) -> String {
    if detail.is_empty() { String::new() } else { format!(": {detail}") }
}
