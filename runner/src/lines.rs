//! Bounded line reading of a CLI's stdout.
//!
//! A line longer than the limit is never buffered whole: once the limit is
//! passed the reader discards bytes up to the next newline and reports the
//! line as [`Line::TooLong`] with its size, so one runaway line costs at most
//! `max` bytes of memory and the run goes on.

use tokio::io::{AsyncRead, AsyncReadExt};

/// One item read from a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line without its newline (a final unterminated line too).
    Text(Vec<u8>),
    /// A line over the limit was skipped; its length in bytes.
    TooLong(usize),
}

/// Reads newline-terminated lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    start: usize,
    /// Bytes of an oversize line discarded so far (`Some` while skipping).
    skipping: Option<usize>,
    eof: bool,
}

const CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader with line limit `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        Self { inner, max, buf: Vec::with_capacity(CHUNK), start: 0, skipping: None, eof: false }
    }

    /// The next line, or `None` at end of stream.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.take_buffered() {
                return Ok(Some(line));
            }
            if self.eof {
                return Ok(self.take_rest());
            }
            self.fill().await?;
        }
    }

    /// A complete line (or the end of a skipped one) from the buffer.
    fn take_buffered(&mut self) -> Option<Line> {
        let pending = &self.buf[self.start..];
        match pending.iter().position(|&b| b == b'\n') {
            Some(newline) => {
                let end = self.start + newline;
                let line = match self.skipping.take() {
                    Some(skipped) => Line::TooLong(skipped + newline),
                    None if newline > self.max => Line::TooLong(newline),
                    None => Line::Text(strip_cr(&self.buf[self.start..end]).to_vec()),
                };
                self.start = end + 1;
                Some(line)
            }
            None => {
                if pending.len() > self.max || (self.skipping.is_some() && !pending.is_empty()) {
                    // Over the limit with no newline yet: drop what we have.
                    *self.skipping.get_or_insert(0) += pending.len();
                    self.start = self.buf.len();
                }
                None
            }
        }
    }

    /// What is left at end of stream.
    fn take_rest(&mut self) -> Option<Line> {
        let pending = &self.buf[self.start..];
        let line = match self.skipping.take() {
            Some(skipped) => Some(Line::TooLong(skipped + pending.len())),
            None if pending.is_empty() => None,
            None => Some(Line::Text(strip_cr(pending).to_vec())),
        };
        self.start = self.buf.len();
        line
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + CHUNK, 0);
        let read = self.inner.read(&mut self.buf[len..]).await;
        let n = match read {
            Ok(n) => n,
            Err(error) => {
                self.buf.truncate(len);
                return Err(error);
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.eof = true;
        }
        // Give memory back after a large line.
        if self.buf.capacity() > 4 * CHUNK && self.buf.len() < CHUNK {
            self.buf.shrink_to(CHUNK);
        }
        Ok(())
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize) -> Vec<Line> {
        let mut reader = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.expect("read") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_an_unterminated_tail() {
        let lines = all(b"a\r\nbb\n\nccc", 10).await;
        assert_eq!(
            lines,
            vec![
                Line::Text(b"a".to_vec()),
                Line::Text(b"bb".to_vec()),
                Line::Text(Vec::new()),
                Line::Text(b"ccc".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn skips_an_oversize_line_and_goes_on() {
        let mut input = vec![b'x'; 300_000];
        input.extend_from_slice(b"\nok\n");
        let lines = all(&input, 1000).await;
        assert_eq!(lines, vec![Line::TooLong(300_000), Line::Text(b"ok".to_vec())]);
    }

    #[tokio::test]
    async fn a_line_of_exactly_max_bytes_is_kept() {
        let mut input = vec![b'y'; 1000];
        input.push(b'\n');
        input.extend_from_slice(&[b'z'; 1001]);
        input.push(b'\n');
        let lines = all(&input, 1000).await;
        assert_eq!(lines, vec![Line::Text(vec![b'y'; 1000]), Line::TooLong(1001)]);
    }

    #[tokio::test]
    async fn oversize_unterminated_tail_is_reported() {
        let lines = all(&[b'q'; 5000], 100).await;
        assert_eq!(lines, vec![Line::TooLong(5000)]);
    }
}
