//! The link's promises against the fake core, in memory: nothing inbound is
//! lost or dropped (re-sent until accepted, intake held when the backlog is
//! full), nothing outbound is delivered twice, and a slow delivery side slows
//! the link down instead of losing actions; a restart request reaches the gateway.

use std::time::Duration;

use ductor_gateway_link::testing::{FakeCore, final_reply};
use ductor_gateway_link::{Attached, LinkOptions};
use ductor_proto::pb;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

fn event(n: u32) -> pb::InboundEvent {
    pb::InboundEvent {
        event_id: format!("test:{n}"),
        chat: Some(pb::ChatRef { chat_id: "1".into(), topic_id: String::new() }),
        sender_id: "u".into(),
        sender_name: "User".into(),
        kind: Some(pb::inbound_event::Kind::Message(pb::UserMessage {
            text: format!("message {n}"),
            reply_quote: String::new(),
        })),
    }
}

fn action(id: u64, text: &str) -> pb::OutboundAction {
    pb::OutboundAction {
        action_id: id,
        chat: Some(pb::ChatRef { chat_id: "1".into(), topic_id: String::new() }),
        durable: true,
        kind: Some(final_reply(text)),
        ..Default::default()
    }
}

async fn attach(core: &FakeCore, options: LinkOptions) -> (Attached, CancellationToken) {
    let shutdown = CancellationToken::new();
    let hello = ductor_gateway_link::hello("test", pb::Capabilities::default(), "0.0.0");
    let attached = ductor_gateway_link::spawn(
        core.channel().await,
        hello,
        options,
        Default::default(),
        shutdown.clone(),
    );
    assert!(core.wait_attached(WAIT).await, "the link attaches");
    (attached, shutdown)
}

#[tokio::test]
async fn unaccepted_events_are_resent_after_a_reconnect_and_receipts_follow_acceptance() {
    let core = FakeCore::default();
    let (link, _shutdown) = attach(&core, LinkOptions::default()).await;
    core.set_accepting(false);
    let receipt = link.inbound.send(event(1)).await.expect("the link runs");
    assert!(core.wait_received(1, WAIT).await);
    assert_eq!(link.status.unaccepted(), 1);
    let pending = tokio::time::timeout(Duration::from_millis(200), receipt.accepted()).await;
    assert!(pending.is_err(), "no receipt before core accepts");

    core.set_accepting(true);
    core.disconnect();
    assert!(core.wait_hellos(2, WAIT).await, "the link redials");
    assert!(core.wait_received(2, WAIT).await, "the event is sent again");
    let receipt = link.inbound.send(event(2)).await.expect("the link runs");
    receipt.accepted().await.expect("core accepts the new event");
    assert_eq!(core.texts(), ["message 1", "message 2"], "each event once, in order");
    assert!(core.wait_until(WAIT, |_| link.status.unaccepted() == 0).await);
}

#[tokio::test]
async fn a_full_backlog_holds_intake_instead_of_dropping() {
    let core = FakeCore::default();
    let options = LinkOptions { max_unaccepted: 3, ..LinkOptions::default() };
    let (link, _shutdown) = attach(&core, options).await;
    core.set_accepting(false);
    for n in 1..=3 {
        link.inbound.send(event(n)).await.expect("room for three");
    }
    let inbound = link.inbound.clone();
    let fourth = tokio::spawn(async move { inbound.send(event(4)).await.map(|_| ()) });
    assert!(core.wait_received(3, WAIT).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!fourth.is_finished(), "the fourth send waits for room");
    assert!(link.status.detail().contains("intake held"), "{}", link.status.detail());

    core.set_accepting(true);
    core.disconnect();
    let fourth = tokio::time::timeout(WAIT, fourth).await.expect("the fourth send ends in time");
    fourth.expect("no panic").expect("the fourth is taken once room frees up");
    assert!(core.wait_until(WAIT, |r| r.events.len() == 4).await);
    assert_eq!(core.texts(), ["message 1", "message 2", "message 3", "message 4"]);
    assert!(!link.status.detail().contains("intake held"));
}

#[tokio::test]
async fn a_resent_action_is_delivered_once() {
    let core = FakeCore::default();
    let (mut link, _shutdown) = attach(&core, LinkOptions::default()).await;
    assert!(core.send(action(7, "done")));
    assert!(core.send(action(8, "still going")));
    let first = link.actions.recv().await.expect("action 7");
    let second = link.actions.recv().await.expect("action 8");
    assert_eq!((first.action_id, second.action_id), (7, 8));
    link.acks.failed(7, "blocked by the user");
    assert!(core.wait_ack(7, WAIT).await.is_some());

    // Core restarts and re-sends both: 7 is acked again from memory with the
    // same result, 8 is still in delivery and is neither re-delivered nor acked.
    core.disconnect();
    assert!(core.wait_hellos(2, WAIT).await);
    assert!(core.send(action(7, "done")));
    assert!(core.send(action(8, "still going")));
    assert!(core.wait_until(WAIT, |r| r.acks.len() == 2).await);
    assert_eq!(core.acks()[1].error, "blocked by the user");
    link.acks.delivered(8);
    assert!(core.wait_ack(8, WAIT).await.is_some());
    let again = tokio::time::timeout(Duration::from_millis(200), link.actions.recv()).await;
    assert!(again.is_err(), "nothing was delivered twice: {again:?}");
}

#[tokio::test]
async fn a_slow_delivery_side_loses_no_action() {
    let core = FakeCore::default();
    let options = LinkOptions { max_undelivered: 2, ..LinkOptions::default() };
    let (mut link, _shutdown) = attach(&core, options).await;
    for id in 1..=50 {
        assert!(core.send(action(id, &format!("reply {id}"))));
    }
    // Delivery has not read anything yet; the link holds at most what its
    // bounded channel and ready queue allow and reads the rest later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ids = Vec::new();
    while ids.len() < 50 {
        let action = tokio::time::timeout(WAIT, link.actions.recv()).await.expect("in time");
        ids.push(action.expect("the link runs").action_id);
    }
    assert_eq!(ids, (1..=50).collect::<Vec<u64>>(), "all actions, in order");
}

#[tokio::test]
async fn the_welcome_is_published_and_shutdown_closes_the_sender() {
    let core = FakeCore::default();
    let (mut link, shutdown) = attach(&core, LinkOptions::default()).await;
    link.welcome.wait_for(Option::is_some).await.expect("a welcome arrives");
    assert_eq!(
        link.welcome.borrow().as_ref().map(|w| w.core_version.clone()).as_deref(),
        Some("fake")
    );
    assert!(link.status.attached());
    shutdown.cancel();
    link.task.await.expect("the link ends without panicking");
    assert!(link.inbound.send(event(1)).await.is_err(), "a stopped link refuses events");
}

#[tokio::test]
async fn a_restart_request_reaches_the_gateway_and_nothing_else() {
    let core = FakeCore::default();
    let (link, shutdown) = attach(&core, LinkOptions::default()).await;
    assert!(!link.restart.is_cancelled(), "no restart before one is asked");
    assert!(core.restart("an admin chat asked"));
    tokio::time::timeout(WAIT, link.restart.cancelled()).await.expect("the gateway is told");
    assert!(!shutdown.is_cancelled(), "the gateway decides how to stop, not the link");
    assert!(core.acks().is_empty(), "a restart is not an action: nothing to acknowledge");
}
