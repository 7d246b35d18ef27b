//! Provider adapters: argv and environment for a turn, the stdout dialect,
//! and how a failed run is classified — one module per CLI.
//!
//! - [`claude`]: `claude -p … --output-format stream-json --verbose --include-partial-messages`.
//! - [`codex`]: `codex exec --json --skip-git-repo-check` (see its module doc for why
//!   `exec` and not `app-server`); [`codex_app`]: `codex app-server` for runs
//!   that ask for approvals or take steering.
//! - [`gemini`]: `gemini -p … -o stream-json`, `GEMINI_CLI_NO_RELAUNCH=true`;
//!   [`gemini_acp`]: `gemini --acp` for runs that ask for approvals.
//!
//! Every adapter is pure: it turns a validated [`RunSpec`] into an
//! [`Invocation`] and JSON lines into [`Event`]s. Spawning is elsewhere.

pub mod claude;
pub mod codex;
pub mod codex_app;
pub mod gemini;
pub mod gemini_acp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::event::{Event, RunError};
use crate::spec::{PermissionMode, Provider, RunSpec};

/// What to run for one turn (the binary is resolved by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Arguments after the binary. Never the prompt or the system prompt:
    /// argv is world-readable in `/proc/<pid>/cmdline` (to other users and to
    /// other chats' runs), and one argument is limited to 128 KiB.
    pub args: Vec<String>,
    /// Environment the adapter adds on top of the allowlisted one.
    pub env: BTreeMap<String, String>,
    /// What the CLI reads on stdin: the prompt.
    pub stdin: String,
    /// Files the arguments name, written 0600 into the run's private
    /// directory before the spawn: (path, contents).
    pub files: Vec<(PathBuf, String)>,
    /// stdin is a live pipe of protocol lines ([`input_line`]) instead of a
    /// prompt file: the first carries `stdin`, later ones steer the run or
    /// answer its approval requests. Closing it ends the CLI.
    pub stream: bool,
    /// Settings a protocol client sends instead of flags (codex app-server's
    /// thread settings).
    pub protocol: Option<Value>,
}

impl Invocation {
    /// Arguments and adapter environment of `provider`, the prompt on stdin.
    fn new(provider: Provider, args: Vec<String>, stdin: String) -> Self {
        let env = adapter_env(provider);
        Self { args, env, stdin, files: Vec::new(), stream: false, protocol: None }
    }
}

/// Whether `provider`'s CLI asks a caller for tool approvals (claude's
/// `--permission-prompt-tool stdio`, codex app-server's approval requests,
/// gemini ACP's `session/request_permission`).
pub fn can_approve(provider: Provider) -> bool {
    matches!(provider, Provider::Claude | Provider::Codex | Provider::Gemini)
}

/// Whether `provider`'s CLI takes messages while a turn runs (claude's
/// stream-json input, codex's `turn/steer`). ACP has no way to add a
/// message to a running prompt, so gemini queues.
pub fn can_steer(provider: Provider) -> bool {
    matches!(provider, Provider::Claude | Provider::Codex)
}

/// `value` as one input line of a JSON-lines protocol.
pub(crate) fn json_line(value: &Value) -> String {
    format!("{value}\n")
}

/// What the runner writes into a streaming CLI's input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A user message (the first prompt, or a steering message).
    User(String),
    /// The answer to an approval request; `input` is the tool input the CLI asked about.
    Approval { request_id: String, allow: bool, message: String, input: Value },
    /// Stop the current turn, keep the process.
    Interrupt { request_id: String },
}

/// A line the parser does not know; logged once per `kind` by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown(pub String);

/// How the process ended, for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code when it exited normally.
    pub code: Option<i32>,
    /// Signal when it was killed.
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("an unknown status"),
        }
    }
}

/// A writable location a provider keeps its state in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatePath {
    /// A directory (created if missing).
    Dir(PathBuf),
    /// A single file (created with `initial` contents if missing).
    File {
        /// The file.
        path: PathBuf,
        /// Contents written when it does not exist.
        initial: &'static str,
    },
}

/// The stdout parser of one run (and, for a streaming CLI, the writer of
/// its input).
#[derive(Debug)]
pub enum Parser {
    /// Claude stream-json.
    Claude(claude::Parser),
    /// Codex `exec --json`.
    Codex(codex::Parser),
    /// Codex `app-server`.
    CodexApp(codex_app::Parser),
    /// Gemini `--acp`.
    GeminiAcp(gemini_acp::Parser),
    /// Gemini stream-json.
    Gemini(gemini::Parser),
}

impl Parser {
    /// A fresh parser for `provider`.
    pub fn new(provider: Provider) -> Self {
        match provider {
            Provider::Claude => Self::Claude(claude::Parser::default()),
            Provider::Codex => Self::Codex(codex::Parser::default()),
            Provider::Gemini => Self::Gemini(gemini::Parser::default()),
        }
    }

    /// The parser of a run of `provider` whose invocation is `invocation`.
    pub fn for_run(spec: &RunSpec, invocation: &Invocation) -> Self {
        match (spec.provider, &invocation.protocol) {
            (Provider::Codex, Some(params)) => Self::CodexApp(codex_app::Parser::new(
                params.clone(),
                spec.resume.clone(),
                invocation.stdin.clone(),
            )),
            (Provider::Gemini, Some(params)) => Self::GeminiAcp(gemini_acp::Parser::new(
                params.clone(),
                spec.resume.clone(),
                invocation.stdin.clone(),
            )),
            (provider, _) => Self::new(provider),
        }
    }

    /// Turns one JSON line into events.
    pub fn parse(&mut self, line: &Value, out: &mut Vec<Event>) -> Result<(), Unknown> {
        match self {
            Self::Claude(parser) => parser.parse(line, out),
            Self::Codex(parser) => parser.parse(line, out),
            Self::CodexApp(parser) => parser.parse(line, out),
            Self::GeminiAcp(parser) => parser.parse(line, out),
            Self::Gemini(parser) => parser.parse(line, out),
        }
    }

    /// The last error message the CLI printed on stdout without ending the turn.
    pub fn pending_error(&self) -> Option<&str> {
        match self {
            Self::Codex(parser) => parser.pending_error(),
            Self::CodexApp(parser) => parser.pending_error(),
            Self::Claude(_) | Self::Gemini(_) | Self::GeminiAcp(_) => None,
        }
    }

    /// The first lines of a streaming CLI's input (the prompt, or a handshake).
    pub fn opening(&self, prompt: &str) -> Vec<String> {
        match self {
            Self::Claude(_) => vec![claude::input_line(&Input::User(prompt.to_owned()))],
            Self::CodexApp(parser) => parser.opening(),
            Self::GeminiAcp(parser) => parser.opening(),
            Self::Codex(_) | Self::Gemini(_) => Vec::new(),
        }
    }

    /// `input` as a line for the CLI; `None` when it cannot take it now.
    pub fn encode(&mut self, input: &Input) -> Option<String> {
        match self {
            Self::Claude(_) => Some(claude::input_line(input)),
            Self::CodexApp(parser) => parser.encode(input),
            Self::GeminiAcp(parser) => parser.encode(input),
            Self::Codex(_) | Self::Gemini(_) => None,
        }
    }

    /// Lines the protocol needs written after the last parsed line.
    pub fn take_outgoing(&mut self) -> Vec<String> {
        match self {
            Self::CodexApp(parser) => parser.take_outgoing(),
            Self::GeminiAcp(parser) => parser.take_outgoing(),
            _ => Vec::new(),
        }
    }

    /// A steered message gets a result of its own (claude), rather than
    /// being folded into the running turn's one result (codex).
    pub fn steer_has_own_result(&self) -> bool {
        matches!(self, Self::Claude(_))
    }

    /// The CLI answers a steer, and the parser emits `Steered` only when it
    /// is taken (codex's `turn/steer` can be refused as its turn ends; the
    /// caller then runs the message as a turn of its own).
    pub fn confirms_steers(&self) -> bool {
        matches!(self, Self::CodexApp(_))
    }

    /// The protocol says the run is over: its input may close.
    pub fn done(&self) -> bool {
        match self {
            Self::CodexApp(parser) => parser.done(),
            Self::GeminiAcp(parser) => parser.done(),
            _ => false,
        }
    }
}

/// Counts model turns for CLIs that do not report them: tool batches + 1,
/// where a batch is a run of tool calls without assistant text between them
/// (each batch ends one model request; the final answer is one more).
#[derive(Debug, Default)]
pub struct Turns {
    batches: u32,
    in_batch: bool,
}

impl Turns {
    /// A tool call started.
    pub fn tool(&mut self) {
        if !self.in_batch {
            self.in_batch = true;
            self.batches += 1;
        }
    }

    /// Assistant text arrived (ends a batch).
    pub fn text(&mut self) {
        self.in_batch = false;
    }

    /// Model turns so far.
    pub fn count(&self) -> u32 {
        self.batches + 1
    }
}

/// argv, adapter environment and input for `spec` with the effective
/// permission mode; `confined` tells whether the runner's own Landlock fence
/// applies; `inputs` is the run's private directory for input files.
pub fn invocation(
    spec: &RunSpec,
    mode: PermissionMode,
    config_args: &[String],
    confined: bool,
    inputs: &Path,
) -> Invocation {
    match spec.provider {
        Provider::Claude => claude::invocation(spec, mode, config_args, inputs),
        Provider::Codex if mode == PermissionMode::Ask || spec.interactive => {
            let mut invocation = codex_app::invocation(spec, config_args);
            invocation.protocol = Some(codex_app::thread_params(spec, mode, confined));
            invocation
        }
        Provider::Codex => codex::invocation(spec, mode, config_args, confined),
        // Gemini 0.61's ACP cannot load a session by id (`session/load`
        // answers "Invalid session identifier"), so a resumed turn keeps `-p
        // --resume` and gemini's own headless rules.
        Provider::Gemini if mode == PermissionMode::Ask && spec.resume.is_none() => {
            let mut invocation = gemini_acp::invocation(spec, config_args);
            invocation.protocol = Some(gemini_acp::session_params(spec));
            invocation
        }
        Provider::Gemini => gemini::invocation(spec, mode, config_args),
    }
}

/// Environment every process of this CLI gets, turns and `--version` alike
/// (gemini relaunches itself as a child node process without
/// `GEMINI_CLI_NO_RELAUNCH`, and that child would escape signals to the leader).
pub fn adapter_env(provider: Provider) -> BTreeMap<String, String> {
    let pairs: &[(&str, &str)] = match provider {
        Provider::Claude => &[("DISABLE_AUTOUPDATER", "1")],
        Provider::Codex => &[],
        Provider::Gemini => {
            &[("GEMINI_CLI_NO_RELAUNCH", "true"), ("GEMINI_CLI_TRUST_WORKSPACE", "true")]
        }
    };
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Classifies a run that ended without a result line.
pub fn classify_failure(
    provider: Provider,
    resumed: bool,
    exit: ExitInfo,
    stderr_tail: &str,
    pending_error: Option<&str>,
) -> RunError {
    match provider {
        Provider::Claude => claude::classify_failure(exit, stderr_tail),
        Provider::Codex => codex::classify_failure(exit, stderr_tail, pending_error),
        Provider::Gemini => gemini::classify_failure(resumed, exit, stderr_tail),
    }
}

/// Environment name prefixes a provider's CLI is allowed to inherit.
pub fn env_prefixes(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Claude => &["ANTHROPIC_", "CLAUDE_", "AWS_", "VERTEX_", "DISABLE_"],
        Provider::Codex => &["OPENAI_", "CODEX_", "AZURE_OPENAI_"],
        Provider::Gemini => &["GEMINI_", "GOOGLE_", "CLOUDSDK_"],
    }
}

/// Where a provider keeps its state, given the CLI's environment.
pub fn state_paths(provider: Provider, env: &BTreeMap<String, String>) -> Vec<StatePath> {
    let home = env.get("HOME").map(PathBuf::from);
    let var = |name: &str| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    match provider {
        Provider::Claude => {
            let mut paths = Vec::new();
            match var("CLAUDE_CONFIG_DIR") {
                Some(dir) => paths.push(StatePath::Dir(dir)),
                None => {
                    if let Some(home) = home {
                        paths.push(StatePath::Dir(home.join(".claude")));
                        paths.push(StatePath::File {
                            path: home.join(".claude.json"),
                            initial: "{}",
                        });
                    }
                }
            }
            paths
        }
        Provider::Codex => var("CODEX_HOME")
            .or_else(|| home.map(|h| h.join(".codex")))
            .map(StatePath::Dir)
            .into_iter()
            .collect(),
        Provider::Gemini => var("GEMINI_CLI_HOME")
            .or(home)
            .map(|h| StatePath::Dir(h.join(".gemini")))
            .into_iter()
            .collect(),
    }
}

/// "authenticated", "api_key" or "unauthenticated", from files and variables.
pub fn auth_hint(provider: Provider, env: &BTreeMap<String, String>) -> &'static str {
    let has = |names: &[&str]| names.iter().any(|n| env.get(*n).is_some_and(|v| !v.is_empty()));
    let exists = |path: Option<PathBuf>| path.is_some_and(|p| p.is_file());
    let home = env.get("HOME").map(PathBuf::from);
    let (logged_in, key) = match provider {
        Provider::Claude => {
            let dir = env
                .get("CLAUDE_CONFIG_DIR")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".claude")));
            (
                exists(dir.map(|d| d.join(".credentials.json"))),
                has(&["ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"]),
            )
        }
        Provider::Codex => {
            let dir =
                env.get("CODEX_HOME").map(PathBuf::from).or_else(|| home.map(|h| h.join(".codex")));
            (exists(dir.map(|d| d.join("auth.json"))), has(&["OPENAI_API_KEY", "CODEX_API_KEY"]))
        }
        Provider::Gemini => {
            let dir = env.get("GEMINI_CLI_HOME").map(PathBuf::from).or(home);
            (
                exists(dir.map(|d| d.join(".gemini").join("oauth_creds.json"))),
                has(&["GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_APPLICATION_CREDENTIALS"]),
            )
        }
    };
    if logged_in {
        "authenticated"
    } else if key {
        "api_key"
    } else if provider == Provider::Codex && codex_custom_provider(env) {
        // A `model_provider` in config.toml brings its own key variable: can't tell.
        "unknown"
    } else {
        "unauthenticated"
    }
}

fn codex_custom_provider(env: &BTreeMap<String, String>) -> bool {
    let dir = env
        .get("CODEX_HOME")
        .map(PathBuf::from)
        .or_else(|| env.get("HOME").map(|h| PathBuf::from(h).join(".codex")));
    dir.and_then(|d| std::fs::read_to_string(d.join("config.toml")).ok())
        .is_some_and(|config| config.lines().any(|l| l.trim_start().starts_with("model_provider")))
}

/// Built-in model list (aliases first; the first is the default).
pub fn builtin_models(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Claude => &["opus", "sonnet", "haiku", "opus[1m]", "sonnet[1m]"],
        Provider::Codex => &[
            "gpt-5.5",
            "gpt-6-sol",
            "gpt-6.1-sol",
            "gpt-6-astra",
            "gpt-6-luna",
            "gpt-6.1-terra",
            "gpt-5.6-sol",
            "gpt-5.6-terra",
            "gpt-5.6-luna",
        ],
        Provider::Gemini => {
            &["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "auto"]
        }
    }
}

/// Reasoning efforts the CLI accepts (empty: no effort setting).
pub fn efforts(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Claude => &["low", "medium", "high", "xhigh", "max"],
        Provider::Codex => &["minimal", "low", "medium", "high", "xhigh"],
        Provider::Gemini => &[],
    }
}

/// The prompt with the system-prompt addition in front, for CLIs without a flag for it.
pub fn prompt_with_instructions(spec: &RunSpec) -> String {
    match &spec.append_system_prompt {
        Some(extra) => format!("<instructions>\n{extra}\n</instructions>\n\n{}", spec.prompt),
        None => spec.prompt.clone(),
    }
}

/// A one-line summary of a tool's input: the command, path, pattern or URL.
pub fn tool_summary(input: &Value) -> String {
    const KEYS: &[&str] = &[
        "command",
        "cmd",
        "file_path",
        "path",
        "pattern",
        "url",
        "query",
        "description",
        "prompt",
    ];
    for key in KEYS {
        if let Some(text) = input.get(*key).and_then(Value::as_str) {
            return crate::event::one_line(text, 200);
        }
        if let Some(parts) = input.get(*key).and_then(Value::as_array) {
            let joined: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            if !joined.is_empty() {
                return crate::event::one_line(&joined.join(" "), 200);
            }
        }
    }
    match input {
        Value::Null => String::new(),
        Value::String(text) => crate::event::one_line(text, 200),
        other => crate::event::truncate(&other.to_string(), 200),
    }
}

/// A string field, or "".
pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A number field, or 0.
pub fn u64_of(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// Lower-cased text contains any of `needles`.
pub fn mentions(text: &str, needles: &[&str]) -> bool {
    let lower = text.to_lowercase();
    needles.iter().any(|n| lower.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(provider: Provider) -> RunSpec {
        RunSpec {
            run_id: "r".into(),
            provider,
            model: None,
            effort: None,
            prompt: "hi there".into(),
            resume: None,
            working_dir: "/tmp".into(),
            append_system_prompt: None,
            permission: None,
            extra_args: Vec::new(),
            extra_env: BTreeMap::new(),
            total_timeout: None,
            idle_timeout: None,
            labels: BTreeMap::new(),
            interactive: false,
            agent: "main".into(),
        }
    }

    const INPUTS: &str = "/run-tmp";

    fn inv(spec: &RunSpec, mode: PermissionMode, confined: bool) -> Invocation {
        invocation(spec, mode, &["--cfg".to_owned()], confined, Path::new(INPUTS))
    }

    fn args(spec: &RunSpec, mode: PermissionMode) -> Vec<String> {
        inv(spec, mode, false).args
    }

    /// No argument carries the prompt or the system prompt (argv is public).
    fn assert_private(inv: &Invocation, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !inv.args.iter().any(|a| a.contains(secret)),
                "{secret} on argv: {:?}",
                inv.args
            );
        }
    }

    #[test]
    fn claude_argv_new_resume_and_bypass() {
        let mut s = spec(Provider::Claude);
        s.model = Some("sonnet".into());
        s.effort = Some("high".into());
        s.append_system_prompt = Some("be brief".into());
        s.resume = Some("abc".into());
        let inv = invocation(&s, PermissionMode::Bypass, &[], false, Path::new(INPUTS));
        let expected = "-p|--output-format|stream-json|--verbose|--include-partial-messages|\
             --permission-mode|bypassPermissions|--model|sonnet|--effort|high|\
             --append-system-prompt-file|/run-tmp/system-prompt.md|--resume|abc";
        assert_eq!(inv.args.join("|"), expected);
        assert_eq!(inv.stdin, "hi there");
        assert_eq!(
            inv.files,
            [(PathBuf::from("/run-tmp/system-prompt.md"), "be brief".to_owned())]
        );
        assert_private(&inv, &["hi there", "be brief"]);
        assert_eq!(inv.env.get("IS_SANDBOX").map(String::as_str), Some("1"));
        s.prompt = "-rf".into();
        let a = args(&s, PermissionMode::Default);
        assert_eq!(
            a.last().map(String::as_str),
            Some("--cfg"),
            "an option-like prompt is never an argument"
        );
    }

    #[test]
    fn codex_argv_new_and_resume() {
        let mut s = spec(Provider::Codex);
        s.effort = Some("high".into());
        s.model = Some("gpt-5.5".into());
        s.append_system_prompt = Some("rules".into());
        let confined = inv(&s, PermissionMode::Bypass, true);
        assert_eq!(
            confined.args.join("|"),
            "-c|model_reasoning_effort=\"high\"|exec|--json|--skip-git-repo-check|\
             --dangerously-bypass-approvals-and-sandbox|-m|gpt-5.5|--cfg|-"
        );
        assert_eq!(confined.stdin, "<instructions>\nrules\n</instructions>\n\nhi there");
        assert_private(&confined, &["hi there", "rules"]);
        s.append_system_prompt = None;
        s.effort = None;
        s.resume = Some("01a2".into());
        assert_eq!(
            args(&s, PermissionMode::AcceptEdits).join("|"),
            "exec|--json|--skip-git-repo-check|--sandbox|workspace-write|-m|gpt-5.5|--cfg|resume|01a2|-"
        );
        // Inside the runner's Landlock, codex's own sandbox cannot start (no mounts).
        let confined = inv(&s, PermissionMode::AcceptEdits, true).args;
        assert!(confined.contains(&"--dangerously-bypass-approvals-and-sandbox".to_owned()));
        // Without ductor's fence, codex's own sandbox is never switched off (review M6).
        for mode in [PermissionMode::Bypass, PermissionMode::AcceptEdits] {
            let open = args(&s, mode);
            assert!(!open.iter().any(|a| a.contains("dangerously")), "{mode:?}: {open:?}");
            assert!(open.windows(2).any(|w| w == ["--sandbox", "workspace-write"]), "{open:?}");
        }
    }

    #[test]
    fn gemini_argv_and_env() {
        let mut s = spec(Provider::Gemini);
        s.resume = Some("sess".into());
        s.model = Some("gemini-2.5-flash".into());
        let inv = invocation(&s, PermissionMode::Bypass, &[], false, Path::new(INPUTS));
        assert_eq!(
            inv.args.join("|"),
            "-p||-o|stream-json|-m|gemini-2.5-flash|--yolo|--resume|sess"
        );
        assert_eq!(inv.stdin, "hi there");
        assert_eq!(inv.env.get("GEMINI_CLI_NO_RELAUNCH").map(String::as_str), Some("true"));
        assert_eq!(inv.env.get("GEMINI_CLI_TRUST_WORKSPACE").map(String::as_str), Some("true"));
        s.prompt = "--help me".into();
        assert_eq!(&args(&s, PermissionMode::Plan)[..2], ["-p", ""], "the prompt stays off argv");
    }

    #[test]
    fn auth_hints_follow_files_then_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().display().to_string();
        let mut env = BTreeMap::from([("HOME".to_owned(), home)]);
        assert_eq!(auth_hint(Provider::Claude, &env), "unauthenticated");
        env.insert("ANTHROPIC_API_KEY".into(), "k".into());
        assert_eq!(auth_hint(Provider::Claude, &env), "api_key");
        std::fs::create_dir_all(dir.path().join(".claude")).expect("mkdir");
        std::fs::write(dir.path().join(".claude/.credentials.json"), "{}").expect("write");
        assert_eq!(auth_hint(Provider::Claude, &env), "authenticated");
        std::fs::create_dir_all(dir.path().join(".gemini")).expect("mkdir");
        std::fs::write(dir.path().join(".gemini/oauth_creds.json"), "{}").expect("write");
        assert_eq!(auth_hint(Provider::Gemini, &env), "authenticated");
    }
}
