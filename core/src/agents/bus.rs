//! The inter-agent bus: one agent asks another and gets its answer, either
//! at once (sync, bounded by a timeout) or later (background: the answer is
//! injected into the asking chat's session as a turn of its own).
//!
//! The recipient answers in a one-shot run in its own workspace that resumes
//! the session it keeps with that asker (`agent_sessions`), never in one of
//! its chats' sessions, so asking an agent that is busy in a chat neither
//! waits for nor disturbs that chat. Each conversation has one trace id,
//! logged at every hop; the recipient's run gets a credential for the chat
//! `bus@<recipient>:<trace>.<hop>`, so an ask it makes in turn is known to
//! be the next hop of the same trace (an HMAC: it cannot lie about it).
//! Bounds: [`Limits::max_hops`] per chain, [`Limits::max_asks_per_trace`] in
//! all, and an agent already answering an asker in this trace is not asked
//! by it again (that would wait on itself).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ductor_daemon::sync::Locked as _;

use crate::agents::{BUS, Directory, Profile, store};
use crate::driver::CoreHandle;
use crate::machine::InjectOptions;
use crate::model::{SessionKey, agent_of, endpoint};
use crate::runner::OneshotSpec;
use crate::store::Store;

/// How far a conversation between agents may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest chain of asks (a user's agent asking is hop 1).
    pub max_hops: u32,
    /// Asks of one conversation in all (its fan-out).
    pub max_asks_per_trace: u32,
    /// Asks running at once over all conversations.
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_hops: 3, max_asks_per_trace: 8, max_in_flight: 16 }
    }
}

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    /// The operator (`ductorctl agents ask` with the admin token); sync only.
    Operator,
    /// A run of one of an agent's chats (its session gets background answers).
    Chat(SessionKey),
    /// A run answering an earlier ask of conversation `trace` at hop `hop`.
    Hop {
        /// The answering agent, now asking.
        agent: String,
        /// The conversation.
        trace: String,
        /// Its hop.
        hop: u32,
    },
}

impl Asker {
    /// The asker of a run with this chat key (its credential's).
    pub fn of_chat(key: SessionKey) -> Self {
        let bus = key.transport == BUS || key.transport.starts_with("bus@");
        if let (true, Some((trace, hop))) = (bus, key.chat_id.rsplit_once('.'))
            && let Ok(hop) = hop.parse()
        {
            return Self::Hop { agent: key.agent().to_owned(), trace: trace.to_owned(), hop };
        }
        Self::Chat(key)
    }

    /// The asking agent's name (`operator` for the operator).
    pub fn agent(&self) -> &str {
        match self {
            Self::Operator => "operator",
            Self::Chat(key) => key.agent(),
            Self::Hop { agent, .. } => agent,
        }
    }
}

/// One question.
#[derive(Debug, Clone)]
pub struct Question {
    /// Who asks.
    pub from: Asker,
    /// The agent asked.
    pub to: String,
    /// The question.
    pub message: String,
    /// Answer later, into the asker's session.
    pub background: bool,
    /// Start the recipient's session with the asker afresh.
    pub new_session: bool,
    /// Sync: how long to wait.
    pub timeout: Duration,
}

/// What an ask returns at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Sync: the answer text.
    pub text: String,
    /// Background: the task id the injected answer names.
    pub task_id: String,
    /// The conversation's trace id.
    pub trace: String,
    /// Sync: the run's cost.
    pub cost_usd: Option<f64>,
}

/// Why an ask was refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BusError {
    /// No such agent (or it is disabled).
    #[error("no agent {name:?}; the agents are: {available}")]
    UnknownAgent {
        /// The name asked for.
        name: String,
        /// Every agent's name.
        available: String,
    },
    /// An agent asked itself.
    #[error("an agent cannot ask itself")]
    SelfAsk,
    /// The chain is too long.
    #[error(
        "this conversation is already {hops} asks deep (at most {max}); answer with what you have"
    )]
    HopLimit {
        /// The hop this ask would be.
        hops: u32,
        /// The limit.
        max: u32,
    },
    /// The conversation asked too often, or too many asks run at once.
    #[error("{0}")]
    FanOut(String),
    /// The recipient is already answering this asker in this conversation.
    #[error(
        "{to} is already answering {from} in this conversation (a loop); answer with what you have"
    )]
    Loop {
        /// The asker.
        from: String,
        /// The recipient.
        to: String,
    },
    /// Background asks need a chat to answer into.
    #[error("only an agent's chat can ask in the background (its session gets the answer)")]
    NoSessionForBackground,
    /// The sync wait ran out (the recipient's run is stopped).
    #[error("{to} did not answer within {seconds} s")]
    Timeout {
        /// The recipient.
        to: String,
        /// The wait.
        seconds: u64,
    },
    /// The recipient's run failed.
    #[error("{to} failed to answer: {message}")]
    Failed {
        /// The recipient.
        to: String,
        /// What went wrong.
        message: String,
    },
}

#[derive(Debug, Default)]
struct Trace {
    asks: u32,
    /// `(recipient, asker)` pairs answering now.
    active: HashSet<(String, String)>,
    touched: Option<Instant>,
}

/// The bounds' bookkeeping: conversations and what runs now.
#[derive(Debug, Default)]
struct Ledger {
    limits: Limits,
    traces: HashMap<String, Trace>,
    in_flight: usize,
}

impl Ledger {
    /// Books an ask of `pair` (recipient, asker) at `hop` of `trace`.
    fn admit(
        &mut self,
        pair: &(String, String),
        trace: &str,
        hop: u32,
        now: Instant,
    ) -> Result<(), BusError> {
        let limits = self.limits;
        if hop > limits.max_hops {
            return Err(BusError::HopLimit { hops: hop, max: limits.max_hops });
        }
        self.traces.retain(|_, t| {
            !t.active.is_empty() || t.touched.is_some_and(|at| now - at < TRACE_TTL)
        });
        let state = self.traces.entry(trace.to_owned()).or_default();
        if state.active.contains(pair) {
            return Err(BusError::Loop { from: pair.1.clone(), to: pair.0.clone() });
        }
        if state.asks >= limits.max_asks_per_trace {
            return Err(BusError::FanOut(format!(
                "this conversation already asked {} times (at most {})",
                state.asks, limits.max_asks_per_trace
            )));
        }
        if self.in_flight >= limits.max_in_flight {
            return Err(BusError::FanOut(format!(
                "{} inter-agent asks are running (at most {}); try again later",
                self.in_flight, limits.max_in_flight
            )));
        }
        self.in_flight += 1;
        state.asks += 1;
        state.touched = Some(now);
        state.active.insert(pair.clone());
        Ok(())
    }

    /// Gives a booking back.
    fn release(&mut self, pair: &(String, String), trace: &str, now: Instant) {
        if let Some(state) = self.traces.get_mut(trace) {
            state.active.remove(pair);
            state.touched = Some(now);
        }
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

/// The bus (cheap to clone).
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    directory: Directory,
    handle: CoreHandle,
    store: Store,
    ledger: Mutex<Ledger>,
    /// One run at a time per `(recipient, asker)` session.
    pairs: Mutex<HashMap<Pair, Arc<tokio::sync::Mutex<()>>>>,
}

/// `(recipient, asker)`.
type Pair = (String, String);

/// Forgets the state of conversations idle this long.
const TRACE_TTL: Duration = Duration::from_secs(3600);

impl Bus {
    /// A bus between the agents of `directory`.
    pub fn new(directory: Directory, handle: CoreHandle, store: Store, limits: Limits) -> Self {
        let inner = Inner {
            directory,
            handle,
            store,
            ledger: Mutex::new(Ledger { limits, ..Ledger::default() }),
            pairs: Mutex::default(),
        };
        Self { inner: Arc::new(inner) }
    }

    /// The agents.
    pub fn directory(&self) -> &Directory {
        &self.inner.directory
    }

    /// Asks; a background ask returns its task id at once.
    pub async fn ask(&self, question: Question) -> Result<Answer, BusError> {
        let to = self.recipient(&question)?.clone();
        if question.background && !matches!(question.from, Asker::Chat(_)) {
            return Err(BusError::NoSessionForBackground);
        }
        let (trace, hop) = match &question.from {
            Asker::Hop { trace, hop, .. } => (trace.clone(), hop + 1),
            _ => (short_id(), 1),
        };
        let ticket = self.admit(&question, &to.name, &trace, hop)?;
        let from = question.from.agent().to_owned();
        let mode = if question.background { "background" } else { "sync" };
        tracing::info!(trace, hop, from, to = to.name, mode, "inter-agent ask");
        if !question.background {
            let wait = question.timeout;
            let run = self.run(&to, &question, &trace, hop);
            let outcome = match tokio::time::timeout(wait, run).await {
                Ok(outcome) => outcome,
                Err(_) => Err(BusError::Timeout { to: to.name.clone(), seconds: wait.as_secs() }),
            };
            drop(ticket);
            return outcome.map(|(text, cost_usd)| Answer {
                text,
                task_id: String::new(),
                trace,
                cost_usd,
            });
        }
        let task_id = format!("ia-{}", short_id());
        let bus = self.clone();
        let (task, answer_trace) = (task_id.clone(), trace.clone());
        tokio::spawn(async move {
            let outcome = bus.run(&to, &question, &answer_trace, hop).await;
            drop(ticket);
            if let Asker::Chat(key) = &question.from {
                bus.inject_answer(key.clone(), &to.name, &task, &answer_trace, outcome).await;
            }
        });
        Ok(Answer { text: String::new(), task_id, trace, cost_usd: None })
    }

    fn recipient(&self, question: &Question) -> Result<&Profile, BusError> {
        let unknown = || BusError::UnknownAgent {
            name: question.to.clone(),
            available: self.inner.directory.names(),
        };
        let to =
            self.inner.directory.get(&question.to).filter(|p| p.enabled).ok_or_else(unknown)?;
        if to.name == question.from.agent() {
            return Err(BusError::SelfAsk);
        }
        Ok(to)
    }

    /// Checks the bounds and books the ask; the ticket gives it back.
    fn admit(
        &self,
        question: &Question,
        to: &str,
        trace: &str,
        hop: u32,
    ) -> Result<Ticket, BusError> {
        let pair = (to.to_owned(), question.from.agent().to_owned());
        let booked = self.inner.ledger.locked().admit(&pair, trace, hop, Instant::now());
        if let Err(error) = &booked {
            tracing::warn!(trace, hop, to, from = pair.1, %error, "inter-agent ask refused");
        }
        booked.map(|()| Ticket { bus: self.clone(), trace: trace.to_owned(), pair })
    }

    /// The recipient's one-shot run in the session it keeps with the asker.
    async fn run(
        &self,
        to: &Profile,
        question: &Question,
        trace: &str,
        hop: u32,
    ) -> Result<(String, Option<f64>), BusError> {
        let from = question.from.agent().to_owned();
        let failed = |message: String| BusError::Failed { to: to.name.clone(), message };
        // Held until the run has exited and its session is saved, so the
        // pair's next ask resumes it (and never finds it busy).
        let turn = self.pair_lock(&to.name, &from).lock_owned().await;
        let started = Instant::now();
        let (recipient, asker) = (to.name.clone(), from.clone());
        let saved = self
            .inner
            .store
            .call(move |c| store::load(c, &recipient, &asker))
            .await
            .map_err(|e| failed(format!("{e:#}")))?;
        let resume = match saved {
            Some((provider, id)) if provider == to.provider && !question.new_session => id,
            _ => String::new(),
        };
        let memory = if resume.is_empty() {
            crate::workspace::read_memory(&to.workspace).unwrap_or_default()
        } else {
            String::new()
        };
        let chat_id = format!("{trace}.{hop}");
        let spec = OneshotSpec {
            provider: to.provider.clone(),
            model: to.model.clone(),
            effort: to.effort.clone(),
            prompt: framed(&from, &question.message, trace, hop),
            working_dir: None,
            append_system_prompt: memory,
            resume_session_id: resume,
            labels: vec![
                ("kind".into(), "interagent".into()),
                ("agent".into(), to.name.clone()),
                ("from".into(), from.clone()),
                ("trace".into(), trace.to_owned()),
                ("hop".into(), hop.to_string()),
            ],
            extra_env: vec![
                ("DUCTOR_TRANSPORT".into(), endpoint(BUS, &to.name)),
                ("DUCTOR_CHAT_ID".into(), chat_id),
                ("DUCTOR_TOPIC_ID".into(), String::new()),
                ("DUCTOR_AGENT_NAME".into(), to.name.clone()),
            ],
            timeout_ms: question.timeout.as_millis().try_into().unwrap_or(u64::MAX),
            agent: to.name.clone(),
        };
        let (result, exited) = self.inner.handle.run_oneshot_until_result(spec).await;
        let (store, session) = (self.inner.store.clone(), result.session_id.clone());
        let (recipient, asker, provider) = (to.name.clone(), from.clone(), to.provider.clone());
        let trace_id = trace.to_owned();
        tokio::spawn(async move {
            let _ = exited.await;
            if !session.is_empty() {
                let saved =
                    store.call(move |c| store::save(c, &recipient, &asker, &provider, &session));
                if let Err(error) = saved.await {
                    tracing::warn!(trace = trace_id, %error, "failed to save the inter-agent session");
                }
            }
            drop(turn);
        });
        let ms = started.elapsed().as_millis() as u64;
        tracing::info!(trace, hop, from, to = to.name, ms, ok = result.ok, "inter-agent answer");
        if result.ok {
            Ok((result.text, result.cost_usd))
        } else {
            let message = if result.error_message.is_empty() {
                result.error_kind
            } else {
                result.error_message
            };
            Err(failed(message))
        }
    }

    fn pair_lock(&self, to: &str, from: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut pairs = self.inner.pairs.locked();
        pairs.entry((to.to_owned(), from.to_owned())).or_default().clone()
    }

    /// A background answer becomes a turn of the asking chat's session.
    async fn inject_answer(
        &self,
        key: SessionKey,
        to: &str,
        task: &str,
        trace: &str,
        outcome: Result<(String, Option<f64>), BusError>,
    ) {
        let prompt = match outcome {
            Ok((text, _)) => format!(
                "[Answer from agent {to} to your background question {task}]\n\n{text}\n\n\
                 (Tell the user what matters in it.)"
            ),
            Err(error) => format!(
                "[Agent {to} could not answer your background question {task}: {error}]\n\n\
                 (Tell the user, briefly.)"
            ),
        };
        let options = InjectOptions { kind: "interagent".into(), ..InjectOptions::default() };
        tracing::info!(trace, task, chat = %key, "inter-agent answer injected");
        if self.inner.handle.inject(key.clone(), prompt, options).await.is_err() {
            tracing::warn!(trace, task, chat = %key, "core stopped before the answer was injected");
        }
    }
}

/// Gives an ask's booking back when it ends, however it ends.
struct Ticket {
    bus: Bus,
    trace: String,
    pair: (String, String),
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.bus.inner.ledger.locked().release(&self.pair, &self.trace, Instant::now());
    }
}

/// The recipient's prompt: who asks and that the answer goes back, then the
/// question itself, last and verbatim.
fn framed(from: &str, message: &str, trace: &str, hop: u32) -> String {
    format!(
        "[Message from agent {from} over the ductor inter-agent bus (conversation {trace}, \
         hop {hop}). Your final answer is returned to {from}; it does not reach a chat.]\n\n\
         {message}"
    )
}

fn short_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}

/// The agent of an endpoint (re-exported for the service).
pub fn agent_name(transport: &str) -> &str {
    agent_of(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bus_chat_is_the_next_hop_of_its_trace() {
        let hop = Asker::of_chat(SessionKey::new("bus@researcher", "abc123.2", ""));
        assert_eq!(hop, Asker::Hop { agent: "researcher".into(), trace: "abc123".into(), hop: 2 });
        let main_hop = Asker::of_chat(SessionKey::new("bus", "t.1", ""));
        assert_eq!(main_hop.agent(), "main");
        let chat = Asker::of_chat(SessionKey::new("telegram@writer", "42.5", ""));
        assert!(matches!(chat, Asker::Chat(_)), "only the bus transport names hops");
        assert_eq!(chat.agent(), "writer");
    }

    fn pair(to: &str, from: &str) -> (String, String) {
        (to.to_owned(), from.to_owned())
    }

    #[test]
    fn hops_loops_and_fan_out_are_bounded() {
        let limits = Limits { max_hops: 3, max_asks_per_trace: 4, max_in_flight: 3 };
        let mut ledger = Ledger { limits, ..Ledger::default() };
        let now = Instant::now();
        // main → researcher → writer → main: three hops.
        ledger.admit(&pair("researcher", "main"), "t", 1, now).unwrap();
        ledger.admit(&pair("writer", "researcher"), "t", 2, now).unwrap();
        // researcher asking writer again in the same conversation waits on itself.
        let again = ledger.admit(&pair("writer", "researcher"), "t", 3, now);
        assert!(matches!(again, Err(BusError::Loop { .. })), "{again:?}");
        ledger.admit(&pair("main", "writer"), "t", 3, now).unwrap();
        let deep = ledger.admit(&pair("researcher", "main"), "t", 4, now);
        assert_eq!(deep, Err(BusError::HopLimit { hops: 4, max: 3 }));
        // Three run at once: a fourth conversation waits.
        let busy = ledger.admit(&pair("researcher", "main"), "u", 1, now);
        assert!(matches!(busy, Err(BusError::FanOut(_))), "{busy:?}");
        ledger.release(&pair("main", "writer"), "t", now);
        ledger.release(&pair("writer", "researcher"), "t", now);
        // The same pair may ask again once its answer is in; the fourth ask of t is the last.
        ledger.admit(&pair("writer", "researcher"), "t", 2, now).unwrap();
        ledger.release(&pair("writer", "researcher"), "t", now);
        let fifth = ledger.admit(&pair("writer", "researcher"), "t", 2, now);
        assert!(matches!(fifth, Err(BusError::FanOut(_))), "{fifth:?}");
        ledger.release(&pair("researcher", "main"), "t", now);
        assert_eq!(ledger.in_flight, 0);
        // A conversation idle past the TTL is forgotten.
        let later = now + TRACE_TTL + Duration::from_secs(1);
        ledger.admit(&pair("researcher", "main"), "u", 1, later).unwrap();
        assert!(!ledger.traces.contains_key("t"));
    }

    #[test]
    fn the_prompt_names_the_asker_and_the_trace() {
        let prompt = framed("main", "What is 2+2?", "t1", 1);
        assert!(prompt.contains("agent main") && prompt.contains("t1") && prompt.contains("2+2"));
    }
}
