//! The terminal dashboard: an Elm-style reducer (`app`), drawn by `view`, fed by `runtime`.

pub mod app;
// Shared with benches/tui.rs, so public; not part of the dashboard's interface.
#[doc(hidden)]
pub mod fixtures;
pub mod form;
pub mod keymap;
pub mod runtime;
pub mod theme;
pub mod view;
