//! Attacks on the process, each as a test: what an operator with an L1 token (or no token) tries,
//! over real HTTP, against the in-process server or the real binary.

mod duties;
mod input;
mod quotas;
mod resources;
mod terminal;
mod tools;
