//! The shared Synapse (one per test binary, started by
//! `tests/setup/synapse.sh`) and user registration with the shared secret.
//! The in-process gateway the tests drive is in `gateway.rs`.

use std::path::PathBuf;
use std::sync::OnceLock;

use hmac::{KeyInit, Mac};

/// A running Synapse.
#[derive(Debug, Clone)]
pub struct Synapse {
    pub url: String,
    secret: String,
}

static SYNAPSE: OnceLock<Option<Synapse>> = OnceLock::new();

fn setup_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/setup/synapse.sh")
}

/// A command for `program`: the one place the test crates start processes.
#[allow(clippy::disallowed_methods)]
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    std::process::Command::new(program)
}

fn start_synapse() -> Result<Synapse, String> {
    let output = command("bash")
        .arg(setup_script())
        .arg("start")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("run tests/setup/synapse.sh: {e}"))?;
    if !output.status.success() {
        return Err(format!("tests/setup/synapse.sh start failed: {}", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
            .ok_or(format!("no {key} in the script output"))
    };
    Ok(Synapse { url: value("SYNAPSE_URL=")?, secret: value("SYNAPSE_SECRET=")? })
}

/// The shared Synapse, or `None` (after a loud SKIP line) when it cannot be
/// set up; with `DUCTOR_REQUIRE_REAL=1` that is a failure instead.
pub fn synapse(test: &str) -> Option<Synapse> {
    let synapse = SYNAPSE.get_or_init(|| match start_synapse() {
        Ok(synapse) => Some(synapse),
        Err(error) => {
            if std::env::var("DUCTOR_REQUIRE_REAL").as_deref() == Ok("1") {
                panic!("DUCTOR_REQUIRE_REAL=1 but Synapse could not be set up: {error}");
            }
            eprintln!("SKIP: Synapse could not be set up ({error})");
            None
        }
    });
    if synapse.is_none() {
        eprintln!(
            "SKIP {test}: no Synapse (run tests/setup/synapse.sh start; needs python3 and PyPI)"
        );
    }
    synapse.clone()
}

/// A fresh user name for this run (Synapse's database outlives test runs).
pub fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

impl Synapse {
    /// Registers `name` with the shared secret; returns the full user id.
    pub async fn register(&self, name: &str, password: &str) -> String {
        let http = reqwest::Client::new();
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url);
        let nonce: serde_json::Value = http
            .get(&endpoint)
            .send()
            .await
            .expect("get a nonce")
            .json()
            .await
            .expect("nonce json");
        let nonce = nonce["nonce"].as_str().expect("nonce field").to_owned();
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(self.secret.as_bytes())
            .expect("any key length");
        mac.update(format!("{nonce}\0{name}\0{password}\0notadmin").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let body = serde_json::json!({
            "nonce": nonce, "username": name, "password": password, "admin": false, "mac": mac,
        });
        let response = http.post(&endpoint).json(&body).send().await.expect("register");
        let status = response.status();
        let answer: serde_json::Value = response.json().await.expect("register json");
        assert!(status.is_success(), "register {name}: {status} {answer}");
        // Registration logs in a device; log it out so the account starts with none.
        let token = answer["access_token"].as_str().expect("access_token");
        let logout = format!("{}/_matrix/client/v3/logout", self.url);
        let out = http
            .post(logout)
            .bearer_auth(token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("logout");
        assert!(out.status().is_success(), "log out the registration device: {}", out.status());
        answer["user_id"].as_str().expect("user_id").to_owned()
    }
}
