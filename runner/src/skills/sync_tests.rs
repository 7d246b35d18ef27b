//! Whole passes on real folders: imports, adoption, links into homes, and
//! planted links that must never be followed.

use std::os::unix::fs::symlink;

use super::*;

struct World {
    _tmp: tempfile::TempDir,
    home: DuctorHome,
    operator: PathBuf,
    victim: PathBuf,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let home = DuctorHome::at(tmp.path().join("ductor"));
    let operator = tmp.path().join("op");
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(operator.join(".claude/skills")).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("id_rsa"), "PRIVATE KEY").unwrap();
    for bucket in ["claude/chat-a", "codex/chat-b", "gemini/chat-c"] {
        std::fs::create_dir_all(home.provider_homes().join(bucket)).unwrap();
    }
    World { _tmp: tmp, home, operator, victim }
}

fn skills(w: &World, export: bool) -> Skills {
    let config = SkillsConfig { export_to_operator: export, ..SkillsConfig::default() };
    let env = BTreeMap::from([("HOME".to_owned(), w.operator.display().to_string())]);
    Skills::new(&config, &w.home, &ProvidersConfig::default(), &env).unwrap()
}

fn skill(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("SKILL.md"), text).unwrap();
}

fn ws(w: &World) -> PathBuf {
    w.home.workspace().join("skills")
}

fn home_skills_of(w: &World, bucket: &str) -> PathBuf {
    let provider = bucket.split('/').next().unwrap();
    let sub = if provider == "gemini" { ".gemini/skills" } else { "skills" };
    w.home.provider_homes().join(bucket).join(sub)
}

#[test]
fn an_operator_skill_is_copied_in_linked_everywhere_and_refreshed() {
    let w = world();
    let source = w.operator.join(".claude/skills/op-skill");
    skill(&source, "v1");
    std::fs::create_dir_all(source.join("scripts")).unwrap();
    std::fs::write(source.join("scripts/run.sh"), "echo hi").unwrap();
    symlink(&w.victim, source.join("keys")).unwrap();
    let sync = skills(&w, false);
    assert_eq!(sync.pass().conflicts, 0);
    let copy = ws(&w).join("op-skill");
    assert_eq!(std::fs::read_to_string(copy.join("SKILL.md")).unwrap(), "v1");
    assert_eq!(std::fs::read_to_string(copy.join("scripts/run.sh")).unwrap(), "echo hi");
    assert!(!copy.join("keys").exists(), "a link inside a skill is not copied");
    let marker = read_marker(&Tree::root(&ws(&w)).unwrap(), "op-skill").unwrap();
    assert_eq!(marker.source, source);
    for bucket in ["claude/chat-a", "codex/chat-b", "gemini/chat-c"] {
        let link = home_skills_of(&w, bucket).join("op-skill");
        assert_eq!(std::fs::read_link(&link).unwrap(), copy, "{bucket}");
    }
    // Unchanged: the next pass does nothing.
    assert_eq!(sync.pass(), PassReport::default());
    // The operator edits it: refreshed.
    std::fs::write(source.join("SKILL.md"), "v2").unwrap();
    assert_eq!(sync.pass().applied, 1);
    assert_eq!(std::fs::read_to_string(copy.join("SKILL.md")).unwrap(), "v2");
    // The agent edits the copy: kept, reported once, never carried back.
    std::fs::write(copy.join("SKILL.md"), "agent").unwrap();
    std::fs::write(source.join("SKILL.md"), "v3").unwrap();
    let report = sync.pass();
    assert_eq!((report.applied, report.conflicts, report.new_conflicts), (0, 1, 1));
    assert_eq!(sync.pass().new_conflicts, 0, "reported once");
    assert_eq!(std::fs::read_to_string(source.join("SKILL.md")).unwrap(), "v3");
    assert_eq!(std::fs::read_to_string(copy.join("SKILL.md")).unwrap(), "agent");
    assert_eq!(sync.conflicts()[0].skill, "op-skill");
}

#[test]
fn a_skill_made_in_a_home_moves_to_the_workspace_and_reaches_the_other_homes() {
    let w = world();
    let made = home_skills_of(&w, "claude/chat-a").join("made");
    skill(&made, "made by skill-creator");
    let sync = skills(&w, false);
    sync.pass();
    assert_eq!(
        std::fs::read_to_string(ws(&w).join("made/SKILL.md")).unwrap(),
        "made by skill-creator"
    );
    assert!(read_marker(&Tree::root(&ws(&w)).unwrap(), "made").is_none(), "ductor's own now");
    assert_eq!(std::fs::read_link(&made).unwrap(), ws(&w).join("made"));
    let other = home_skills_of(&w, "gemini/chat-c").join("made");
    assert_eq!(std::fs::read_to_string(other.join("SKILL.md")).unwrap(), "made by skill-creator");
}

#[test]
fn a_users_folder_is_never_overwritten_and_the_clash_is_reported() {
    let w = world();
    skill(&ws(&w).join("pdf"), "workspace pdf");
    let mine = home_skills_of(&w, "codex/chat-b").join("pdf");
    skill(&mine, "my own pdf");
    let sync = skills(&w, false);
    let report = sync.pass();
    assert_eq!(std::fs::read_to_string(mine.join("SKILL.md")).unwrap(), "my own pdf");
    assert_eq!(report.conflicts, 1);
    let conflict = &sync.conflicts()[0];
    assert_eq!(
        (conflict.here.as_str(), conflict.there.as_str()),
        (mine.to_str().unwrap(), ws(&w).join("pdf").to_str().unwrap())
    );
    // Identical content is folded into the workspace's.
    std::fs::write(mine.join("SKILL.md"), "workspace pdf").unwrap();
    assert_eq!(sync.pass().conflicts, 0);
    assert!(mine.symlink_metadata().unwrap().is_symlink());
}

#[test]
fn planted_links_are_never_followed_copied_or_exported() {
    let w = world();
    // workspace/skills itself swapped for a link: refused, nothing written.
    std::fs::create_dir_all(w.home.workspace()).unwrap();
    symlink(&w.victim, ws(&w)).unwrap();
    skill(&w.operator.join(".claude/skills/op"), "op");
    let refused = skills(&w, false).pass();
    assert_eq!((refused.applied, refused.conflicts), (0, 1));
    assert_eq!(std::fs::read_dir(&w.victim).unwrap().count(), 1, "nothing written there");
    std::fs::remove_file(ws(&w)).unwrap();
    std::fs::remove_dir_all(w.operator.join(".claude/skills/op")).unwrap();
    std::fs::create_dir_all(ws(&w)).unwrap();
    symlink(&w.victim, ws(&w).join("evil")).unwrap();
    std::fs::create_dir_all(home_skills_of(&w, "claude/chat-a")).unwrap();
    symlink(&w.victim, home_skills_of(&w, "claude/chat-a").join("planted")).unwrap();
    skill(&ws(&w).join("good"), "good");
    let sync = skills(&w, true);
    sync.pass();
    let op = w.operator.join(".claude/skills");
    assert!(op.join("good").symlink_metadata().unwrap().is_symlink(), "exported when asked");
    assert!(op.join("evil").symlink_metadata().is_err(), "a planted link is never exported");
    assert!(home_skills_of(&w, "codex/chat-b").join("evil").symlink_metadata().is_err());
    assert!(!ws(&w).join("planted").exists(), "a link in a home is not adopted");
    assert_eq!(std::fs::read_dir(&w.victim).unwrap().count(), 1, "nothing written there");
    // Shutdown removes our links only.
    skill(&op.join("operators-own"), "mine");
    assert_eq!(sync.unexport(), 1);
    assert!(op.join("operators-own/SKILL.md").exists());
}

#[test]
fn a_skill_over_the_caps_is_reported_not_copied() {
    let w = world();
    let big = w.operator.join(".claude/skills/big");
    skill(&big, "big");
    for i in 0..=disk::MAX_ENTRIES {
        std::fs::write(big.join(format!("f{i}")), "x").unwrap();
    }
    let sync = skills(&w, false);
    assert_eq!(sync.pass().conflicts, 1);
    assert!(!ws(&w).join("big").exists());
}

#[test]
fn a_new_home_gets_links_to_every_workspace_skill() {
    let w = world();
    skill(&ws(&w).join("one"), "1");
    std::fs::write(ws(&w).join("notes.md"), "not a skill").unwrap();
    let sync = skills(&w, false);
    let home = w.home.provider_homes().join("gemini/chat-new");
    std::fs::create_dir_all(&home).unwrap();
    sync.link_new_home(Provider::Gemini, &home);
    let skills = home.join(".gemini/skills");
    assert_eq!(std::fs::read_link(skills.join("one")).unwrap(), ws(&w).join("one"));
    assert!(skills.join("notes.md").symlink_metadata().is_err());
}
