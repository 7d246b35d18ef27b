//! `ductorctl logs [SERVICE] [-f]`: the per-service log files under
//! `$DUCTOR_HOME/logs/` (written by `ductorctl up`; under systemd the logs
//! are in the journal: `journalctl --user -u ductor-core`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ductor_daemon::DuctorHome;

use crate::cmd::config_or_default;
use crate::instance::{self, Instance};

/// `ductorctl logs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this service's log (runner, core, telegram, matrix,
    /// telegram@AGENT, matrix@AGENT; default: every service and the launcher).
    #[arg(value_parser = instance::parse_arg, value_name = "SERVICE")]
    pub service: Option<Instance>,

    /// Keep printing lines as they are written.
    #[arg(long, short = 'f')]
    pub follow: bool,

    /// How many lines of each log to show first.
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: usize,
}

/// Runs `logs`.
pub async fn run(home: &DuctorHome, args: Args) -> anyhow::Result<ExitCode> {
    let files: Vec<(String, PathBuf)> = match &args.service {
        Some(instance) => vec![(instance.name(), instance.log_path(home))],
        None => instance::known(home, &config_or_default(home))
            .into_iter()
            .map(|i| (i.name(), i.log_path(home)))
            .chain([("ductorctl".to_owned(), home.logs_dir().join("ductorctl.log"))])
            .filter(|(_, path)| path.exists())
            .collect(),
    };
    if files.is_empty() || (files.len() == 1 && !files[0].1.exists() && !args.follow) {
        anyhow::bail!(
            "no logs under {} yet (they are written by `ductorctl up`)",
            home.logs_dir().display()
        );
    }
    let several = files.len() > 1;
    // Read each file once: its tail is printed, and following starts exactly
    // where that read ended, so no line is lost or printed twice.
    let mut offsets = Vec::with_capacity(files.len());
    for (name, path) in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        offsets.push(bytes.len() as u64);
        if several {
            println!("==> {name} ({}) <==", path.display());
        }
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines[lines.len().saturating_sub(args.lines)..] {
            println!("{line}");
        }
    }
    if args.follow {
        follow(&files, offsets, several).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what is appended to `files` until interrupted; a truncated file is
/// read again from its start.
async fn follow(
    files: &[(String, PathBuf)],
    mut offsets: Vec<u64>,
    prefix: bool,
) -> anyhow::Result<()> {
    let mut pending: Vec<String> = vec![String::new(); files.len()];
    let stdout = std::io::stdout();
    loop {
        for (index, (name, path)) in files.iter().enumerate() {
            let Ok(mut file) = std::fs::File::open(path) else { continue };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < offsets[index] {
                offsets[index] = 0;
            }
            if len == offsets[index] {
                continue;
            }
            file.seek(SeekFrom::Start(offsets[index]))?;
            let mut chunk = Vec::new();
            Read::by_ref(&mut file).take(len - offsets[index]).read_to_end(&mut chunk)?;
            offsets[index] += chunk.len() as u64;
            pending[index].push_str(&String::from_utf8_lossy(&chunk));
            let mut out = stdout.lock();
            while let Some(end) = pending[index].find('\n') {
                let line: String = pending[index].drain(..=end).collect();
                if prefix {
                    write!(out, "[{name}] {line}")?;
                } else {
                    write!(out, "{line}")?;
                }
            }
            out.flush()?;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
