//! Producers of X stream messages.

pub mod kafka;
pub mod synth;
pub mod x;
