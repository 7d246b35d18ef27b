//! Inline keyboards for core's button rows.
//!
//! Core's buttons carry opaque ids (at most 64 bytes, Telegram's
//! `callback_data` limit) that go back to core in a `ButtonPress`; the
//! agent's own `[button:Label]` markers are parsed by core, which sends them
//! as buttons like any other. Keyboards sent by earlier versions carried the
//! label behind [`LEGACY_SAY_PREFIX`]; a press on one still works, as the
//! agent-button id core gives such a label.

use ductor_proto::pb;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

/// Callback data prefix of marker buttons sent before core parsed markers.
pub const LEGACY_SAY_PREFIX: &str = "ductor:say:";
/// Core's id prefix of agent buttons: the rest is the label.
const AGENT_BUTTON_PREFIX: &str = "b:";
/// Telegram's `callback_data` limit in bytes.
const CALLBACK_LIMIT: usize = 64;

/// The button id core gets for `callback_data`.
pub fn button_id(data: &str) -> String {
    match data.strip_prefix(LEGACY_SAY_PREFIX) {
        Some(label) => format!("{AGENT_BUTTON_PREFIX}{label}"),
        None => data.to_owned(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_fits_64_bytes() {
        let long = "é".repeat(60);
        let rows = [pb::ButtonRow {
            buttons: vec![pb::Button { id: format!("b:{long}"), label: long.clone() }],
        }];
        let keyboard = core_keyboard(&rows).expect("one button");
        let button = &keyboard.inline_keyboard[0][0];
        let teloxide::types::InlineKeyboardButtonKind::CallbackData(data) = &button.kind else {
            panic!("callback button expected");
        };
        assert!(data.len() <= 64);
        assert!(data.starts_with("b:é"));
        assert_eq!(button.text, long);
    }

    #[test]
    fn legacy_marker_presses_become_agent_buttons() {
        assert_eq!(button_id("ductor:say:Yes please"), "b:Yes please");
        assert_eq!(button_id("mq:42"), "mq:42");
    }
}
