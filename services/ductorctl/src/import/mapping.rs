//! From Python ductor's cron jobs, webhooks and sessions to ours: pure
//! functions, each answering either the thing to import or why it cannot be
//! (a reason the report shows). Nothing here is imported half-working: a
//! webhook whose senders ductor's check would reject is refused, not added.

use ductor_proto::pb;

use super::source::{PyCronJob, PyHook, PyNamed, PySession};

/// Our transport for a Python one, if we have it.
fn transport(py: Option<&str>) -> Result<&'static str, String> {
    match py.unwrap_or("tg") {
        "tg" | "telegram" => Ok("telegram"),
        "mx" | "matrix" => Err("Python ductor keys Matrix rooms by a number that does not name \
                                the room; the room id is not recorded"
            .into()),
        other => Err(format!("ductor has no {other:?} transport")),
    }
}

fn opt(text: &Option<String>) -> String {
    text.clone().unwrap_or_default()
}

/// A chat of ours: transport, chat id, topic id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatKey {
    pub transport: String,
    pub chat_id: String,
    pub topic_id: String,
}

impl ChatKey {
    /// core's storage key (`telegram:42`, `telegram:42:7`), which is also the
    /// `session_key` label that picks the chat's CLI home in the runner.
    pub fn storage_key(&self) -> String {
        if self.topic_id.is_empty() {
            format!("{}:{}", self.transport, self.chat_id)
        } else {
            format!("{}:{}:{}", self.transport, self.chat_id, self.topic_id)
        }
    }

    /// As a [`pb::ChatRef`].
    pub fn chat_ref(&self) -> pb::ChatRef {
        pb::ChatRef { chat_id: self.chat_id.clone(), topic_id: self.topic_id.clone() }
    }
}

fn telegram_chat(
    py_transport: Option<&str>,
    chat: i64,
    topic: Option<i64>,
) -> Result<ChatKey, String> {
    Ok(ChatKey {
        transport: transport(py_transport)?.into(),
        chat_id: chat.to_string(),
        topic_id: topic.map(|t| t.to_string()).unwrap_or_default(),
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A cron job as ours, or why not; the second value notes what is dropped.
pub fn cron_job(job: &PyCronJob) -> Result<(pb::CronJobSpec, Vec<String>), String> {
    if !valid_id(&job.id) {
        return Err(
            "its id is not lowercase letters, digits, '-' and '_' (ductor's job ids)".into()
        );
    }
    if !job.task_folder.is_empty() && job.task_folder != job.id {
        return Err(format!(
            "it runs in cron_tasks/{}, but a ductor job's folder is named after the job",
            job.task_folder
        ));
    }
    let mut notes = Vec::new();
    let target = if job.chat_id == 0 {
        None
    } else {
        match telegram_chat(job.transport.as_deref(), job.chat_id, job.topic_id) {
            Ok(chat) => Some(pb::AutomationTarget {
                chat: Some(chat.chat_ref()),
                transport: chat.transport,
            }),
            Err(why) => {
                notes.push(format!("its results go to every chat ({why})"));
                None
            }
        }
    };
    if !job.cli_parameters.is_empty() {
        notes.push("its cli_parameters are dropped (no per-job CLI arguments)".into());
    }
    let spec = pb::CronJobSpec {
        id: job.id.clone(),
        title: job.title.clone(),
        description: job.description.clone(),
        schedule: job.schedule.clone(),
        timezone: job.timezone.clone(),
        instruction: job.agent_instruction.clone(),
        enabled: job.enabled,
        provider: opt(&job.provider),
        model: opt(&job.model),
        effort: opt(&job.reasoning_effort),
        quiet_start: job.quiet_start,
        quiet_end: job.quiet_end,
        dependency: opt(&job.dependency),
        target,
        silent_on_success: job.silent_on_success,
        missed_policy: String::new(),
    };
    Ok((spec, notes))
}

/// True when `have` (in core) is the job `want` describes.
pub fn same_job(have: &pb::CronJobSpec, want: &pb::CronJobSpec) -> bool {
    let mut want = want.clone();
    want.missed_policy = have.missed_policy.clone();
    have == &want
}

/// The regex meta characters (what `regex::escape` escapes).
fn escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where a hook's results go: Python sent them to each allowed user's
/// private chat; one user is that chat, several are every chat ductor has a
/// session with (ours has one target or all).
fn hook_target(users: &[i64], notes: &mut Vec<String>) -> Option<pb::AutomationTarget> {
    match users {
        [user] => Some(pb::AutomationTarget {
            transport: "telegram".into(),
            chat: Some(pb::ChatRef { chat_id: user.to_string(), topic_id: String::new() }),
        }),
        [] => None,
        _ => {
            notes.push(
                "its results go to every chat with a session (Python: each allowed user)".into(),
            );
            None
        }
    }
}

/// A webhook as ours (keeping its id and secret), or why its senders would
/// be rejected. `global_token` is Python's `[webhooks].token`, which a
/// bearer hook without its own token accepted; `users` are Python's
/// `allowed_user_ids`, whose private chats got its results.
pub fn webhook(
    hook: &PyHook,
    global_token: &str,
    users: &[i64],
) -> Result<(pb::WebhookSpec, Vec<String>), String> {
    if !valid_id(&hook.id) {
        return Err("its id is not lowercase letters, digits, '-' and '_'".into());
    }
    let mut notes = Vec::new();
    let target = hook_target(users, &mut notes);
    if !hook.cli_parameters.is_empty() {
        notes.push("its cli_parameters are dropped".into());
    }
    let mut spec = pb::WebhookSpec {
        id: hook.id.clone(),
        title: hook.title.clone(),
        description: hook.description.clone(),
        mode: hook.mode.clone(),
        prompt_template: hook.prompt_template.clone(),
        enabled: hook.enabled,
        task_folder: if hook.mode == "cron_task" { opt(&hook.task_folder) } else { String::new() },
        provider: opt(&hook.provider),
        model: opt(&hook.model),
        effort: opt(&hook.reasoning_effort),
        quiet_start: hook.quiet_start,
        quiet_end: hook.quiet_end,
        dependency: opt(&hook.dependency),
        target,
        ..Default::default()
    };
    if !matches!(hook.mode.as_str(), "wake" | "cron_task") {
        return Err(format!("its mode {:?} is neither wake nor cron_task", hook.mode));
    }
    if hook.auth_mode != "hmac" {
        // Python: anything but "hmac" is bearer, with the global token as fallback.
        let token = if hook.token.is_empty() { global_token } else { hook.token.as_str() };
        if token.is_empty() {
            return Err("it has no token (Python accepted no request for it)".into());
        }
        if token.len() < 16 {
            return Err("its token is shorter than the 16 characters ductor requires".into());
        }
        if hook.token.is_empty() {
            notes.push("it gets the global webhooks.token as its own".into());
        }
        spec.auth_mode = "bearer".into();
        spec.token = token.to_owned();
        return Ok((spec, notes));
    }
    if hook.hmac_header.is_empty() {
        return Err("it has no signature header (Python accepted no request for it)".into());
    }
    if hook.hmac_secret.is_empty() {
        return Err("it has no HMAC secret (Python accepted no request for it)".into());
    }
    spec.auth_mode = "hmac".into();
    spec.hmac_secret = hook.hmac_secret.clone();
    spec.hmac_header = hook.hmac_header.clone();
    spec.hmac_signed_payload = "body".into();
    // Python falls back to these for anything else.
    spec.hmac_algorithm = match hook.hmac_algorithm.as_str() {
        "sha1" | "sha512" => hook.hmac_algorithm.clone(),
        _ => "sha256".into(),
    };
    spec.hmac_encoding = if hook.hmac_encoding == "base64" { "base64" } else { "hex" }.into();
    spec.hmac_sig_prefix = Some(String::new());
    spec.hmac_sig_regex = if !hook.hmac_sig_regex.is_empty() {
        hook.hmac_sig_regex.clone()
    } else if hook.hmac_sig_prefix.is_empty() {
        "^(.+)$".into()
    } else {
        // Python strips the prefix when present and compares the rest either way.
        format!("^(?:{})?(.+)$", escape(&hook.hmac_sig_prefix))
    };
    spec.hmac_max_age_seconds = Some(0);
    spec.hmac_payload_prefix_regex = hook.hmac_payload_prefix_regex.clone();
    Ok((spec, notes))
}

/// True when `have` (in core) accepts what `want` describes, with the same secrets.
pub fn same_hook(have: &pb::WebhookSpec, want: &pb::WebhookSpec) -> bool {
    let auth = have.auth_mode == want.auth_mode
        && if want.auth_mode == "bearer" {
            have.token == want.token
        } else {
            have.hmac_secret == want.hmac_secret
                && have.hmac_header.eq_ignore_ascii_case(&want.hmac_header)
                && have.hmac_algorithm == want.hmac_algorithm
                && have.hmac_encoding == want.hmac_encoding
                && have.hmac_sig_regex == want.hmac_sig_regex
                && have.hmac_payload_prefix_regex == want.hmac_payload_prefix_regex
        };
    auth && have.mode == want.mode && have.prompt_template == want.prompt_template
}

/// One provider session of a chat to import.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionBucket {
    pub provider: String,
    pub session_id: String,
    pub message_count: u64,
    pub cost_usd: f64,
}

/// A chat's sessions as ours.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSessions {
    pub chat: ChatKey,
    pub provider: String,
    pub model: String,
    pub effort: String,
    pub buckets: Vec<SessionBucket>,
    /// Buckets that cannot be imported, with why.
    pub skipped: Vec<(String, String)>,
}

const PROVIDERS: [&str; 3] = ["claude", "codex", "gemini"];

fn chat_of_key(storage_key: &str, session: &PySession) -> Result<ChatKey, String> {
    let parts: Vec<&str> = storage_key.split(':').collect();
    // Python's SessionKey.parse: "123", "123:7" (legacy), "tg:123", "tg:123:7".
    let (py_transport, chat, topic) = match parts.as_slice() {
        [chat] => ("tg", *chat, None),
        [a, b] if a.trim_start_matches('-').chars().all(|c| c.is_ascii_digit()) => {
            ("tg", *a, Some(*b))
        }
        [t, chat] => (*t, *chat, None),
        [t, chat, topic] => (*t, *chat, Some(*topic)),
        _ => return Err("its key is not a Python ductor session key".into()),
    };
    let py_transport = session.transport.as_deref().unwrap_or(py_transport);
    let chat: i64 = chat.parse().map_err(|_| "its chat id is not a number".to_owned())?;
    let topic = topic
        .map(|t| t.parse::<i64>())
        .transpose()
        .map_err(|_| "its topic id is not a number".to_owned())?;
    telegram_chat(Some(py_transport), chat, topic)
}

/// A chat's sessions (`sessions.json` entry `storage_key`), or why not.
pub fn chat_sessions(storage_key: &str, session: &PySession) -> Result<ChatSessions, String> {
    let chat = chat_of_key(storage_key, session)?;
    let provider = session.provider.clone().unwrap_or_else(|| "claude".into());
    let mut buckets = Vec::new();
    let mut skipped = Vec::new();
    let mut all = session.provider_sessions.clone().unwrap_or_default();
    if session.provider_sessions.is_none()
        && let Some(id) = &session.session_id
    {
        // Legacy flat fields belong to the chat's provider (Python migrates them so).
        all.insert(
            provider.clone(),
            super::source::PyProviderSession {
                session_id: id.clone(),
                message_count: session.message_count.unwrap_or_default(),
                total_cost_usd: 0.0,
            },
        );
    }
    for (name, data) in all {
        if data.session_id.is_empty() {
            continue;
        }
        if !PROVIDERS.contains(&name.as_str()) {
            skipped.push((name.clone(), format!("ductor has no {name:?} provider")));
            continue;
        }
        buckets.push(SessionBucket {
            provider: name,
            session_id: data.session_id,
            message_count: data.message_count,
            cost_usd: data.total_cost_usd,
        });
    }
    Ok(ChatSessions {
        chat,
        provider: if PROVIDERS.contains(&provider.as_str()) { provider } else { "claude".into() },
        model: session.model.clone().unwrap_or_default(),
        effort: session.reasoning_effort.clone().unwrap_or_default(),
        buckets,
        skipped,
    })
}

/// A named session's chat, or why it cannot be imported.
pub fn named_chat(named: &PyNamed) -> Result<ChatKey, String> {
    if named.session_id.is_empty() {
        return Err("it never got a provider session (nothing to resume)".into());
    }
    if named.status == "ended" {
        return Err("it has ended".into());
    }
    if !PROVIDERS.contains(&named.provider.as_str()) {
        return Err(format!("ductor has no {:?} provider", named.provider));
    }
    // Core's rule for a name `@name` can address (inter-agent names have dots).
    let name_ok = (1..=32).contains(&named.name.len())
        && named.name.starts_with(|c: char| c.is_ascii_lowercase())
        && valid_id(&named.name);
    if !name_ok {
        return Err("its name is not one ductor can address with @name (a-z, 0-9, '-', '_')".into());
    }
    telegram_chat(named.transport.as_deref(), named.chat_id, named.topic_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(auth: &str) -> PyHook {
        PyHook {
            id: "ci".into(),
            mode: "wake".into(),
            prompt_template: "x".into(),
            auth_mode: auth.into(),
            ..PyHook::default()
        }
    }

    #[test]
    fn bearer_hooks_keep_their_token_or_take_the_global_one() {
        let mut own = hook("bearer");
        own.token = "t".repeat(20);
        let (spec, notes) = webhook(&own, "g".repeat(20).as_str(), &[]).unwrap();
        assert_eq!((spec.token.as_str(), notes.len()), ("t".repeat(20).as_str(), 0));
        let (spec, notes) = webhook(&hook("bearer"), &"g".repeat(20), &[7]).unwrap();
        assert_eq!(spec.token, "g".repeat(20));
        assert_eq!(notes.len(), 1);
        assert_eq!(spec.target.unwrap().chat.unwrap().chat_id, "7", "the one user's chat");
        let (spec, notes) = webhook(&own, "", &[1, 2]).unwrap();
        assert!(spec.target.is_none() && notes.len() == 1, "several users: every chat");
        assert!(webhook(&hook("bearer"), "", &[]).unwrap_err().contains("no token"));
        let mut short = hook("bearer");
        short.token = "short".into();
        assert!(webhook(&short, "", &[]).unwrap_err().contains("16"));
    }

    #[test]
    fn hmac_hooks_accept_what_python_accepted_or_are_refused() {
        let mut gh = hook("hmac");
        gh.hmac_secret = "s".into();
        gh.hmac_header = "X-Hub-Signature-256".into();
        let (spec, _) = webhook(&gh, "", &[]).unwrap();
        assert_eq!(spec.hmac_sig_regex, r"^(?:sha256=)?(.+)$", "Python's prefix is optional");
        assert_eq!((spec.hmac_algorithm.as_str(), spec.hmac_encoding.as_str()), ("sha256", "hex"));
        gh.hmac_algorithm = "md5".into();
        gh.hmac_encoding = "weird".into();
        let (spec, _) = webhook(&gh, "", &[]).unwrap();
        assert_eq!((spec.hmac_algorithm.as_str(), spec.hmac_encoding.as_str()), ("sha256", "hex"));
        let mut no_header = gh.clone();
        no_header.hmac_header.clear();
        assert!(webhook(&no_header, "", &[]).unwrap_err().contains("header"));
        let mut prefixed = gh.clone();
        prefixed.hmac_payload_prefix_regex = "t=(\\d+)".into();
        assert_eq!(webhook(&prefixed, "", &[]).unwrap().0.hmac_payload_prefix_regex, "t=(\\d+)");
        let mut custom = gh;
        custom.hmac_sig_regex = "v1=([a-f0-9]+)".into();
        assert_eq!(webhook(&custom, "", &[]).unwrap().0.hmac_sig_regex, "v1=([a-f0-9]+)");
    }

    #[test]
    fn session_keys_current_legacy_and_foreign() {
        let session = PySession::default();
        let chat = |key: &str| chat_of_key(key, &session).map(|c| c.storage_key());
        assert_eq!(chat("tg:42").unwrap(), "telegram:42");
        assert_eq!(chat("tg:-100:7").unwrap(), "telegram:-100:7");
        assert_eq!(chat("42").unwrap(), "telegram:42");
        assert_eq!(chat("42:7").unwrap(), "telegram:42:7");
        assert!(chat("mx:5").unwrap_err().contains("Matrix"));
        assert!(chat("api:1:2").unwrap_err().contains("api"));
    }

    #[test]
    fn legacy_flat_session_fields_belong_to_the_chats_provider() {
        let session = PySession {
            provider: Some("codex".into()),
            session_id: Some("019a".into()),
            message_count: Some(2),
            ..PySession::default()
        };
        let sessions = chat_sessions("123", &session).unwrap();
        assert_eq!(sessions.buckets.len(), 1);
        assert_eq!(sessions.buckets[0].provider, "codex");
        assert_eq!(sessions.buckets[0].session_id, "019a");
    }

    #[test]
    fn named_sessions_need_an_id_a_known_provider_and_an_addressable_name() {
        let named = PyNamed {
            name: "redowl".into(),
            chat_id: 42,
            provider: "codex".into(),
            session_id: "019a".into(),
            status: "idle".into(),
            ..PyNamed::default()
        };
        assert_eq!(named_chat(&named).unwrap().storage_key(), "telegram:42");
        let interagent = PyNamed { name: "ia.bot.t1.xdeadbeef".into(), ..named.clone() };
        assert!(named_chat(&interagent).unwrap_err().contains("@name"));
        let fresh = PyNamed { session_id: String::new(), ..named.clone() };
        assert!(named_chat(&fresh).is_err());
        let grok = PyNamed { provider: "grok".into(), ..named };
        assert!(named_chat(&grok).unwrap_err().contains("grok"));
    }

    #[test]
    fn cron_jobs_route_to_their_chat_and_keep_their_folder() {
        let job = PyCronJob {
            id: "daily".into(),
            task_folder: "daily".into(),
            schedule: "0 9 * * *".into(),
            chat_id: 42,
            topic_id: Some(7),
            enabled: true,
            ..PyCronJob::default()
        };
        let (spec, notes) = cron_job(&job).unwrap();
        let target = spec.target.unwrap();
        assert_eq!(
            (target.transport.as_str(), target.chat.unwrap().topic_id.as_str()),
            ("telegram", "7")
        );
        assert!(notes.is_empty());
        let mut other = job.clone();
        other.task_folder = "elsewhere".into();
        assert!(cron_job(&other).is_err());
        let mut broadcast = job;
        broadcast.chat_id = 0;
        assert!(cron_job(&broadcast).unwrap().0.target.is_none());
    }
}
