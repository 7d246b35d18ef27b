//! Markdown (what agents write) to the HTML subset Telegram accepts.
//!
//! Telegram's HTML mode knows `b i u s code pre a blockquote` and three
//! entities; anything else makes the whole message fail with "can't parse
//! entities". So every piece of text is escaped, headings become bold, lists
//! become bullet lines, and raw HTML from the model is shown as text. The
//! output is then cut by [`crate::split`] and, when Telegram still refuses
//! it, turned back into plain text with [`html_to_plain`].

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Renders Markdown as Telegram HTML.
pub fn markdown_to_html(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let mut writer = HtmlWriter::default();
    for event in Parser::new_ext(markdown, options) {
        writer.event(event);
    }
    writer.out.trim_end().to_owned()
}

/// Escapes text for Telegram HTML (`&`, `<`, `>`, and `"` for attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Strips tags and decodes entities: the plain-text retry of a message
/// Telegram refused to parse.
pub fn html_to_plain(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        if c == '<'
            && let Some(end) = rest.find('>')
        {
            rest = &rest[end + 1..];
            continue;
        }
        if c == '&'
            && let Some(end) = rest.find(';').filter(|&end| end <= 8)
        {
            let decoded = match &rest[..=end] {
                "&amp;" => Some('&'),
                "&lt;" => Some('<'),
                "&gt;" => Some('>'),
                "&quot;" => Some('"'),
                "&#39;" => Some('\''),
                _ => None,
            };
            if let Some(decoded) = decoded {
                out.push(decoded);
                rest = &rest[end + 1..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Length in UTF-16 code units, the unit of Telegram's limits.
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

#[derive(Default)]
struct HtmlWriter {
    out: String,
    /// Newlines owed before the next visible output (block separation).
    pending_newlines: usize,
    /// Open lists: `Some(next number)` for ordered lists.
    lists: Vec<Option<u64>>,
    in_code_block: bool,
    /// Closing tags of the open code block.
    code_close: &'static str,
    /// Links whose URL Telegram would reject render as their text only.
    link_stack: Vec<bool>,
}

impl HtmlWriter {
    fn event(&mut self, event: Event<'_>) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) => {
                self.flush_break();
                self.out.push_str(&escape(&text));
            }
            Event::Code(code) => {
                self.flush_break();
                self.out.push_str("<code>");
                self.out.push_str(&escape(&code));
                self.out.push_str("</code>");
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                self.flush_break();
                self.out.push_str(&escape(&html));
            }
            Event::InlineMath(math) | Event::DisplayMath(math) => {
                self.flush_break();
                self.out.push_str(&escape(&math));
            }
            Event::SoftBreak | Event::HardBreak => self.out.push('\n'),
            Event::Rule => {
                self.block(2);
                self.flush_break();
                self.out.push_str("──────────");
                self.block(2);
            }
            Event::TaskListMarker(done) => {
                self.flush_break();
                self.out.push_str(if done { "☑ " } else { "☐ " });
            }
            Event::FootnoteReference(name) => {
                self.flush_break();
                self.out.push_str(&format!("[{}]", escape(&name)));
            }
        }
    }

    fn start(&mut self, tag: Tag<'_>) {
        match tag {
            Tag::Paragraph => self.block(2),
            Tag::Heading { .. } => {
                self.block(2);
                self.flush_break();
                self.out.push_str("<b>");
            }
            Tag::BlockQuote(_) => {
                self.block(2);
                self.flush_break();
                self.out.push_str("<blockquote>");
            }
            Tag::CodeBlock(kind) => {
                self.block(2);
                self.flush_break();
                self.in_code_block = true;
                match kind {
                    CodeBlockKind::Fenced(info) => {
                        let language: String = info
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .chars()
                            .filter(|c| c.is_ascii_alphanumeric() || "_+-#.".contains(*c))
                            .take(32)
                            .collect();
                        if language.is_empty() {
                            self.out.push_str("<pre>");
                            self.code_close = "</pre>";
                        } else {
                            self.out
                                .push_str(&format!("<pre><code class=\"language-{language}\">"));
                            self.code_close = "</code></pre>";
                        }
                    }
                    CodeBlockKind::Indented => {
                        self.out.push_str("<pre>");
                        self.code_close = "</pre>";
                    }
                }
            }
            Tag::List(start) => {
                self.block(if self.lists.is_empty() { 2 } else { 1 });
                self.lists.push(start);
            }
            Tag::Item => {
                self.block(1);
                self.flush_break();
                let depth = self.lists.len().saturating_sub(1);
                self.out.push_str(&"  ".repeat(depth));
                match self.lists.last_mut() {
                    Some(Some(number)) => {
                        self.out.push_str(&format!("{number}. "));
                        *number += 1;
                    }
                    _ => self.out.push_str("• "),
                }
            }
            Tag::Emphasis => self.inline("<i>"),
            Tag::Strong => self.inline("<b>"),
            Tag::Strikethrough => self.inline("<s>"),
            Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. } => {
                // Long URLs would make one tag longer than a whole message.
                let allowed = dest_url.len() <= 1024
                    && ["http://", "https://", "tg://", "mailto:"]
                        .iter()
                        .any(|scheme| dest_url.starts_with(scheme));
                if allowed {
                    self.inline(&format!("<a href=\"{}\">", escape(&dest_url)));
                }
                self.link_stack.push(allowed);
            }
            _ => {}
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => self.block(2),
            TagEnd::Heading(level) => {
                self.out.push_str("</b>");
                self.block(if level == HeadingLevel::H1 { 2 } else { 1 });
            }
            TagEnd::BlockQuote(_) => {
                trim_trailing_newlines(&mut self.out);
                self.out.push_str("</blockquote>");
                self.block(2);
            }
            TagEnd::CodeBlock => {
                trim_trailing_newlines(&mut self.out);
                self.in_code_block = false;
                self.out.push_str(self.code_close);
                self.block(2);
            }
            TagEnd::List(_) => {
                self.lists.pop();
                self.block(if self.lists.is_empty() { 2 } else { 1 });
            }
            TagEnd::Item => self.block(1),
            TagEnd::Emphasis => self.out.push_str("</i>"),
            TagEnd::Strong => self.out.push_str("</b>"),
            TagEnd::Strikethrough => self.out.push_str("</s>"),
            TagEnd::Link | TagEnd::Image if self.link_stack.pop().unwrap_or(false) => {
                self.out.push_str("</a>");
            }
            _ => {}
        }
    }

    fn inline(&mut self, open: &str) {
        self.flush_break();
        self.out.push_str(open);
    }

    /// Asks for at least `newlines` line breaks before the next output.
    fn block(&mut self, newlines: usize) {
        if !self.in_code_block {
            self.pending_newlines = self.pending_newlines.max(newlines);
        }
    }

    fn flush_break(&mut self) {
        if self.out.is_empty() || self.out.ends_with("<blockquote>") {
            self.pending_newlines = 0;
            return;
        }
        let have = self.out.chars().rev().take_while(|&c| c == '\n').count();
        for _ in have..self.pending_newlines {
            self.out.push('\n');
        }
        self.pending_newlines = 0;
    }
}

fn trim_trailing_newlines(out: &mut String) {
    while out.ends_with('\n') {
        out.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_styles_and_escaping() {
        assert_eq!(
            markdown_to_html("**bold** and *it* with `a<b>&c` and 1 < 2 & <div>"),
            "<b>bold</b> and <i>it</i> with <code>a&lt;b&gt;&amp;c</code> and 1 &lt; 2 &amp; &lt;div&gt;"
        );
    }

    #[test]
    fn code_blocks_keep_language_and_escape() {
        let html = markdown_to_html("Look:\n\n```rust\nfn x() -> &str { \"<\" }\n```\n\nDone.");
        assert_eq!(
            html,
            "Look:\n\n<pre><code class=\"language-rust\">fn x() -&gt; &amp;str { &quot;&lt;&quot; }</code></pre>\n\nDone."
        );
        assert_eq!(markdown_to_html("```\nplain\n```"), "<pre>plain</pre>");
    }

    #[test]
    fn links_headings_lists_quotes() {
        assert_eq!(
            markdown_to_html("# Title\n\n- one\n- two [x](https://e.com/?a=1&b=2)\n\n> quoted"),
            "<b>Title</b>\n\n• one\n• two <a href=\"https://e.com/?a=1&amp;b=2\">x</a>\n\n<blockquote>quoted</blockquote>"
        );
        assert_eq!(markdown_to_html("1. a\n2. b"), "1. a\n2. b");
        assert_eq!(markdown_to_html("[bad](javascript:alert(1))"), "bad");
    }

    #[test]
    fn unfinished_markdown_while_streaming_is_still_valid_html() {
        let html = markdown_to_html("Start **bold and ```rust\nlet x = 1;");
        assert!(!html.contains("<b>"), "{html}");
        let html = markdown_to_html("text\n\n```python\nprint(1)");
        assert!(html.ends_with("print(1)</code></pre>"), "{html}");
    }

    #[test]
    fn plain_text_fallback_decodes() {
        assert_eq!(
            html_to_plain("<b>a</b> &lt;x&gt; &amp; <a href=\"u\">l</a> &copy"),
            "a <x> & l &copy"
        );
    }

    #[test]
    fn utf16_counts_astral_twice() {
        assert_eq!(utf16_len("a😀é"), 4);
    }
}
