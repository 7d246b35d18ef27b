//! What a running turn looks like in its preview message: the text so far
//! and one compact status line for tools, thinking and status updates.
//!
//! Tools never get a message each: the line reads like
//! `🔧 Bash ×3 · Read ✓ · Grep …` (finished ones counted, the running one
//! last), so a turn with fifty tool calls still costs one line.

use crate::render::{escape, markdown_to_html};

/// Longest status line kept, in characters.
const MAX_LINE: usize = 200;

/// The tool and status summary of one turn.
#[derive(Debug, Default, Clone)]
pub struct StatusLine {
    /// `(tool name, times run, last ok)` in first-use order.
    tools: Vec<(String, u32, bool)>,
    running: Option<String>,
    status: Option<String>,
}

impl StatusLine {
    /// Records a tool starting or finishing.
    pub fn tool(&mut self, name: &str, summary: &str, finished: bool, ok: bool) {
        if finished {
            if self.running.as_deref().is_some_and(|r| r.starts_with(name)) {
                self.running = None;
            }
            match self.tools.iter_mut().find(|(tool, _, _)| tool == name) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 = ok;
                }
                None => self.tools.push((name.to_owned(), 1, ok)),
            }
        } else {
            let summary: String = summary.chars().take(60).collect();
            self.running = Some(if summary.is_empty() {
                name.to_owned()
            } else {
                format!("{name}: {summary}")
            });
        }
    }

    /// Records a status update ("thinking", "compacting", …).
    pub fn status(&mut self, status: &str, detail: &str) {
        self.status = match (status.is_empty(), detail.is_empty()) {
            (true, true) => None,
            (false, true) => Some(status.to_owned()),
            (true, false) => Some(detail.to_owned()),
            (false, false) => Some(format!("{status}: {detail}")),
        };
    }

    /// A tool has run or is running: worth a message of its own.
    pub fn has_tools(&self) -> bool {
        !self.tools.is_empty() || self.running.is_some()
    }

    /// Forgets the status: text arriving means "requesting", "thinking" and
    /// the like are over.
    pub fn clear_status(&mut self) {
        self.status = None;
    }

    /// The line as plain text; empty when nothing happened.
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = self
            .tools
            .iter()
            .map(|(name, count, ok)| {
                let mark = if *ok { "" } else { " ✗" };
                if *count > 1 { format!("{name} ×{count}{mark}") } else { format!("{name}{mark}") }
            })
            .collect();
        if let Some(running) = &self.running {
            parts.push(format!("{running} …"));
        }
        let mut line =
            if parts.is_empty() { String::new() } else { format!("🔧 {}", parts.join(" · ")) };
        if let Some(status) = &self.status {
            if !line.is_empty() {
                line.push_str(" — ");
            }
            line.push_str(&format!("⏳ {status}"));
        }
        if line.chars().count() > MAX_LINE {
            let tail: String = line
                .chars()
                .rev()
                .take(MAX_LINE - 1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            line = format!("…{tail}");
        }
        line
    }
}

/// The preview of a running turn: rendered text, then the status line in italics.
pub fn preview_html(markdown: &str, status: &StatusLine) -> String {
    let mut html = markdown_to_html(markdown);
    let line = status.render();
    if !line.is_empty() {
        if !html.is_empty() {
            html.push_str("\n\n");
        }
        html.push_str(&format!("<i>{}</i>", escape(&line)));
    }
    if html.is_empty() {
        html.push_str("<i>…</i>");
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_collapse_into_one_line() {
        let mut line = StatusLine::default();
        for _ in 0..3 {
            line.tool("Bash", "ls", false, false);
            line.tool("Bash", "", true, true);
        }
        line.tool("Read", "", true, false);
        line.tool("Grep", "TODO <x>", false, false);
        assert_eq!(line.render(), "🔧 Bash ×3 · Read ✗ · Grep: TODO <x> …");
        line.status("thinking", "");
        assert!(line.render().ends_with("— ⏳ thinking"));
        let html = preview_html("Hi", &line);
        assert!(html.starts_with("Hi\n\n<i>🔧 Bash ×3"), "{html}");
        assert!(html.contains("TODO &lt;x&gt;"));
    }

    #[test]
    fn empty_preview_is_an_ellipsis() {
        assert_eq!(preview_html("", &StatusLine::default()), "<i>…</i>");
    }
}
