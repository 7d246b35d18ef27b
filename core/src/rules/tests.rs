//! The rule-sync decisions on their edge cases.

use super::*;

const FRAMEWORK: &str = "# ductor rules\n\nBe brief.\n";
const NEWER: &str = "# ductor rules\n\nBe brief. Use buttons.\n";
const NOW: &str = "20260501T090000Z";

fn text(text: &str, modified_ns: i64) -> FileView {
    FileView::Text { text: text.to_owned(), modified_ns }
}

fn synced(content: &str, block: BlockState) -> Record {
    Record { synced: hash(content.as_bytes()), block, framework: hash(FRAMEWORK.as_bytes()) }
}

fn run(record: Option<Record>, framework: &str, files: [FileView; 3]) -> Plan {
    decide(&Input { record, framework, files, now: NOW })
}

/// The three files after the plan (a skipped file keeps its view).
fn after(plan: &Plan, files: &[FileView; 3]) -> Vec<Option<String>> {
    (0..3)
        .map(|i| match (&files[i], plan.writes.contains(&i)) {
            (_, true) => Some(plan.content.clone()),
            (FileView::Text { text, .. }, false) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn all_three_missing_are_made_from_the_framework() {
    let files = [FileView::Missing, FileView::Missing, FileView::Missing];
    let plan = run(None, FRAMEWORK, files);
    assert_eq!(plan.writes, [0, 1, 2]);
    assert_eq!(plan.content, fresh_file(FRAMEWORK));
    assert!(plan.content.contains(FRAMEWORK) && plan.content.contains(END));
    assert_eq!(plan.record, synced(&fresh_file(FRAMEWORK), BlockState::Managed));
    assert_eq!(plan.notes, [Note::Created]);
    // Deleted after a sync that had user text: made anew, since no copy is left.
    let old = synced(&format!("mine\n{}", fresh_file(FRAMEWORK)), BlockState::Managed);
    let files = [FileView::Missing, FileView::Missing, FileView::Missing];
    assert_eq!(run(Some(old), FRAMEWORK, files).content, fresh_file(FRAMEWORK));
}

#[test]
fn files_in_sync_need_nothing() {
    let fresh = fresh_file(FRAMEWORK);
    let files = [text(&fresh, 1), text(&fresh, 2), text(&fresh, 3)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert!(plan.writes.is_empty() && plan.backups.is_empty() && plan.notes.is_empty());
    assert_eq!(plan.record, synced(&fresh, BlockState::Managed));
}

#[test]
fn a_user_edit_in_one_file_is_carried_to_the_others() {
    let fresh = fresh_file(FRAMEWORK);
    let edited = format!("{fresh}\nAlways answer in German.\n");
    let files = [text(&fresh, 1), text(&fresh, 1), text(&edited, 5)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files.clone());
    assert_eq!(plan.content, edited);
    assert_eq!(plan.writes, [0, 1]);
    assert!(plan.backups.is_empty());
    assert_eq!(plan.notes, [Note::Carried { from: "GEMINI.md" }]);
    assert_eq!(after(&plan, &files), vec![Some(edited.clone()); 3]);
    assert_eq!(plan.record.synced, hash(edited.as_bytes()));
}

#[test]
fn edits_in_two_files_keep_the_newest_and_back_up_the_other() {
    let fresh = fresh_file(FRAMEWORK);
    let older = format!("{fresh}older edit\n");
    let newer = format!("{fresh}newer edit\n");
    let files = [text(&older, 10), text(&newer, 20), text(&fresh, 1)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert_eq!(plan.content, newer);
    assert_eq!(plan.writes, [0, 2]);
    let backup = format!("CLAUDE.md.conflict-{NOW}");
    assert_eq!(plan.backups, [(backup.clone(), older)]);
    assert_eq!(
        plan.notes[0],
        Note::Conflict { winner: "AGENTS.md", losers: vec![("CLAUDE.md", backup)] }
    );
    // The same edit in two files is no conflict.
    let files = [text(&newer, 10), text(&newer, 20), text(&fresh, 1)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert!(plan.backups.is_empty() && plan.writes == [2]);
}

#[test]
fn a_deleted_or_linked_file_is_recreated_from_its_siblings() {
    let content = format!("{}my rule\n", fresh_file(FRAMEWORK));
    let files = [text(&content, 1), FileView::Missing, FileView::Replace];
    let plan = run(Some(synced(&content, BlockState::Managed)), FRAMEWORK, files);
    assert_eq!((plan.writes.as_slice(), plan.content.as_str()), (&[1, 2][..], content.as_str()));
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
}

#[test]
fn a_framework_upgrade_refreshes_an_unedited_block_and_keeps_the_user_text() {
    let old = format!("my intro\n\n{}\nmy outro\n", fresh_file(FRAMEWORK));
    let files = [text(&old, 1), text(&old, 1), text(&old, 1)];
    let plan = run(Some(synced(&old, BlockState::Managed)), NEWER, files);
    assert_eq!(plan.content, format!("my intro\n\n{}\nmy outro\n", fresh_file(NEWER)));
    assert_eq!(plan.writes, [0, 1, 2]);
    assert_eq!(plan.notes, [Note::Refreshed]);
    assert_eq!(plan.record.block, BlockState::Managed);
    assert_eq!(plan.record.framework, hash(NEWER.as_bytes()));
    // Also with no record at all (the block proves itself by its hash).
    let files = [text(&old, 1), FileView::Missing, FileView::Missing];
    assert_eq!(run(None, NEWER, files).content, plan.content);
}

#[test]
fn a_framework_upgrade_leaves_an_edited_block_alone_and_says_so_once() {
    let fresh = fresh_file(FRAMEWORK);
    let edited = fresh.replace("Be brief.", "Be very detailed.");
    let files = [text(&edited, 5), text(&fresh, 1), text(&fresh, 1)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert_eq!(plan.content, edited, "the edit inside the block wins");
    assert_eq!(plan.record.block, BlockState::Edited);
    assert!(!plan.notes.contains(&Note::NotApplied), "no upgrade yet: {:?}", plan.notes);

    let files = [text(&edited, 5), text(&edited, 5), text(&edited, 5)];
    let plan = run(Some(plan.record), NEWER, files.clone());
    assert!(plan.writes.is_empty(), "the user's block is not replaced");
    assert_eq!(plan.notes, [Note::NotApplied]);
    let again = run(Some(plan.record), NEWER, files);
    assert!(again.notes.is_empty(), "reported once: {:?}", again.notes);
}

#[test]
fn a_removed_block_stays_removed_but_an_edited_one_comes_back() {
    let fresh = fresh_file(FRAMEWORK);
    let files = [text(&fresh, 1), text("only my rules\n", 9), text(&fresh, 1)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert_eq!(plan.content, "only my rules\n");
    assert_eq!(plan.record.block, BlockState::Removed);
    assert!(plan.notes.contains(&Note::BlockRemoved));
    let files =
        [text("only my rules\n", 9), text("only my rules\n", 9), text("only my rules\n", 9)];
    let later = run(Some(plan.record), NEWER, files);
    assert!(later.writes.is_empty(), "not re-added, not even on upgrade");
    assert_eq!(later.record.block, BlockState::Removed);

    let edited = fresh.replace("Be brief.", "Be loud.");
    let files = [text("mine\n", 9), text(&edited, 1), text(&edited, 1)];
    let plan = run(Some(synced(&edited, BlockState::Edited)), FRAMEWORK, files);
    assert_eq!(plan.content, format!("{fresh}mine\n"));
    assert_eq!(plan.record.block, BlockState::Managed);
    assert!(plan.notes.contains(&Note::BlockRestored));
}

#[test]
fn oversize_or_odd_files_are_left_alone() {
    let fresh = fresh_file(FRAMEWORK);
    let edited = format!("{fresh}x\n");
    let files = [FileView::Skip("too big".into()), text(&edited, 3), text(&fresh, 1)];
    let plan = run(Some(synced(&fresh, BlockState::Managed)), FRAMEWORK, files);
    assert_eq!(plan.writes, [2], "the skipped file is never written");
    assert_eq!(plan.notes[0], Note::Skipped { file: "CLAUDE.md", why: "too big".into() });
}

#[test]
fn a_first_sync_adopts_the_users_file_and_replaces_legacy_ones() {
    let legacy = "# ductor workspace\n\nThis file is managed by ductor and rewritten on upgrade.\n";
    let files = [text(legacy, 1), text(legacy, 1), text(legacy, 1)];
    let plan = run(None, FRAMEWORK, files);
    assert_eq!((plan.content, plan.writes.len()), (fresh_file(FRAMEWORK), 3));
    assert!(plan.backups.is_empty(), "an old ductor's own text is no user edit");

    let files = [text("my own claude rules\n", 1), FileView::Missing, text(legacy, 2)];
    let plan = run(None, FRAMEWORK, files);
    assert_eq!(plan.content, format!("{}my own claude rules\n", fresh_file(FRAMEWORK)));
    assert!(plan.backups.is_empty() && plan.writes == [0, 1, 2]);
}

#[test]
fn blocks_are_found_and_proven() {
    let fresh = fresh_file(FRAMEWORK);
    let block = find_block(&fresh).expect("a block");
    assert!(block.unedited() && block.inner == FRAMEWORK && block.start == 0);
    assert_eq!(block.end, fresh.len() - 1, "the blank line after the block is not part of it");
    let open = "intro\n<!-- ductor:begin sha256=00: x -->\nno end\n";
    let block = find_block(open).expect("an unclosed block");
    assert!(!block.unedited() && block.start == 6 && block.end == open.len());
    assert!(find_block("text mentioning <!-- ductor:begin inline\n").is_none());
    assert!(!is_legacy(&fresh));
}
