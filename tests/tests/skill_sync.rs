//! Skill sync (issue 16) through the real binaries: a skill in
//! `workspace/skills` and one in the operator's own `~/.claude/skills` are
//! shown to the model by the real claude, codex and gemini; a skill an agent
//! made in its chat's CLI home reaches another chat; a user's folder of the
//! same name is never overwritten and the clash is in `ductorctl doctor`; a
//! link planted in the workspace is followed nowhere.
//! Needs `cargo build --bins` and the pinned CLIs (`tests/setup/install-clis.sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ductor_tests::fake_model::{Api, FakeModel};
use ductor_tests::harness::{TestEnv, patience, text};
use ductor_tests::real_cli::{Cli, installed_cli, provider_files, provider_section};

const WS_MARKER: &str = "WSSKILLMARKER7731";
const OP_MARKER: &str = "OPSKILLMARKER4410";

fn write_skill(dir: &Path, name: &str, marker: &str) {
    std::fs::create_dir_all(dir).expect("mkdir skill");
    let text = format!(
        "---\nname: {name}\ndescription: Use this for {marker} requests.\n---\n\nSay {marker}.\n"
    );
    std::fs::write(dir.join("SKILL.md"), text).expect("write SKILL.md");
}

/// Waits until `check` holds, within the tests' patience.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + patience();
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn api_of(cli: Cli) -> Api {
    match cli {
        Cli::Claude => Api::Anthropic,
        Cli::Codex => Api::OpenAi,
        Cli::Gemini => Api::Gemini,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_real_cli_is_shown_the_workspace_skill_and_the_operators() {
    let clis = [Cli::Claude, Cli::Codex, Cli::Gemini];
    let binaries: Vec<_> = clis.iter().filter_map(|c| installed_cli(*c)).collect();
    if binaries.len() < clis.len() {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "the CLIs are not installed (tests/setup/install-clis.sh) and DUCTOR_REQUIRE_REAL=1"
        );
        eprintln!("SKIP: the real CLIs are not installed");
        return;
    }
    let model = FakeModel::start().await.expect("start the fake model");
    // One operator home for the three CLIs (~/.claude, $CODEX_HOME = ~, ~/.gemini).
    let operator = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("op home");
    let mut sections = String::from("[agent]\nprovider = \"claude\"\n\n");
    for (cli, binary) in clis.iter().zip(&binaries) {
        let env = provider_files(*cli, operator.path(), &model.base_url());
        sections.push_str(&provider_section(*cli, binary, &env));
        sections.push('\n');
    }
    let env = TestEnv::with_config(&sections);
    write_skill(&env.home().join("workspace/skills/ws-skill"), "ws-skill", WS_MARKER);
    write_skill(&operator.path().join(".claude/skills/op-skill"), "op-skill", OP_MARKER);
    env.up().await;

    for cli in clis {
        let chat = cli.name();
        let switched = env.ductorctl(&["ask", "--chat", chat, "/model", cli.name()]).await;
        assert!(switched.status.success(), "/model {}", cli.name());
        let prompt = format!("hello from the {} skills test", cli.name());
        let out = env.ductorctl(&["ask", "--chat", chat, &prompt]).await;
        assert!(out.status.success(), "{}: {}", cli.name(), text(&out.stderr));
        let sent: Vec<_> =
            model.generations().into_iter().filter(|r| r.api == api_of(cli)).collect();
        assert!(!sent.is_empty(), "{} reached the model", cli.name());
        for marker in [WS_MARKER, OP_MARKER] {
            assert!(
                sent.iter().any(|r| r.body_contains(marker)),
                "{} did not list the skill {marker} to the model",
                cli.name()
            );
        }
    }
    // The operator's skill is a managed copy; the operator's folder is untouched.
    let copy = env.home().join("workspace/skills/op-skill");
    assert!(copy.join(".ductor_managed").is_file(), "a marked copy");
    let op_skills = operator.path().join(".claude/skills");
    let names: Vec<_> =
        std::fs::read_dir(&op_skills).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names, ["op-skill"], "nothing exported by default");
    assert!(env.ductorctl(&["down"]).await.status.success());
}

/// The skills folder of `chat`'s claude home.
fn claude_home_skills(env: &TestEnv, chat: &str) -> PathBuf {
    let homes = env.home().join("providers/claude");
    let found = std::fs::read_dir(&homes).expect("claude homes").flatten().find(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("chat-") && name.contains(chat)
    });
    found.expect("the chat's home").path().join("skills")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_made_in_one_chat_reaches_another_and_nothing_is_overwritten_or_followed() {
    let mut env =
        TestEnv::with_fake_claude("[skills]\ninterval_seconds = 1\nexport_to_operator = true\n");
    let operator = tempfile::Builder::new().prefix("op").tempdir_in("/tmp").expect("op home");
    let op_skills = operator.path().join(".claude/skills");
    std::fs::create_dir_all(&op_skills).unwrap();
    let secret = operator.path().join("secret-skill");
    write_skill(&secret, "secret", "TOPSECRET");
    env.set_env("HOME", &operator.path().display().to_string());
    let workspace = env.home().join("workspace/skills");
    write_skill(&workspace.join("pdf"), "pdf", "workspace-pdf");
    env.up().await;

    // Alice's CLI makes a skill in its home, replaces the pdf link with a
    // folder of her own, and plants a link to the operator's secret.
    let out = env
        .agent(
            "alice",
            &format!(
                "S=$CLAUDE_CONFIG_DIR/skills; mkdir -p $S/made && echo made-by-alice > $S/made/SKILL.md; \
                 ls -l $S/pdf; rm $S/pdf && mkdir $S/pdf && echo alices-own-pdf > $S/pdf/SKILL.md; \
                 ln -s {} {}/evil && echo PLANTED",
                secret.display(),
                workspace.display()
            ),
        )
        .await;
    assert!(out.contains("PLANTED") && out.contains("workspace/skills/pdf"), "{out}");
    let alice = claude_home_skills(&env, "alice");
    eventually("alice's skill adopted into the workspace", || {
        workspace.join("made/SKILL.md").is_file()
            && alice.join("made").symlink_metadata().is_ok_and(|m| m.is_symlink())
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(workspace.join("made/SKILL.md")).unwrap(),
        "made-by-alice\n"
    );

    // Bob's first run already sees it, through a link the sandbox lets him read.
    let out = env
        .agent("bob", "ls $CLAUDE_CONFIG_DIR/skills; cat $CLAUDE_CONFIG_DIR/skills/made/SKILL.md")
        .await;
    assert!(out.contains("made-by-alice"), "{out}");
    assert!(!out.contains("evil") && !out.contains("TOPSECRET"), "{out}");

    // Alice's own folder is kept, the clash and the planted link are reported.
    assert_eq!(std::fs::read_to_string(alice.join("pdf/SKILL.md")).unwrap(), "alices-own-pdf\n");
    let doctor = env.ductorctl(&["doctor"]).await;
    let report = text(&doctor.stdout);
    let pdf =
        report.lines().find(|l| l.contains("skill pdf")).unwrap_or_else(|| panic!("{report}"));
    assert!(pdf.contains(&alice.join("pdf").display().to_string()), "{pdf}");
    assert!(
        report.lines().any(|l| l.contains("skill evil") && l.contains("never followed")),
        "{report}"
    );

    // Exported (opted in): the workspace's skills, never the planted link.
    let exported = std::fs::read_link(op_skills.join("pdf")).expect("pdf exported");
    assert_eq!(exported, workspace.join("pdf"));
    assert!(op_skills.join("evil").symlink_metadata().is_err(), "a planted link is never exported");
    let everywhere = [workspace.as_path(), alice.as_path(), op_skills.as_path()];
    for dir in everywhere {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let body = std::fs::read_to_string(entry.path().join("SKILL.md")).unwrap_or_default();
            let planted = entry.file_name() == "evil" && dir == workspace.as_path();
            assert!(
                planted || !body.contains("TOPSECRET"),
                "{} holds the secret",
                entry.path().display()
            );
        }
    }
    // At shutdown our links leave the operator's folder.
    assert!(env.ductorctl(&["down"]).await.status.success());
    let left: Vec<_> =
        std::fs::read_dir(&op_skills).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "our links stay in the operator's folder: {left:?}");
}
