//! Inline keyboards: core's button rows, and `[button:Label]` markers the
//! agent wrote into its reply.
//!
//! Core's buttons carry opaque ids (at most 64 bytes, Telegram's
//! `callback_data` limit) that go back to core in a `ButtonPress`. Markers
//! are the agent's own suggestions: they are hidden while streaming, shown
//! as a keyboard on the final reply when core sent no buttons of its own,
//! and a press sends the label as the user's next message (as ductor did).
//! Markers inside fenced code blocks are left alone.

use ductor_proto::pb;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Callback data prefix of marker buttons: the rest is the label.
pub const SAY_PREFIX: &str = "ductor:say:";
/// Telegram's `callback_data` limit in bytes.
const CALLBACK_LIMIT: usize = 64;

/// What a pressed button means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Press {
    /// A core button: send its id back to core.
    Core(String),
    /// A marker button: send the label as a user message.
    Say(String),
}

/// Classifies `callback_data`.
pub fn classify(data: &str) -> Press {
    match data.strip_prefix(SAY_PREFIX) {
        Some(label) => Press::Say(label.to_owned()),
        None => Press::Core(data.to_owned()),
    }
}

/// Removes `[button:…]` markers outside code blocks; returns the text and
/// the marker labels, one row per source line.
pub fn extract_markers(text: &str) -> (String, Vec<Vec<String>>) {
    let mut out = String::with_capacity(text.len());
    let mut rows = Vec::new();
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
        if in_fence || !line.contains("[button:") {
            out.push_str(line);
            continue;
        }
        let (rest, labels) = take_markers(line);
        if !labels.is_empty() {
            rows.push(labels);
        }
        if rest.trim().is_empty() {
            continue;
        }
        out.push_str(rest.trim_end_matches([' ', '\t']).trim_end());
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    (out.trim_end().to_owned(), rows)
}

fn take_markers(line: &str) -> (String, Vec<String>) {
    let mut rest = String::new();
    let mut labels = Vec::new();
    let mut tail = line;
    while let Some(start) = tail.find("[button:") {
        let after = &tail[start + "[button:".len()..];
        let Some(end) = after.find(']') else { break };
        let label = after[..end].trim();
        rest.push_str(&tail[..start]);
        if !label.is_empty() {
            labels.push(label.to_owned());
        }
        tail = &after[end + 1..];
    }
    rest.push_str(tail);
    (rest, labels)
}

/// Truncates to at most `max` bytes on a char boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The keyboard for core's button rows; `None` when there are none.
pub fn core_keyboard(rows: &[pb::ButtonRow]) -> Option<InlineKeyboardMarkup> {
    let rows: Vec<Vec<InlineKeyboardButton>> = rows
        .iter()
        .map(|row| {
            row.buttons
                .iter()
                .map(|button| {
                    InlineKeyboardButton::callback(
                        button.label.clone(),
                        truncate_bytes(&button.id, CALLBACK_LIMIT).to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .filter(|row| !row.is_empty())
        .collect();
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

/// The keyboard for marker labels; `None` when there are none.
pub fn marker_keyboard(rows: &[Vec<String>]) -> Option<InlineKeyboardMarkup> {
    let rows: Vec<Vec<InlineKeyboardButton>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|label| {
                    let data = format!(
                        "{SAY_PREFIX}{}",
                        truncate_bytes(label, CALLBACK_LIMIT - SAY_PREFIX.len())
                    );
                    InlineKeyboardButton::callback(label.clone(), data)
                })
                .collect()
        })
        .collect();
    (!rows.is_empty()).then(|| InlineKeyboardMarkup::new(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_become_rows_and_leave_the_text() {
        let (text, rows) =
            extract_markers("Pick one:\n[button:Yes] [button:No]\n[button:Later]\n\nThanks");
        assert_eq!(text, "Pick one:\n\nThanks");
        assert_eq!(rows, vec![vec!["Yes".to_owned(), "No".to_owned()], vec!["Later".to_owned()]]);
    }

    #[test]
    fn markers_in_code_blocks_stay() {
        let source = "```\n[button:Keep]\n```";
        let (text, rows) = extract_markers(source);
        assert_eq!(text, source);
        assert!(rows.is_empty());
    }

    #[test]
    fn callback_data_fits_64_bytes_and_round_trips() {
        let long = "é".repeat(60);
        let keyboard = marker_keyboard(&[vec![long.clone()]]).expect("one button");
        let button = &keyboard.inline_keyboard[0][0];
        let teloxide::types::InlineKeyboardButtonKind::CallbackData(data) = &button.kind else {
            panic!("callback button expected");
        };
        assert!(data.len() <= 64);
        assert!(matches!(classify(data), Press::Say(label) if long.starts_with(&label)));
        assert_eq!(classify("mq:42"), Press::Core("mq:42".to_owned()));
    }
}
