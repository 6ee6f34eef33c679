//! tweetlake: X (Twitter) posts from Kafka or files, through SQL models in DataFusion, into
//! Delta Lake tables, exactly once.
//!
//! The modules follow the data: [`source`] -> [`decode`] -> [`transform`] -> [`sink`], driven by
//! [`pipeline`]; [`repl`] queries the lake.

pub mod config;
pub mod decode;
pub mod embedded;
pub mod memory;
pub mod modeltest;
pub mod pipeline;
pub mod produce;
pub mod repl;
pub mod sink;
pub mod source;
pub mod transform;
