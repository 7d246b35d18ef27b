//! Text in and out of Matrix: Markdown to `formatted_body` HTML with a plain
//! `body`, numbered options with keycap emoji (Matrix has no inline keyboards),
//! `!cmd` to `/cmd`, and splitting text that would not fit in one event.

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Keycap emoji used as reaction "buttons", in option order.
pub const KEYCAPS: [&str; 10] = [
    "1\u{fe0f}\u{20e3}",
    "2\u{fe0f}\u{20e3}",
    "3\u{fe0f}\u{20e3}",
    "4\u{fe0f}\u{20e3}",
    "5\u{fe0f}\u{20e3}",
    "6\u{fe0f}\u{20e3}",
    "7\u{fe0f}\u{20e3}",
    "8\u{fe0f}\u{20e3}",
    "9\u{fe0f}\u{20e3}",
    "\u{1f51f}",
];

/// The option index (0-based) a reaction key stands for.
pub fn keycap_index(key: &str) -> Option<usize> {
    // Some clients send the keycap without the variation selector.
    let normalized: String = key.chars().filter(|c| *c != '\u{fe0f}').collect();
    KEYCAPS
        .iter()
        .position(|cap| cap.chars().filter(|c| *c != '\u{fe0f}').collect::<String>() == normalized)
}

/// A message ready to send: plain `body` and HTML `formatted_body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Plain text (`body`).
    pub plain: String,
    /// Matrix HTML (`formatted_body`).
    pub html: String,
}

/// Renders Markdown to Matrix HTML; the plain body is the Markdown source,
/// which reads fine in clients without HTML.
pub fn markdown(text: &str) -> Rendered {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_TASKLISTS);
    // Matrix HTML has no raw-HTML passthrough we trust: show raw HTML as text.
    // Single newlines become <br>: chat text is written line by line.
    // Links keep only web and mail targets (no `javascript:`, `data:`, …:
    // not every client sanitises); images are never inlined from outside
    // (an `<img>` would fetch a URL when the message is shown): they become
    // links, or their text when the target is not a web address.
    let mut dropped = Vec::new();
    let events = Parser::new_ext(text, options).filter_map(move |event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Some(Event::Text(html)),
        Event::SoftBreak => Some(Event::HardBreak),
        Event::Start(Tag::Link { link_type, dest_url, title, id }) => {
            let safe = safe_link(&dest_url);
            dropped.push(!safe);
            safe.then_some(Event::Start(Tag::Link { link_type, dest_url, title, id }))
        }
        Event::Start(Tag::Image { link_type, dest_url, title, id }) => {
            let web = safe_link(&dest_url) && !dest_url.starts_with("mailto:");
            dropped.push(!web);
            web.then_some(Event::Start(Tag::Link { link_type, dest_url, title, id }))
        }
        Event::End(TagEnd::Link | TagEnd::Image) => {
            (!dropped.pop().unwrap_or(false)).then_some(Event::End(TagEnd::Link))
        }
        other => Some(other),
    });
    let mut html = String::with_capacity(text.len() * 2);
    pulldown_cmark::html::push_html(&mut html, events);
    Rendered { plain: text.trim_end().to_owned(), html: html.trim_end().to_owned() }
}

/// A link target a chat message may carry: `http(s)://` or `mailto:`.
fn safe_link(target: &str) -> bool {
    let lower = target.trim_start().to_ascii_lowercase();
    ["https://", "http://", "mailto:"].iter().any(|scheme| lower.starts_with(scheme))
}

/// Appends numbered options (keycap + label) to a message text.
pub fn with_options(text: &str, labels: &[String]) -> String {
    let mut out = text.trim_end().to_owned();
    if labels.is_empty() {
        return out;
    }
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    for (index, label) in labels.iter().enumerate() {
        let marker =
            KEYCAPS.get(index).map(|cap| (*cap).to_owned()).unwrap_or(format!("{}.", index + 1));
        out.push_str(&format!("{marker} {label}\n"));
    }
    out.trim_end().to_owned()
}

/// Commands start with `!` (Element intercepts `/`) or `/`; core only knows `/`.
pub fn command_to_core(text: &str) -> String {
    let trimmed = text.trim_start();
    match trimmed.strip_prefix('!') {
        Some(rest) if rest.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) => {
            format!("/{rest}")
        }
        _ => text.to_owned(),
    }
}

/// A typed option number ("2", " 2 ", "2.") within `1..=count`, as an index.
pub fn typed_option(text: &str, count: usize) -> Option<usize> {
    let number: usize = text.trim().trim_end_matches('.').parse().ok()?;
    (1..=count).contains(&number).then(|| number - 1)
}

/// Drops the quoted fallback some clients still put before a reply's text.
pub fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    let mut rest = body;
    while let Some(line_end) = rest.find('\n') {
        if !rest.starts_with("> ") && !rest.starts_with(">\n") {
            break;
        }
        rest = &rest[line_end + 1..];
    }
    if rest.starts_with("> ") {
        return "";
    }
    rest.trim_start_matches('\n')
}

/// Splits text into chunks of at most `max_chars` characters, preferring
/// paragraph, then line, then word boundaries.
pub fn split(text: &str, max_chars: usize) -> Vec<String> {
    let max_chars = max_chars.max(1);
    let mut chunks = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max_chars {
        let limit = rest.char_indices().nth(max_chars).map_or(rest.len(), |(at, _)| at);
        let window = &rest[..limit];
        let cut = ["\n\n", "\n", " "]
            .iter()
            .find_map(|sep| window.rfind(sep).filter(|at| *at > limit / 2))
            .unwrap_or(limit);
        chunks.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        chunks.push(rest.to_owned());
    }
    chunks
}

/// The part of `full` not already shown in `shown` (segments sent before a
/// final answer that repeats them, in order); `full` itself when it does not
/// start with them.
pub fn unsent_tail<'a>(full: &'a str, shown: &[&str]) -> &'a str {
    let mut rest = full.trim_start();
    for segment in shown.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match rest.strip_prefix(segment) {
            Some(tail) => rest = tail.trim_start(),
            None => return full,
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_only_web_and_mail_targets_and_images_are_never_inlined() {
        let hostile = "[bank](javascript:alert(1)) [x](data:text/html,hi) [y](JaVaScRiPt:1) \
                       [ok](https://example.org) [m](mailto:a@b.c) ![pic](https://evil.example/p.png) \
                       ![local](mxc://hs/abc) [rel](foo/bar)";
        let html = markdown(hostile).html;
        for bad in ["javascript", "JaVaScRiPt", "data:", "<img", "mxc://", "foo/bar"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        for kept in [
            "bank",
            "<a href=\"https://example.org\">ok</a>",
            "<a href=\"mailto:a@b.c\">m</a>",
            "<a href=\"https://evil.example/p.png\">pic</a>",
            "local",
            "rel",
        ] {
            assert!(html.contains(kept), "{kept} missing from {html}");
        }
        // Nested: an image inside a dropped link, a link inside kept emphasis.
        let html = markdown("[![i](https://a/i.png)](javascript:x) *[k](https://k)*").html;
        assert!(!html.contains("javascript") && html.contains("<a href=\"https://a/i.png\">i</a>"));
        assert!(html.contains("<em><a href=\"https://k\">k</a></em>"), "{html}");
    }

    #[test]
    fn markdown_renders_html_and_keeps_plain_body() {
        let rendered = markdown("**bold** and `code`\nnext line\n\n<script>x</script>");
        assert!(rendered.html.contains("<strong>bold</strong>"), "{}", rendered.html);
        assert!(rendered.html.contains("<code>code</code>"));
        assert!(rendered.html.contains("<br"), "soft breaks become <br>: {}", rendered.html);
        assert!(!rendered.html.contains("<script>"), "raw HTML is escaped: {}", rendered.html);
        assert_eq!(rendered.plain, "**bold** and `code`\nnext line\n\n<script>x</script>");
    }

    #[test]
    fn options_are_numbered_with_keycaps_and_read_back() {
        let text = with_options("Pick one", &["opus".to_owned(), "sonnet".to_owned()]);
        assert_eq!(text, "Pick one\n\n1\u{fe0f}\u{20e3} opus\n2\u{fe0f}\u{20e3} sonnet");
        assert_eq!(keycap_index("2\u{fe0f}\u{20e3}"), Some(1));
        assert_eq!(keycap_index("2\u{20e3}"), Some(1), "without the variation selector");
        assert_eq!(keycap_index("\u{1f51f}"), Some(9));
        assert_eq!(keycap_index("👍"), None);
        assert_eq!(typed_option(" 2 ", 2), Some(1));
        assert_eq!(typed_option("3", 2), None);
        assert_eq!(typed_option("0", 2), None);
        assert_eq!(typed_option("two", 2), None);
    }

    #[test]
    fn bang_commands_become_slash_commands() {
        assert_eq!(command_to_core("!model opus"), "/model opus");
        assert_eq!(command_to_core("/status"), "/status");
        assert_eq!(command_to_core("!!!"), "!!!");
        assert_eq!(command_to_core("hello!"), "hello!");
    }

    #[test]
    fn reply_fallback_is_stripped() {
        assert_eq!(strip_reply_fallback("> <@a:b> old\n> more\n\nnew text"), "new text");
        assert_eq!(strip_reply_fallback("plain"), "plain");
    }

    #[test]
    fn split_prefers_paragraphs_and_keeps_everything() {
        let text = format!("{}\n\n{}", "a".repeat(30), "b".repeat(30));
        assert_eq!(split(&text, 40), vec!["a".repeat(30), "b".repeat(30)]);
        let long = "x".repeat(95);
        let chunks = split(&long, 40);
        assert_eq!(chunks.iter().map(String::len).collect::<Vec<_>>(), [40, 40, 15]);
        assert!(split("  ", 10).is_empty());
    }

    #[test]
    fn unsent_tail_skips_segments_already_sent() {
        assert_eq!(unsent_tail("first part\n\nsecond\nfinal", &["first part", "second"]), "final");
        assert_eq!(unsent_tail("final only", &["earlier"]), "final only");
        assert_eq!(unsent_tail("final", &[]), "final");
        assert_eq!(unsent_tail("final", &[""]), "final");
    }
}
