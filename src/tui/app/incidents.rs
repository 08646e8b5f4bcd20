//! Incidents declared in CommandBridge: what the header shows while one is open, and the
//! Incidents section of the Verification pane lists.

use crate::domain::Incident;

#[derive(Debug, Default)]
pub struct Incidents {
    /// Newest first, as the server lists them.
    list: Vec<Incident>,
}

impl Incidents {
    pub fn all(&self) -> &[Incident] {
        &self.list
    }

    /// Open incidents, newest first: the first is what the header names.
    pub fn open(&self) -> impl Iterator<Item = &Incident> {
        self.list.iter().filter(|i| i.is_open())
    }

    pub fn find(&self, ticket: &str) -> Option<&Incident> {
        self.list.iter().find(|i| i.ticket == ticket)
    }

    pub(super) fn set(&mut self, mut list: Vec<Incident>) {
        list.sort_by(|a, b| b.declared_at.cmp(&a.declared_at).then(b.id.cmp(&a.id)));
        self.list = list;
    }

    pub(super) fn upsert(&mut self, i: Incident) {
        let mut list = std::mem::take(&mut self.list);
        list.retain(|x| x.id != i.id);
        list.push(i);
        self.set(list);
    }
}
