//! Issue 16's budget for the rule sync: one pass over the workspace plus 200
//! task folders (100 `cron_tasks/<name>/`, 100 `tasks/<id>/`), on a real
//! directory tree with core's real store, when nothing changed (the pass
//! every `[rules].sync_interval_seconds` costs: a `stat` per rule file) and
//! when one rule file changed (read, decide, carry the edit to two files).
//! Also the first pass of a never-synced tree (which refreshes and writes
//! every task folder), and core's start pass (records loaded, every file read
//! once, nothing to write). Prints the figures.
//!
//! Run: `cargo bench -p ductor-core --bench rules`.

use std::time::{Duration, Instant};

use ductor_core::automation::task_folder;
use ductor_core::rules::{RuleSync, store::MIGRATIONS, sync::seed_new};
use ductor_core::store::Store;
use ductor_daemon::safe_fs::Tree;

const FOLDERS: usize = 200;
const ROUNDS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn print(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{what:<28} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs   ({} passes)",
        mean.as_secs_f64() * 1e6,
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6,
        samples.len()
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ws = dir.path().join("workspace");
    std::fs::create_dir_all(&ws).expect("workspace");
    for i in 0..FOLDERS / 2 {
        task_folder::ensure(&ws, &format!("job-{i}"), "Job", "do it", true).expect("cron folder");
        let task = Tree::root(&ws).and_then(|r| r.dir_or_make(&format!("tasks/t{i:04}"), 0o700));
        seed_new(&task.expect("task folder"), "# Task agent rules\n").expect("task rules");
    }
    let store = Store::open(&dir.path().join("state.db"), MIGRATIONS).expect("store");
    let mut sync = RuleSync::new(ws.clone(), store.clone(), 256 * 1024).expect("rule sync");

    let start = Instant::now();
    let first = sync.pass();
    let cold = start.elapsed();
    println!("first pass (reads all):      {:>8.1} µs   {first:?}", cold.as_secs_f64() * 1e6);

    let mut quiet = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let report = sync.pass();
        quiet.push(start.elapsed());
        assert_eq!((report.dirs, report.decided), (FOLDERS + 1, 0), "{report:?}");
    }
    print("nothing changed", quiet);

    let mut one = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let folder = ws.join(format!("cron_tasks/job-{}", round % (FOLDERS / 2)));
        let path = folder.join(["CLAUDE.md", "AGENTS.md", "GEMINI.md"][round % 3]);
        let mut text = std::fs::read_to_string(&path).expect("rule file");
        text.push_str(&format!("- user rule {round}\n"));
        std::fs::write(&path, text).expect("edit");
        let start = Instant::now();
        let report = sync.pass();
        one.push(start.elapsed());
        assert_eq!((report.decided, report.written), (1, 2), "{report:?}");
    }
    print("one file changed", one);

    // Core restarting: records from state.db, no stamps yet, so every file
    // is read once and found in sync (the cost of a normal start).
    let mut restarts = Vec::with_capacity(20);
    for _ in 0..20 {
        let mut fresh = RuleSync::new(ws.clone(), store.clone(), 256 * 1024).expect("rule sync");
        let start = Instant::now();
        let report = fresh.pass();
        restarts.push(start.elapsed());
        assert_eq!((report.decided, report.written), (FOLDERS + 1, 0), "{report:?}");
    }
    print("start pass (reads all)", restarts);
}
