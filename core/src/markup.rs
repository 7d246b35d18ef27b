//! What an agent may write into its final text for ductor to act on:
//! `[button:Label]` markers (markers on one line form one row; pressing sends
//! the label back as the next message) and `<file:/abs/path>` tags (sent as
//! attachments when the path is under an allowed root). Fenced code blocks
//! are left alone, so an agent can show the syntax.

use crate::model::{Button, ButtonGrid};

/// Longest button id a transport must accept (Telegram's callback data).
pub const MAX_BUTTON_ID: usize = 64;

/// Prefix of agent-button ids; the rest is the label.
pub const AGENT_BUTTON_PREFIX: &str = "b:";

/// The final text split into what to show and what to act on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Extracted {
    /// Text with markers and tags removed.
    pub text: String,
    /// Button rows.
    pub buttons: ButtonGrid,
    /// Paths from file tags, in order.
    pub files: Vec<String>,
}

/// Cuts `s` to at most `max` bytes on a char boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The button id for an agent button with `label`.
pub fn agent_button(label: &str) -> Button {
    let id = format!(
        "{AGENT_BUTTON_PREFIX}{}",
        truncate_bytes(label, MAX_BUTTON_ID - AGENT_BUTTON_PREFIX.len())
    );
    Button { id, label: label.to_owned() }
}

/// Extracts buttons and file tags from `text`.
pub fn extract(text: &str) -> Extracted {
    let mut out = Extracted::default();
    let mut lines = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            lines.push(line.to_owned());
            continue;
        }
        if in_fence {
            lines.push(line.to_owned());
            continue;
        }
        let (rest, row) = take_buttons(line);
        let rest = take_files(&rest, &mut out.files);
        if !row.is_empty() {
            out.buttons.push(row);
            if rest.trim().is_empty() {
                continue;
            }
        }
        lines.push(rest);
    }
    out.text = lines.join("\n").trim().to_owned();
    out
}

fn take_buttons(line: &str) -> (String, Vec<Button>) {
    let mut row = Vec::new();
    let mut rest = String::with_capacity(line.len());
    let mut cursor = line;
    while let Some(start) = cursor.find("[button:") {
        let after = &cursor[start + "[button:".len()..];
        let Some(end) = after.find(']') else { break };
        let label = after[..end].trim();
        rest.push_str(&cursor[..start]);
        if label.is_empty() {
            rest.push_str(&cursor[start..start + "[button:".len() + end + 1]);
        } else {
            row.push(agent_button(label));
        }
        cursor = &after[end + 1..];
    }
    rest.push_str(cursor);
    (rest.trim_end().to_owned(), row)
}

fn take_files(line: &str, files: &mut Vec<String>) -> String {
    let mut rest = String::with_capacity(line.len());
    let mut cursor = line;
    while let Some(start) = cursor.find("<file:") {
        let after = &cursor[start + "<file:".len()..];
        let Some(end) = after.find('>') else { break };
        let path = after[..end].trim();
        rest.push_str(&cursor[..start]);
        if path.is_empty() {
            rest.push_str(&cursor[start..start + "<file:".len() + end + 1]);
        } else {
            files.push(path.to_owned());
        }
        cursor = &after[end + 1..];
    }
    rest.push_str(cursor);
    rest
}

/// Guesses a MIME type from a file name.
pub fn mime_for(name: &str) -> (&'static str, bool) {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => ("image/png", true),
        "jpg" | "jpeg" => ("image/jpeg", true),
        "gif" => ("image/gif", true),
        "webp" => ("image/webp", true),
        "svg" => ("image/svg+xml", false),
        "pdf" => ("application/pdf", false),
        "txt" | "log" => ("text/plain", false),
        "md" => ("text/markdown", false),
        "csv" => ("text/csv", false),
        "json" => ("application/json", false),
        "html" | "htm" => ("text/html", false),
        "zip" => ("application/zip", false),
        "mp3" => ("audio/mpeg", false),
        "ogg" | "oga" => ("audio/ogg", false),
        "mp4" => ("video/mp4", false),
        _ => ("application/octet-stream", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buttons_on_one_line_form_a_row() {
        let out = extract("Pick one:\n[button:Yes] [button:No]\n[button:Later]");
        assert_eq!(out.text, "Pick one:");
        let labels: Vec<Vec<&str>> =
            out.buttons.iter().map(|r| r.iter().map(|b| b.label.as_str()).collect()).collect();
        assert_eq!(labels, [vec!["Yes", "No"], vec!["Later"]]);
        assert_eq!(out.buttons[0][0].id, "b:Yes");
    }

    #[test]
    fn code_blocks_are_not_parsed() {
        let out = extract("Syntax:\n```\n[button:Label] <file:/x>\n```\ndone");
        assert!(out.buttons.is_empty());
        assert!(out.files.is_empty());
        assert!(out.text.contains("[button:Label] <file:/x>"));
    }

    #[test]
    fn file_tags_are_removed_and_collected() {
        let out = extract("Here it is <file:/w/out/a.png> and <file:/etc/passwd>.");
        assert_eq!(out.files, ["/w/out/a.png", "/etc/passwd"]);
        assert_eq!(out.text, "Here it is  and .");
    }

    #[test]
    fn long_labels_make_ids_of_at_most_64_bytes() {
        let label = "ä".repeat(50);
        let button = agent_button(&label);
        assert!(button.id.len() <= MAX_BUTTON_ID);
        assert!(button.id.starts_with("b:ä"));
        assert_eq!(button.label, label);
    }
}
