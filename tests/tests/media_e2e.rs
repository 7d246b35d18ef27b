//! Issue 16, voice and images, end to end: the real runner and core, the
//! real claude against the fake model API, a test gateway playing the chat
//! (it hands core a downloaded file, as the Telegram and Matrix gateways do).
//!
//! - A one-minute voice note (Ogg/Opus made by ffmpeg) is transcribed by the
//!   fake OpenAI-compatible endpoint (the key from a 0600 file): the
//!   transcript reaches claude's request at the model, the file path too.
//! - The operator's command backend gets 16 kHz WAV converted with the real
//!   ffmpeg (a video's sound track too); when it fails, the endpoint is tried
//!   next and the agent is told.
//! - With no backend working the turn still runs, with the file and a note.
//! - A 3000x2000 image reaches the agent as a 2000 px WebP; the original is kept.
//! - A received "file" that is a link to a secret is never read.
//!
//! Needs the pinned claude (`tests/setup/install-clis.sh`), ffmpeg
//! (`tests/setup/install-media.sh`) and `cargo build --bins`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ductor_proto::pb;
use ductor_tests::fake_model::FakeModel;
use ductor_tests::fake_transcriber::FakeTranscriber;
use ductor_tests::gateway::Chat;
use ductor_tests::harness::{TestEnv, command};
use ductor_tests::real_cli::{Cli, real_cli_home, toml_path, toml_str};

const TRANSPORT: &str = "testgw";
const CHAT: &str = "room";
const LONG: Duration = Duration::from_secs(90);
const KEY: &str = "sk-transcribe-test-key";
const SPOKEN: &str = "please water the basil at noon";

/// ffmpeg, or `None` after a SKIP line (a failure under DUCTOR_REQUIRE_REAL).
async fn ffmpeg() -> Option<()> {
    let found = command("ffmpeg").arg("-version").output().await.is_ok();
    if !found {
        assert!(
            std::env::var("DUCTOR_REQUIRE_REAL").is_err(),
            "ffmpeg is not installed (tests/setup/install-media.sh) and DUCTOR_REQUIRE_REAL=1"
        );
        eprintln!("SKIP: ffmpeg not installed");
    }
    found.then_some(())
}

async fn run_ffmpeg(args: &[&str]) {
    let status = command("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .await
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg {args:?}");
}

/// The stack with claude and `extra` config sections; `None` without claude or ffmpeg.
async fn stack(extra: &str) -> Option<(TestEnv, FakeModel, tempfile::TempDir)> {
    ffmpeg().await?;
    let (env, model, cli_home) = real_cli_home(Cli::Claude, "", extra).await?;
    let secrets = env.home().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    let key = secrets.join("transcription.key");
    std::fs::write(&key, format!("{KEY}\n")).expect("write the key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.up().await;
    Some((env, model, cli_home))
}

fn endpoint_section(fake: &FakeTranscriber, extra: &str) -> String {
    format!(
        "[transcription]\nendpoint = {}\napi_key_file = \"secrets/transcription.key\"\n\
         model = \"whisper-test\"\nlanguage = \"en\"\n{extra}\n",
        toml_str(&fake.base_url())
    )
}

/// Where a gateway would have downloaded a file today.
fn downloads(env: &TestEnv) -> PathBuf {
    let dir = env.home().join("workspace/telegram_files/2026-12-03");
    std::fs::create_dir_all(&dir).expect("downloads dir");
    dir
}

/// A one-minute voice note as Telegram sends them (Ogg/Opus, `.oga`).
async fn voice_note(env: &TestEnv) -> PathBuf {
    let path = downloads(env).join("voice_1.oga");
    let out = path.display().to_string();
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=60",
        "-c:a",
        "libopus",
        "-b:a",
        "24k",
        &out,
    ])
    .await;
    path
}

async fn send_file(chat: &Chat, path: &Path, mime: &str, kind: &str) {
    let media = pb::MediaRef {
        path: path.display().to_string(),
        mime_type: mime.to_owned(),
        media_kind: kind.to_owned(),
        size_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        ..Default::default()
    };
    chat.gateway.send(CHAT, pb::inbound_event::Kind::Media(media)).await;
}

/// The prompt claude sent to the model for the file turn.
fn file_prompt(model: &FakeModel) -> String {
    model
        .generations()
        .iter()
        .filter_map(|r| r.prompt.clone())
        .find(|p| p.contains("[INCOMING FILE]"))
        .unwrap_or_else(|| panic!("no file turn reached the model: {:#?}", model.generations()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_is_transcribed_by_the_endpoint_and_the_transcript_reaches_claude() {
    let fake = FakeTranscriber::start(SPOKEN, KEY).await.expect("fake transcriber");
    let Some((env, model, _home)) = stack(&endpoint_section(&fake, "")).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let voice = voice_note(&env).await;
    send_file(&chat, &voice, "audio/ogg", "voice").await;
    let reply = chat.expect(CHAT, "basil", LONG).await;
    assert_eq!(reply.kind, "final", "{reply:?}");

    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    let upload = &uploads[0];
    assert_eq!(upload.authorization, format!("Bearer {KEY}"));
    assert_eq!(
        (upload.file_name.as_str(), upload.magic.as_slice()),
        ("audio.ogg", b"OggS".as_slice())
    );
    assert_eq!(upload.size as u64, std::fs::metadata(&voice).unwrap().len(), "sent as received");
    assert_eq!((upload.model.as_str(), upload.language.as_str()), ("whisper-test", "en"));

    let prompt = file_prompt(&model);
    assert!(prompt.contains(&format!("> {SPOKEN}")), "the transcript is the message: {prompt}");
    assert!(prompt.contains(&format!("Path: {}", voice.display())), "and the file: {prompt}");
    assert!(!prompt.contains(KEY));
    let logs = std::fs::read_to_string(env.home().join("logs/runner.log")).unwrap_or_default();
    assert!(!logs.contains(KEY), "the key is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_wav_from_ffmpeg_and_a_failing_command_falls_back_to_the_endpoint() {
    let tools = tempfile::tempdir().expect("tools dir");
    // The operator's command: refuses anything that is not a WAV, and fails
    // on purpose when the marker file exists.
    let script = tools.path().join("transcribe.sh");
    let broken = tools.path().join("broken");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ -e {broken} ] && {{ echo 'model file missing' >&2; exit 3; }}\n\
             [ \"$(head -c 4 \"$1\")\" = RIFF ] || {{ echo not a wav >&2; exit 2; }}\n\
             echo \"the command heard $(wc -c < \"$1\") bytes\"\n",
            broken = broken.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fake = FakeTranscriber::start(SPOKEN, KEY).await.expect("fake transcriber");
    let extra = format!("command = [{}, \"{{file}}\"]", toml_path(&script));
    let Some((env, model, _home)) = stack(&endpoint_section(&fake, &extra)).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let voice = voice_note(&env).await;
    send_file(&chat, &voice, "audio/ogg", "voice").await;
    // 60 s of 16 kHz mono 16-bit PCM plus the 78-byte header ffmpeg writes.
    let reply = chat.expect(CHAT, "the command heard", LONG).await;
    assert!(reply.text.contains("1920078 bytes"), "ffmpeg made the WAV: {reply:?}");
    assert!(fake.uploads().is_empty(), "the command answered, the endpoint was not asked");

    // A video's sound track is what the command hears: 3 s of it.
    let video = downloads(&env).join("clip_1.mp4");
    let video_arg = video.display().to_string();
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=500:duration=3",
        "-c:v",
        "mpeg4",
        "-c:a",
        "aac",
        "-shortest",
        &video_arg,
    ])
    .await;
    send_file(&chat, &video, "video/mp4", "video").await;
    let reply = chat.expect(CHAT, "clip_1.mp4", LONG).await;
    let heard: u64 = reply
        .text
        .split("the command heard ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("the command heard the video: {reply:?}"));
    // 3 s of 16 kHz mono 16-bit PCM is 96000 bytes (AAC adds a few ms).
    assert!((96_000..100_000).contains(&heard), "{heard} bytes: {reply:?}");

    std::fs::write(&broken, "").unwrap();
    send_file(&chat, &voice, "audio/ogg", "voice").await;
    chat.expect(CHAT, "basil", LONG).await;
    assert_eq!(fake.uploads().len(), 1, "the endpoint was asked next");
    let prompts: Vec<String> =
        model.generations().iter().filter_map(|r| r.prompt.clone()).collect();
    let second = prompts.iter().rfind(|p| p.contains("[INCOMING FILE]")).unwrap();
    assert!(
        second.contains("The transcription command failed")
            && second.contains("model file missing"),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_backend_working_the_file_still_reaches_the_agent_with_a_note() {
    let fake = FakeTranscriber::start(SPOKEN, "a-different-key").await.expect("fake transcriber");
    let Some((env, model, _home)) = stack(&endpoint_section(&fake, "")).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let voice = voice_note(&env).await;
    send_file(&chat, &voice, "audio/ogg", "voice").await;
    chat.expect(CHAT, "INCOMING", LONG).await;
    let prompt = file_prompt(&model);
    assert!(
        prompt.contains("The transcription endpoint failed") && prompt.contains("401"),
        "{prompt}"
    );
    assert!(prompt.contains("transcribe or inspect it"), "{prompt}");
    assert!(!prompt.contains(SPOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_image_reaches_the_agent_resized_to_webp_and_the_original_is_kept() {
    let Some((env, model, _home)) = stack("").await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let original = downloads(&env).join("photo_7.png");
    run_ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=3000x2000",
        "-frames:v",
        "1",
        &original.display().to_string(),
    ])
    .await;
    let before = std::fs::read(&original).unwrap();
    send_file(&chat, &original, "image/png", "photo").await;
    chat.expect(CHAT, "INCOMING", LONG).await;

    let resized = original.with_file_name("photo_7.resized.webp");
    let prompt = file_prompt(&model);
    assert!(prompt.contains(&format!("Path: {}", resized.display())), "{prompt}");
    assert!(prompt.contains("from 3000x2000 to 2000x1333"), "{prompt}");
    assert_eq!(std::fs::read(&original).unwrap(), before, "the original is kept as it was");
    let probe = command("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0"])
        .arg(&resized)
        .output()
        .await
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&probe.stdout).trim(), "webp,2000,1333");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_received_file_that_links_to_a_secret_is_never_read() {
    let fake = FakeTranscriber::start(SPOKEN, KEY).await.expect("fake transcriber");
    let Some((env, model, _home)) = stack(&endpoint_section(&fake, "")).await else { return };
    let mut chat = Chat::attach(env.channel("core"), TRANSPORT).await;
    let planted = downloads(&env).join("voice_2.oga");
    std::os::unix::fs::symlink(env.home().join("secrets/transcription.key"), &planted).unwrap();
    send_file(&chat, &planted, "audio/ogg", "voice").await;
    chat.expect(CHAT, "INCOMING", LONG).await;
    assert!(fake.uploads().is_empty(), "nothing was uploaded: {:?}", fake.uploads());
    let prompt = file_prompt(&model);
    assert!(prompt.contains("was not transcribed"), "{prompt}");
    assert!(!prompt.contains(KEY));
}

/// The `doctor` line that starts with `what`.
fn doctor_line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(what)))
        .unwrap_or_else(|| panic!("no {what:?} line in:\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_transcription_lacks() {
    let env = TestEnv::with_config(
        "[transcription]\ncommand = [\"no-such-whisper-cli\", \"{file}\"]\nffmpeg = \"no-such-ffmpeg\"\n\
         endpoint = \"http://127.0.0.1:9/v1\"\napi_key_file = \"secrets/transcription.key\"\n",
    );
    let secrets = env.home().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let key = secrets.join("transcription.key");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned();
    let line = doctor_line(&out, "transcription");
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("no-such-whisper-cli is not on PATH"), "{line}");
    assert!(line.contains("no-such-ffmpeg is not on PATH"), "{line}");
    assert!(line.contains("may be read by other users"), "{line}");
    assert!(!doctor.status.success());

    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.write_config(&format!(
        "[transcription]\ncommand = [\"sh\", \"{{file}}\"]\nendpoint = \"http://127.0.0.1:9/v1\"\n\
         api_key_file = {}\n",
        toml_path(&key)
    ));
    let doctor = env.ductorctl(&["doctor"]).await;
    let out = String::from_utf8_lossy(&doctor.stdout).into_owned();
    let line = doctor_line(&out, "transcription");
    if ffmpeg().await.is_some() {
        assert_eq!(line, "OK   transcription: backends: command, then endpoint", "{out}");
    }
}
