//! The interactive prompt: line editing, persistent history with Ctrl-R search, and the loop.

use std::path::Path;

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{CompletionType, Config, Editor};

use super::helper::{is_quit, ReplHelper};
use super::{lexer, one_line, Flow, ReplError, Session};

const PROMPT: &str = "tweetlake> ";

/// Reads and runs input until `\q`, `exit` or Ctrl-D. Errors are printed and the prompt returns;
/// Ctrl-C clears the line being typed (and cancels a running query, see `execute`).
pub async fn run(session: &mut Session, history: Option<&Path>) -> Result<(), ReplError> {
    let mut editor = editor(session)?;
    if let Some(path) = history {
        load_history(&mut editor, path);
    }
    eprintln!(
        "tweetlake sql on {}: {} tables. \\? for help, \\q to quit.",
        session.lake_uri().await,
        session.table_count().await
    );
    loop {
        let input = match tokio::task::block_in_place(|| editor.readline(PROMPT)) {
            Ok(input) => input,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(error) => return Err(error.into()),
        };
        if lexer::is_blank(&input) {
            continue;
        }
        editor.add_history_entry(input.trim_end())?;
        if let Some(path) = history {
            if let Err(error) = editor.append_history(path) {
                tracing::warn!("cannot write history file {}: {error}", path.display());
            }
        }
        if is_quit(&input) {
            break;
        }
        match session.run_text(&input).await {
            Ok(Flow::Quit) => break,
            Ok(Flow::Continue) => {}
            Err(error) => eprintln!("error: {}", one_line(&error)),
        }
    }
    Ok(())
}

/// The line editor, completing from the session's vocabulary and coloured as the session says.
fn editor(session: &Session) -> Result<Editor<ReplHelper, FileHistory>, ReplError> {
    let styling = session.styling();
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)?
        .max_history_size(10_000)?
        .color_mode(styling.color_mode())
        .build();
    let mut editor = Editor::with_config(config)?;
    editor.set_helper(Some(ReplHelper::new(session.vocabulary(), styling)));
    Ok(editor)
}

fn load_history(editor: &mut Editor<ReplHelper, FileHistory>, path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match editor.load_history(path) {
        Ok(()) => {}
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!("cannot read history file {}: {error}", path.display()),
    }
}
