//! A minimal fake Telegram Bot API on a loopback port, so a gateway can be
//! enabled in tests without a network: `getMe` answers a bot, `getUpdates`
//! long-polls briefly and answers no updates, every other method answers
//! `ok`. Requests are counted per method so tests can see the gateway talk.

use ductor_daemon::sync::Locked as _;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The running fake; stops when dropped.
pub struct FakeTelegram {
    url: String,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeTelegram {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Bot API");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let calls = Arc::new(Mutex::new(HashMap::new()));
        let counter = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, counter.clone()));
            }
        });
        Self { url, calls, task }
    }

    /// The base URL for `[telegram].api_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How often `method` was called (case-insensitive).
    pub fn calls(&self, method: &str) -> u32 {
        let method = method.to_ascii_lowercase();
        self.calls.locked().get(&method).copied().unwrap_or(0)
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, calls: Arc<Mutex<HashMap<String, u32>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        // Bot API method names are case-insensitive (teloxide sends `GetMe`).
        let method = path.rsplit('/').next().unwrap_or("").split('?').next().unwrap_or("");
        let method = method.to_ascii_lowercase();
        *calls.locked().entry(method.clone()).or_default() += 1;
        let result = match method.as_str() {
            "getme" => {
                r#"{"id":1,"is_bot":true,"first_name":"ductor","username":"ductor_test_bot","can_join_groups":true,"can_read_all_group_messages":false,"supports_inline_queries":false,"has_main_web_app":false}"#
            }
            "getwebhookinfo" => {
                r#"{"url":"","has_custom_certificate":false,"pending_update_count":0}"#
            }
            "getupdates" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "[]"
            }
            _ => "true",
        };
        let body = format!(r#"{{"ok":true,"result":{result}}}"#);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if reader.get_mut().write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
