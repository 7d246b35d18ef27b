//! Issue 17 on Telegram: `ductorctl up` with the real runner, core and
//! Telegram gateway against the gateway's fake Bot API. An admin chat's
//! `/leave CHAT_ID` makes the bot leave that group (`leaveChat`), another
//! chat's is refused; its `/restart telegram` restarts the gateway alone, and
//! the chat reads that it is back. Needs `cargo build --bins`.

use ductor_gateway_telegram::testing::{FakeBotApi, updates};
use ductor_tests::harness::{TestEnv, binary, wait_for};

const TOKEN: &str = "123456:ADMIN-SECRET-token-xyz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_chat_makes_the_bot_leave_a_group_and_restarts_the_gateway() {
    let api = FakeBotApi::start(TOKEN).await;
    let state = tempfile::tempdir().expect("state dir");
    let state_path = state.path().canonicalize().expect("canonical state dir");
    let env = TestEnv::with_config(&format!(
        "[agent]\nadmin_chats = [\"telegram:1\"]\n\n\
         [runner]\nextra_writable_paths = [\"{state}\"]\n\n\
         [providers.claude]\nbinary = \"{fake_cli}\"\nenv = {{ DUCTOR_FAKE_CLI_STATE = \"{state}\" }}\n\n\
         [telegram]\nenabled = true\ntoken = \"{TOKEN}\"\napi_url = \"{api_url}\"\nallowed_user_ids = [1, 2]\n",
        state = state_path.display(),
        fake_cli = binary("ductor-fake-cli").display(),
        api_url = api.url,
    ));
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up failed: {}", String::from_utf8_lossy(&up.stderr));
    env.wait_healthy(&["runner", "core", "telegram"]).await;

    api.push_update(updates::text(2, 2, 10, "/leave -100777"));
    wait_for("the refusal", async || {
        api.calls_of("sendmessage").into_iter().find(|c| {
            c.chat_id == Some(2) && c.str("text").is_some_and(|t| t.contains("Only admin"))
        })
    })
    .await;
    api.push_update(updates::text(1, 1, 11, "/leave -100500"));
    let left = wait_for("leaveChat", async || api.calls_of("leavechat").into_iter().next()).await;
    assert_eq!(left.chat_id, Some(-100500), "{left:?}");
    assert!(api.calls_of("leavechat").iter().all(|c| c.chat_id != Some(-100777)));

    // `/restart telegram`: the gateway exits 42, the launcher starts it again
    // (not a crash), and the notice that it is back reaches the chat.
    let pid =
        async |service: &str| env.service_status(service).await.expect(service)["pid"].as_u64();
    let (gateway_before, core_before) = (pid("telegram").await, pid("core").await);
    api.push_update(updates::text(1, 1, 12, "/restart telegram"));
    let back = wait_for("the gateway's back notice", async || {
        api.calls_of("sendmessage").into_iter().find(|c| {
            c.chat_id == Some(1)
                && c.str("text").is_some_and(|t| t.contains("telegram gateway restarted"))
        })
    })
    .await;
    assert!(back.str("text").is_some_and(|t| t.starts_with("✅")), "{back:?}");
    let status = env.service_status("telegram").await.expect("telegram");
    assert_ne!(status["pid"].as_u64(), gateway_before, "a new gateway process: {status}");
    assert_eq!(status["restarts"].as_u64(), Some(1), "a restart, not a crash: {status}");
    assert_eq!(pid("core").await, core_before, "core was left alone");
    let _ = env.ductorctl(&["down"]).await;
}
