//! Putting things into a room: Markdown as `m.text`/`m.notice` with HTML,
//! `m.replace` edits, messages with numbered options plus the bot's own keycap
//! reactions (registered for button presses), and file uploads (matrix-sdk
//! encrypts them in encrypted rooms).

use std::path::Path;

use crate::error::{Doing as _, MatrixError};
use ductor_daemon::sync::Locked as _;
use ductor_proto::pb;
use matrix_sdk::Room;
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::room::reply::{EnforceThread, Reply};
use matrix_sdk::ruma::events::reaction::ReactionEventContent;
use matrix_sdk::ruma::events::relation::Annotation;
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::message::{AddMentions, Relation, ReplyWithinThread};
use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{EventId, OwnedEventId};

use crate::gateway::Shared;
use crate::render;

/// Characters per event: body + HTML stay far below Matrix's 64 KiB event limit.
pub const MAX_CHARS: usize = 12_000;

/// Most reaction buttons on one message (one per keycap).
const MAX_BUTTONS: usize = render::KEYCAPS.len();

/// Notifying text or a quiet notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `m.text`: notifies.
    Text,
    /// `m.notice`: bots' usual type; push rules keep it quiet.
    Notice,
}

fn content(text: &str, kind: Kind, thread: Option<&EventId>) -> RoomMessageEventContent {
    let rendered = render::markdown(text);
    let mut content = match kind {
        Kind::Text => RoomMessageEventContent::text_html(rendered.plain, rendered.html),
        Kind::Notice => RoomMessageEventContent::notice_html(rendered.plain, rendered.html),
    };
    if let Some(root) = thread {
        content.relates_to = Some(Relation::Thread(Thread::without_fallback(root.to_owned())));
    }
    content
}

/// Sends Markdown (into `thread` when set), split into several events when
/// long; returns the last one.
pub async fn markdown(
    room: &Room,
    text: &str,
    kind: Kind,
    thread: Option<&EventId>,
) -> Result<OwnedEventId, MatrixError> {
    let chunks = render::split(text, MAX_CHARS);
    let mut last = None;
    for chunk in &chunks {
        let response = room.send(content(chunk, kind, thread)).await.doing("send a message")?;
        last = Some(response.response.event_id);
    }
    last.ok_or_else(|| MatrixError::refused("nothing to send: the text is empty"))
}

/// Replaces the text of a message the bot sent (`m.replace`).
pub async fn edit(
    room: &Room,
    event: &OwnedEventId,
    text: &str,
    kind: Kind,
) -> Result<(), MatrixError> {
    let replacement =
        content(text, kind, None).make_replacement(ReplacementMetadata::new(event.clone(), None));
    room.send(replacement).await.doing("edit a message")?;
    Ok(())
}

fn flatten(rows: &[pb::ButtonRow]) -> (Vec<String>, Vec<String>) {
    let buttons = rows.iter().flat_map(|row| row.buttons.iter()).take(MAX_BUTTONS);
    buttons.map(|b| (b.label.clone(), b.id.clone())).unzip()
}

/// Sends text with numbered options, adds a keycap reaction per option and
/// remembers them as buttons; returns the message's event id.
pub async fn with_buttons(
    shared: &Shared,
    room: &Room,
    text: &str,
    rows: &[pb::ButtonRow],
    kind: Kind,
    thread: Option<&EventId>,
) -> Result<OwnedEventId, MatrixError> {
    let (labels, ids) = flatten(rows);
    let event = markdown(room, &render::with_options(text, &labels), kind, thread).await?;
    add_buttons(shared, room, &event, ids, thread).await?;
    Ok(event)
}

/// Edits a message into text with numbered options (edit-mode final answers).
pub async fn edit_with_buttons(
    shared: &Shared,
    room: &Room,
    event: &OwnedEventId,
    text: &str,
    rows: &[pb::ButtonRow],
    kind: Kind,
    thread: Option<&EventId>,
) -> Result<(), MatrixError> {
    let (labels, ids) = flatten(rows);
    edit(room, event, &render::with_options(text, &labels), kind).await?;
    add_buttons(shared, room, event, ids, thread).await
}

async fn add_buttons(
    shared: &Shared,
    room: &Room,
    event: &OwnedEventId,
    ids: Vec<String>,
    thread: Option<&EventId>,
) -> Result<(), MatrixError> {
    if ids.is_empty() {
        return Ok(());
    }
    let count = ids.len();
    // Registered before the reactions go out, so an early press is understood.
    let topic = thread.map(ToString::to_string).unwrap_or_default();
    shared.buttons.locked().register(room.room_id(), event.clone(), ids, topic);
    for key in render::KEYCAPS.iter().take(count) {
        let reaction = ReactionEventContent::new(Annotation::new(event.clone(), (*key).to_owned()));
        room.send(reaction).await.doing("add an option reaction")?;
    }
    Ok(())
}

/// Largest file sent to a room (a common homeserver upload limit).
pub const UPLOAD_MAX_BYTES: u64 = 50 * 1024 * 1024;

/// Uploads a file (encrypted in encrypted rooms) and posts it.
pub async fn attachment(
    room: &Room,
    file: &pb::Attachment,
    thread: Option<&EventId>,
) -> Result<(), MatrixError> {
    let path = Path::new(&file.path);
    // Only the very file core approved (the path is agent-writable), and
    // never more than the cap: the upload is held in memory (and encrypted).
    let id = ductor_daemon::safe_fs::attachment_id(file.dev, file.ino, file.changed_ns);
    let (opened, size) = ductor_daemon::safe_fs::open_attachment(path, id, UPLOAD_MAX_BYTES)
        .map_err(|error| MatrixError::refused(format!("not sent: {error}")))?;
    let mut data = Vec::with_capacity(size as usize);
    {
        use tokio::io::AsyncReadExt as _;
        tokio::fs::File::from_std(opened)
            .take(UPLOAD_MAX_BYTES)
            .read_to_end(&mut data)
            .await
            .doing(format!("read {}", path.display()))?;
    }
    let name = if file.file_name.is_empty() {
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned()
    } else {
        file.file_name.clone()
    };
    let mime: mime::Mime =
        file.mime_type.parse().unwrap_or_else(|_| guess_mime(&name, file.is_image));
    let mut config = AttachmentConfig::new();
    config.reply = thread.map(|root| Reply {
        event_id: root.to_owned(),
        enforce_thread: EnforceThread::Threaded(ReplyWithinThread::No),
        add_mentions: AddMentions::No,
    });
    room.send_attachment(name, &mime, data, config).await.doing("upload and send the file")?;
    Ok(())
}

fn guess_mime(name: &str, is_image: bool) -> mime::Mime {
    let ext = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => mime::IMAGE_PNG,
        "jpg" | "jpeg" => mime::IMAGE_JPEG,
        "gif" => mime::IMAGE_GIF,
        "svg" => mime::IMAGE_SVG,
        "txt" | "md" | "log" => mime::TEXT_PLAIN,
        "pdf" => mime::APPLICATION_PDF,
        "json" => mime::APPLICATION_JSON,
        _ if is_image => "image/webp".parse().unwrap_or(mime::APPLICATION_OCTET_STREAM),
        _ => mime::APPLICATION_OCTET_STREAM,
    }
}
