//! Who may manage automation. The operator (`ductorctl` outside any sandbox)
//! presents the admin token from `$DUCTOR_HOME/secrets/admin.token`; an agent
//! run presents the credential core issued for its chat, which the runner puts
//! in the CLI's environment (`DUCTOR_AGENT_TOKEN` beside `DUCTOR_TRANSPORT`,
//! `DUCTOR_CHAT_ID`, `DUCTOR_TOPIC_ID`).
//!
//! The agent credential is `v1.` + an HMAC-SHA256 of the chat key under a
//! secret that never leaves core (`secrets/agent-credential.key`, 0600), so it
//! cannot be forged for another chat and needs no table. A sandboxed agent
//! cannot read `secrets/`, so it can only act as its own chat: jobs it creates
//! report to that chat, and it cannot see or touch other chats' jobs.
//! Without a sandbox (`[runner].sandbox = "none"`) the agent runs as the user
//! and could read the admin token; the scoping is then a guard rail, not a wall.

use std::path::Path;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use super::model::ChatTarget;

/// File (under `secrets/`) holding the agent-credential signing key.
pub const KEY_FILE: &str = "agent-credential.key";
/// File (under `secrets/`) holding the operator's admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
/// Environment variable carrying the agent credential.
pub const AGENT_TOKEN_ENV: &str = "DUCTOR_AGENT_TOKEN";

/// Signing key and admin token, loaded once at startup.
#[derive(Clone)]
pub struct Credentials {
    key: Vec<u8>,
    admin: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// What a caller presented.
#[derive(Debug, Clone, Default)]
pub struct Presented {
    /// The admin token, when the caller is the operator.
    pub admin_token: String,
    /// The agent credential, when the caller is an agent run.
    pub agent_token: String,
    /// The chat the agent credential claims to be for.
    pub chat: Option<ChatTarget>,
}

impl Presented {
    /// What the `AutomationAuth` of a request presents (every service an
    /// agent credential reaches takes it: Automation, Tasks, Agents).
    pub fn from_pb(auth: Option<ductor_proto::pb::AutomationAuth>) -> Self {
        let auth = auth.unwrap_or_default();
        let chat = auth.chat.map(|c| ChatTarget {
            transport: auth.transport.clone(),
            chat_id: c.chat_id,
            topic_id: c.topic_id,
        });
        Self { admin_token: auth.admin_token, agent_token: auth.agent_token, chat }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator: may manage everything.
    Admin,
    /// An agent run of this chat: may manage only what this chat owns.
    Agent(ChatTarget),
    /// A user of this chat (not in `[agent].admin_chats`): may manage what
    /// this chat owns or what delivers to it.
    Chat(ChatTarget),
}

impl Caller {
    /// True when this caller may see and change an item owned by `owner`
    /// that delivers to `target`.
    pub fn may_manage(&self, owner: Option<&ChatTarget>, target: Option<&ChatTarget>) -> bool {
        match self {
            Self::Admin => true,
            Self::Agent(chat) => owner == Some(chat),
            Self::Chat(chat) => owner == Some(chat) || target == Some(chat),
        }
    }
}

/// The presented credentials are missing or wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "not authorized: present the admin token ({ADMIN_TOKEN_FILE}) or this chat's agent credential"
)]
pub struct Unauthorized;

impl Credentials {
    /// Loads both secrets from `secrets_dir`, creating them (0600) when absent.
    pub fn load_or_create(secrets_dir: &Path) -> std::io::Result<Self> {
        let key = read_or_create(&secrets_dir.join(KEY_FILE))?;
        let admin = read_or_create(&secrets_dir.join(ADMIN_TOKEN_FILE))?;
        Ok(Self { key: key.into_bytes(), admin })
    }

    /// Fixed secrets (tests).
    pub fn from_secrets(key: &str, admin: &str) -> Self {
        Self { key: key.as_bytes().to_vec(), admin: admin.to_owned() }
    }

    /// The credential for agent runs of `chat`.
    pub fn issue(&self, chat: &ChatTarget) -> String {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC accepts keys of any length");
        mac.update(b"ductor-agent-credential-v1\n");
        mac.update(chat.key().as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("v1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag))
    }

    /// The environment an agent run of `chat` gets (the runner passes it to the CLI).
    pub fn env_for(&self, chat: &ChatTarget) -> Vec<(String, String)> {
        vec![
            ("DUCTOR_TRANSPORT".into(), chat.transport.clone()),
            ("DUCTOR_CHAT_ID".into(), chat.chat_id.clone()),
            ("DUCTOR_TOPIC_ID".into(), chat.topic_id.clone()),
            (AGENT_TOKEN_ENV.into(), self.issue(chat)),
        ]
    }

    /// Decides who is calling. An agent credential wins over an admin token, so
    /// an agent run is always scoped even if it found the admin token.
    pub fn authorize(&self, presented: &Presented) -> Result<Caller, Unauthorized> {
        if !presented.agent_token.is_empty() {
            let chat = presented.chat.clone().ok_or(Unauthorized)?;
            let expected = self.issue(&chat);
            return if bool::from(expected.as_bytes().ct_eq(presented.agent_token.as_bytes())) {
                Ok(Caller::Agent(chat))
            } else {
                Err(Unauthorized)
            };
        }
        if !presented.admin_token.is_empty()
            && bool::from(self.admin.as_bytes().ct_eq(presented.admin_token.trim().as_bytes()))
        {
            return Ok(Caller::Admin);
        }
        Err(Unauthorized)
    }
}

fn read_or_create(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        // An empty file (e.g. an interrupted first start) is replaced.
        Ok(_) => create_secret(path),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => create_secret(path),
        Err(error) => Err(error),
    }
}

fn create_secret(path: &Path) -> std::io::Result<String> {
    let bytes: [u8; 32] = rand::random();
    let secret = hex::encode(bytes);
    ductor_daemon::paths::write_private(path, secret.as_bytes())?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: &str) -> ChatTarget {
        ChatTarget { transport: "telegram".into(), chat_id: id.into(), topic_id: String::new() }
    }

    #[test]
    fn agent_credential_is_bound_to_its_chat() {
        let creds = Credentials::from_secrets("k", "admin-token");
        let mine = chat("1");
        let token = creds.issue(&mine);
        let as_mine = Presented {
            agent_token: token.clone(),
            chat: Some(mine.clone()),
            ..Default::default()
        };
        assert_eq!(creds.authorize(&as_mine), Ok(Caller::Agent(mine.clone())));
        // The same credential claiming another chat is refused.
        let as_other =
            Presented { agent_token: token.clone(), chat: Some(chat("2")), ..Default::default() };
        assert_eq!(creds.authorize(&as_other), Err(Unauthorized));
        // A topic is a different scope.
        let topic = ChatTarget { topic_id: "9".into(), ..mine.clone() };
        let as_topic =
            Presented { agent_token: token.clone(), chat: Some(topic), ..Default::default() };
        assert_eq!(creds.authorize(&as_topic), Err(Unauthorized));
        // Another key issues other credentials.
        assert_ne!(Credentials::from_secrets("k2", "x").issue(&mine), token);
        // An agent token plus the admin token is still only the agent.
        let both = Presented { admin_token: "admin-token".into(), ..as_mine };
        assert_eq!(creds.authorize(&both), Ok(Caller::Agent(mine)));
    }

    #[test]
    fn admin_and_nobody() {
        let creds = Credentials::from_secrets("k", "admin-token");
        let admin = Presented { admin_token: "admin-token\n".into(), ..Default::default() };
        assert_eq!(creds.authorize(&admin), Ok(Caller::Admin));
        assert_eq!(creds.authorize(&Presented::default()), Err(Unauthorized));
        let wrong = Presented { admin_token: "admin-tokex".into(), ..Default::default() };
        assert_eq!(creds.authorize(&wrong), Err(Unauthorized));
    }

    #[test]
    fn scope_rules() {
        let me = chat("1");
        assert!(Caller::Admin.may_manage(None, None));
        assert!(Caller::Agent(me.clone()).may_manage(Some(&me), None));
        assert!(!Caller::Agent(me.clone()).may_manage(Some(&chat("2")), None));
        assert!(
            !Caller::Agent(me.clone()).may_manage(None, Some(&me)),
            "operator jobs are not the agent's"
        );
        assert!(
            Caller::Chat(me.clone()).may_manage(None, Some(&me)),
            "a chat's users manage what it gets"
        );
        assert!(!Caller::Chat(me.clone()).may_manage(None, Some(&chat("2"))));
        assert!(!Caller::Chat(me).may_manage(None, None), "a broadcast job is the operator's");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_created_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let first = Credentials::load_or_create(tmp.path()).unwrap();
        let again = Credentials::load_or_create(tmp.path()).unwrap();
        assert_eq!(first.issue(&chat("1")), again.issue(&chat("1")));
        for file in [KEY_FILE, ADMIN_TOKEN_FILE] {
            let mode = std::fs::metadata(tmp.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        let env = first.env_for(&chat("1"));
        assert!(env.iter().any(|(k, v)| k == AGENT_TOKEN_ENV && v.starts_with("v1.")));
    }
}
