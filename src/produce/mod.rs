//! Producers of X stream messages.

pub mod synth;
