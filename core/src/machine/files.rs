//! `/showfiles`: a button file browser over the workspace (its
//! `output_to_user/` first) that sends the file chosen, within
//! `[agent].file_access` (the same check as an agent's `<file:>` tag).
//! The workspace holds every chat's downloads, so only admin chats may
//! browse it. Listing goes through the [`Env`] port (`safe_fs`: links are
//! never followed, nor listed); button ids are short indexes into the
//! listing the chat was shown, so no path travels in a 64-byte callback.

use super::{Env, Machine};
use crate::model::{Button, FinalReply, OutKind, SessionKey};

/// The selector's id: each listing replaces the previous one.
const SELECTOR: &str = "showfiles";
/// Most entries shown at once.
const MAX_SHOWN: usize = 30;

/// A folder of the workspace, as [`Env::list_dir`] sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirListing {
    /// Absolute path of the folder.
    pub path: String,
    /// Subfolders (not links), sorted.
    pub dirs: Vec<String>,
    /// Regular files with their sizes, sorted.
    pub files: Vec<(String, u64)>,
}

/// What the chat's browser shows now.
#[derive(Debug, Default)]
pub(super) struct Browse {
    dir: String,
    dirs: Vec<String>,
    files: Vec<String>,
}

impl<E: Env> Machine<E> {
    /// `/showfiles [FOLDER]`: the listing of a workspace folder.
    pub(super) fn cmd_showfiles(&mut self, key: &SessionKey, event_id: &str, dir: Option<String>) {
        if !self.is_admin(key) {
            let text = "Only admin chats can browse the workspace ([agent].admin_chats): \
                        it holds every chat's files.";
            return self.notice(key, event_id, text);
        }
        let dir = dir.unwrap_or_default().trim_matches('/').to_owned();
        self.show_dir(key, event_id, &dir);
    }

    /// A `sf:*` button: a folder, a file, or up.
    pub(super) fn on_files_button(&mut self, key: &SessionKey, event_id: &str, what: &str) {
        if !self.is_admin(key) {
            return self.notice(key, event_id, "That button is no longer active.");
        }
        let Some(browse) = self.browsing.get(key) else {
            return self.notice(key, event_id, "That listing is gone: send /showfiles again.");
        };
        let index = |s: &str| s.parse::<usize>().ok();
        let dir = browse.dir.clone();
        if what == "up" {
            let parent = dir.rsplit_once('/').map_or("", |(p, _)| p).to_owned();
            return self.show_dir(key, event_id, &parent);
        }
        if let Some(sub) = what.strip_prefix('d').and_then(index).and_then(|i| browse.dirs.get(i)) {
            let path = if dir.is_empty() { sub.clone() } else { format!("{dir}/{sub}") };
            return self.show_dir(key, event_id, &path);
        }
        if let Some(name) = what.strip_prefix('f').and_then(index).and_then(|i| browse.files.get(i))
        {
            let name = name.clone();
            return self.send_chosen(key, event_id, &dir, &name);
        }
        self.notice(key, event_id, "That button is no longer active.");
    }

    fn show_dir(&mut self, key: &SessionKey, event_id: &str, dir: &str) {
        let listing = match self.env.list_dir(key.agent(), dir) {
            Ok(listing) => listing,
            Err(error) => {
                return self.notice(key, event_id, format!("Cannot open /{dir}: {error}"));
            }
        };
        let mut buttons = Vec::new();
        if !dir.is_empty() {
            buttons.push(vec![Button { id: "sf:up".into(), label: "⬆️ Up".into() }]);
        }
        let shown_dirs: Vec<String> = listing.dirs.iter().take(MAX_SHOWN).cloned().collect();
        let room = MAX_SHOWN.saturating_sub(shown_dirs.len());
        let shown_files: Vec<(String, u64)> = listing.files.iter().take(room).cloned().collect();
        for (i, name) in shown_dirs.iter().enumerate() {
            buttons.push(vec![Button { id: format!("sf:d{i}"), label: format!("📁 {name}") }]);
        }
        for (i, (name, size)) in shown_files.iter().enumerate() {
            let label = format!("📄 {name} ({})", human_size(*size));
            buttons.push(vec![Button { id: format!("sf:f{i}"), label }]);
        }
        let hidden =
            listing.dirs.len() + listing.files.len() - shown_dirs.len() - shown_files.len();
        let mut text = format!(
            "📂 workspace/{dir}\n{} folders, {} files. Press a file to get it.",
            listing.dirs.len(),
            listing.files.len()
        );
        if hidden > 0 {
            text.push_str(&format!("\n…and {hidden} more: /showfiles FOLDER opens one by name."));
        }
        let files = shown_files.into_iter().map(|(name, _)| name).collect();
        self.browsing.insert(key.clone(), Browse { dir: dir.to_owned(), dirs: shown_dirs, files });
        let menu = OutKind::Selector { selector_id: SELECTOR.into(), text, buttons };
        self.send(key, "", event_id, menu);
    }

    fn send_chosen(&mut self, key: &SessionKey, event_id: &str, dir: &str, name: &str) {
        let path = match self.env.list_dir(key.agent(), dir) {
            Ok(listing) => format!("{}/{name}", listing.path.trim_end_matches('/')),
            Err(error) => {
                return self.notice(key, event_id, format!("Cannot open /{dir}: {error}"));
            }
        };
        match self.env.resolve_file(key.agent(), &path) {
            Ok(file) => {
                let reply = FinalReply {
                    text: format!("📎 {name}"),
                    buttons: Vec::new(),
                    files: vec![file],
                    footer: String::new(),
                    notify: true,
                };
                self.send(key, "", event_id, OutKind::Final(reply));
            }
            Err(reason) => self.notice(key, event_id, format!("{name} was not sent: {reason}.")),
        }
    }
}

/// 1536 → "1.5 KB".
fn human_size(bytes: u64) -> String {
    match bytes {
        0..=1023 => format!("{bytes} B"),
        1024..=1_048_575 => format!("{:.1} KB", bytes as f64 / 1024.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_048_576.0),
    }
}
