//! Cutting rendered HTML into messages under Telegram's length limit.
//!
//! Telegram counts UTF-16 code units. We count the HTML source (tags and
//! entities included), which is never shorter than what Telegram counts, so
//! every chunk is safe. A cut never lands inside a tag, an entity or a
//! surrogate pair; tags open at the cut are closed at the end of the chunk
//! and reopened (with their attributes) at the start of the next one, so a
//! code block split in two is two valid `<pre>` blocks. Cuts prefer a blank
//! line, then a line end, then a space.

/// Telegram's message limit in UTF-16 code units.
pub const TELEGRAM_LIMIT: usize = 4096;

#[derive(Clone)]
enum Token<'a> {
    Open { name: &'a str, raw: &'a str },
    Close { raw: &'a str },
    Text(&'a str),
}

impl Token<'_> {
    fn raw(&self) -> &str {
        match self {
            Token::Open { raw, .. } | Token::Close { raw } | Token::Text(raw) => raw,
        }
    }

    fn len(&self) -> usize {
        crate::render::utf16_len(self.raw())
    }
}

fn tokenize(html: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < html.len() {
        let rest = &html[index..];
        let c = rest.chars().next().expect("index is below the length");
        let len = if c == '<'
            && let Some(end) = rest.find('>')
        {
            let raw = &rest[..=end];
            if raw.starts_with("</") {
                tokens.push(Token::Close { raw });
            } else {
                let name_end = raw[1..]
                    .find(|c: char| c.is_whitespace() || c == '>')
                    .map_or(raw.len() - 1, |i| i + 1);
                tokens.push(Token::Open { name: &raw[1..name_end], raw });
            }
            end + 1
        } else if c == '&'
            && let Some(end) = rest.find(';').filter(|&end| end <= 8)
        {
            tokens.push(Token::Text(&rest[..=end]));
            end + 1
        } else {
            tokens.push(Token::Text(&rest[..c.len_utf8()]));
            c.len_utf8()
        };
        index += len;
    }
    tokens
}

/// Open tags at some point: `(name, raw opening tag)`.
type Stack<'a> = Vec<(&'a str, &'a str)>;

fn closers(stack: &Stack<'_>) -> String {
    stack.iter().rev().map(|(name, _)| format!("</{name}>")).collect()
}

fn openers(stack: &Stack<'_>) -> String {
    stack.iter().map(|(_, raw)| *raw).collect()
}

#[derive(Clone)]
struct Cut<'a> {
    /// Index of the first token of the next chunk.
    at: usize,
    stack: Stack<'a>,
}

/// Splits `html` into chunks of at most `limit` UTF-16 units each.
///
/// `limit` must leave room for the deepest tag nesting (a few dozen units);
/// with Telegram's 4096 that is always the case.
pub fn split_html(html: &str, limit: usize) -> Vec<String> {
    let tokens = tokenize(html);
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut stack: Stack<'_> = Vec::new();
    while start < tokens.len() {
        // Leading line breaks of a continuation chunk are noise.
        while start < tokens.len() && matches!(tokens[start], Token::Text("\n")) && start > 0 {
            start += 1;
        }
        if start >= tokens.len() {
            break;
        }
        let prefix = openers(&stack);
        let (cut, end_stack) =
            find_cut(&tokens, start, &stack, crate::render::utf16_len(&prefix), limit);
        let mut chunk = prefix;
        for token in &tokens[start..cut] {
            chunk.push_str(token.raw());
        }
        chunk.push_str(&closers(&end_stack));
        if !crate::render::html_to_plain(&chunk).trim().is_empty() {
            chunks.push(chunk);
        }
        start = cut;
        stack = end_stack;
    }
    chunks
}

/// Scans from `start` and returns where the chunk ends and the tag stack there.
fn find_cut<'a>(
    tokens: &[Token<'a>],
    start: usize,
    stack: &Stack<'a>,
    prefix_len: usize,
    limit: usize,
) -> (usize, Stack<'a>) {
    let mut stack = stack.clone();
    let mut used = prefix_len;
    // Best cut so far for each preference: blank line, line end, space.
    let mut best: [Option<Cut<'a>>; 3] = [None, None, None];
    let mut index = start;
    while index < tokens.len() {
        let token = &tokens[index];
        let mut next_stack = stack.clone();
        match token {
            Token::Open { name, raw } => next_stack.push((name, raw)),
            Token::Close { .. } => {
                next_stack.pop();
            }
            Token::Text(_) => {}
        }
        let next_used = used + token.len();
        if next_used + crate::render::utf16_len(&closers(&next_stack)) > limit && index > start {
            let body = next_used - prefix_len;
            let chosen = best
                .iter()
                .flatten()
                .find(|cut| cut_len(tokens, start, cut.at) * 3 >= body)
                .or_else(|| best.iter().flatten().last())
                .cloned();
            return match chosen {
                Some(cut) => (cut.at, cut.stack),
                None => (index, stack),
            };
        }
        used = next_used;
        stack = next_stack;
        index += 1;
        if let Token::Text(text) = token {
            let kind = match *text {
                "\n" if matches!(tokens.get(index.wrapping_sub(2)), Some(Token::Text("\n"))) => {
                    Some(0)
                }
                "\n" => Some(1),
                " " => Some(2),
                _ => None,
            };
            if let Some(kind) = kind {
                best[kind] = Some(Cut { at: index, stack: stack.clone() });
            }
        }
    }
    (tokens.len(), stack)
}

fn cut_len(tokens: &[Token<'_>], start: usize, end: usize) -> usize {
    tokens[start..end].iter().map(Token::len).sum()
}

/// Splits plain text (no markup) under `limit` UTF-16 units, preferring line ends.
pub fn split_plain(text: &str, limit: usize) -> Vec<String> {
    split_html(&crate::render::escape(text), limit)
        .iter()
        .map(|chunk| crate::render::html_to_plain(chunk))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{html_to_plain, markdown_to_html, utf16_len};

    fn assert_balanced(chunk: &str) {
        let mut stack = Vec::new();
        for token in tokenize(chunk) {
            match token {
                Token::Open { name, .. } => stack.push(name.to_owned()),
                Token::Close { raw } => {
                    let name = &raw[2..raw.len() - 1];
                    assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced in {chunk:?}");
                }
                Token::Text(_) => {}
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?} in {chunk:?}");
    }

    #[test]
    fn short_text_is_one_chunk() {
        assert_eq!(split_html("<b>hi</b>", TELEGRAM_LIMIT), vec!["<b>hi</b>"]);
    }

    #[test]
    fn astral_characters_are_counted_as_two_and_never_cut() {
        let text = "😀".repeat(3000);
        let chunks = split_html(&text, TELEGRAM_LIMIT);
        assert_eq!(chunks.len(), 2);
        assert_eq!(utf16_len(&chunks[0]), 4096);
        assert_eq!(chunks.concat(), text);
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= TELEGRAM_LIMIT);
        }
    }

    #[test]
    fn code_block_is_closed_and_reopened_across_a_cut() {
        let code: String = (0..600).map(|i| format!("let x{i} = {i};\n")).collect();
        let markdown = format!("Intro 🎉 text.\n\n```rust\n{code}```\n\nAfter.");
        let chunks = split_html(&markdown_to_html(&markdown), TELEGRAM_LIMIT);
        assert!(chunks.len() >= 3, "{}", chunks.len());
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= TELEGRAM_LIMIT, "{}", utf16_len(chunk));
            assert_balanced(chunk);
        }
        assert!(
            chunks[1].starts_with("<pre><code class=\"language-rust\">"),
            "{}",
            &chunks[1][..60]
        );
        assert!(chunks[0].ends_with("</code></pre>"));
        // Every line of the code survives exactly once, no line is cut in half.
        let all: String = chunks.iter().map(|c| html_to_plain(c)).collect::<Vec<_>>().join("\n");
        for i in 0..600 {
            assert_eq!(all.matches(&format!("let x{i} = {i};")).count(), 1, "line {i}");
        }
    }

    #[test]
    fn prefers_paragraph_breaks_and_never_cuts_entities() {
        let para = format!("{}\n\n", "word &amp; ".repeat(40));
        let html = para.repeat(30);
        let chunks = split_html(&html, 1000);
        for chunk in &chunks {
            assert!(utf16_len(chunk) <= 1000);
            assert!(!chunk.ends_with('&') && !chunk.contains("&amp\n"));
            assert!(chunk.trim_end().ends_with("&amp;"), "{chunk:?}");
        }
    }

    #[test]
    fn plain_split_respects_limit() {
        let text = "a<b ".repeat(3000);
        let chunks = split_plain(&text, TELEGRAM_LIMIT);
        assert!(chunks.len() > 1);
        assert!(chunks.iter().all(|c| utf16_len(c) <= TELEGRAM_LIMIT));
    }
}
