//! Config loading: defaults, unknown keys, secrets, validation.

use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config.toml"), &no_env)
}

#[test]
fn default_file_equals_struct_defaults() {
    assert_eq!(parse(DEFAULT_CONFIG_TOML).unwrap(), Config::default());
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn unknown_key_names_the_dotted_path() {
    let error = parse("[telegram]\ntokn = \"x\"\n").unwrap_err();
    assert_eq!(error.key(), Some("telegram.tokn"), "{error}");
    assert!(error.to_string().contains("tokn"));
}

#[test]
fn unknown_section_is_an_error() {
    let error = parse("[telegramm]\nenabled = true\n").unwrap_err();
    assert_eq!(error.key(), Some("telegramm"), "{error}");
}

#[test]
fn nested_unknown_key_in_provider() {
    let error = parse("[providers.claude]\nbinnary = \"x\"\n").unwrap_err();
    assert_eq!(error.key(), Some("providers.claude.binnary"), "{error}");
}

#[test]
fn wrong_type_names_the_key() {
    let error = parse("[agent]\nidle_timeout_minutes = \"soon\"\n").unwrap_err();
    assert_eq!(error.key(), Some("agent.idle_timeout_minutes"), "{error}");
}

#[test]
fn errors_never_repeat_a_secret() {
    // A mistyped token (a number) would be quoted by serde; an unterminated
    // one would be quoted by TOML's snippet of the line.
    for text in [
        "[telegram]\ntoken = 123456789\n",
        "[matrix]\npassword = [\"hunter2hunter2\"]\n",
        "[providers.claude]\nenv = { ANTHROPIC_API_KEY = 987654321 }\n",
        "[telegram]\ntoken = \"123456789:AAE-secret\n",
    ] {
        let error = parse(text).unwrap_err().to_string();
        for secret in ["123456789", "hunter2", "987654321", "AAE-secret"] {
            assert!(!error.contains(secret), "{error:?} repeats a secret of {text:?}");
        }
    }
    let error = parse("[telegram]\ntoken = 123456789\n").unwrap_err();
    assert_eq!(error.key(), Some("telegram.token"), "{error}");
    let error = parse("[agent]\nmodel = \"opus\n").unwrap_err().to_string();
    assert!(error.contains("line 2"), "a syntax error says where: {error}");
}

#[test]
fn invalid_value_names_the_key() {
    let error = parse("[agent]\nprovider = \"gpt\"\n").unwrap_err();
    assert_eq!(error.key(), Some("agent.provider"));
    let error = parse("[telegram]\nenabled = true\n").unwrap_err();
    assert_eq!(error.key(), Some("telegram.token"));
}

#[test]
fn token_from_environment_wins_and_is_redacted() {
    let env = |name: &str| (name == "DUCTOR_TELEGRAM_TOKEN").then(|| "1:ENVSECRET".to_owned());
    let config =
        Config::parse("[telegram]\nenabled = true\ntoken = \"2:FILE\"\n", Path::new("c"), &env)
            .unwrap();
    assert_eq!(config.telegram.token.expose(), "1:ENVSECRET");
    assert!(!format!("{config:?}").contains("ENVSECRET"));
}

#[test]
fn token_from_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("token");
    std::fs::write(&file, "3:FROMFILE\n").unwrap();
    let text =
        format!("[telegram]\nenabled = true\ntoken_file = {:?}\n", file.display().to_string());
    let config = parse(&text).unwrap();
    assert_eq!(config.telegram.token.expose(), "3:FROMFILE");
}

#[test]
fn missing_file_means_defaults() {
    let config = Config::load(Path::new("/nonexistent/ductor/config.toml"), &no_env).unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn only_the_telegram_gateway_requires_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[telegram]\nenabled = true\n").expect("write config");
    let error = Config::load(&path, &no_env).expect_err("the token is required");
    assert!(error.to_string().contains("telegram.token"), "{error}");
    // Runner and core: the launcher withholds the token; everything else is still checked.
    let config =
        Config::load_with(&path, &no_env, RequireSecrets::Nothing).expect("no token needed");
    assert!(config.telegram.enabled && config.telegram.token.is_empty());
    std::fs::write(&path, "[telegram]\nenabled = true\napi_url = \"ftp://x\"\n").expect("write");
    assert!(
        Config::load_with(&path, &no_env, RequireSecrets::Nothing).is_err(),
        "other checks still apply"
    );
}

#[test]
fn skills_interval_is_bounded_and_unknown_skill_keys_are_named() {
    let error = parse("[skills]\ninterval_seconds = 0\n").unwrap_err();
    assert_eq!(error.key(), Some("skills.interval_seconds"), "{error}");
    let error = parse("[skills]\nexport = true\n").unwrap_err();
    assert_eq!(error.key(), Some("skills.export"), "{error}");
    let config = parse("[skills]\nsync = false\nexport_to_operator = true\n").unwrap();
    assert!(!config.skills.sync && config.skills.export_to_operator);
}

#[test]
fn rules_settings_are_bounded_and_named() {
    let error = parse("[rules]\nsync_interval_seconds = 0\n").unwrap_err();
    assert_eq!(error.key(), Some("rules.sync_interval_seconds"), "{error}");
    let error = parse("[rules]\nmax_file_bytes = 10\n").unwrap_err();
    assert_eq!(error.key(), Some("rules.max_file_bytes"), "{error}");
    let error = parse("[rules]\ninterval = 5\n").unwrap_err();
    assert_eq!(error.key(), Some("rules.interval"), "{error}");
    assert_eq!(
        parse("[rules]\nsync_interval_seconds = 2\n").unwrap().rules.sync_interval_seconds,
        2
    );
}

const TWO_AGENTS: &str = r#"
[telegram]
enabled = true
token = "1:main"
allowed_user_ids = [1]

[[agents]]
name = "researcher"
provider = "codex"
[agents.telegram]
token_file = "TOKEN_FILE"
allowed_user_ids = [2]

[[agents]]
name = "quiet"
"#;

fn parse_agents(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("config.toml"), env)
}

#[test]
fn agents_have_their_own_gateways_and_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("researcher.token");
    std::fs::write(&token_file, "2:researcher\n").expect("write token");
    let text = TWO_AGENTS.replace("TOKEN_FILE", &token_file.display().to_string());
    let config = parse_agents(&text, &no_env).expect("valid");
    assert_eq!(config.agent_names(), ["main", "researcher", "quiet"]);
    let researcher = config.agent_entry("researcher").expect("listed");
    assert_eq!(researcher.transports(), ["telegram"], "a present table is on");
    assert!(config.agent_entry("quiet").expect("listed").transports().is_empty());
    // The gateway of `researcher` sees its own table as [telegram].
    let focused = config.focus("researcher");
    assert_eq!(focused.telegram.token.expose(), "2:researcher");
    assert_eq!(focused.telegram.allowed_user_ids, [2], "its own allowlist, not main's");
    assert!(!focused.matrix.enabled);
    assert_eq!(config.focus("main"), config);
    // The environment's token belongs to the agent DUCTOR_AGENT names, only.
    let env = |name: &str| match name {
        "DUCTOR_AGENT" => Some("researcher".to_owned()),
        "DUCTOR_TELEGRAM_TOKEN" => Some("3:handed".to_owned()),
        _ => None,
    };
    let config = parse_agents(&text, &env).expect("valid");
    assert_eq!(config.telegram.token.expose(), "1:main");
    assert_eq!(config.focus("researcher").telegram.token.expose(), "3:handed");
    let home = crate::DuctorHome::at("/h");
    assert_eq!(
        config.workspace_of(&home, "researcher"),
        Path::new("/h/agents/researcher/workspace")
    );
    assert_eq!(config.workspace_of(&home, "main"), Path::new("/h/workspace"));
}

#[test]
fn bad_agents_are_refused_naming_the_key() {
    let cases = [
        ("[[agents]]\nname = \"main\"\n", "agents[0].name"),
        ("[[agents]]\nname = \"Bad Name\"\n", "agents[0].name"),
        ("[[agents]]\nname = \"a\"\n[[agents]]\nname = \"a\"\n", "agents[1].name"),
        ("[[agents]]\nname = \"a\"\nworkspace = \"rel\"\n", "agents.a.workspace"),
        (
            "[[agents]]\nname = \"a\"\n[agents.telegram]\ntoken = \"1:x\"\nburst = 99\n",
            "agents.a.telegram.burst",
        ),
        ("[[agents]]\nname = \"a\"\n[agents.telegram]\ntokn = \"x\"\n", "agents[0].telegram.tokn"),
        (
            "[telegram]\ntoken = \"1:same\"\n[[agents]]\nname = \"a\"\n[agents.telegram]\ntoken = \"1:same\"\n",
            "agents.a.telegram.token",
        ),
    ];
    for (text, key) in cases {
        let error = parse_agents(text, &no_env).expect_err(text);
        assert_eq!(error.key(), Some(key), "{text}: {error}");
    }
    // An enabled agent bot needs its token, and a bad one is never echoed.
    let error = parse_agents("[[agents]]\nname = \"a\"\n[agents.telegram]\n", &no_env)
        .expect_err("no token");
    assert_eq!(error.key(), Some("agents.a.telegram.token"));
    let error =
        parse_agents("[[agents]]\nname = \"a\"\n[agents.telegram]\ntoken = 12345\n", &no_env)
            .expect_err("not a string");
    assert!(!error.to_string().contains("12345"), "{error}");
    // A gateway of another agent does not need this agent's token.
    let serving_b = |name: &str| (name == "DUCTOR_AGENT").then(|| "b".to_owned());
    let text = "[[agents]]\nname = \"a\"\n[agents.telegram]\n[[agents]]\nname = \"b\"\n";
    let path = Path::new("config.toml");
    assert!(Config::parse_with(text, path, &serving_b, RequireSecrets::Agent("b".into())).is_ok());
    assert!(Config::parse_with(text, path, &serving_b, RequireSecrets::Agent("a".into())).is_err());
}
