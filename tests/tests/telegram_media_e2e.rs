//! Issue 16 as a Telegram user sees it: `ductorctl up` with the real
//! runner, core and Telegram gateway, the gateway's fake Bot API as
//! Telegram, the fake CLI as `claude` and the fake transcription endpoint.
//! A voice note sent to the bot is downloaded by the gateway, transcribed by
//! the runner, and the agent's answer to its transcript is what Telegram gets.
//! Needs `cargo build --bins` and ffmpeg (`tests/setup/install-media.sh`).

use ductor_gateway_telegram::testing::{FakeBotApi, updates};
use ductor_tests::fake_transcriber::FakeTranscriber;
use ductor_tests::harness::{TestEnv, binary, command, wait_for};
use ductor_tests::real_cli::toml_str;

const TOKEN: &str = "123456:MEDIA-SECRET-token-xyz";
const KEY: &str = "sk-telegram-media";
const SPOKEN: &str = "remind me to call the plumber";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_telegram_voice_note_is_answered_from_its_transcript() {
    if command("ffmpeg").arg("-version").output().await.is_err() {
        assert!(std::env::var("DUCTOR_REQUIRE_REAL").is_err(), "ffmpeg is not installed");
        eprintln!("SKIP: ffmpeg not installed");
        return;
    }
    let api = FakeBotApi::start(TOKEN).await;
    let fake = FakeTranscriber::start(SPOKEN, KEY).await.expect("fake transcriber");
    let state = tempfile::tempdir().expect("state dir");
    let state_path = state.path().canonicalize().expect("canonical state dir");
    let env = TestEnv::with_config(&format!(
        "[runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake_cli}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
         [telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\nallowed_user_ids = [1]\n\n\
         [transcription]\nendpoint = {endpoint}\napi_key_file = \"secrets/transcription.key\"\n",
        state = state_path.display(),
        fake_cli = binary("ductor-fake-cli").display(),
        api_url = api.url,
        endpoint = toml_str(&fake.base_url()),
    ));
    let secrets = env.home().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let key = secrets.join("transcription.key");
    std::fs::write(&key, KEY).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let recording = state.path().join("note.oga");
    let made = command("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .args(["sine=frequency=300:duration=5", "-c:a", "libopus"])
        .arg(&recording)
        .status()
        .await
        .expect("ffmpeg");
    assert!(made.success());
    let bytes = std::fs::read(&recording).unwrap();
    let size = bytes.len() as u64;
    api.add_file("voice-1", "voice/file_1.oga", bytes);

    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram"]).await;

    let mut update = updates::message(1, 1, 10, None);
    update["voice"] = serde_json::json!({
        "file_id": "voice-1", "file_unique_id": "uvoice-1", "duration": 5,
        "mime_type": "audio/ogg", "file_size": size,
    });
    api.push_update(serde_json::json!({ "message": update }));

    let answer = wait_for("the answer to the voice note", async || {
        api.calls_of("sendmessage")
            .into_iter()
            .chain(api.calls_of("editmessagetext"))
            .filter_map(|c| c.str("text").map(str::to_owned))
            .find(|t| t.contains(SPOKEN))
    })
    .await;
    assert!(
        answer.contains("[INCOMING FILE]"),
        "the agent got the file and its transcript: {answer}"
    );
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!((uploads[0].size as u64, uploads[0].magic.as_slice()), (size, b"OggS".as_slice()));
    let _ = env.ductorctl(&["down"]).await;
}
