//! The "typing…" notice while a turn runs: set with a 30 s server timeout and
//! renewed every 20 s, so it neither flickers nor outlives the turn. It stops
//! at the turn's end, or by itself after five minutes without any activity
//! (a turn whose end never arrives must not type forever).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use matrix_sdk::ruma::api::client::typing::create_typing_event::v3::{
    Request, Typing as TypingState, TypingInfo,
};
use matrix_sdk::{Client, Room};
use tokio_util::sync::CancellationToken;

const SERVER_TIMEOUT: Duration = Duration::from_secs(30);
const RENEW_EVERY: Duration = Duration::from_secs(20);
const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// A running typing notice.
pub struct Typing {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    last_touch_ms: Arc<AtomicU64>,
}

impl Typing {
    /// Starts showing "typing…" in `room`.
    pub fn start(client: &Client, room: &Room) -> Self {
        let stop = CancellationToken::new();
        let started = Instant::now();
        let last_touch_ms = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(keep_typing(
            client.clone(),
            room.clone(),
            stop.clone(),
            started,
            last_touch_ms.clone(),
        ));
        Self { stop, task, started, last_touch_ms }
    }

    /// Records activity, postponing the idle stop.
    pub fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_touch_ms.store(elapsed, Ordering::Relaxed);
    }

    /// Stops the notice and clears it on the server.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn keep_typing(
    client: Client,
    room: Room,
    stop: CancellationToken,
    started: Instant,
    last_touch_ms: Arc<AtomicU64>,
) {
    loop {
        let idle = started
            .elapsed()
            .saturating_sub(Duration::from_millis(last_touch_ms.load(Ordering::Relaxed)));
        if idle > IDLE_LIMIT {
            break;
        }
        send(&client, &room, TypingState::Yes(TypingInfo::new(SERVER_TIMEOUT))).await;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
    }
    send(&client, &room, TypingState::No).await;
}

async fn send(client: &Client, room: &Room, state: TypingState) {
    let Some(user) = client.user_id() else { return };
    let request = Request::new(user.to_owned(), room.room_id().to_owned(), state);
    if let Err(error) = client.send(request).await {
        tracing::debug!(%error, "send a typing notice");
    }
}
