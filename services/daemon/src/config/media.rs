//! `[transcription]` and `[image]`: what the runner does to a received file
//! before the agent's turn (voice notes transcribed, large images resized).

use std::path::PathBuf;

use serde::Deserialize;

use super::Invalid;

/// The audio a backend is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// The file as received (OpenAI's endpoint takes ogg, mp3, m4a, wav, webm).
    Original,
    /// 16 kHz mono 16-bit WAV, converted with ffmpeg (what whisper.cpp reads).
    #[default]
    Wav,
}

/// `[transcription]`: voice notes, audio and video files become text before
/// the turn. Backends are tried in order: `command`, then `endpoint`; with
/// neither the file is passed to the agent as it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// An external command as argv (no shell), `{file}` replaced by the
    /// audio file; its standard output is the transcript.
    pub command: Vec<String>,
    /// What the command is given.
    pub command_format: AudioFormat,
    /// Base URL of an OpenAI-compatible API (`…/v1`); `POST
    /// {endpoint}/audio/transcriptions`.
    pub endpoint: String,
    /// What the endpoint is given.
    pub endpoint_format: AudioFormat,
    /// The endpoint's model.
    pub model: String,
    /// File holding the endpoint's API key (relative paths are under
    /// `$DUCTOR_HOME`); must not be readable by other users.
    pub api_key_file: Option<PathBuf>,
    /// Language hint (ISO 639-1), empty = detect.
    pub language: String,
    /// ffmpeg, for conversions and the audio of videos.
    pub ffmpeg: String,
    /// Longest a backend (with its conversion) may take, in seconds.
    pub timeout_seconds: u64,
    /// Larger files are not transcribed (OpenAI's limit is 25 MB).
    pub max_file_mb: u64,
    /// Transcribe the audio of videos too.
    pub video: bool,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self {
            command: Vec::new(),
            command_format: AudioFormat::Wav,
            endpoint: String::new(),
            endpoint_format: AudioFormat::Original,
            model: "whisper-1".into(),
            api_key_file: None,
            language: String::new(),
            ffmpeg: "ffmpeg".into(),
            timeout_seconds: 120,
            max_file_mb: 25,
            video: true,
        }
    }
}

impl TranscriptionConfig {
    /// A backend is configured.
    pub fn enabled(&self) -> bool {
        !self.command.is_empty() || !self.endpoint.is_empty()
    }

    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if let Some(program) = self.command.first() {
            if program.trim().is_empty() {
                return Err(Invalid::new("transcription.command", "the program is empty"));
            }
            if !self.command.iter().any(|a| a.contains("{file}")) {
                return Err(Invalid::new(
                    "transcription.command",
                    "no argument holds {file}, so the command would never see the recording",
                ));
            }
        }
        let endpoint = self.endpoint.trim();
        let web = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !web {
            return Err(Invalid::new(
                "transcription.endpoint",
                "must start with http:// or https://",
            ));
        }
        if self.ffmpeg.trim().is_empty() {
            return Err(Invalid::new("transcription.ffmpeg", "must not be empty"));
        }
        if self.timeout_seconds == 0 {
            return Err(Invalid::new("transcription.timeout_seconds", "must be greater than 0"));
        }
        if self.max_file_mb == 0 {
            return Err(Invalid::new("transcription.max_file_mb", "must be greater than 0"));
        }
        Ok(())
    }
}

/// The format a resized image is written in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageFormat {
    /// Lossy WebP at `quality`.
    #[default]
    Webp,
    /// JPEG at `quality`.
    Jpeg,
    /// PNG (lossless).
    Png,
}

impl ImageFormat {
    /// File extension and MIME type.
    pub fn extension(self) -> (&'static str, &'static str) {
        match self {
            Self::Webp => ("webp", "image/webp"),
            Self::Jpeg => ("jpg", "image/jpeg"),
            Self::Png => ("png", "image/png"),
        }
    }
}

/// `[image]`: received images larger than `max_dimension` are resized and
/// converted before the agent sees them; the original is kept beside.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Resize images whose longer side exceeds this many pixels; 0 = never.
    pub max_dimension: u32,
    /// Format of a resized image.
    pub format: ImageFormat,
    /// Quality of lossy formats, 1–100.
    pub quality: u8,
    /// Images with more pixels than this are not decoded at all (a
    /// decompression bomb guard), in megapixels.
    pub max_megapixels: u32,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self { max_dimension: 2000, format: ImageFormat::Webp, quality: 85, max_megapixels: 100 }
    }
}

impl ImageConfig {
    pub(crate) fn validate(&self) -> Result<(), Invalid> {
        if !(1..=100).contains(&self.quality) {
            return Err(Invalid::new("image.quality", "must be between 1 and 100"));
        }
        if self.max_dimension > 0 && self.max_dimension < 64 {
            return Err(Invalid::new("image.max_dimension", "must be 0 (never) or at least 64"));
        }
        if self.max_megapixels == 0 {
            return Err(Invalid::new("image.max_megapixels", "must be greater than 0"));
        }
        Ok(())
    }
}
