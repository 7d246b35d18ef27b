//! The planner's edge cases, without a disk.

use super::*;

const WS: &str = "/d/workspace/skills";
const CLAUDE: &str = "/op/.claude/skills";
const CODEX: &str = "/op/.codex/skills";
const HOME_A: &str = "/d/providers/claude/chat-a/skills";
const HOME_B: &str = "/d/providers/codex/chat-b/skills";

fn d(byte: u8) -> Digest {
    [byte; 32]
}

fn place(path: &str, entries: &[(&str, Found)]) -> Place {
    Place {
        path: PathBuf::from(path),
        entries: entries.iter().map(|(n, f)| ((*n).to_owned(), f.clone())).collect(),
    }
}

fn operator(path: &str, export: bool, entries: &[(&str, Found)]) -> OperatorPlace {
    OperatorPlace { place: place(path, entries), export }
}

fn link_to_ws(name: &str) -> Found {
    Found::Link(Path::new(WS).join(name))
}

fn managed(copied: u8, now: Option<u8>, source: &str) -> Found {
    Found::Dir {
        digest: now.map(d),
        marker: Some(Marker { source: Path::new(source).to_path_buf(), digest: d(copied) }),
    }
}

fn snapshot(ws: &[(&str, Found)], operators: Vec<OperatorPlace>, homes: Vec<Place>) -> Snapshot {
    Snapshot { workspace: place(WS, ws), operators, homes }
}

fn link(place: &str, name: &str, replace: bool) -> Action {
    Action::Link { place: PathBuf::from(place), name: name.to_owned(), replace }
}

fn whys(plan: &Plan) -> Vec<(&str, &str)> {
    plan.conflicts.iter().map(|c| (c.skill.as_str(), c.why.as_str())).collect()
}

#[test]
fn a_workspace_skill_is_linked_into_every_home_and_nothing_else_happens_twice() {
    let homes = vec![place(HOME_A, &[]), place(HOME_B, &[("pdf", link_to_ws("pdf"))])];
    let s = snapshot(&[("pdf", Found::dir(None))], vec![operator(CLAUDE, false, &[])], homes);
    let plan = plan(&s);
    assert_eq!(plan.actions, [link(HOME_A, "pdf", false)]);
    assert!(plan.conflicts.is_empty());
}

#[test]
fn hidden_and_tool_folders_are_never_skills() {
    let ws = [(".git", Found::dir(None)), ("node_modules", Found::dir(None))];
    let homes = vec![place(HOME_B, &[(".system", Found::dir(None))])];
    let s = snapshot(&ws, vec![], homes);
    assert_eq!(plan(&s), Plan::default());
}

#[test]
fn an_operator_skill_is_imported_then_refreshed_only_while_unmodified() {
    let ops = |digest: u8| vec![operator(CLAUDE, false, &[("op", Found::dir(Some(d(digest))))])];
    let homes = || vec![place(HOME_A, &[])];
    let fresh = plan(&snapshot(&[], ops(1), homes()));
    let import = Action::Import { name: "op".into(), source: CLAUDE.into(), digest: d(1) };
    assert_eq!(fresh.actions, [import, link(HOME_A, "op", false)], "imported before linked");

    // Unchanged on both sides: nothing.
    let same = plan(&snapshot(&[("op", managed(1, Some(1), CLAUDE))], ops(1), homes()));
    assert_eq!(same.actions, [link(HOME_A, "op", false)]);
    // The operator changed it: refreshed.
    let changed = plan(&snapshot(&[("op", managed(1, Some(1), CLAUDE))], ops(2), homes()));
    let refresh = Action::Refresh { name: "op".into(), source: CLAUDE.into(), digest: d(2) };
    assert_eq!(changed.actions[0], refresh);
    // The agent changed the copy: kept, reported, not carried back.
    let edited = plan(&snapshot(&[("op", managed(1, Some(9), CLAUDE))], ops(2), homes()));
    assert!(edited.actions.iter().all(|a| !a.in_workspace()), "{:?}", edited.actions);
    assert_eq!(edited.conflicts.len(), 1);
    assert_eq!(edited.conflicts[0].here, Path::new(WS).join("op"));
    assert_eq!(edited.conflicts[0].there, Path::new(CLAUDE).join("op"));
    assert!(edited.actions.contains(&link(HOME_A, "op", false)), "still usable in chats");
}

#[test]
fn a_managed_copy_whose_source_is_gone_is_dropped_with_its_links_unless_changed() {
    let homes = vec![place(HOME_A, &[("op", link_to_ws("op"))])];
    let gone = plan(&snapshot(&[("op", managed(1, Some(1), CLAUDE))], vec![], homes.clone()));
    let unlink = Action::Unlink { place: HOME_A.into(), name: "op".into() };
    assert_eq!(gone.actions, [Action::Drop { name: "op".into() }, unlink]);
    let kept = plan(&snapshot(&[("op", managed(1, Some(5), CLAUDE))], vec![], homes));
    assert!(kept.actions.is_empty(), "{:?}", kept.actions);
    assert_eq!(whys(&kept).len(), 1);
}

#[test]
fn the_workspace_wins_over_the_operator_and_claude_over_codex() {
    let ops = vec![
        operator(CLAUDE, false, &[("x", Found::dir(Some(d(1))))]),
        operator(CODEX, false, &[("x", Found::dir(Some(d(2))))]),
    ];
    let own = plan(&snapshot(&[("x", Found::dir(Some(d(3))))], ops.clone(), vec![]));
    assert!(own.actions.is_empty());
    let heres: Vec<_> = own.conflicts.iter().map(|c| c.here.clone()).collect();
    assert!(
        heres.contains(&Path::new(CLAUDE).join("x")) && heres.contains(&Path::new(CODEX).join("x"))
    );
    let fresh = plan(&snapshot(&[], ops, vec![]));
    let import = Action::Import { name: "x".into(), source: CLAUDE.into(), digest: d(1) };
    assert_eq!(fresh.actions, [import]);
    assert_eq!(fresh.conflicts[0].here, Path::new(CODEX).join("x"));
    // Identical content is no conflict.
    let equal = vec![operator(CLAUDE, false, &[("x", Found::dir(Some(d(1))))])];
    assert!(plan(&snapshot(&[("x", Found::dir(Some(d(1))))], equal, vec![])).conflicts.is_empty());
}

#[test]
fn a_skill_made_in_a_home_is_adopted_and_reaches_the_other_homes() {
    let homes = vec![
        place(HOME_A, &[("made", Found::dir(Some(d(4))))]),
        place(HOME_B, &[]),
        place("/d/providers/gemini/chat-c/.gemini/skills", &[("made", Found::dir(Some(d(4))))]),
        place("/d/providers/claude/chat-d/skills", &[("made", Found::dir(Some(d(5))))]),
    ];
    let plan = plan(&snapshot(&[], vec![], homes));
    assert_eq!(
        plan.actions,
        [
            Action::Adopt { name: "made".into(), home: HOME_A.into() },
            link(HOME_A, "made", false),
            link(HOME_B, "made", false),
            Action::Dedupe {
                place: "/d/providers/gemini/chat-c/.gemini/skills".into(),
                name: "made".into()
            },
        ]
    );
    assert_eq!(whys(&plan), [("made", "differs from the workspace skill of this name; both kept")]);
}

#[test]
fn nothing_that_is_not_ours_is_overwritten_in_a_home() {
    let homes = vec![place(
        HOME_A,
        &[
            ("real", Found::dir(Some(d(7)))),
            ("file", Found::Other),
            ("external", Found::Link("/elsewhere/external".into())),
            ("stale", Found::Link(Path::new(WS).join("old-name"))),
            ("gone", link_to_ws("gone")),
        ],
    )];
    let ws = [
        ("real", Found::dir(Some(d(1)))),
        ("file", Found::dir(None)),
        ("external", Found::dir(None)),
        ("stale", Found::dir(None)),
    ];
    let plan = plan(&snapshot(&ws, vec![], homes));
    assert_eq!(
        plan.actions,
        [Action::Unlink { place: HOME_A.into(), name: "gone".into() }, link(HOME_A, "stale", true),]
    );
    let names: Vec<_> = plan.conflicts.iter().map(|c| c.skill.as_str()).collect();
    assert_eq!(names, ["external", "file", "real"]);
}

#[test]
fn a_link_planted_in_the_workspace_is_not_a_skill_and_is_never_linked_anywhere() {
    let ops = vec![operator(CLAUDE, true, &[])];
    let homes = vec![place(HOME_A, &[("evil", link_to_ws("evil"))])];
    let plan = plan(&snapshot(&[("evil", Found::Link("/op/.ssh".into()))], ops, homes));
    assert_eq!(plan.actions, [Action::Unlink { place: HOME_A.into(), name: "evil".into() }]);
    assert_eq!(plan.conflicts[0].here, Path::new(WS).join("evil"));
    assert_eq!(plan.conflicts[0].there, Path::new("/op/.ssh"));
}

#[test]
fn export_links_into_operator_folders_only_when_asked_and_removes_only_our_links() {
    let entries = [
        ("mine", Found::dir(None)),
        ("ours", link_to_ws("ours")),
        ("user-link", Found::Link("/op/my-skills/user-link".into())),
    ];
    let ws = [("mine", Found::dir(None)), ("ours", Found::dir(None)), ("new", Found::dir(None))];
    let on = plan(&snapshot(&ws, vec![operator(CLAUDE, true, &entries)], vec![]));
    assert_eq!(on.actions, [link(CLAUDE, "new", false)]);
    let off = plan(&snapshot(&ws, vec![operator(CLAUDE, false, &entries)], vec![]));
    assert_eq!(off.actions, [Action::Unlink { place: CLAUDE.into(), name: "ours".into() }]);
    // The operator's real "mine" is a source compared with the workspace's.
    assert_eq!(whys(&on).len(), 1);
}

#[test]
fn a_source_too_large_to_copy_is_reported_not_imported() {
    let ops = vec![operator(CLAUDE, false, &[("big", Found::dir(None))])];
    let plan = plan(&snapshot(&[], ops, vec![place(HOME_A, &[])]));
    assert!(plan.actions.is_empty());
    assert_eq!(whys(&plan), [("big", "too large or unreadable to copy into the workspace")]);
}
