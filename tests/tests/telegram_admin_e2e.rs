//! Issue 17 on Telegram: `ductorctl up` with the real runner, core and
//! Telegram gateway against the gateway's fake Bot API. An admin chat's
//! `/leave CHAT_ID` makes the bot leave that group (`leaveChat`), another
//! chat's is refused. Needs `cargo build --bins`.

use ductor_gateway_telegram::testing::{FakeBotApi, updates};
use ductor_tests::harness::{TestEnv, binary, wait_for};

const TOKEN: &str = "123456:ADMIN-SECRET-token-xyz";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_chat_makes_the_bot_leave_a_group_and_others_cannot() {
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
    let _ = env.ductorctl(&["down"]).await;
}
