//! Socket modes, stale sockets, the uid check's companion (the token
//! preamble) and the connection info services see.

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use super::*;

async fn prepared() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    prepare_socket_dir(&dir).unwrap();
    (tmp, dir)
}

#[tokio::test]
async fn socket_is_0600_in_0700_dir_token_0600_and_removed_on_drop() {
    let (_tmp, dir) = prepared().await;
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(dir.join(TOKEN_FILE)).unwrap().mode() & 0o777, 0o600);
    let path = dir.join("x.sock");
    let mut incoming = bind(&path).await.unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    let _client = connect_io(&path).await.unwrap();
    let accepted = incoming.next().await.unwrap().expect("a token holder is admitted");
    assert!(accepted.peer.privileged);
    assert_eq!(accepted.peer.uid, nix::unistd::geteuid().as_raw());
    drop(incoming);
    assert!(!path.exists());
}

#[tokio::test]
async fn second_bind_on_live_socket_is_refused_and_stale_one_replaced() {
    let (_tmp, dir) = prepared().await;
    let path = dir.join("y.sock");
    let _live = bind(&path).await.unwrap();
    assert!(matches!(bind(&path).await, Err(TransportError::InUse(_))));
    let stale_path = dir.join("z.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale_path).unwrap());
    assert!(stale_path.exists());
    assert!(bind(&stale_path).await.is_ok());
}

#[test]
fn loose_dir_mode_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("loose");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    prepare_socket_dir(&dir).unwrap();
    assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn token_is_stable_across_prepares() {
    let tmp = tempfile::tempdir().unwrap();
    let first = ensure_token(tmp.path()).unwrap();
    prepare_socket_dir(tmp.path()).unwrap();
    assert_eq!(ensure_token(tmp.path()).unwrap(), first);
    assert_eq!(first.len(), 64);
}

/// A client that cannot read the token (an agent in the sandbox) is refused
/// by a default listener, and admitted unprivileged where that is allowed.
#[tokio::test]
async fn tokenless_clients_are_refused_unless_allowed() {
    let (_tmp, dir) = prepared().await;
    let strict_path = dir.join("strict.sock");
    let lenient_path = dir.join("lenient.sock");
    let mut strict = bind(&strict_path).await.unwrap();
    let mut lenient =
        bind_with(&lenient_path, BindOptions { allow_unprivileged: true }).await.unwrap();
    for path in [&strict_path, &lenient_path] {
        let mut raw = UnixStream::connect(path).await.unwrap();
        raw.write_all(b"DUCTOR1 A\n").await.unwrap();
        std::mem::forget(raw);
    }
    let admitted = lenient.next().await.unwrap().unwrap();
    assert!(!admitted.peer.privileged);
    let refused = tokio::time::timeout(Duration::from_millis(300), strict.next()).await;
    assert!(refused.is_err(), "strict listener must not yield a tokenless connection");
}

#[tokio::test]
async fn wrong_token_and_garbage_are_refused() {
    let (_tmp, dir) = prepared().await;
    let path = dir.join("w.sock");
    let mut incoming = bind(&path).await.unwrap();
    for preamble in [
        &b"DUCTOR1 L 0000000000000000000000000000000000000000000000000000000000000000\n"[..],
        b"GET / HTTP/1.1\r\n",
    ] {
        let mut raw = UnixStream::connect(&path).await.unwrap();
        raw.write_all(preamble).await.unwrap();
        std::mem::forget(raw);
    }
    let refused = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
    assert!(refused.is_err(), "no connection may be admitted");
    // A real client still gets in afterwards.
    let _client = connect_io(&path).await.unwrap();
    assert!(incoming.next().await.unwrap().unwrap().peer.privileged);
}

#[test]
fn token_comparison() {
    assert!(same_token(b"abc", b"abc"));
    assert!(!same_token(b"abc", b"abd"));
    assert!(!same_token(b"abc", b"abcd"));
}

/// A raw tokenless client, as an agent's `ductorctl` is.
async fn agent_client(path: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(b"DUCTOR1 A\n").await.unwrap();
    stream
}

#[tokio::test]
async fn tokenless_connections_are_capped_but_token_holders_still_get_in() {
    let (_tmp, dir) = prepared().await;
    let path = dir.join("cap.sock");
    let mut incoming = bind_with(&path, BindOptions { allow_unprivileged: true }).await.unwrap();
    let mut held = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..MAX_UNPRIVILEGED {
        clients.push(agent_client(&path).await);
        held.push(incoming.next().await.unwrap().expect("admitted under the cap"));
    }
    let mut over = agent_client(&path).await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), over.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the one over the cap is closed: {read:?}");
    let _operator = connect_io(&path).await.unwrap();
    let admitted = incoming.next().await.unwrap().expect("a token holder is not capped");
    assert!(admitted.peer.privileged);
    // A closed tokenless connection frees its place.
    drop(held.pop());
    let _again = agent_client(&path).await;
    let next = incoming.next().await.unwrap().expect("a freed place is reused");
    assert!(!next.peer.privileged);
}

#[tokio::test(start_paused = true)]
async fn a_tokenless_connection_ends_after_its_lifetime() {
    let (_tmp, dir) = prepared().await;
    let path = dir.join("life.sock");
    let mut incoming = bind_with(&path, BindOptions { allow_unprivileged: true }).await.unwrap();
    let _client = agent_client(&path).await;
    let mut server = incoming.next().await.unwrap().expect("admitted");
    tokio::time::advance(UNPRIVILEGED_LIFETIME + Duration::from_secs(1)).await;
    let mut byte = [0u8; 1];
    let error = server.read(&mut byte).await.expect_err("expired");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
}
