//! The activity strip: the newest server events first.

use crate::domain::api::Event;
use std::collections::VecDeque;

const KEEP: usize = 200;

#[derive(Debug, Default)]
pub struct ActivityPane {
    pub events: VecDeque<Event>,
}

impl ActivityPane {
    pub(super) fn push(&mut self, e: Event) {
        self.events.push_front(e);
        self.events.truncate(KEEP);
    }
}
