//! Backslash meta-commands: their syntax, their help, and parsing a typed line into one.

use std::path::PathBuf;

use super::format::Format;
use super::ReplError;

/// `\history` shows this many commits unless told otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Quit,
    ListTables,
    Describe(String),
    History {
        table: String,
        limit: usize,
    },
    /// `None` toggles.
    Timing(Option<bool>),
    /// `None` shows the current format.
    Format(Option<Format>),
    /// `None` sends results to the terminal again.
    Output(Option<PathBuf>),
    Include(PathBuf),
    /// `None` toggles.
    Pager(Option<bool>),
    Queries,
    Run {
        name: String,
        args: Vec<(String, String)>,
    },
    Save(String),
}

/// One meta-command as `\?` lists it.
pub struct Spec {
    pub name: &'static str,
    pub args: &'static str,
    pub help: &'static str,
}

pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "\\?",
        args: "",
        help: "this help",
    },
    Spec {
        name: "\\q",
        args: "",
        help: "quit (Ctrl-D works too)",
    },
    Spec {
        name: "\\d",
        args: "[table]",
        help: "list tables (version, files, rows, size), or one table's columns",
    },
    Spec {
        name: "\\history",
        args: "table [n]",
        help: "the table's last n Delta commits (default 20)",
    },
    Spec {
        name: "\\timing",
        args: "[on|off]",
        help: "print time, rows and bytes scanned after each query",
    },
    Spec {
        name: "\\format",
        args: "[table|csv|json|ndjson|markdown]",
        help: "show or set the result format",
    },
    Spec {
        name: "\\o",
        args: "[file]",
        help: "send results to a file (format from .csv/.json/.ndjson/.md), or back to the terminal",
    },
    Spec {
        name: "\\i",
        args: "file",
        help: "run the statements and meta-commands in a file",
    },
    Spec {
        name: "\\pager",
        args: "[on|off]",
        help: "page results taller than the terminal ($PAGER, else less -FRX)",
    },
    Spec {
        name: "\\queries",
        args: "",
        help: "list saved queries with their descriptions and parameters",
    },
    Spec {
        name: "\\run",
        args: "name [param=value ...]",
        help: "run a saved query",
    },
    Spec {
        name: "\\save",
        args: "name",
        help: "save the last statement as a query (queries/<name>.sql)",
    },
];

/// The `\?` text: every meta-command and the SQL extensions.
pub fn help() -> String {
    let width = COMMANDS
        .iter()
        .map(|c| c.name.len() + c.args.len() + 1)
        .max()
        .unwrap_or(0);
    let mut text = String::from("Meta-commands:\n");
    for spec in COMMANDS {
        let usage = format!("{} {}", spec.name, spec.args);
        text.push_str(&format!("  {usage:width$}  {}\n", spec.help));
    }
    text.push_str(
        "SQL statements end with `;` and may span lines. Time travel:\n  \
         SELECT ... FROM silver.tweets VERSION AS OF 12\n  \
         SELECT ... FROM silver.tweets TIMESTAMP AS OF '2026-11-01T10:00:00Z'\n\
         Tab completes keywords, tables, columns, functions and meta-commands; Ctrl-R searches \
         history; Ctrl-C cancels a running query.\n",
    );
    text
}

/// Parses a line starting with `\`.
pub fn parse(line: &str) -> Result<Command, ReplError> {
    let words = words(line)?;
    let (name, args) = words.split_first().expect("a meta-command line is not empty");
    let arity = |min: usize, max: usize| {
        if args.len() < min || args.len() > max {
            Err(usage(name))
        } else {
            Ok(())
        }
    };
    let arg = |i: usize| args.get(i).cloned();
    Ok(match name.as_str() {
        "\\?" | "\\h" | "\\help" => arity(0, 0).map(|_| Command::Help)?,
        "\\q" | "\\quit" => arity(0, 0).map(|_| Command::Quit)?,
        "\\d" => {
            arity(0, 1)?;
            arg(0).map_or(Command::ListTables, Command::Describe)
        }
        "\\history" => {
            arity(1, 2)?;
            let limit = match arg(1) {
                Some(n) => n.parse().map_err(|_| usage(name))?,
                None => DEFAULT_HISTORY_LIMIT,
            };
            Command::History {
                table: args[0].clone(),
                limit,
            }
        }
        "\\timing" => {
            arity(0, 1)?;
            Command::Timing(arg(0).map(|a| on_off(name, &a)).transpose()?)
        }
        "\\pager" => {
            arity(0, 1)?;
            Command::Pager(arg(0).map(|a| on_off(name, &a)).transpose()?)
        }
        "\\format" => {
            arity(0, 1)?;
            Command::Format(arg(0).map(|a| a.parse().map_err(ReplError::Usage)).transpose()?)
        }
        "\\o" => {
            arity(0, 1)?;
            Command::Output(arg(0).map(PathBuf::from))
        }
        "\\i" => {
            arity(1, 1)?;
            Command::Include(PathBuf::from(&args[0]))
        }
        "\\queries" => arity(0, 0).map(|_| Command::Queries)?,
        "\\run" => {
            arity(1, usize::MAX)?;
            let params = args[1..]
                .iter()
                .map(|a| parameter(name, a))
                .collect::<Result<_, _>>()?;
            Command::Run {
                name: args[0].clone(),
                args: params,
            }
        }
        "\\save" => {
            arity(1, 1)?;
            Command::Save(args[0].clone())
        }
        _ => {
            return Err(ReplError::Usage(format!(
                "unknown meta-command `{name}` (\\? lists them)"
            )))
        }
    })
}

fn usage(name: &str) -> ReplError {
    let spec = COMMANDS.iter().find(|c| c.name == name);
    ReplError::Usage(match spec {
        Some(spec) => format!("usage: {} {}", spec.name, spec.args),
        None => format!("usage: see \\? for {name}"),
    })
}

fn on_off(name: &str, value: &str) -> Result<bool, ReplError> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(usage(name)),
    }
}

fn parameter(name: &str, arg: &str) -> Result<(String, String), ReplError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(usage(name)),
    }
}

/// Splits on whitespace; `'...'` or `"..."` keeps spaces inside one word.
fn words(line: &str) -> Result<Vec<String>, ReplError> {
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.trim().chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                current.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(current.take()),
            (None, c) => current.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(ReplError::Usage(format!("unclosed quote in `{line}`")));
    }
    words.extend(current);
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses() {
        assert_eq!(parse("\\d").unwrap(), Command::ListTables);
        assert_eq!(
            parse("\\d silver.tweets").unwrap(),
            Command::Describe("silver.tweets".into())
        );
        assert_eq!(
            parse("\\history bronze 5").unwrap(),
            Command::History {
                table: "bronze".into(),
                limit: 5
            }
        );
        assert_eq!(parse("\\timing off").unwrap(), Command::Timing(Some(false)));
        assert_eq!(parse("\\pager").unwrap(), Command::Pager(None));
        assert_eq!(parse("\\format CSV").unwrap(), Command::Format(Some(Format::Csv)));
        assert_eq!(parse("\\o").unwrap(), Command::Output(None));
        assert_eq!(
            parse("\\i 'my file.sql'").unwrap(),
            Command::Include("my file.sql".into())
        );
        assert_eq!(
            parse("\\run top hours=2 company=\"A B\" empty=").unwrap(),
            Command::Run {
                name: "top".into(),
                args: vec![
                    ("hours".into(), "2".into()),
                    ("company".into(), "A B".into()),
                    ("empty".into(), String::new())
                ]
            }
        );
        assert_eq!(parse("\\save mine").unwrap(), Command::Save("mine".into()));
        assert_eq!(parse("\\q").unwrap(), Command::Quit);
    }

    #[test]
    fn mistakes_show_the_usage() {
        let error = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(error("\\history"), "usage: \\history table [n]");
        assert_eq!(error("\\timing maybe"), "usage: \\timing [on|off]");
        assert_eq!(error("\\run q hours"), "usage: \\run name [param=value ...]");
        assert!(error("\\format xml").contains("markdown"));
        assert!(error("\\frobnicate").contains("\\?"));
        assert!(error("\\i 'open").contains("quote"));
    }

    #[test]
    fn help_lists_every_command() {
        let text = help();
        assert!(COMMANDS.iter().all(|c| text.contains(c.name)));
    }
}
