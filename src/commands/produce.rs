use std::io::Write;
use std::path::Path;

use anyhow::Context;

use tweetlake::produce::synth::{Synth, SynthOptions};

/// Writes `count` synthetic messages as JSONL to `output` or stdout.
pub fn synth(count: usize, seed: u64, malformed_share: f64, output: Option<&Path>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&malformed_share),
        "--malformed-share must be between 0 and 1"
    );
    let mut out: Box<dyn Write> = match output {
        Some(path) => {
            Box::new(std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let mut synth = Synth::new(SynthOptions {
        seed,
        malformed_share,
        ..Default::default()
    });
    for _ in 0..count {
        writeln!(out, "{}", synth.next_message()).context("write messages")?;
    }
    out.flush().context("write messages")?;
    Ok(())
}
