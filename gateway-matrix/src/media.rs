//! Incoming files: `m.image`, `m.file`, `m.audio` and `m.video` (encrypted
//! attachments in encrypted rooms too: matrix-sdk decrypts them) downloaded to
//! `workspace/matrix_files/YYYY-MM-DD/` and described to core as a `MediaRef`.

use std::path::{Path, PathBuf};

use ductor_daemon::safe_fs::Tree;

use crate::error::{Doing as _, MatrixError};
use ductor_proto::pb;
use matrix_sdk::media::MediaEventContent;
use matrix_sdk::ruma::events::room::message::MessageType;

use crate::gateway::Shared;

/// What the message says about its file.
struct Described<'a> {
    body: &'a str,
    filename: Option<&'a str>,
    mime: Option<&'a str>,
    size: Option<u64>,
    kind: &'static str,
}

/// Downloads the file of a media message; `None` for messages without one.
pub async fn download(
    shared: &Shared,
    msgtype: &MessageType,
) -> Result<Option<pb::MediaRef>, MatrixError> {
    // The four media contents share field names but not a trait for them.
    macro_rules! described {
        ($content:expr, $kind:literal) => {{
            let info = $content.info.as_deref();
            let size = info.and_then(|i| i.size).map(u64::from);
            let described = Described {
                body: &$content.body,
                filename: $content.filename.as_deref(),
                mime: info.and_then(|i| i.mimetype.as_deref()),
                size,
                kind: $kind,
            };
            (described, fetch(shared, $content, size).await?)
        }};
    }
    let (described, data) = match msgtype {
        MessageType::Image(content) => described!(content, "image"),
        MessageType::File(content) => described!(content, "file"),
        MessageType::Audio(content) => described!(content, "audio"),
        MessageType::Video(content) => described!(content, "video"),
        _ => return Ok(None),
    };
    // Matrix 1.10 captions: with a `filename` that differs, `body` is the caption.
    let (name, caption) = match described.filename {
        Some(filename) if filename != described.body => (filename, described.body),
        Some(filename) => (filename, ""),
        None => (described.body, ""),
    };
    let path = store(&shared.files_dir, name, &data).await?;
    Ok(Some(pb::MediaRef {
        path: path.to_string_lossy().into_owned(),
        mime_type: described.mime.unwrap_or("application/octet-stream").to_owned(),
        caption: caption.to_owned(),
        original_filename: name.to_owned(),
        media_kind: described.kind.to_owned(),
        size_bytes: described.size.unwrap_or(data.len() as u64),
        reply_quote: String::new(),
    }))
}

async fn fetch(
    shared: &Shared,
    content: &impl MediaEventContent,
    announced_size: Option<u64>,
) -> Result<Vec<u8>, MatrixError> {
    let limit = shared.knobs.max_download_bytes();
    if announced_size.is_some_and(|size| size > limit) {
        return Err(too_large(limit));
    }
    let data = shared
        .client
        .media()
        .get_file(content, false)
        .await
        .doing("download the file from the homeserver")?
        .ok_or_else(|| MatrixError::refused("the message has no file"))?;
    if data.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(data)
}

fn too_large(limit: u64) -> MatrixError {
    MatrixError::refused(format!(
        "the file is larger than matrix.max_download_bytes ({limit} bytes)"
    ))
}

/// Keeps letters, digits, `.`, `-` and `_`; never empty, never hidden, at most 100 chars.
pub fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() { "file".to_owned() } else { cleaned.to_owned() }
}

/// Writes the file under `root/<today>/`, never overwriting an earlier one.
/// `root` is in the agent-writable workspace: `root` and the dated folder are
/// opened without following links (a planted one fails the download) and the
/// file is created exclusively.
async fn store(root: &Path, name: &str, data: &[u8]) -> Result<PathBuf, MatrixError> {
    let day = jiff::Zoned::now().strftime("%Y-%m-%d").to_string();
    let (Some(parent), Some(leaf)) = (root.parent(), root.file_name().and_then(|n| n.to_str()))
    else {
        return Err(MatrixError::refused(format!("bad files folder {}", root.display())));
    };
    let dir = Tree::root_or_make(parent, 0o700)
        .and_then(|tree| tree.dir_or_make(&format!("{leaf}/{day}"), 0o700))
        .map_err(|error| MatrixError::refused(error.to_string()))?;
    let name = safe_name(name);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (name.clone(), String::new()),
    };
    for n in 0..1000 {
        let candidate = if n == 0 { name.clone() } else { format!("{stem}-{n}{ext}") };
        match dir.create_new(&candidate, 0o600) {
            Ok(file) => {
                use tokio::io::AsyncWriteExt as _;
                let path = dir.path().join(&candidate);
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(data).await.doing(format!("write {}", path.display()))?;
                file.flush().await.doing(format!("write {}", path.display()))?;
                return Ok(path);
            }
            Err(error) if error.already_exists() => continue,
            Err(error) => return Err(MatrixError::refused(error.to_string())),
        }
    }
    Err(MatrixError::refused(format!("too many files named {name} today")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name(".hidden"), "hidden");
        assert_eq!(safe_name("report 2026.pdf"), "report_2026.pdf");
        assert_eq!(safe_name(""), "file");
    }

    #[tokio::test]
    async fn stored_files_never_overwrite() {
        let ws = tempfile::tempdir().expect("temp dir");
        let dir = ws.path().join("matrix_files");
        let first = store(&dir, "a.txt", b"one").await.expect("first");
        let second = store(&dir, "a.txt", b"two").await.expect("second");
        assert_ne!(first, second);
        assert!(second.to_string_lossy().ends_with("a-1.txt"));
        assert_eq!(std::fs::read(first).expect("read"), b"one");
    }

    #[tokio::test]
    async fn a_planted_link_is_never_written_through() {
        let ws = tempfile::tempdir().expect("workspace");
        let victim = tempfile::tempdir().expect("victim");
        let dir = ws.path().join("matrix_files");
        std::os::unix::fs::symlink(victim.path(), &dir).expect("link the folder");
        assert!(store(&dir, "authorized_keys", b"key").await.is_err());
        assert!(!victim.path().join("authorized_keys").exists());
        std::fs::remove_file(&dir).expect("unlink");
        let day = jiff::Zoned::now().strftime("%Y-%m-%d").to_string();
        std::fs::create_dir_all(&dir).expect("folder");
        std::os::unix::fs::symlink(victim.path(), dir.join(&day)).expect("link today");
        assert!(store(&dir, "authorized_keys", b"key").await.is_err());
        assert!(!victim.path().join("authorized_keys").exists());
    }
}
