//! The terminal dashboard: an Elm-style reducer (`app`), drawn by `view`, fed by `runtime`.

pub mod app;
#[cfg(test)]
pub mod fixtures;
pub mod form;
pub mod keymap;
pub mod runtime;
pub mod theme;
pub mod view;
