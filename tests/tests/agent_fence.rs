//! An agent CLI runs under the same uid as ductor, so the uid check alone
//! would let it dial core or the runner and act as a gateway. These tests
//! play such an agent: a client that cannot read the local token (it sends
//! the tokenless `DUCTOR1 A` preamble, as `connect_io` does when the token
//! file is unreadable from the sandbox). Core must refuse it everything but
//! the Automation service; the runner must refuse the connection outright.

use std::path::PathBuf;
use std::time::Duration;

use ductor_proto::pb;
use ductor_tests::gateway::{self, Gateway};
use ductor_tests::harness::TestEnv;
use tokio::io::AsyncWriteExt;
use tonic::transport::{Channel, Endpoint};

/// A channel to `socket` that presents no token, like an agent in the sandbox.
async fn tokenless_channel(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_static("http://agent.local")
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let mut stream = tokio::net::UnixStream::connect(socket).await?;
                stream.write_all(b"DUCTOR1 A\n").await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokenless_client_cannot_attach_to_core_nor_reach_the_runner() {
    let env = TestEnv::new();
    let up = env.ductorctl(&["up", "--detach"]).await;
    assert!(up.status.success(), "up --detach failed: {}", String::from_utf8_lossy(&up.stderr));

    // The privileged path works: this test's own process can read the token.
    let mut core = pb::core_client::CoreClient::new(env.channel("core"));
    core.describe(pb::DescribeRequest {}).await.expect("a token holder may describe core");

    // An agent is admitted to core's socket, but Attach and Describe refuse it.
    let agent = tokenless_channel(env.socket("core")).await.expect("core admits tokenless clients");
    let attach = Gateway::try_attach(agent.clone(), gateway::hello("telegram")).await;
    assert_eq!(attach.err().expect("attach must be refused").code(), tonic::Code::PermissionDenied);
    let mut agent_core = pb::core_client::CoreClient::new(agent.clone());
    let describe = agent_core.describe(pb::DescribeRequest {}).await;
    assert_eq!(
        describe.expect_err("describe must be refused").code(),
        tonic::Code::PermissionDenied
    );

    // The Automation service is reachable (it scopes agents by their credential).
    let mut automation = pb::automation_client::AutomationClient::new(agent);
    let who = automation.who_am_i(pb::WhoAmIRequest::default()).await;
    if let Err(status) = &who {
        assert_ne!(
            status.code(),
            tonic::Code::Unavailable,
            "automation must be reachable: {status}"
        );
        assert_ne!(
            status.code(),
            tonic::Code::PermissionDenied,
            "automation must not be fenced: {status}"
        );
    }

    // The runner drops a tokenless connection before any RPC.
    let runner = tokenless_channel(env.socket("runner")).await;
    let refused = match runner {
        Err(_) => true,
        Ok(channel) => {
            let mut client = pb::runner_client::RunnerClient::new(channel);
            client.probe(pb::ProbeRequest {}).await.is_err()
        }
    };
    assert!(refused, "the runner must not serve a tokenless client");
    let mut runner = pb::runner_client::RunnerClient::new(env.channel("runner"));
    runner.probe(pb::ProbeRequest {}).await.expect("a token holder may probe the runner");

    let down = env.ductorctl(&["down"]).await;
    assert!(down.status.success());
}
