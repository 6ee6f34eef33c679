//! tweetlake: X (Twitter) posts from Kafka or files, through SQL models in DataFusion, into
//! Delta Lake tables, exactly once.
//!
//! The modules follow the data: [`source`] -> [`decode`] -> [`transform`] -> [`sink`], driven by
//! [`pipeline`], into the [`lake`]; [`query`] is the lake's SQL session that [`repl`] (`tweetlake
//! sql`) and [`serve`] (the Postgres wire protocol) run statements through, [`produce`] feeds Kafka. [`kafka`]
//! is the one way every component reaches Kafka, [`dlq`] where records that fail to decode go (and how
//! `dlq replay` runs them again).
//! [`telemetry`] serves the pipeline's metrics and health probes.
//! Each component owns its configuration type; [`config`] only composes them and loads the
//! file and the environment.

// Errors here wrap DataFusion's and delta-rs's (each over 100 bytes). They are made once per
// failed batch or statement, never per row: boxing them would only add noise.
#![allow(clippy::result_large_err)]
// Results go through `stdout::stdout()`, whose writes return a closed pipe as an error instead of
// panicking as `println!` does.
#![warn(clippy::print_stdout)]

pub mod config;
pub mod decode;
pub mod dlq;
pub mod embedded;
pub mod fault;
pub mod kafka;
pub mod lake;
pub mod maintain;
pub mod memory;
pub mod modeltest;
pub mod pipeline;
pub mod produce;
pub mod query;
pub mod repl;
pub mod serve;
pub mod settings;
pub mod sink;
pub mod source;
pub mod stdout;
pub mod telemetry;
pub mod transform;
