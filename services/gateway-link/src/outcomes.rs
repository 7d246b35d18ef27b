//! What the link remembers about actions core sent, so that an action core
//! re-sends after a reconnect is delivered once: actions still in delivery
//! are remembered until their ack (never forgotten, or a re-send would be
//! delivered twice), finished ones with their result, the oldest forgotten
//! first once [`MAX_DONE`] are kept.

use std::collections::{HashMap, HashSet, VecDeque};

/// Finished actions remembered for re-sends.
pub(crate) const MAX_DONE: usize = 4096;

/// What became of an action core sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome<'a> {
    /// Handed to delivery, not acknowledged yet.
    InDelivery,
    /// Acknowledged, with the delivery error (empty on success).
    Done(&'a str),
}

#[derive(Debug, Default)]
pub(crate) struct Outcomes {
    in_delivery: HashSet<u64>,
    done: HashMap<u64, String>,
    order: VecDeque<u64>,
}

impl Outcomes {
    pub(crate) fn get(&self, id: u64) -> Option<Outcome<'_>> {
        if self.in_delivery.contains(&id) {
            return Some(Outcome::InDelivery);
        }
        self.done.get(&id).map(|error| Outcome::Done(error))
    }

    pub(crate) fn start(&mut self, id: u64) {
        self.in_delivery.insert(id);
    }

    pub(crate) fn finish(&mut self, id: u64, error: &str) {
        self.in_delivery.remove(&id);
        if self.done.insert(id, error.to_owned()).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_DONE {
            if let Some(old) = self.order.pop_front() {
                self.done.remove(&old);
            }
        }
    }

    /// Actions handed to delivery and not yet acknowledged.
    #[cfg(test)]
    pub(crate) fn in_delivery(&self) -> usize {
        self.in_delivery.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_in_delivery_is_never_forgotten() {
        let mut outcomes = Outcomes::default();
        outcomes.start(1);
        for id in 2..(MAX_DONE as u64 + 100) {
            outcomes.start(id);
            outcomes.finish(id, "");
        }
        assert_eq!(outcomes.get(1), Some(Outcome::InDelivery));
        assert_eq!(outcomes.get(2), None, "the oldest finished one is forgotten");
        assert_eq!(outcomes.get(MAX_DONE as u64 + 99), Some(Outcome::Done("")));
        outcomes.finish(1, "blocked");
        assert_eq!(outcomes.get(1), Some(Outcome::Done("blocked")));
        assert_eq!(outcomes.in_delivery(), 0);
    }
}
