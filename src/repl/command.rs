//! Backslash meta-commands. One definition per command (its names, arguments and help line)
//! drives parsing, the `\?` text and Tab completion, so the three cannot disagree.

use std::path::PathBuf;
use std::time::Duration;

use super::chart::{ChartKind, ChartSpec};
use super::format::Format;
use super::ReplError;
use crate::query::lexer::{self, Input};

/// `\history` shows this many commits unless told otherwise.
pub const DEFAULT_HISTORY_LIMIT: usize = 20;

/// A typed meta-command with its arguments, ready to run.
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
    /// Draws the last result.
    Chart(ChartSpec),
    Watch {
        period: Duration,
        watched: Watched,
    },
}

/// What `\watch` runs and redraws every period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The last statement that ran, shown as results are.
    Last,
    /// This statement, shown as results are.
    Statement(String),
    /// The last statement, drawn as this chart.
    Chart(ChartSpec),
}

/// Declares `Meta` and `Meta::ALL` from one list, so no meta-command can be missing from `ALL`.
macro_rules! meta_commands {
    ($($variant:ident),* $(,)?) => {
        /// A meta-command by name only; [`Meta::definition`] says how it is typed and what it does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Meta {
            $($variant),*
        }

        impl Meta {
            /// Every meta-command, in the order `\?` lists them.
            pub const ALL: &'static [Meta] = &[$(Meta::$variant),*];
        }
    };
}

meta_commands!(
    Help, Quit, Describe, History, Timing, Format, Output, Include, Pager, Queries, Run, Save, Chart, Watch
);

impl Meta {
    /// Its names, arguments and help line: everything parsing, `\?` and Tab know about it.
    pub fn definition(self) -> Definition {
        use Argument::{
            ChartColumns, Count, File, NewQueryName, QueryParameters, SavedQuery, Seconds, Statement, Switch,
            Table,
        };
        let define = Definition::new;
        match self {
            Meta::Help => define("\\?", "this help").with_aliases(&["\\h", "\\help"]),
            Meta::Quit => define("\\q", "quit, as Ctrl-D does").with_aliases(&["\\quit"]),
            Meta::Describe => define(
                "\\d",
                "list tables (version, files, rows, size), or one table's columns",
            )
            .with_optional(&[Table]),
            Meta::History => define("\\history", "the table's last n Delta commits (default 20)")
                .with_required(&[Table])
                .with_optional(&[Count]),
            Meta::Timing => define("\\timing", "print time, rows and bytes scanned after each query")
                .with_optional(&[Switch]),
            Meta::Format => {
                define("\\format", "show or set the result format").with_optional(&[Argument::Format])
            }
            Meta::Output => define(
                "\\o",
                "send results to a file (format from .csv/.json/.ndjson/.md), or back to the terminal",
            )
            .with_optional(&[File]),
            Meta::Include => {
                define("\\i", "run the statements and meta-commands in a file").with_required(&[File])
            }
            Meta::Pager => define(
                "\\pager",
                "page results taller than the terminal ($PAGER, else less -FRX)",
            )
            .with_optional(&[Switch]),
            Meta::Queries => define(
                "\\queries",
                "list saved queries with their descriptions and parameters",
            ),
            Meta::Run => define("\\run", "run a saved query")
                .with_required(&[SavedQuery])
                .with_optional(&[QueryParameters]),
            Meta::Save => define(
                "\\save",
                "save the last statement as a query (queries/<name>.sql)",
            )
            .with_required(&[NewQueryName]),
            Meta::Chart => define(
                "\\chart",
                "draw the last result: lines over a numeric or time x (default), or bars; one series per y",
            )
            .with_required(&[ChartColumns]),
            Meta::Watch => define(
                "\\watch",
                "re-run the statement (default: the last one) every n seconds, redrawn, until Ctrl-C",
            )
            .with_required(&[Seconds])
            .with_optional(&[Statement]),
        }
    }

    /// The meta-command called `name` or one of its aliases.
    pub fn named(name: &str) -> Option<Meta> {
        Meta::ALL
            .iter()
            .copied()
            .find(|meta| meta.definition().names().any(|n| n == name))
    }

    /// Builds the command from its words; `args` holds as many as the definition accepts.
    fn command(self, args: &[String]) -> Result<Command, ReplError> {
        let usage = || self.definition().usage_error();
        let switch = || args.first().map(|a| on_off(a).ok_or_else(usage)).transpose();
        Ok(match self {
            Meta::Help => Command::Help,
            Meta::Quit => Command::Quit,
            Meta::Describe => args
                .first()
                .cloned()
                .map_or(Command::ListTables, Command::Describe),
            Meta::History => Command::History {
                table: args[0].clone(),
                limit: match args.get(1) {
                    Some(n) => n.parse().map_err(|_| usage())?,
                    None => DEFAULT_HISTORY_LIMIT,
                },
            },
            Meta::Timing => Command::Timing(switch()?),
            Meta::Format => Command::Format(
                args.first()
                    .map(|a| a.parse().map_err(ReplError::Usage))
                    .transpose()?,
            ),
            Meta::Output => Command::Output(args.first().map(PathBuf::from)),
            Meta::Include => Command::Include(PathBuf::from(&args[0])),
            Meta::Pager => Command::Pager(switch()?),
            Meta::Queries => Command::Queries,
            Meta::Run => Command::Run {
                name: args[0].clone(),
                args: args[1..]
                    .iter()
                    .map(|a| parameter(a).ok_or_else(usage))
                    .collect::<Result<_, _>>()?,
            },
            Meta::Save => Command::Save(args[0].clone()),
            Meta::Chart => Command::Chart(chart_spec(args).ok_or_else(usage)?),
            Meta::Watch => Command::Watch {
                period: seconds(&args[0]).ok_or_else(usage)?,
                watched: watched(args.get(1).map(String::as_str))?,
            },
        })
    }
}

/// One kind of meta-command argument: how `\?` shows it and what Tab offers for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argument {
    /// A table of the lake, by its dotted name.
    Table,
    /// How many commits to show.
    Count,
    /// `on` or `off`.
    Switch,
    Format,
    /// A path on this machine.
    File,
    /// The name of a saved query.
    SavedQuery,
    /// A name no saved query has yet (saving never overwrites): nothing to complete.
    NewQueryName,
    /// Any number of `param=value` for the saved query named before them.
    QueryParameters,
    /// `[line|bar] x y [y ...]`: columns of the last result, after the kind of chart.
    ChartColumns,
    /// A positive number of seconds, fractions allowed.
    Seconds,
    /// The rest of the line as typed: a SQL statement, or a meta-command.
    Statement,
}

impl Argument {
    fn placeholder(self) -> String {
        match self {
            Argument::Table => "table".into(),
            Argument::Count => "n".into(),
            Argument::Switch => "on|off".into(),
            Argument::Format => Format::ALL.map(Format::name).join("|"),
            Argument::File => "file".into(),
            Argument::SavedQuery | Argument::NewQueryName => "name".into(),
            Argument::QueryParameters => "param=value ...".into(),
            Argument::ChartColumns => {
                let kinds = ChartKind::ALL.map(ChartKind::name).join("|");
                format!("[{kinds}] x y [y ...]")
            }
            Argument::Seconds => "seconds".into(),
            Argument::Statement => "statement".into(),
        }
    }

    /// Whether it takes every word after it.
    fn repeats(self) -> bool {
        matches!(
            self,
            Argument::QueryParameters | Argument::ChartColumns | Argument::Statement
        )
    }
}

/// How a meta-command is typed and what `\?` says about it.
pub struct Definition {
    name: &'static str,
    aliases: &'static [&'static str],
    help: &'static str,
    /// Arguments that must be given, in order; then those that may follow.
    required: &'static [Argument],
    optional: &'static [Argument],
}

impl Definition {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            aliases: &[],
            help,
            required: &[],
            optional: &[],
        }
    }

    const fn with_aliases(self, aliases: &'static [&'static str]) -> Self {
        Self { aliases, ..self }
    }

    const fn with_required(self, required: &'static [Argument]) -> Self {
        Self { required, ..self }
    }

    const fn with_optional(self, optional: &'static [Argument]) -> Self {
        Self { optional, ..self }
    }

    /// The name `\?` lists first, then the aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// The kind of the argument at `index` (0 is the first after the name), if it takes one there.
    pub fn argument(&self, index: usize) -> Option<Argument> {
        let declared = self.required.iter().chain(self.optional).nth(index);
        declared.copied().or(self.repeated())
    }

    /// The last argument, when it takes every word after it.
    fn repeated(&self) -> Option<Argument> {
        let last = self.required.iter().chain(self.optional).last();
        last.copied().filter(|a| a.repeats())
    }

    /// The index of the argument that is the rest of the line as typed, if it takes one.
    pub fn verbatim_from(&self) -> Option<usize> {
        let mut arguments = self.required.iter().chain(self.optional);
        arguments.position(|a| *a == Argument::Statement)
    }

    fn accepts(&self, count: usize) -> bool {
        let most = self.required.len() + self.optional.len();
        count >= self.required.len() && (count <= most || self.repeated().is_some())
    }

    /// `\history table [n]`.
    fn usage(&self) -> String {
        let required = self.required.iter().map(|a| a.placeholder());
        let optional = self.optional.iter().map(|a| format!("[{}]", a.placeholder()));
        std::iter::once(self.name.to_string())
            .chain(required)
            .chain(optional)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn usage_error(&self) -> ReplError {
        ReplError::Usage(format!("usage: {}", self.usage()))
    }

    /// The help line, naming the aliases.
    fn description(&self) -> String {
        match self.aliases {
            [] => self.help.to_string(),
            aliases => format!("{} (also {})", self.help, aliases.join(", ")),
        }
    }
}

/// The `\?` text: every meta-command with its aliases, and the SQL extensions.
pub fn help() -> String {
    let lines: Vec<(String, String)> = Meta::ALL
        .iter()
        .map(|meta| {
            let definition = meta.definition();
            (definition.usage(), definition.description())
        })
        .collect();
    let width = lines.iter().map(|(usage, _)| usage.len()).max().unwrap_or(0);
    let mut text = String::from("Meta-commands:\n");
    for (usage, description) in lines {
        text.push_str(&format!("  {usage:width$}  {description}\n"));
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
    let name = line
        .split_whitespace()
        .next()
        .expect("a meta-command line is not empty");
    let meta = Meta::named(name)
        .ok_or_else(|| ReplError::Usage(format!("unknown meta-command `{name}` (\\? lists them)")))?;
    let definition = meta.definition();
    // The name, the arguments before the verbatim one, and the rest of the line.
    let limit = definition.verbatim_from().map(|index| index + 2);
    let words = words(line, limit)?;
    let args = &words[1..];
    if !definition.accepts(args.len()) {
        return Err(definition.usage_error());
    }
    meta.command(args)
}

fn on_off(value: &str) -> Option<bool> {
    match value {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    }
}

/// `[line|bar] x y [y ...]`; a line chart unless told otherwise.
fn chart_spec(args: &[String]) -> Option<ChartSpec> {
    let (kind, columns) = match args.split_first() {
        Some((first, rest)) => ChartKind::named(first).map_or((ChartKind::Line, args), |kind| (kind, rest)),
        None => return None,
    };
    let (x, ys) = columns.split_first()?;
    (!ys.is_empty()).then(|| ChartSpec {
        kind,
        x: x.clone(),
        ys: ys.to_vec(),
    })
}

fn seconds(text: &str) -> Option<Duration> {
    let seconds = text.parse::<f64>().ok().filter(|s| *s > 0.0)?;
    Duration::try_from_secs_f64(seconds).ok()
}

/// What `\watch` repeats: one statement, a chart of the last one, or (nothing given) the last.
fn watched(text: Option<&str>) -> Result<Watched, ReplError> {
    let Some(text) = text else {
        return Ok(Watched::Last);
    };
    let refused = || {
        ReplError::Usage(
            "\\watch repeats one SQL statement, or a chart of the last one (\\watch 2 \\chart ...)".into(),
        )
    };
    match lexer::split_inputs(text).as_slice() {
        [Input::Sql(sql)] => Ok(Watched::Statement(sql.clone())),
        [Input::Meta(line)] => match parse(line)? {
            Command::Chart(spec) => Ok(Watched::Chart(spec)),
            _ => Err(refused()),
        },
        _ => Err(refused()),
    }
}

fn parameter(arg: &str) -> Option<(String, String)> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Some((key.to_string(), value.to_string())),
        _ => None,
    }
}

/// Splits on whitespace; `'...'` or `"..."` keeps spaces inside one word. With a `limit`, the
/// last word is the rest of the line as typed (a statement keeps its quotes).
fn words(line: &str, limit: Option<usize>) -> Result<Vec<String>, ReplError> {
    let line = line.trim();
    let mut words = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for (at, c) in line.char_indices() {
        let starts_word = quote.is_none() && current.is_none() && !c.is_whitespace();
        if starts_word && limit == Some(words.len() + 1) {
            words.push(line[at..].to_string());
            return Ok(words);
        }
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
    use std::collections::BTreeSet;

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
        assert_eq!(parse("\\quit").unwrap(), Command::Quit);
        assert_eq!(parse("\\help").unwrap(), Command::Help);
    }

    fn spec(kind: ChartKind, x: &str, ys: &[&str]) -> ChartSpec {
        ChartSpec {
            kind,
            x: x.into(),
            ys: ys.iter().map(|y| y.to_string()).collect(),
        }
    }

    #[test]
    fn charts_are_lines_unless_told_and_take_several_ys() {
        assert_eq!(
            parse("\\chart minute posts").unwrap(),
            Command::Chart(spec(ChartKind::Line, "minute", &["posts"]))
        );
        assert_eq!(
            parse("\\chart bar company posts \"count(*)\" negative").unwrap(),
            Command::Chart(spec(
                ChartKind::Bar,
                "company",
                &["posts", "count(*)", "negative"]
            ))
        );
    }

    #[test]
    fn watch_keeps_its_statement_as_typed() {
        let watch = |line: &str| match parse(line).unwrap() {
            Command::Watch { period, watched } => (period, watched),
            other => panic!("{other:?}"),
        };
        assert_eq!(watch("\\watch 2"), (Duration::from_secs(2), Watched::Last));
        assert_eq!(
            watch("\\watch 0.5   SELECT 'a  b' AS \"x y\"  FROM t;  "),
            (
                Duration::from_millis(500),
                Watched::Statement("SELECT 'a  b' AS \"x y\"  FROM t".into())
            )
        );
        assert_eq!(
            watch("\\watch 1 \\chart bar company posts"),
            (
                Duration::from_secs(1),
                Watched::Chart(spec(ChartKind::Bar, "company", &["posts"]))
            )
        );
    }

    #[test]
    fn mistakes_show_the_usage() {
        let error = |line: &str| parse(line).unwrap_err().to_string();
        assert_eq!(error("\\history"), "usage: \\history table [n]");
        assert_eq!(error("\\history bronze many"), "usage: \\history table [n]");
        assert_eq!(error("\\timing maybe"), "usage: \\timing [on|off]");
        assert_eq!(error("\\run q hours"), "usage: \\run name [param=value ...]");
        assert_eq!(
            error("\\format a b"),
            "usage: \\format [table|csv|json|ndjson|markdown]"
        );
        assert_eq!(error("\\h now"), "usage: \\?");
        assert!(error("\\format xml").contains("markdown"));
        assert!(error("\\frobnicate").contains("\\?"));
        assert!(error("\\i 'open").contains("quote"));
        let chart = "usage: \\chart [line|bar] x y [y ...]";
        assert_eq!(error("\\chart"), chart);
        assert_eq!(error("\\chart minute"), chart);
        assert_eq!(error("\\chart bar company"), chart);
        let watch = "usage: \\watch seconds [statement]";
        assert_eq!(error("\\watch"), watch);
        assert_eq!(error("\\watch 0 SELECT 1"), watch);
        assert_eq!(error("\\watch soon"), watch);
        assert!(error("\\watch 1 \\d").contains("repeats one SQL statement"));
        assert!(error("\\watch 1 SELECT 1; SELECT 2").contains("repeats one SQL statement"));
        assert_eq!(error("\\watch 1 \\chart x"), chart);
    }

    /// A value a user could type for an argument of this kind.
    fn example(argument: Argument) -> &'static str {
        match argument {
            Argument::Table => "silver.tweets",
            Argument::Count => "5",
            Argument::Switch => "off",
            Argument::Format => "csv",
            Argument::File => "'my file.sql'",
            Argument::SavedQuery => "top",
            Argument::NewQueryName => "mine",
            Argument::QueryParameters => "hours=2",
            Argument::ChartColumns => "bar company posts",
            Argument::Seconds => "2",
            Argument::Statement => "SELECT count(*) FROM bronze",
        }
    }

    /// `name` followed by an example of each argument.
    fn line(name: &str, arguments: &[Argument]) -> String {
        let examples = arguments.iter().map(|a| example(*a));
        std::iter::once(name)
            .chain(examples)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The `\name` words of the help text.
    fn names_in_help() -> Vec<String> {
        help()
            .split_whitespace()
            .map(|word| word.trim_matches(|c| matches!(c, '(' | ')' | ',')))
            .filter(|word| word.starts_with('\\'))
            .map(String::from)
            .collect()
    }

    #[test]
    fn help_lists_every_name_and_alias_once() {
        let listed = names_in_help();
        let defined: Vec<&str> = Meta::ALL
            .iter()
            .flat_map(|meta| meta.definition().names())
            .collect();
        assert_eq!(listed, defined);
        let distinct: BTreeSet<&str> = defined.iter().copied().collect();
        assert_eq!(distinct.len(), defined.len(), "a name belongs to one command");
    }

    #[test]
    fn every_name_in_the_help_parses_with_its_arguments_and_shows_its_usage() {
        for name in names_in_help() {
            let meta = Meta::named(&name).unwrap_or_else(|| panic!("{name} does not parse"));
            let definition = meta.definition();
            let every: Vec<Argument> = definition
                .required
                .iter()
                .chain(definition.optional)
                .copied()
                .collect();
            let full = parse(&line(&name, &every)).unwrap();
            assert_eq!(
                full,
                parse(&line(definition.name, &every)).unwrap(),
                "{name} is {}",
                definition.name
            );
            parse(&line(&name, definition.required)).unwrap();

            let usage = format!("usage: {}", definition.usage());
            if !definition.required.is_empty() {
                assert_eq!(parse(&name).unwrap_err().to_string(), usage);
            }
            if definition.repeated().is_none() {
                let mut too_many = every.clone();
                too_many.push(Argument::Count);
                let error = parse(&line(&name, &too_many)).unwrap_err();
                assert_eq!(error.to_string(), usage, "{name}");
            }
        }
    }
}
