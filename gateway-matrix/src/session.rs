//! One bot device for life: password login on the first start only; the
//! access token, device id and store key are kept in
//! `$DUCTOR_HOME/matrix/session.json` (0600) and the session is restored on
//! every later start, so the device and its E2EE keys (in the SQLite store
//! beside it, encrypted with that key) survive restarts. The sync token
//! lives in the same store, so a restart continues where the last sync ended.

use std::path::{Path, PathBuf};

use crate::error::{Doing as _, MatrixError};
use ductor_daemon::config::MatrixConfig;
use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::ruma::UserId;
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{Client, SessionMeta, SessionTokens, SqliteStoreConfig};
use serde::{Deserialize, Serialize};

/// What `session.json` holds.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    homeserver: String,
    user_id: String,
    device_id: String,
    access_token: String,
    /// Hex of the 32-byte key encrypting the SQLite store (a raw key, not a
    /// passphrase: no key derivation on every start).
    store_key: String,
    /// True once a sync completed with this session (the store then has a sync token).
    #[serde(default)]
    synced: bool,
}

/// A logged-in client and how it got there.
pub struct Session {
    /// The client, ready for its first sync.
    pub client: Client,
    /// True when this start logged in with the password (a new device).
    pub fresh_login: bool,
    /// True when a sync completed before with this device (old events are known).
    pub synced_before: bool,
    file: PathBuf,
}

impl Session {
    /// Restores the saved session, or logs in with the password the first time.
    pub async fn open(dir: &Path, config: &MatrixConfig) -> Result<Self, MatrixError> {
        std::fs::create_dir_all(dir).doing(format!("create {}", dir.display()))?;
        // The store and session are the bot's identity: private to this user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .doing(format!("make {} private", dir.display()))?;
        }
        let file = dir.join("session.json");
        let store = dir.join("store");
        let saved = read_session(&file)?.filter(|saved| {
            let same = saved.homeserver == config.homeserver && saved.user_id == config.user_id;
            if !same {
                tracing::warn!(
                    "matrix.homeserver or matrix.user_id changed: logging in again as a new device"
                );
            }
            same
        });
        match saved {
            Some(saved) => restore(file, &store, config, saved).await,
            None => login(file, &store, config).await,
        }
    }

    /// Records that a sync completed, so a later start replays nothing old.
    pub fn mark_synced(&self) -> Result<(), MatrixError> {
        let Some(mut saved) = read_session(&self.file)? else { return Ok(()) };
        if !saved.synced {
            saved.synced = true;
            write_session(&self.file, &saved)?;
        }
        Ok(())
    }
}

fn read_session(file: &Path) -> Result<Option<SessionFile>, MatrixError> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .doing(format!("parse {} (delete it to log in again)", file.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).doing(format!("read {}", file.display())),
    }
}

fn write_session(file: &Path, session: &SessionFile) -> Result<(), MatrixError> {
    let json = serde_json::to_vec_pretty(session).expect("a session always serializes");
    ductor_daemon::paths::write_private(file, &json).doing(format!("write {}", file.display()))
}

async fn build_client(
    store: &Path,
    homeserver: &str,
    key_hex: &str,
) -> Result<Client, MatrixError> {
    let key: [u8; 32] =
        hex::decode(key_hex).ok().and_then(|bytes| bytes.try_into().ok()).ok_or_else(|| {
            MatrixError::refused(
                "the saved store key is not 32 bytes of hex (delete session.json to log in again)",
            )
        })?;
    // A bot needs few connections and small caches: keeps idle memory low.
    let store_config = SqliteStoreConfig::with_low_memory_config(store).key(Some(&key));
    Client::builder()
        .homeserver_url(homeserver)
        .sqlite_store_with_config_and_cache_path(store_config, None::<&Path>)
        .build()
        .await
        .doing("open the Matrix client and its store")
}

async fn restore(
    file: PathBuf,
    store: &Path,
    config: &MatrixConfig,
    saved: SessionFile,
) -> Result<Session, MatrixError> {
    let client = build_client(store, &config.homeserver, &saved.store_key).await?;
    let session = MatrixSession {
        meta: SessionMeta {
            user_id: UserId::parse(saved.user_id.as_str()).doing("parse the saved user id")?,
            device_id: saved.device_id.as_str().into(),
        },
        tokens: SessionTokens { access_token: saved.access_token.clone(), refresh_token: None },
    };
    client
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .doing("restore the saved Matrix session")?;
    tracing::info!(device_id = %saved.device_id, "restored the Matrix session");
    Ok(Session { client, fresh_login: false, synced_before: saved.synced, file })
}

async fn login(file: PathBuf, store: &Path, config: &MatrixConfig) -> Result<Session, MatrixError> {
    if config.password.is_empty() {
        return Err(MatrixError::refused(
            "log in to Matrix: no saved session and no password (set matrix.password, DUCTOR_MATRIX_PASSWORD or matrix.password_file)",
        ));
    }
    // A store without its session cannot be opened (its key is gone) and
    // would belong to another device anyway.
    if store.exists() {
        tracing::warn!(store = %store.display(), "removing a Matrix store left without its session");
        std::fs::remove_dir_all(store).doing(format!("remove {}", store.display()))?;
    }
    let key: Vec<u8> =
        [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
    let key = hex::encode(key);
    let client = build_client(store, &config.homeserver, &key).await?;
    let response = client
        .matrix_auth()
        .login_username(config.user_id.as_str(), config.password.expose())
        .initial_device_display_name(&config.device_name)
        .await
        .doing("log in to Matrix with the password")?;
    if response.user_id.as_str() != config.user_id {
        return Err(MatrixError::refused(format!(
            "logged in as {} but matrix.user_id is {}",
            response.user_id, config.user_id
        )));
    }
    let saved = SessionFile {
        homeserver: config.homeserver.clone(),
        user_id: response.user_id.to_string(),
        device_id: response.device_id.to_string(),
        access_token: response.access_token.clone(),
        store_key: key,
        synced: false,
    };
    write_session(&file, &saved)?;
    tracing::info!(device_id = %saved.device_id, "logged in to Matrix as a new device");
    Ok(Session { client, fresh_login: true, synced_before: false, file })
}
