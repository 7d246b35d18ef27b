//! Transcription backends, tried in order: the operator's command
//! (`[transcription].command`, e.g. whisper.cpp's CLI), then an
//! OpenAI-compatible `/audio/transcriptions` endpoint. Each is given the
//! recording as received or as 16 kHz mono WAV converted with ffmpeg, as
//! its `*_format` says. A backend that fails adds a note and the next one
//! is tried; none at all means the file goes to the agent untranscribed.
//!
//! The endpoint's key is read from its file at each use (so it can be
//! rotated), refused when other users may read that file, sent only in the
//! `Authorization` header and never logged.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ductor_daemon::config::{AudioFormat, TranscriptionConfig};

use super::tool::{ToolFence, tail};

/// Longest API key file read.
const MAX_KEY_BYTES: u64 = 4096;

/// A recording made text.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// What it says.
    pub text: String,
    /// "command" or "endpoint".
    pub by: &'static str,
}

/// The recording being transcribed, in the job's private directory.
#[derive(Debug)]
pub struct Recording<'a> {
    /// The copy of the received file.
    pub input: &'a Path,
    /// Its MIME type.
    pub mime: &'a str,
    /// The job's private directory (ffmpeg writes there).
    pub dir: &'a Path,
}

/// The configured backends.
#[derive(Debug)]
pub struct Transcriber {
    config: TranscriptionConfig,
    home: PathBuf,
    client: reqwest::Client,
}

/// What transcription produced, with the notes and the time spent in tools.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The transcript, when a backend gave one.
    pub transcript: Option<Transcript>,
    /// What failed, for the agent.
    pub notes: Vec<String>,
    /// Time spent in ffmpeg, the command and the endpoint.
    pub backend: Duration,
}

impl Transcriber {
    /// Backends from `config`; relative key files are under `home`.
    pub fn new(config: TranscriptionConfig, home: &Path) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_seconds))
            .build()
            .unwrap_or_default();
        Self { config, home: home.to_path_buf(), client }
    }

    /// A backend is configured.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// Transcribes video recordings too.
    pub fn video(&self) -> bool {
        self.config.video
    }

    /// Largest recording transcribed, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.config.max_file_mb * 1024 * 1024
    }

    /// Runs the backends in order until one gives a transcript.
    pub async fn transcribe(&self, tools: &ToolFence, recording: &Recording<'_>) -> Outcome {
        let mut outcome = Outcome::default();
        let mut wav: Option<PathBuf> = None;
        if !self.config.command.is_empty()
            && let Some(file) = self
                .input(tools, recording, self.config.command_format, &mut wav, &mut outcome)
                .await
        {
            match self.command(tools, &file, recording.dir).await {
                Ok((text, spent)) => {
                    outcome.backend += spent;
                    return done(outcome, text, "command");
                }
                Err(error) => {
                    outcome.notes.push(format!("The transcription command failed: {error}"))
                }
            }
        }
        if !self.config.endpoint.trim().is_empty()
            && let Some(file) = self
                .input(tools, recording, self.config.endpoint_format, &mut wav, &mut outcome)
                .await
        {
            let started = Instant::now();
            let answer = self.endpoint(&file, recording.mime).await;
            outcome.backend += started.elapsed();
            match answer {
                Ok(text) => return done(outcome, text, "endpoint"),
                Err(error) => {
                    outcome.notes.push(format!("The transcription endpoint failed: {error}"))
                }
            }
        }
        outcome
    }

    /// The file a backend gets: the recording, or its WAV (converted once).
    async fn input(
        &self,
        tools: &ToolFence,
        recording: &Recording<'_>,
        format: AudioFormat,
        wav: &mut Option<PathBuf>,
        outcome: &mut Outcome,
    ) -> Option<PathBuf> {
        if format == AudioFormat::Original {
            return Some(recording.input.to_path_buf());
        }
        if let Some(done) = wav {
            return Some(done.clone());
        }
        let out = recording.dir.join("audio.wav");
        let input = recording.input.display().to_string();
        let args: Vec<String> = [
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            &input,
            "-vn",
            "-ac",
            "1",
            "-ar",
            "16000",
            "-c:a",
            "pcm_s16le",
            "-f",
            "wav",
            "-y",
            "audio.wav",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        match tools.run(&self.config.ffmpeg, &args, recording.dir, self.timeout()).await {
            Ok(output) => {
                outcome.backend += output.elapsed;
                *wav = Some(out.clone());
                Some(out)
            }
            Err(error) => {
                outcome.notes.push(format!("Converting the recording to WAV failed: {error}"));
                None
            }
        }
    }

    async fn command(
        &self,
        tools: &ToolFence,
        file: &Path,
        dir: &Path,
    ) -> Result<(String, Duration), String> {
        let file = file.display().to_string();
        let (program, rest) = self.config.command.split_first().ok_or("no command")?;
        let args: Vec<String> = rest.iter().map(|a| a.replace("{file}", &file)).collect();
        let output =
            tools.run(program, &args, dir, self.timeout()).await.map_err(|e| e.to_string())?;
        Ok((output.stdout, output.elapsed))
    }

    async fn endpoint(&self, file: &Path, mime: &str) -> Result<String, String> {
        let bytes = tokio::fs::read(file).await.map_err(|e| format!("read the recording: {e}"))?;
        let (name, mime) = upload_name(file, mime);
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(name)
            .mime_str(&mime)
            .map_err(|e| e.to_string())?;
        let mut form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("model", self.config.model.clone())
            .text("response_format", "json");
        if !self.config.language.trim().is_empty() {
            form = form.text("language", self.config.language.trim().to_owned());
        }
        let url =
            format!("{}/audio/transcriptions", self.config.endpoint.trim().trim_end_matches('/'));
        let mut request = self.client.post(&url).multipart(form);
        if let Some(key) = self.api_key()? {
            request = request.bearer_auth(key);
        }
        // reqwest's errors name the URL, which holds no secret (the key is a header).
        let response = request.send().await.map_err(|e| without_url(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| without_url(&e))?;
        if !status.is_success() {
            return Err(format!("it answered {status}: {}", tail(body.trim(), 300)));
        }
        let value: serde_json::Value = serde_json::from_str(&body)
            .map_err(|_| "it answered with something that is not JSON".to_owned())?;
        value
            .get("text")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| "its answer has no \"text\"".to_owned())
    }

    /// The endpoint's key, from a file only we may read.
    fn api_key(&self) -> Result<Option<String>, String> {
        let Some(file) = &self.config.api_key_file else { return Ok(None) };
        let path = if file.is_absolute() { file.clone() } else { self.home.join(file) };
        let opened = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read the API key file {}: {e}", path.display()))?;
        let meta = opened.metadata().map_err(|e| e.to_string())?;
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "the API key file {} may be read by other users (chmod 600 it); it was not used",
                path.display()
            ));
        }
        let mut key = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(opened, MAX_KEY_BYTES), &mut key)
            .map_err(|e| e.to_string())?;
        let key = key.trim().to_owned();
        Ok((!key.is_empty()).then_some(key))
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.config.timeout_seconds)
    }
}

fn done(mut outcome: Outcome, text: String, by: &'static str) -> Outcome {
    let text = text.trim().to_owned();
    if text.is_empty() {
        outcome.notes.push(format!("The transcription {by} found no speech in the recording."));
    } else {
        outcome.transcript = Some(Transcript { text, by });
    }
    outcome
}

/// The file name and type an OpenAI-style endpoint recognises the format by
/// (Telegram's voice notes are `.oga`, which it does not know).
fn upload_name(file: &Path, mime: &str) -> (String, String) {
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "wav" => ("audio.wav".into(), "audio/wav".into()),
        "oga" | "ogg" | "opus" => ("audio.ogg".into(), "audio/ogg".into()),
        "" => {
            ("audio".into(), if mime.is_empty() { "application/octet-stream" } else { mime }.into())
        }
        other => (
            format!("audio.{other}"),
            if mime.is_empty() { "application/octet-stream" } else { mime }.into(),
        ),
    }
}

/// A reqwest error without the URL (kept short for the agent's note).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() { kind.to_owned() } else { format!("{kind}: {detail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_notes_are_uploaded_under_a_name_the_endpoint_knows() {
        assert_eq!(upload_name(Path::new("/w/voice_1.oga"), "audio/ogg").0, "audio.ogg");
        assert_eq!(upload_name(Path::new("/w/a.WAV"), "").1, "audio/wav");
        assert_eq!(
            upload_name(Path::new("/w/a.m4a"), "audio/mp4"),
            ("audio.m4a".into(), "audio/mp4".into())
        );
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-test\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = TranscriptionConfig { api_key_file: Some("key".into()), ..Default::default() };
        let transcriber = Transcriber::new(config, dir.path());
        assert!(transcriber.api_key().unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(transcriber.api_key().unwrap().as_deref(), Some("sk-test"));
    }
}
