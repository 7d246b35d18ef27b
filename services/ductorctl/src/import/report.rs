//! The import report: sections of lines, each a subject with a status and a
//! detail, printed for a person or as JSON (`--json`). Secrets never reach
//! it: a secret's line says `(set)`.

use serde::Serialize;

/// What happens (or happened) to one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Imported, or imported by `--apply`.
    Import,
    /// Already there: nothing to do.
    Unchanged,
    /// Cannot be imported; the detail says why.
    NotImported,
    /// Something else is there; kept.
    Conflict,
    /// A note.
    Info,
}

/// One line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub status: Status,
    pub subject: String,
    pub detail: String,
}

/// One section (Config, Cron jobs, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Section {
    pub title: String,
    pub lines: Vec<Line>,
}

impl Section {
    /// An empty section.
    pub fn new(title: &str) -> Self {
        Self { title: title.to_owned(), lines: Vec::new() }
    }

    /// Adds a line.
    pub fn push(&mut self, status: Status, subject: impl Into<String>, detail: impl Into<String>) {
        self.lines.push(Line { status, subject: subject.into(), detail: detail.into() });
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub source: String,
    pub applied: bool,
    pub sections: Vec<Section>,
}

impl Report {
    /// How many lines have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.sections.iter().flat_map(|s| &s.lines).filter(|l| l.status == status).count()
    }

    /// The report for a person.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mode =
            if self.applied { "applied" } else { "dry run: nothing is written; --apply writes" };
        let _ = writeln!(out, "Import from {} ({mode})", self.source);
        let _ =
            writeln!(out, "  + import  = already there  - not imported  ! conflict (yours kept)");
        for section in &self.sections {
            let _ = writeln!(out, "\n{}", section.title);
            if section.lines.is_empty() {
                let _ = writeln!(out, "  (nothing)");
            }
            for line in &section.lines {
                let mark = match line.status {
                    Status::Import => '+',
                    Status::Unchanged => '=',
                    Status::NotImported => '-',
                    Status::Conflict => '!',
                    Status::Info => '·',
                };
                let detail = if line.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", line.detail)
                };
                let _ = writeln!(out, "  {mark} {}{detail}", line.subject);
            }
        }
        let (import, same) = (self.count(Status::Import), self.count(Status::Unchanged));
        let (not, conflicts) = (self.count(Status::NotImported), self.count(Status::Conflict));
        let _ = writeln!(
            out,
            "\n{import} {}, {same} already there, {not} not imported, {conflicts} conflicts.",
            if self.applied { "imported" } else { "to import" }
        );
        let last = match (self.applied, import) {
            (true, 0) => "Nothing changed: everything importable was already there.",
            (true, _) => {
                "Restart ductor (`ductorctl down` then `ductorctl up`) for config changes to take effect."
            }
            (false, 0) => "Nothing to import.",
            (false, _) => "Run again with --apply to import (with ductor running: `ductorctl up`).",
        };
        let _ = writeln!(out, "{last}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_and_says_what_to_do_next() {
        let mut section = Section::new("Cron jobs");
        section.push(Status::Import, "daily", "");
        section.push(Status::Conflict, "weekly", "yours differs");
        let report = Report { source: "/p".into(), applied: false, sections: vec![section] };
        let text = report.render();
        assert!(text.contains("  + daily\n  ! weekly: yours differs\n"), "{text}");
        assert!(text.contains("1 to import, 0 already there, 0 not imported, 1 conflicts."));
        assert!(text.contains("--apply"));
        let done = Report { applied: true, sections: vec![], ..report };
        assert!(done.render().contains("Nothing changed"));
    }
}
