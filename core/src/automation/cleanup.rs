//! The daily retention sweep (`[cleanup]`): files older than
//! `media_files_days` in `workspace/telegram_files/` and
//! `workspace/matrix_files/`, and older than `output_to_user_days` in
//! `workspace/output_to_user/`, are deleted (recursively), then empty
//! subfolders (the dated ones) are pruned. The folders themselves stay.
//! It runs once a day at `check_hour` in the user's time zone and sends no message.
//!
//! Symlinks are never followed, not even at the swept folders themselves:
//! every directory is opened by descriptor with `O_NOFOLLOW`, and a link is
//! judged and removed as a link, so a sweep cannot reach outside the workspace.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ductor_daemon::config::CleanupConfig;
use ductor_daemon::safe_fs::Tree;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::clock::SharedClock;

/// Folders swept with `media_files_days`.
pub const MEDIA_DIRS: [&str; 2] = ["telegram_files", "matrix_files"];
/// Folder swept with `output_to_user_days`.
pub const OUTPUT_DIR: &str = "output_to_user";

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Files (and links) deleted.
    pub files_deleted: u64,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Empty folders removed.
    pub dirs_removed: u64,
    /// Entries that could not be read or removed (logged, skipped).
    pub errors: u64,
}

/// Sweeps `workspace` as of `now`. A 0-day setting disables that part.
pub fn sweep(workspace: &Path, config: &CleanupConfig, now: SystemTime) -> SweepReport {
    let mut report = SweepReport::default();
    let day = Duration::from_secs(86_400);
    let parts = MEDIA_DIRS
        .iter()
        .map(|dir| (*dir, config.media_files_days))
        .chain(std::iter::once((OUTPUT_DIR, config.output_to_user_days)));
    let Ok(root) = Tree::root(workspace) else { return report };
    for (dir, days) in parts {
        if days == 0 {
            continue;
        }
        let Some(cutoff) = now.checked_sub(day * days) else { continue };
        let cutoff = cutoff.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        // The swept folder itself is opened without following a link (an
        // agent may have replaced it with one to `~`): refused, not swept.
        match root.dir(dir) {
            Ok(tree) => {
                sweep_dir(&tree, cutoff, &mut report, 0);
            }
            Err(error) if error.is_not_found() => {}
            Err(error) => {
                tracing::warn!(%error, "cleanup: folder skipped");
                report.errors += 1;
            }
        }
    }
    report
}

/// Deletes old entries below `dir` (links as links, by descriptor); returns
/// true when `dir` ended up empty.
fn sweep_dir(dir: &Tree, cutoff: i64, report: &mut SweepReport, depth: usize) -> bool {
    let Ok(entries) = dir.entries() else {
        report.errors += 1;
        return false;
    };
    let mut empty = true;
    for entry in entries {
        if entry.is_dir {
            let emptied = depth < 32
                && dir.dir(&entry.name).is_ok_and(|sub| sweep_dir(&sub, cutoff, report, depth + 1));
            if !emptied {
                empty = false;
                continue;
            }
            match dir.remove(&entry.name, true) {
                Ok(()) => report.dirs_removed += 1,
                Err(error) => {
                    tracing::warn!(%error, "cleanup: remove folder");
                    report.errors += 1;
                    empty = false;
                }
            }
            continue;
        }
        if entry.modified >= cutoff {
            empty = false;
            continue;
        }
        match dir.remove(&entry.name, false) {
            Ok(()) => {
                report.files_deleted += 1;
                report.bytes_freed += if entry.is_link { 0 } else { entry.size };
            }
            Err(error) => {
                tracing::warn!(%error, "cleanup: delete file");
                report.errors += 1;
                empty = false;
            }
        }
    }
    empty
}

/// True when a sweep is due at `now`: it is `check_hour` or later in `zone`
/// and no sweep ran yet on that local day.
pub fn due(
    config: &CleanupConfig,
    now: Timestamp,
    zone: &TimeZone,
    last_sweep_day: Option<Date>,
) -> bool {
    let local = now.to_zoned(zone.clone());
    let past_hour = i16::from(local.hour() as u8) >= i16::from(config.check_hour);
    config.enabled && past_hour && last_sweep_day != Some(local.date())
}

/// Where the day of the last sweep is kept: beside the workspace (in
/// `$DUCTOR_HOME`), not inside it, where the agent could write it.
fn marker_path(workspace: &Path) -> std::path::PathBuf {
    workspace.parent().unwrap_or(workspace).join("cleanup-last-sweep")
}

/// The day of the last sweep, if one was recorded.
fn read_last_sweep(marker: &Path) -> Option<Date> {
    std::fs::read_to_string(marker).ok()?.trim().parse().ok()
}

fn write_last_sweep(marker: &Path, day: Date) {
    if let Err(error) = std::fs::write(marker, day.to_string()) {
        tracing::warn!(path = %marker.display(), %error, "cleanup: record the sweep day");
    }
}

/// Runs the sweep of every agent's workspace daily until `shutdown` (the
/// main one first: the day of the last sweep is kept beside it), checking
/// every 10 minutes; `zone` is the user's time zone (a reload replaces it).
pub async fn run(
    mut settings: watch::Receiver<CleanupConfig>,
    workspaces: Vec<std::path::PathBuf>,
    zone: watch::Receiver<TimeZone>,
    clock: SharedClock,
    shutdown: CancellationToken,
) {
    // The day of the last sweep survives restarts, so a core restarted every
    // day after `check_hour` still sweeps once a day, and never twice.
    let Some(main) = workspaces.first() else { return };
    let marker = marker_path(main);
    let mut last_day = read_last_sweep(&marker);
    loop {
        let now = clock.now();
        // Each pass takes the current `[cleanup]` (a reload replaces it).
        let config = settings.borrow_and_update().clone();
        let zone = zone.borrow().clone();
        if due(&config, now, &zone, last_day) {
            let today = now.to_zoned(zone.clone()).date();
            last_day = Some(today);
            write_last_sweep(&marker, today);
            for workspace in &workspaces {
                let (workspace, config) = (workspace.clone(), config.clone());
                let at = SystemTime::from(now);
                let shown = workspace.display().to_string();
                match tokio::task::spawn_blocking(move || sweep(&workspace, &config, at)).await {
                    Ok(report) => tracing::info!(workspace = shown, ?report, "cleanup sweep done"),
                    Err(error) => {
                        tracing::error!(workspace = shown, %error, "cleanup sweep failed")
                    }
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = clock.sleep_until(now + jiff::SignedDuration::from_mins(10)) => {}
            // A new `[cleanup]` (say an earlier check hour) is looked at now.
            Ok(()) = settings.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, FileTimes};

    fn touch(path: &Path, age_days: u64, now: SystemTime) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"12345").unwrap();
        let at = now - Duration::from_secs(age_days * 86_400);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(at))
            .unwrap();
    }

    #[test]
    fn deletes_old_files_and_prunes_empty_dated_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path();
        let now = SystemTime::now();
        touch(&ws.join("telegram_files/2026-01-01/old.jpg"), 40, now);
        touch(&ws.join("telegram_files/2026-05-01/new.jpg"), 2, now);
        touch(&ws.join("telegram_files/2026-04-01/mixed/old.ogg"), 31, now);
        touch(&ws.join("telegram_files/2026-04-01/keep.txt"), 29, now);
        touch(&ws.join("matrix_files/a/b/old.png"), 100, now);
        touch(&ws.join("output_to_user/report.pdf"), 8, now);
        touch(&ws.join("output_to_user/old-report.pdf"), 31, now);
        touch(&ws.join("memory_system/MAINMEMORY.md"), 400, now);
        let config = CleanupConfig {
            media_files_days: 30,
            output_to_user_days: 30,
            ..CleanupConfig::default()
        };
        let report = sweep(ws, &config, now);
        assert_eq!(report.files_deleted, 4, "{report:?}");
        assert_eq!(report.bytes_freed, 20);
        assert!(!ws.join("telegram_files/2026-01-01").exists(), "empty dated folder pruned");
        assert!(!ws.join("telegram_files/2026-04-01/mixed").exists());
        assert!(ws.join("telegram_files/2026-04-01/keep.txt").exists());
        assert!(ws.join("telegram_files/2026-05-01/new.jpg").exists());
        assert!(!ws.join("matrix_files/a").exists());
        assert!(ws.join("matrix_files").is_dir(), "the root folder stays");
        assert!(ws.join("output_to_user/report.pdf").exists());
        assert!(!ws.join("output_to_user/old-report.pdf").exists());
        assert!(ws.join("memory_system/MAINMEMORY.md").exists(), "other folders untouched");
    }

    #[cfg(unix)]
    #[test]
    fn never_follows_links_out_of_the_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        touch(&outside.path().join("precious.txt"), 365, now);
        std::fs::create_dir_all(tmp.path().join("output_to_user")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("output_to_user/link")).unwrap();
        sweep(tmp.path(), &CleanupConfig::default(), now);
        assert!(outside.path().join("precious.txt").exists());
        // The swept folder itself replaced by a link: refused, not swept.
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("telegram_files")).unwrap();
        let report = sweep(tmp.path(), &CleanupConfig::default(), now);
        assert!(outside.path().join("precious.txt").exists(), "{report:?}");
        assert_eq!(report.errors, 1, "{report:?}");
    }

    #[test]
    fn zero_days_disables_a_part() {
        let tmp = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        touch(&tmp.path().join("output_to_user/x"), 90, now);
        let config = CleanupConfig { output_to_user_days: 0, ..CleanupConfig::default() };
        assert_eq!(sweep(tmp.path(), &config, now).files_deleted, 0);
    }

    #[test]
    fn due_once_a_day_after_the_check_hour_in_the_user_zone() {
        let config = CleanupConfig::default(); // 03:00
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let ts = |s: &str| s.parse::<Timestamp>().unwrap();
        // 00:30 UTC = 02:30 Berlin (CEST): not yet.
        assert!(!due(&config, ts("2026-05-01T00:30:00Z"), &berlin, None));
        // 01:10 UTC = 03:10 Berlin: due.
        assert!(due(&config, ts("2026-05-01T01:10:00Z"), &berlin, None));
        let today = ts("2026-05-01T01:10:00Z").to_zoned(berlin.clone()).date();
        assert!(!due(&config, ts("2026-05-01T20:00:00Z"), &berlin, Some(today)), "once per day");
        assert!(due(&config, ts("2026-05-02T01:10:00Z"), &berlin, Some(today)));
        let off = CleanupConfig { enabled: false, ..config };
        assert!(!due(&off, ts("2026-05-02T01:10:00Z"), &berlin, None));
    }
    /// Waits (bounded) until `path` is gone; false when it stays.
    async fn gone(path: &Path) -> bool {
        for _ in 0..200 {
            if !path.exists() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_restart_after_the_check_hour_sweeps_once_per_day_not_never() {
        use crate::automation::clock::{Clock, ManualClock};
        let home = tempfile::tempdir().unwrap();
        let workspace = home.path().join("workspace");
        let clock = ManualClock::new("2026-05-01T10:00:00Z".parse().unwrap());
        let start = |clock: &ManualClock| {
            let shutdown = CancellationToken::new();
            tokio::spawn(run(
                watch::channel(CleanupConfig::default()).1,
                vec![workspace.clone()],
                watch::channel(TimeZone::UTC).1,
                std::sync::Arc::new(clock.clone()),
                shutdown.clone(),
            ));
            shutdown
        };
        let stale = workspace.join("output_to_user/stale.txt");
        // First start, after today's check hour, with no sweep recorded: it sweeps.
        // File ages are judged against the (manual) clock, not the wall clock.
        let clock_now = SystemTime::from(clock.now());
        touch(&stale, 90, clock_now);
        let first = start(&clock);
        assert!(gone(&stale).await, "a start after the check hour with no sweep today must sweep");
        first.cancel();
        let recorded = std::fs::read_to_string(home.path().join("cleanup-last-sweep")).unwrap();
        assert_eq!(recorded, "2026-05-01");
        // A restart the same day does not sweep again.
        touch(&stale, 90, clock_now);
        let second = start(&clock);
        assert!(!gone(&stale).await, "a restart on a day already swept must not sweep again");
        // The next day it does, without any further restart.
        clock.advance(jiff::SignedDuration::from_hours(24));
        assert!(gone(&stale).await, "the next day's sweep must run");
        second.cancel();
    }
}
