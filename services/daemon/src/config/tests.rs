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
