use std::path::Path;

use anyhow::{bail, Context};

use tweetlake::embedded;
use tweetlake::stdout::stdout;

/// What `init` does with files that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Keep,
    Overwrite,
}

/// Writes the editable project; refuses to overwrite a file unless told to.
pub fn init(dir: &Path, existing_files: Existing) -> anyhow::Result<()> {
    let files = embedded::project_files();
    if existing_files == Existing::Keep {
        let existing: Vec<String> = files
            .iter()
            .map(|(p, _)| dir.join(p))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "{} already exist(s): pass --force to overwrite",
                existing.join(", ")
            );
        }
    }
    let mut out = stdout();
    for (relative, contents) in files {
        let path = dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))?;
        writeln!(out, "wrote {}", path.display())?;
    }
    writeln!(
        out,
        "next: edit tweetlake.toml and sql/, then `tweetlake plan` and `tweetlake run --once`"
    )?;
    Ok(())
}
