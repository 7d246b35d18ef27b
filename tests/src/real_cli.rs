//! The real agent CLIs in tests and benches: which ones there are, where
//! `tests/setup/install-clis.sh` installed them, and the state files and
//! `[providers.<cli>]` configuration that point each at the fake model API
//! on loopback.

use std::path::{Path, PathBuf};

/// The three CLIs under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    Claude,
    Codex,
    Gemini,
}

impl Cli {
    pub fn name(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
            Cli::Gemini => "gemini",
        }
    }

    /// The version `tests/setup/install-clis.sh` installs.
    pub fn pinned_version(self) -> &'static str {
        match self {
            Cli::Claude => "2.1.330",
            Cli::Codex => "0.169.0",
            Cli::Gemini => "0.61.0",
        }
    }

    /// Whether assistant text streams in several deltas (`codex exec --json` gives the
    /// whole message at once).
    pub fn streams_text(self) -> bool {
        self != Cli::Codex
    }
}

/// Where `tests/setup/install-clis.sh` puts the CLIs.
pub fn cli_cache() -> PathBuf {
    std::env::var_os("DUCTOR_CLI_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/clis"))
}

/// The installed binary of `cli`, if `tests/setup/install-clis.sh` ran.
pub fn installed_cli(cli: Cli) -> Option<PathBuf> {
    let path = cli_cache().join(cli.name()).join("node_modules/.bin").join(cli.name());
    path.is_file().then_some(path)
}

/// A TOML basic string (JSON string escapes are valid TOML escapes).
pub fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// A path as a TOML basic string.
pub fn toml_path(path: &Path) -> String {
    toml_str(&path.display().to_string())
}

/// Writes the provider's state files under `cli_home`; returns the CLI's extra
/// environment (`[providers.<cli>].env`).
pub fn provider_files(cli: Cli, cli_home: &Path, base_url: &str) -> Vec<(&'static str, String)> {
    let home = cli_home.display().to_string();
    match cli {
        Cli::Claude => vec![
            ("HOME", home),
            ("ANTHROPIC_BASE_URL", base_url.to_owned()),
            ("ANTHROPIC_API_KEY", "sk-ant-fake-key".to_owned()),
            ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
            ("DISABLE_AUTOUPDATER", "1".to_owned()),
            ("DISABLE_TELEMETRY", "1".to_owned()),
            ("DISABLE_ERROR_REPORTING", "1".to_owned()),
        ],
        Cli::Codex => {
            let config = format!(
                "model = \"gpt-5.5\"\nmodel_provider = \"fake\"\n\n[model_providers.fake]\n\
                 name = \"fake\"\nbase_url = {}\nwire_api = \"responses\"\n\
                 env_key = \"FAKE_LLM_API_KEY\"\n",
                toml_str(&format!("{base_url}/v1"))
            );
            std::fs::write(cli_home.join("config.toml"), config).expect("write codex config.toml");
            vec![
                ("HOME", home.clone()),
                ("CODEX_HOME", home),
                ("FAKE_LLM_API_KEY", "fake-key".to_owned()),
            ]
        }
        Cli::Gemini => {
            let dot = cli_home.join(".gemini");
            std::fs::create_dir_all(&dot).expect("create .gemini");
            let settings = serde_json::json!({
                "security": {"auth": {"selectedType": "gemini-api-key"}},
                "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
                "privacy": {"usageStatisticsEnabled": false},
            });
            std::fs::write(dot.join("settings.json"), settings.to_string())
                .expect("write gemini settings.json");
            vec![
                ("HOME", home.clone()),
                ("GEMINI_CLI_HOME", home),
                ("GEMINI_API_KEY", "fake-key".to_owned()),
                ("GOOGLE_GEMINI_BASE_URL", base_url.to_owned()),
            ]
        }
    }
}

/// The `[providers.<cli>]` section running `binary` with `env`.
pub fn provider_section(cli: Cli, binary: &Path, env: &[(&str, String)]) -> String {
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k} = {}", toml_str(v))).collect();
    format!(
        "[providers.{name}]\nbinary = {binary}\nenv = {{ {env} }}\n",
        name = cli.name(),
        binary = toml_path(binary),
        env = env.join(", "),
    )
}

/// A home whose chats run `cli` (installed, pointed at a fresh fake model),
/// not started yet: `[agent]` gets `agent` lines, `extra` sections follow.
/// `None` after a SKIP line without the CLI (a failure under
/// `DUCTOR_REQUIRE_REAL`). The temporary directory is the CLI's own home.
pub async fn real_cli_home(
    cli: Cli,
    agent: &str,
    extra: &str,
) -> Option<(crate::harness::TestEnv, crate::fake_model::FakeModel, tempfile::TempDir)> {
    let Some(binary) = installed_cli(cli) else {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "{} is not installed (tests/setup/install-clis.sh) and DUCTOR_REQUIRE_REAL=1",
            cli.name()
        );
        eprintln!("SKIP: {} not installed", cli.name());
        return None;
    };
    let model = crate::fake_model::FakeModel::start().await.expect("start the fake model");
    let cli_home = tempfile::tempdir().expect("a CLI home");
    let cli_env = provider_files(cli, cli_home.path(), &model.base_url());
    let env = crate::harness::TestEnv::with_config(&format!(
        "[agent]\nprovider = \"{}\"\n{agent}\n\n{}\n{extra}",
        cli.name(),
        provider_section(cli, &binary, &cli_env)
    ));
    Some((env, model, cli_home))
}
