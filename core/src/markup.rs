//! What an agent may write into its final text for ductor to act on:
//! `[button:Label]` markers (markers on one line form one row; pressing sends
//! the label back as the next message) and `<file:/abs/path>` tags (sent as
//! attachments when the path is under an allowed root). Fenced code blocks
//! are left alone, so an agent can show the syntax.
//!
//! Core is the one place that parses this markup: [`extract`] takes it out
//! of the final text, and [`StreamFilter`] takes it out of the streamed
//! deltas as they arrive, so no gateway ever shows or parses a marker.

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

const BUTTON_OPEN: &str = "[button:";
const FILE_OPEN: &str = "<file:";
const FENCE: &str = "```";
/// An opened marker not closed within this many bytes is text, not a marker
/// (the stream stops holding it back).
const MAX_HELD: usize = 4096;

/// Takes markers and file tags out of streamed text, delta by delta, with
/// the same rules as [`extract`]: text that might still become a marker
/// (an unclosed `[button:` or `<file:`, or the start of a line that might be
/// a fence) is held back until it is decided, everything else goes out at
/// once. A line left with nothing but markers disappears with its newline.
#[derive(Debug, Default)]
pub struct StreamFilter {
    in_fence: bool,
    /// The undecided rest of the current line.
    held: String,
    line: LineState,
}

#[derive(Debug, Default)]
struct LineState {
    /// The line is a fence line or inside a fence: shown verbatim.
    verbatim: Option<bool>,
    /// Something other than white space was shown on this line.
    shown: bool,
    /// A marker or tag was taken out of this line.
    marked: bool,
    /// Leading white space, shown once the line has content.
    indent: String,
}

impl StreamFilter {
    /// The part of the text so far that can be shown, after `delta`.
    pub fn push(&mut self, delta: &str) -> String {
        let mut pending = std::mem::take(&mut self.held);
        pending.push_str(delta);
        let mut out = String::new();
        let mut rest = pending.as_str();
        while let Some(newline) = rest.find('\n') {
            self.line_text(&rest[..newline], true, &mut out);
            self.end_line(&mut out, true);
            rest = &rest[newline + 1..];
        }
        // What stays undecided is kept in `held` by `line_text`.
        self.line_text(rest, false, &mut out);
        out
    }

    /// What is still held, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        let mut out = String::new();
        self.line_text(&rest, true, &mut out);
        self.end_line(&mut out, false);
        out
    }

    /// Handles `text` of the current line; `complete` when the line ends
    /// after it (nothing can be undecided then).
    fn line_text(&mut self, text: &str, complete: bool, out: &mut String) {
        let verbatim = match self.line.verbatim {
            Some(verbatim) => verbatim,
            None => {
                let start = text.trim_start();
                if !complete && FENCE.starts_with(start) && start.len() < FENCE.len() {
                    self.held = text.to_owned();
                    return;
                }
                let fence = start.starts_with(FENCE);
                if fence {
                    self.in_fence = !self.in_fence;
                }
                *self.line.verbatim.insert(fence || self.in_fence)
            }
        };
        if verbatim {
            self.show(text, out);
            return;
        }
        let (shown, held) = strip_markers(text, complete, &mut self.line.marked);
        self.show(&shown, out);
        self.held = held;
    }

    fn show(&mut self, text: &str, out: &mut String) {
        if self.line.shown {
            out.push_str(text);
        } else if text.trim().is_empty() {
            self.line.indent.push_str(text);
        } else {
            out.push_str(&std::mem::take(&mut self.line.indent));
            out.push_str(text);
            self.line.shown = true;
        }
    }

    fn end_line(&mut self, out: &mut String, newline: bool) {
        let line = std::mem::take(&mut self.line);
        if !line.shown && !line.marked {
            out.push_str(&line.indent);
        }
        if newline && (line.shown || !line.marked) {
            out.push('\n');
        }
    }
}

/// Splits `text` into what can be shown (markers and tags removed) and an
/// undecided tail; `marked` is set when something was removed.
fn strip_markers(text: &str, complete: bool, marked: &mut bool) -> (String, String) {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['[', '<']) {
        shown.push_str(&rest[..at]);
        rest = &rest[at..];
        let (open, close) =
            if rest.starts_with('[') { (BUTTON_OPEN, ']') } else { (FILE_OPEN, '>') };
        if let Some(body) = rest.strip_prefix(open) {
            match body.find(close) {
                Some(end) if !body[..end].trim().is_empty() => {
                    *marked = true;
                    rest = &body[end + 1..];
                }
                Some(end) => {
                    shown.push_str(&rest[..open.len() + end + 1]);
                    rest = &body[end + 1..];
                }
                None if complete => break,
                None if body.len() > MAX_HELD => {
                    shown.push_str(&rest[..1]);
                    rest = &rest[1..];
                }
                None => return (shown, rest.to_owned()),
            }
        } else if !complete && open.starts_with(rest) {
            return (shown, rest.to_owned());
        } else {
            shown.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    shown.push_str(rest);
    (shown, String::new())
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

    fn streamed(pieces: &[&str]) -> String {
        let mut filter = StreamFilter::default();
        let mut out: String = pieces.iter().map(|piece| filter.push(piece)).collect();
        out.push_str(&filter.finish());
        out
    }

    /// Trailing white space of lines and of the whole, which the stream keeps
    /// and [`extract`] trims.
    fn normalized(text: &str) -> String {
        text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_owned()
    }

    const SAMPLES: &[&str] = &[
        "Pick one:\n[button:Yes] [button:No]\n[button:Later]\nThanks",
        "Here it is <file:/w/out/a.png> and <file:/etc/passwd>.",
        "Syntax:\n```\n[button:Label] <file:/x>\n```\nafter [button:Go]",
        "  indented [button:A] text\n\nempty [button:] stays, a < b and c [d] e",
        "unclosed [button:never closed",
        "``not a fence`` [button:X]\n   ```rust\nlet v = [1]; // [button:in code]\n   ```\n[button:Z]",
        "ends with a partial [butt",
        "",
    ];

    #[test]
    fn streaming_removes_what_extract_removes_however_the_text_is_cut() {
        for sample in SAMPLES {
            let whole = streamed(&[sample]);
            assert_eq!(normalized(&whole), normalized(&extract(sample).text), "{sample:?}");
            let chars: Vec<(usize, char)> = sample.char_indices().collect();
            for &(at, _) in &chars {
                let (a, b) = sample.split_at(at);
                assert_eq!(streamed(&[a, b]), whole, "{sample:?} cut at {at}");
            }
            let singles: Vec<String> = chars.iter().map(|(_, c)| c.to_string()).collect();
            let singles: Vec<&str> = singles.iter().map(String::as_str).collect();
            assert_eq!(streamed(&singles), whole, "{sample:?} one char at a time");
        }
    }

    #[test]
    fn plain_text_is_never_held_back() {
        let mut filter = StreamFilter::default();
        assert_eq!(filter.push("Hello, "), "Hello, ");
        assert_eq!(filter.push("world [but"), "world ");
        assert_eq!(filter.push("ton:OK] and more"), " and more");
        assert_eq!(filter.push("\n``"), "\n");
        assert_eq!(filter.push("`\ncode [button:kept]"), "```\ncode [button:kept]");
    }

    #[test]
    fn an_unclosed_marker_is_held_back_only_so_long() {
        let mut filter = StreamFilter::default();
        assert_eq!(filter.push("see [button:"), "see ");
        let long = "x".repeat(MAX_HELD + 1);
        assert_eq!(filter.push(&long), format!("[button:{long}"));
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
