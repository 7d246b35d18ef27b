//! `Runner.PrepareMedia`: a received file made ready for the agent before
//! its turn. A voice note, audio or video is transcribed ([`transcribe`]:
//! the operator's command, then an OpenAI-compatible endpoint, ffmpeg
//! converting where a backend needs WAV); a large image is resized and
//! converted ([`picture`]), the original kept beside it. Nothing here fails
//! a turn: what could not be done becomes a note the agent reads with the
//! file, which it always gets.
//!
//! The file lies in the agent-writable workspace and the runner is
//! unconfined, so it is read through `safe_fs` (no link followed, regular
//! files only, size-capped) and copied into a private job directory under
//! `$DUCTOR_HOME/tmp/`, which is all the helper tools ([`tool`]) can read
//! besides the system; a converted image is written back by rename.
//!
//! This lives in the runner because the runner is the one place that
//! spawns and confines processes; core only asks, and only for media.

pub mod picture;
pub mod tool;
pub mod transcribe;

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use ductor_daemon::config::ImageConfig;
use ductor_daemon::safe_fs::Tree;

pub use tool::ToolFence;
pub use transcribe::Transcriber;

/// Largest image read, in bytes.
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024;

/// What to prepare.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Absolute path inside the workspace.
    pub path: String,
    /// Declared MIME type (may be empty).
    pub mime: String,
    /// The gateway's kind ("voice", "photo", "document", ...).
    pub kind: String,
    /// For log lines.
    pub label: String,
}

/// The prepared file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    /// What the agent should read.
    pub path: String,
    /// Its MIME type.
    pub mime: String,
    /// The transcript, if any.
    pub transcript: String,
    /// "command" or "endpoint".
    pub transcribed_by: String,
    /// Image size before resizing (0 when not resized).
    pub original: (u32, u32),
    /// Image size after resizing.
    pub size: (u32, u32),
    /// What could not be done.
    pub notes: Vec<String>,
    /// Time in external tools and endpoints.
    pub backend: Duration,
    /// Time in ductor's own work.
    pub own: Duration,
}

/// A request the runner refuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MediaError {
    /// Not an absolute, plain path inside the workspace.
    #[error("{0} is not a file inside the workspace")]
    Outside(String),
}

/// What a file is, for preparation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Audio,
    Video,
    Image,
    Other,
}

fn classify(kind: &str, mime: &str) -> Class {
    match kind {
        "voice" | "audio" => return Class::Audio,
        "video" | "video_note" => return Class::Video,
        "photo" | "image" => return Class::Image,
        // Stickers are small and often animated: left alone.
        "sticker" | "animation" => return Class::Other,
        _ => {}
    }
    let mime = mime.to_ascii_lowercase();
    if mime.starts_with("audio/") {
        Class::Audio
    } else if mime.starts_with("video/") {
        Class::Video
    } else if matches!(mime.as_str(), "image/jpeg" | "image/png" | "image/webp") {
        Class::Image
    } else {
        Class::Other
    }
}

/// The media preparer of one runner.
#[derive(Debug)]
pub struct Media {
    transcriber: Transcriber,
    image: ImageConfig,
    /// The main workspace, then the sub-agents': a received file lies in one.
    workspaces: Vec<PathBuf>,
    tmp_root: PathBuf,
    tools: ToolFence,
}

/// Where a received file is: a workspace, its folder below it.
#[derive(Debug)]
struct Spot {
    root: PathBuf,
    dir: String,
}

impl Media {
    /// A preparer over `workspace`, with job directories under `tmp_root`.
    pub fn new(
        transcriber: Transcriber,
        image: ImageConfig,
        workspace: PathBuf,
        tmp_root: PathBuf,
        tools: ToolFence,
    ) -> Self {
        Self { transcriber, image, workspaces: vec![workspace], tmp_root, tools }
    }

    /// Files may also lie in these workspaces (sub-agents').
    pub fn with_workspaces(mut self, more: impl IntoIterator<Item = PathBuf>) -> Self {
        self.workspaces.extend(more);
        self
    }

    /// Prepares one file; refuses only a path outside the workspace.
    pub async fn prepare(&self, request: Request) -> Result<Prepared, MediaError> {
        let started = Instant::now();
        let (dir, name) = self.locate(&request.path)?;
        let mut prepared = Prepared {
            path: request.path.clone(),
            mime: request.mime.clone(),
            ..Prepared::default()
        };
        match classify(&request.kind, &request.mime) {
            Class::Audio => self.transcribe(&dir, &name, &mut prepared).await,
            Class::Video if self.transcriber.video() => {
                self.transcribe(&dir, &name, &mut prepared).await;
            }
            Class::Image if self.image.max_dimension > 0 => {
                self.picture(&dir, &name, &mut prepared).await;
            }
            _ => {}
        }
        prepared.own = started.elapsed().saturating_sub(prepared.backend);
        tracing::info!(
            label = %request.label,
            kind = %request.kind,
            transcribed_by = %prepared.transcribed_by,
            resized = prepared.original != (0, 0),
            notes = prepared.notes.len(),
            own_us = prepared.own.as_micros() as u64,
            backend_us = prepared.backend.as_micros() as u64,
            "prepared a received file"
        );
        Ok(prepared)
    }

    /// The file's folder below its workspace and its name; the path must be
    /// absolute, plain (no `.`/`..`) and below a workspace.
    fn locate(&self, path: &str) -> Result<(Spot, String), MediaError> {
        let outside = || MediaError::Outside(path.to_owned());
        let (root, relative) = self
            .workspaces
            .iter()
            .find_map(|root| Path::new(path).strip_prefix(root).ok().map(|r| (root.clone(), r)))
            .ok_or_else(outside)?;
        let mut parts = Vec::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => {
                    parts.push(part.to_str().ok_or_else(outside)?.to_owned())
                }
                _ => return Err(outside()),
            }
        }
        let name = parts.pop().ok_or_else(outside)?;
        Ok((Spot { root, dir: parts.join("/") }, name))
    }

    fn folder(&self, spot: &Spot) -> Result<Tree, String> {
        let root = Tree::root(&spot.root).map_err(|e| e.to_string())?;
        if spot.dir.is_empty() { Ok(root) } else { root.dir(&spot.dir).map_err(|e| e.to_string()) }
    }

    async fn transcribe(&self, dir: &Spot, name: &str, prepared: &mut Prepared) {
        if !self.transcriber.enabled() {
            return;
        }
        let job = match Job::make(&self.tmp_root) {
            Ok(job) => job,
            Err(error) => {
                prepared.notes.push(format!("The recording was not transcribed: {error}"));
                return;
            }
        };
        let max = self.transcriber.max_bytes();
        let copied = self.folder(dir).and_then(|folder| {
            let bytes = folder.read(name, max).map_err(|e| e.to_string())?;
            let bytes = bytes.ok_or("it is missing, not a regular file, or too large")?;
            let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("bin");
            let input = job.path.join(format!("input.{}", sanitize_ext(ext)));
            std::fs::write(&input, &bytes).map_err(|e| e.to_string())?;
            Ok(input)
        });
        let input = match copied {
            Ok(input) => input,
            Err(error) => {
                let mb = max / (1024 * 1024);
                prepared.notes.push(format!(
                    "The recording was not transcribed: {error} (the limit is {mb} MB)"
                ));
                return;
            }
        };
        let recording =
            transcribe::Recording { input: &input, mime: &prepared.mime, dir: &job.path };
        let outcome = self.transcriber.transcribe(&self.tools, &recording).await;
        prepared.backend += outcome.backend;
        prepared.notes.extend(outcome.notes);
        if let Some(transcript) = outcome.transcript {
            prepared.transcript = transcript.text;
            prepared.transcribed_by = transcript.by.to_owned();
        }
    }

    async fn picture(&self, dir: &Spot, name: &str, prepared: &mut Prepared) {
        let folder = match self.folder(dir) {
            Ok(folder) => folder,
            Err(error) => {
                return prepared.notes.push(format!("The image was not resized: {error}"));
            }
        };
        let config = self.image.clone();
        let name_owned = name.to_owned();
        let work = tokio::task::spawn_blocking(move || -> Result<_, String> {
            let bytes = folder.read(&name_owned, MAX_IMAGE_BYTES).map_err(|e| e.to_string())?;
            let bytes = bytes.ok_or("it is missing, not a regular file, or too large")?;
            let Some(resized) = picture::resize(&bytes, &config).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let (ext, mime) = config.format.extension();
            let target = resized_name(&name_owned, ext);
            folder.refresh(&target, &resized.bytes, 0o600).map_err(|e| e.to_string())?;
            Ok(Some((target, mime, resized)))
        });
        match work.await {
            Ok(Ok(Some((target, mime, resized)))) => {
                let parent = Path::new(&prepared.path).parent().unwrap_or(Path::new("/"));
                prepared.path = parent.join(target).display().to_string();
                prepared.mime = mime.to_owned();
                prepared.original = resized.original;
                prepared.size = resized.size;
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => prepared.notes.push(format!("The image was not resized: {error}")),
            Err(error) => prepared.notes.push(format!("The image was not resized: {error}")),
        }
    }
}

/// `photo.jpg` → `photo.resized.webp`: never the original's own name.
fn resized_name(name: &str, ext: &str) -> String {
    let stem = Path::new(name).file_stem().and_then(|s| s.to_str()).unwrap_or("image");
    format!("{stem}.resized.{ext}")
}

/// An extension safe to put in a file name (ffmpeg picks the demuxer by content).
fn sanitize_ext(ext: &str) -> String {
    let clean: String = ext.chars().filter(char::is_ascii_alphanumeric).take(8).collect();
    if clean.is_empty() { "bin".to_owned() } else { clean.to_ascii_lowercase() }
}

/// A private job directory, removed when dropped.
struct Job {
    path: PathBuf,
}

impl Job {
    fn make(root: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(root)?;
        let path = root.join(format!("media-{}", uuid::Uuid::now_v7().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(Self { path })
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // The directory is ours alone (0700 under $DUCTOR_HOME/tmp): no agent
        // could have planted a link in it.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media(workspace: &Path) -> Media {
        let transcriber = Transcriber::new(Default::default(), workspace);
        Media::new(
            transcriber,
            ImageConfig::default(),
            workspace.to_path_buf(),
            workspace.join("tmp"),
            ToolFence::default(),
        )
    }

    #[test]
    fn only_plain_paths_below_the_workspace_are_located() {
        let media = media(Path::new("/home/u/.ductor/workspace"))
            .with_workspaces([PathBuf::from("/home/u/.ductor/agents/r/workspace")]);
        let (spot, name) =
            media.locate("/home/u/.ductor/workspace/telegram_files/2026-12-03/v.oga").unwrap();
        assert_eq!((spot.dir.as_str(), name.as_str()), ("telegram_files/2026-12-03", "v.oga"));
        assert_eq!(spot.root, Path::new("/home/u/.ductor/workspace"));
        let (spot, _) = media.locate("/home/u/.ductor/agents/r/workspace/a/v.oga").unwrap();
        assert_eq!(
            (spot.root.as_path(), spot.dir.as_str()),
            (Path::new("/home/u/.ductor/agents/r/workspace"), "a")
        );
        for bad in [
            "/etc/passwd",
            "/home/u/.ductor/workspace/../secrets/x",
            "/home/u/.ductor/workspace",
            "relative/v.oga",
            "/home/u/.ductor/workspace2/v.oga",
            "/home/u/.ductor/agents/other/workspace/v.oga",
        ] {
            assert!(media.locate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn files_are_classified_by_kind_then_type() {
        assert_eq!(classify("voice", ""), Class::Audio);
        assert_eq!(classify("video_note", "video/mp4"), Class::Video);
        assert_eq!(classify("document", "audio/mpeg"), Class::Audio);
        assert_eq!(classify("document", "image/png"), Class::Image);
        assert_eq!(classify("document", "image/svg+xml"), Class::Other);
        assert_eq!(classify("sticker", "image/webp"), Class::Other);
        assert_eq!(classify("document", "application/pdf"), Class::Other);
    }

    #[test]
    fn resized_files_never_take_the_originals_name() {
        assert_eq!(resized_name("photo_1.jpg", "webp"), "photo_1.resized.webp");
        assert_eq!(resized_name("a.webp", "webp"), "a.resized.webp");
        assert_eq!(sanitize_ext("../x"), "x");
        assert_eq!(sanitize_ext(""), "bin");
    }
}
