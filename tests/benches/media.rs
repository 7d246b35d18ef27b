//! Issue 16's voice budget through the real stack (runner, core, a test
//! gateway) with the fake claude (`ductor-fake-cli`, so the CLI's own time is
//! small and the same for every turn) and the fake transcription endpoint:
//!
//! - a one-minute voice note (Ogg/Opus from ffmpeg) transcribed by the
//!   endpoint: the time from sending it to its final reply at the gateway,
//!   minus the same for a plain text message, minus the endpoint's own time
//!   (measured inside the fake), is what ductor added (budget < 50 ms);
//! - the runner's own account of it (`own_us` in "prepared a received file":
//!   reading, copying, the request, the response, without the endpoint).
//!
//! Run: `cargo build --release --bins` then `cargo bench -p ductor-tests --bench media`.

use std::time::{Duration, Instant};

use ductor_proto::pb;
use ductor_tests::fake_transcriber::FakeTranscriber;
use ductor_tests::gateway::Chat;
use ductor_tests::harness::TestEnv;
use ductor_tests::real_cli::toml_str;

const ROUNDS: usize = 20;
const CHAT: &str = "room";
const LONG: Duration = Duration::from_secs(60);
const KEY: &str = "sk-bench";

fn report(name: &str, mut values: Vec<f64>, budget: Option<f64>) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let budget = budget.map(|b| format!(" (budget < {b} ms)")).unwrap_or_default();
    println!(
        "{name}: n={} p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms{budget}",
        values.len(),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let fake = FakeTranscriber::start("please water the basil at noon", KEY).await.expect("fake");
    let env = TestEnv::with_fake_claude(&format!(
        "[transcription]\nendpoint = {}\napi_key_file = \"secrets/transcription.key\"\n",
        toml_str(&fake.base_url())
    ));
    let secrets = env.home().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    let key = secrets.join("transcription.key");
    std::fs::write(&key, KEY).expect("key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    env.up().await;
    let downloads = env.home().join("workspace/telegram_files/bench");
    std::fs::create_dir_all(&downloads).unwrap();
    let voice = downloads.join("voice.oga");
    let status = ductor_tests::harness::command("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .args(["sine=frequency=440:duration=60", "-c:a", "libopus", "-b:a", "24k"])
        .arg(&voice)
        .status()
        .await
        .expect("ffmpeg (tests/setup/install-media.sh)");
    assert!(status.success());
    let size = std::fs::metadata(&voice).unwrap().len();
    println!("voice note: 60 s Ogg/Opus, {size} bytes");

    let mut chat = Chat::attach(env.channel("core"), "benchgw").await;
    let (mut text, mut voiced, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let started = Instant::now();
        chat.gateway.say(CHAT, &format!("plain text {round}")).await;
        chat.expect(CHAT, &format!("plain text {round}"), LONG).await;
        let text_turn = started.elapsed();

        let started = Instant::now();
        let media = pb::MediaRef {
            path: voice.display().to_string(),
            mime_type: "audio/ogg".into(),
            media_kind: "voice".into(),
            caption: format!("round {round}"),
            size_bytes: size,
            ..Default::default()
        };
        chat.gateway.send(CHAT, pb::inbound_event::Kind::Media(media)).await;
        chat.expect(CHAT, &format!("round {round}"), LONG).await;
        let voice_turn = started.elapsed();
        let spent = fake.uploads().last().expect("an upload").spent;
        if round > 0 {
            text.push(ms(text_turn));
            voiced.push(ms(voice_turn));
            added.push(ms(voice_turn) - ms(text_turn) - ms(spent));
        }
    }
    assert_eq!(fake.uploads().len(), ROUNDS, "every voice note was transcribed");
    let log = std::fs::read_to_string(env.home().join("logs/runner.log")).expect("runner log");
    let own: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("prepared a received file"))
        .filter_map(|l| l.split("own_us=").nth(1)?.split_whitespace().next()?.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .skip(1)
        .collect();
    report("plain text turn, send → final at the gateway", text, None);
    report("voice note turn, send → final at the gateway", voiced, None);
    report("ductor's added time for the voice note (voice − text − endpoint)", added, Some(50.0));
    report("runner's own preparation time (own_us)", own, Some(50.0));
    let _ = env.ductorctl(&["down"]).await;
}
