//! The outbox: numbers outbound actions per transport and delivers them to
//! the attached gateway.
//!
//! - Action ids grow per transport, also across restarts (ids are reserved in
//!   blocks in SQLite and handed out from memory).
//! - Durable actions (final reply, error, notice, selector, queue notice and
//!   clear) are written to SQLite *before* they are sent and deleted when the
//!   gateway acknowledges them; on (re)attach every unacknowledged one is
//!   re-sent in id order, after a `Welcome` that says how many follow.
//! - Best-effort actions (turn started, deltas, tool activity, status) are
//!   never persisted: a gateway that is away misses them, and the final reply
//!   carries the whole text anyway.
//! - One unscoped connection per transport (a gateway); a new one replaces the
//!   old, which is ended with `ABORTED`. Scoped connections (ductorctl, one or
//!   more chats) coexist and take the actions of their chats.
//!
//! All state sits behind one async mutex, so id order, persistence order and
//! delivery order are the same, and a replay never interleaves with new sends.

use std::collections::{HashMap, HashSet};

use ductor_proto::pb;
use prost::Message as _;
use tokio::sync::{Mutex, mpsc};

use crate::model::{Outbound, SessionKey};
use crate::store::{self, Store, StoreError};
use crate::wire::{HelloInfo, outbound_to_pb};

/// What a connection's response stream carries.
pub type StreamItem = Result<pb::CoreMessage, tonic::Status>;

/// Ids reserved per database write.
const ID_BLOCK: u64 = 4096;

struct Conn {
    id: u64,
    scope: Option<HashSet<(String, String)>>,
    tx: mpsc::UnboundedSender<StreamItem>,
}

impl Conn {
    fn covers(&self, key: &SessionKey) -> bool {
        self.scope
            .as_ref()
            .is_some_and(|s| s.contains(&(key.chat_id.clone(), key.topic_id.clone())))
    }
}

#[derive(Default)]
struct Transport {
    next_id: u64,
    reserved_until: u64,
    loaded: bool,
    durable_pending: HashSet<u64>,
    conns: Vec<Conn>,
}

#[derive(Default)]
struct State {
    transports: HashMap<String, Transport>,
    next_conn: u64,
}

/// The per-transport outbox.
pub struct Outbox {
    store: Store,
    state: Mutex<State>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}

/// Identifies one attached connection (for detach).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(u64);

impl Outbox {
    /// An outbox over `store`.
    pub fn new(store: Store) -> Self {
        Self { store, state: Mutex::new(State::default()) }
    }

    async fn transport<'a>(
        &self,
        state: &'a mut State,
        name: &str,
    ) -> Result<&'a mut Transport, StoreError> {
        let entry = state.transports.entry(name.to_owned()).or_default();
        if !entry.loaded {
            let owned = name.to_owned();
            let pending = self.store.call(move |c| store::outbox_pending(c, &owned)).await?;
            entry.durable_pending = pending.into_iter().map(|(id, _, _)| id).collect();
            entry.loaded = true;
        }
        Ok(entry)
    }

    async fn next_id(&self, transport: &mut Transport, name: &str) -> Result<u64, StoreError> {
        if transport.next_id == 0 || transport.next_id > transport.reserved_until {
            let owned = name.to_owned();
            let first =
                self.store.call(move |c| store::reserve_action_ids(c, &owned, ID_BLOCK)).await?;
            transport.next_id = first;
            transport.reserved_until = first + ID_BLOCK - 1;
        }
        let id = transport.next_id;
        transport.next_id += 1;
        Ok(id)
    }

    /// Numbers, persists (when durable) and delivers one action.
    pub async fn send(&self, action: Outbound) -> Result<u64, StoreError> {
        let key = action.key.clone();
        let mut message = outbound_to_pb(action);
        let mut state = self.state.lock().await;
        let transport = self.transport(&mut state, &key.transport).await?;
        let id = self.next_id(transport, &key.transport).await?;
        message.action_id = id;
        if message.durable {
            let payload = message.encode_to_vec();
            let (name, chat) = (key.transport.clone(), key.clone());
            self.store.call(move |c| store::outbox_put(c, &name, id, &chat, &payload)).await?;
            transport.durable_pending.insert(id);
        }
        let item = pb::CoreMessage { msg: Some(pb::core_message::Msg::Action(message)) };
        deliver(transport, &key, item);
        Ok(id)
    }

    /// Registers a connection, sends `Welcome` and re-sends what it missed.
    pub async fn attach(
        &self,
        hello: &HelloInfo,
        version: &str,
        tx: mpsc::UnboundedSender<StreamItem>,
    ) -> Result<ConnId, StoreError> {
        let mut state = self.state.lock().await;
        state.next_conn += 1;
        let conn_id = state.next_conn;
        let name = hello.transport.clone();
        let transport = self.transport(&mut state, &name).await?;
        let scope: Option<HashSet<(String, String)>> =
            (!hello.scope.is_empty()).then(|| hello.scope.iter().cloned().collect());
        if scope.is_none() {
            transport.conns.retain(|old| {
                if old.scope.is_some() {
                    return true;
                }
                let replaced = tonic::Status::aborted("replaced by a newer connection");
                let _ = old.tx.send(Err(replaced));
                false
            });
        }
        let owned = name.clone();
        let pending = self.store.call(move |c| store::outbox_pending(c, &owned)).await?;
        let conn = Conn { id: conn_id, scope, tx };
        let replay: Vec<pb::OutboundAction> = pending
            .into_iter()
            .filter(|(_, key, _)| conn.scope.is_none() || conn.covers(key))
            .filter_map(|(id, _, payload)| match pb::OutboundAction::decode(payload.as_slice()) {
                Ok(action) => Some(action),
                Err(error) => {
                    tracing::error!(transport = %name, id, %error, "failed to decode a stored action");
                    None
                }
            })
            .collect();
        let welcome = crate::wire::welcome(version, replay.len() as u64);
        let _ = conn
            .tx
            .send(Ok(pb::CoreMessage { msg: Some(pb::core_message::Msg::Welcome(welcome)) }));
        for action in replay {
            let _ = conn
                .tx
                .send(Ok(pb::CoreMessage { msg: Some(pb::core_message::Msg::Action(action)) }));
        }
        transport.conns.push(conn);
        Ok(ConnId(conn_id))
    }

    /// Forgets a connection that ended.
    pub async fn detach(&self, transport: &str, conn: ConnId) {
        let mut state = self.state.lock().await;
        if let Some(t) = state.transports.get_mut(transport) {
            t.conns.retain(|c| c.id != conn.0);
        }
    }

    /// A gateway acknowledged `action_id`; durable actions are deleted.
    pub async fn ack(&self, transport: &str, action_id: u64) -> Result<(), StoreError> {
        let mut state = self.state.lock().await;
        let Some(t) = state.transports.get_mut(transport) else { return Ok(()) };
        if !t.durable_pending.remove(&action_id) {
            return Ok(());
        }
        let owned = transport.to_owned();
        self.store.call(move |c| store::outbox_ack(c, &owned, action_id)).await
    }

    /// Transports with at least one live connection.
    pub async fn connected(&self) -> Vec<String> {
        let state = self.state.lock().await;
        let mut names: Vec<String> = state
            .transports
            .iter()
            .filter(|(_, t)| t.conns.iter().any(|c| !c.tx.is_closed()))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Transports whose gateway (an unscoped connection) is attached.
    pub async fn gateways(&self) -> Vec<String> {
        let state = self.state.lock().await;
        let mut names: Vec<String> = state
            .transports
            .iter()
            .filter(|(_, t)| t.conns.iter().any(|c| c.scope.is_none() && !c.tx.is_closed()))
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// The connection number of `transport`'s attached gateway; a later
    /// connection has a larger one.
    pub async fn gateway_conn(&self, transport: &str) -> Option<u64> {
        let state = self.state.lock().await;
        let t = state.transports.get(transport)?;
        t.conns.iter().find(|c| c.scope.is_none() && !c.tx.is_closed()).map(|c| c.id)
    }

    /// Asks `transport`'s attached gateway to restart (never stored: only
    /// this connection hears it); its connection number, or `None` when no
    /// gateway of `transport` is attached.
    pub async fn restart_gateway(&self, transport: &str, reason: &str) -> Option<u64> {
        let state = self.state.lock().await;
        let t = state.transports.get(transport)?;
        let gateway = t.conns.iter().find(|c| c.scope.is_none() && !c.tx.is_closed())?;
        let restart = pb::RestartGateway { reason: reason.to_owned() };
        let message = pb::CoreMessage { msg: Some(pb::core_message::Msg::Restart(restart)) };
        gateway.tx.send(Ok(message)).ok()?;
        Some(gateway.id)
    }

    /// Unacknowledged durable actions over all transports.
    pub async fn pending(&self) -> Result<u64, StoreError> {
        self.store.call(store::outbox_count).await
    }
}

/// Hands `item` to the scoped connections covering the chat, else to the
/// transport's gateway; drops connections whose stream is gone.
fn deliver(transport: &mut Transport, key: &SessionKey, item: pb::CoreMessage) {
    transport.conns.retain(|c| !c.tx.is_closed());
    let scoped: Vec<&Conn> = transport.conns.iter().filter(|c| c.covers(key)).collect();
    if !scoped.is_empty() {
        for conn in scoped {
            let _ = conn.tx.send(Ok(item.clone()));
        }
        return;
    }
    if let Some(gateway) = transport.conns.iter().find(|c| c.scope.is_none()) {
        let _ = gateway.tx.send(Ok(item));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Capabilities, OutKind};

    fn hello(transport: &str, scope: &[(&str, &str)]) -> HelloInfo {
        HelloInfo {
            transport: transport.into(),
            caps: Capabilities::default(),
            scope: scope.iter().map(|(c, t)| ((*c).to_owned(), (*t).to_owned())).collect(),
            version: "t".into(),
        }
    }

    fn notice(chat: &str, text: &str) -> Outbound {
        Outbound {
            key: SessionKey::new("tg", chat, ""),
            turn_id: String::new(),
            reply_to: String::new(),
            kind: OutKind::Notice { text: text.into(), notify: false },
        }
    }

    fn delta(chat: &str) -> Outbound {
        Outbound { kind: OutKind::Delta("d".into()), ..notice(chat, "") }
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<StreamItem>) -> Vec<pb::core_message::Msg> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Ok(msg) = item {
                out.extend(msg.msg);
            }
        }
        out
    }

    fn action_ids(msgs: &[pb::core_message::Msg]) -> Vec<u64> {
        msgs.iter()
            .filter_map(|m| match m {
                pb::core_message::Msg::Action(a) => Some(a.action_id),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn durable_actions_are_replayed_until_acked_and_deltas_are_not() {
        let outbox = Outbox::new(Store::open_in_memory(&[]).unwrap());
        let first = outbox.send(notice("1", "a")).await.unwrap();
        let _ = outbox.send(delta("1")).await.unwrap();
        let third = outbox.send(notice("1", "b")).await.unwrap();
        assert!(first < third);
        let (tx, mut rx) = mpsc::unbounded_channel();
        outbox.attach(&hello("tg", &[]), "v", tx).await.unwrap();
        let msgs = drain(&mut rx);
        assert!(matches!(&msgs[0], pb::core_message::Msg::Welcome(w) if w.pending == 2));
        assert_eq!(action_ids(&msgs), [first, third]);
        outbox.ack("tg", first).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        outbox.attach(&hello("tg", &[]), "v", tx).await.unwrap();
        assert_eq!(action_ids(&drain(&mut rx)), [third]);
        assert_eq!(outbox.pending().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_new_gateway_replaces_the_old_and_scoped_clients_coexist() {
        let outbox = Outbox::new(Store::open_in_memory(&[]).unwrap());
        let (old_tx, mut old_rx) = mpsc::unbounded_channel();
        outbox.attach(&hello("tg", &[]), "v", old_tx).await.unwrap();
        let (new_tx, mut new_rx) = mpsc::unbounded_channel();
        outbox.attach(&hello("tg", &[]), "v", new_tx).await.unwrap();
        let (scoped_tx, mut scoped_rx) = mpsc::unbounded_channel();
        outbox.attach(&hello("tg", &[("7", "")]), "v", scoped_tx).await.unwrap();
        drain(&mut new_rx);
        drain(&mut scoped_rx);
        let replaced: Vec<_> = std::iter::from_fn(|| old_rx.try_recv().ok()).collect();
        assert!(replaced.iter().any(|i| matches!(i, Err(s) if s.code() == tonic::Code::Aborted)));
        outbox.send(delta("1")).await.unwrap();
        outbox.send(delta("7")).await.unwrap();
        assert_eq!(drain(&mut new_rx).len(), 1, "chat 1 goes to the gateway");
        assert_eq!(drain(&mut scoped_rx).len(), 1, "chat 7 goes to its scoped client");
    }

    #[tokio::test]
    async fn ids_keep_growing_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = {
            let outbox = Outbox::new(Store::open(&path, &[]).unwrap());
            outbox.send(delta("1")).await.unwrap()
        };
        let outbox = Outbox::new(Store::open(&path, &[]).unwrap());
        assert!(outbox.send(delta("1")).await.unwrap() > first);
    }
}
