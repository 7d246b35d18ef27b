//! Reactions as buttons: which bot message carries which button ids, so a
//! keycap reaction on it (or the option's number typed in the room) becomes a
//! `ButtonPress` for core.

use std::collections::{HashMap, VecDeque};

use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId};

use crate::render;

/// How many button messages are remembered (oldest forgotten first).
const CAPACITY: usize = 512;

/// Button ids per bot message, and the newest button message per room.
#[derive(Debug, Default)]
pub struct ButtonTracker {
    by_event: HashMap<OwnedEventId, Vec<String>>,
    order: VecDeque<OwnedEventId>,
    latest: HashMap<OwnedRoomId, OwnedEventId>,
}

impl ButtonTracker {
    /// Remembers the buttons of a message the bot sent.
    pub fn register(&mut self, room: &RoomId, event: OwnedEventId, button_ids: Vec<String>) {
        if self.order.len() >= CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.by_event.remove(&old);
            self.latest.retain(|_, latest| *latest != old);
        }
        self.order.push_back(event.clone());
        self.latest.insert(room.to_owned(), event.clone());
        self.by_event.insert(event, button_ids);
    }

    /// Forgets a message (it was redacted or replaced).
    pub fn forget(&mut self, event: &EventId) {
        self.by_event.remove(event);
        self.order.retain(|e| e != event);
        self.latest.retain(|_, latest| latest != event);
    }

    /// The button a reaction key on `event` stands for.
    pub fn by_reaction(&self, event: &EventId, key: &str) -> Option<String> {
        let index = render::keycap_index(key)?;
        self.by_event.get(event)?.get(index).cloned()
    }

    /// The button a typed number stands for, on the room's newest button message.
    pub fn by_typed(&self, room: &RoomId, text: &str) -> Option<(String, OwnedEventId)> {
        let event = self.latest.get(room)?;
        let ids = self.by_event.get(event)?;
        let index = render::typed_option(text, ids.len())?;
        Some((ids[index].clone(), event.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matrix_sdk::ruma::{event_id, room_id};

    #[test]
    fn reactions_and_typed_numbers_map_to_button_ids() {
        let mut tracker = ButtonTracker::default();
        let room = room_id!("!r:localhost");
        tracker.register(room, event_id!("$menu1").to_owned(), vec!["ms:a".into(), "ms:b".into()]);
        tracker.register(room, event_id!("$menu2").to_owned(), vec!["q:cancel".into()]);
        assert_eq!(
            tracker.by_reaction(event_id!("$menu1"), "2\u{fe0f}\u{20e3}").as_deref(),
            Some("ms:b")
        );
        assert_eq!(tracker.by_reaction(event_id!("$menu1"), "3\u{fe0f}\u{20e3}"), None);
        assert_eq!(tracker.by_reaction(event_id!("$other"), "1\u{fe0f}\u{20e3}"), None);
        let (id, event) = tracker.by_typed(room, "1").expect("newest menu has one option");
        assert_eq!((id.as_str(), event.as_str()), ("q:cancel", "$menu2"));
        assert_eq!(tracker.by_typed(room, "2"), None, "numbers refer to the newest menu only");
        tracker.forget(event_id!("$menu2"));
        assert_eq!(tracker.by_typed(room, "1"), None);
        assert!(tracker.by_reaction(event_id!("$menu1"), "1\u{fe0f}\u{20e3}").is_some());
    }
}
