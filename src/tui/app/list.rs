//! The one selectable list behind the four panes' lists: moving, clamping and the selected
//! item are written once.

/// How a motion key moves a selection (or a scrolled view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    HalfUp,
    HalfDown,
}

/// Items with one of them selected. The selection is a position: it stays where it is as the
/// items change around it, and is kept inside the list.
#[derive(Debug, Clone)]
pub struct SelectList<T> {
    items: Vec<T>,
    selected: usize,
}

impl<T> Default for SelectList<T> {
    fn default() -> Self {
        SelectList {
            items: Vec::new(),
            selected: 0,
        }
    }
}

impl<T> SelectList<T> {
    pub fn items(&self) -> &[T] {
        &self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn selected_index(&self) -> usize {
        self.selected
    }

    pub fn selected(&self) -> Option<&T> {
        self.items.get(self.selected)
    }

    pub fn select(&mut self, i: usize) {
        self.selected = i;
        self.clamp();
    }

    pub fn down(&mut self) {
        self.selected = (self.selected + 1).min(self.items.len().saturating_sub(1));
    }

    pub fn up(&mut self) {
        self.selected = self.selected.saturating_sub(1);
    }

    /// Moves the selection as a motion key asks; `page` is how many rows a page holds.
    pub fn go(&mut self, motion: Motion, page: usize) {
        let last = self.items.len().saturating_sub(1);
        let page = page.max(1);
        self.selected = match motion {
            Motion::Down => self.selected + 1,
            Motion::Up => self.selected.saturating_sub(1),
            Motion::Top => 0,
            Motion::Bottom => last,
            Motion::PageDown => self.selected + page,
            Motion::PageUp => self.selected.saturating_sub(page),
            Motion::HalfDown => self.selected + page.div_ceil(2),
            Motion::HalfUp => self.selected.saturating_sub(page.div_ceil(2)),
        }
        .min(last);
    }

    pub fn set_items(&mut self, items: Vec<T>) {
        self.items = items;
        self.clamp();
    }

    pub fn insert(&mut self, i: usize, item: T) {
        self.items.insert(i, item);
    }

    pub fn remove(&mut self, i: usize) -> T {
        let item = self.items.remove(i);
        self.clamp();
        item
    }

    /// The position where `is_before` stops holding (the items must be ordered by it).
    pub fn partition_point(&self, is_before: impl FnMut(&T) -> bool) -> usize {
        self.items.partition_point(is_before)
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::SelectList;

    #[test]
    fn the_selection_moves_within_the_list_and_follows_it_shrinking() {
        let mut l = SelectList::default();
        assert_eq!(l.selected(), None::<&i32>);
        l.down();
        assert_eq!(l.selected_index(), 0);
        l.set_items(vec![1, 2, 3]);
        l.down();
        l.down();
        l.down();
        assert_eq!(l.selected(), Some(&3));
        l.remove(2);
        assert_eq!(l.selected(), Some(&2));
        l.up();
        l.up();
        assert_eq!(l.selected(), Some(&1));
        l.select(10);
        assert_eq!(l.selected(), Some(&2));
        l.set_items(vec![]);
        assert_eq!((l.selected_index(), l.selected()), (0, None));
    }

    #[test]
    fn motions_stay_inside_the_list() {
        use super::Motion::*;
        let mut l = SelectList::default();
        l.go(Bottom, 10);
        assert_eq!(l.selected(), None::<&i32>);
        l.set_items((0..25).collect());
        l.go(PageDown, 10);
        assert_eq!(l.selected(), Some(&10));
        l.go(HalfDown, 10);
        assert_eq!(l.selected(), Some(&15));
        l.go(PageDown, 10);
        assert_eq!(l.selected(), Some(&24));
        l.go(HalfUp, 10);
        assert_eq!(l.selected(), Some(&19));
        l.go(Top, 10);
        assert_eq!(l.selected(), Some(&0));
        l.go(PageUp, 10);
        assert_eq!(l.selected(), Some(&0));
        l.go(Bottom, 10);
        assert_eq!(l.selected(), Some(&24));
    }

    #[test]
    fn inserting_keeps_the_position_selected() {
        let mut l = SelectList::default();
        l.set_items(vec![10, 30]);
        l.select(1);
        let at = l.partition_point(|x| *x < 20);
        l.insert(at, 20);
        assert_eq!((l.items(), l.selected()), (&[10, 20, 30][..], Some(&20)));
    }
}
