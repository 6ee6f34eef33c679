//! The line editor's helper: Tab completion that knows the statement's tables, keyword
//! highlighting, and "is this statement finished?" for multi-line input.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::sync::{Arc, RwLock};

use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{ColorMode, Context, Helper, Hinter};

use super::chart::ChartKind;
use super::command::{Argument, Meta};
use super::format::Format;
use crate::query::lexer::{self, Kind, Token};

/// SQL keywords offered by completion and highlighted.
#[rustfmt::skip]
pub const KEYWORDS: &[&str] = &[
    "ALL", "ANALYZE", "AND", "ANY", "ARRAY", "AS", "ASC", "AT", "BETWEEN", "BIGINT", "BOOLEAN", "BY",
    "CASE", "CAST", "COLUMNS", "CREATE", "CROSS", "CURRENT", "DATE", "DECIMAL", "DESC", "DESCRIBE",
    "DISTINCT", "DOUBLE", "DROP", "ELSE", "END", "ESCAPE", "EXCEPT", "EXCLUDE", "EXISTS", "EXPLAIN",
    "EXTERNAL", "FALSE", "FILTER", "FIRST", "FOLLOWING", "FROM", "FULL", "GROUP", "HAVING", "IF", "ILIKE",
    "IN", "INNER", "INT", "INTEGER", "INTERSECT", "INTERVAL", "IS", "JOIN", "LAST", "LEFT", "LIKE",
    "LIMIT", "NATURAL", "NOT", "NULL", "NULLS", "OF", "OFFSET", "ON", "OR", "ORDER", "OUTER", "OVER",
    "PARTITION", "PRECEDING", "QUALIFY", "RANGE", "REPLACE", "RIGHT", "ROW", "ROWS", "SELECT", "SET",
    "SHOW", "STRUCT", "TABLE", "TABLES", "THEN", "TIME", "TIMESTAMP", "TRUE", "TRY_CAST", "UNBOUNDED",
    "UNION", "UNNEST", "USING", "VALUES", "VARCHAR", "VERBOSE", "VERSION", "VIEW", "WHEN", "WHERE",
    "WINDOW", "WITH", "ZONE",
];

/// After these keywords only a table name makes sense.
const TABLE_CONTEXT: &[&str] = &["FROM", "JOIN", "TABLE", "DESCRIBE"];

const KEYWORD_STYLE: &str = "\x1b[1;34m";
const STRING_STYLE: &str = "\x1b[32m";
const NUMBER_STYLE: &str = "\x1b[33m";
const COMMENT_STYLE: &str = "\x1b[90m";
const COMMAND_STYLE: &str = "\x1b[1;36m";
const RESET: &str = "\x1b[0m";

/// Whether the REPL writes ANSI colours: decided once, by [`Styling::detect`], and passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Styling {
    Colored,
    Plain,
}

impl Styling {
    /// Colours only for a person at a terminal who has not asked for none: stdout is a terminal
    /// and `NO_COLOR` is unset or empty (no-color.org).
    pub fn detect() -> Self {
        Self::choose(std::io::stdout().is_terminal(), std::env::var_os("NO_COLOR"))
    }

    fn choose(stdout_is_terminal: bool, no_color: Option<OsString>) -> Self {
        let refused = no_color.is_some_and(|value| !value.is_empty());
        match stdout_is_terminal && !refused {
            true => Styling::Colored,
            false => Styling::Plain,
        }
    }

    /// The line editor's setting: ours is decided already, so it must not decide again.
    pub fn color_mode(self) -> ColorMode {
        match self {
            Styling::Colored => ColorMode::Forced,
            Styling::Plain => ColorMode::Disabled,
        }
    }
}

/// What completion knows about the session, refreshed by it after each input.
#[derive(Debug, Default)]
pub struct Vocabulary {
    /// Table name -> column names.
    pub tables: BTreeMap<String, Vec<String>>,
    /// Scalar, aggregate, window and table functions registered in the session.
    pub functions: Vec<String>,
    /// Saved query name -> parameter names.
    pub queries: BTreeMap<String, Vec<String>>,
    /// The columns of the last result, which `\chart` draws.
    pub result_columns: Vec<String>,
}

#[derive(Helper, Hinter)]
pub struct ReplHelper {
    vocabulary: Arc<RwLock<Vocabulary>>,
    filenames: FilenameCompleter,
    styling: Styling,
}

impl ReplHelper {
    pub fn new(vocabulary: Arc<RwLock<Vocabulary>>, styling: Styling) -> Self {
        Self {
            vocabulary,
            filenames: FilenameCompleter::new(),
            styling,
        }
    }
}

/// `exit` or `quit` typed as if it were SQL.
pub fn is_quit(input: &str) -> bool {
    matches!(input.trim().trim_end_matches(';').trim_end(), "exit" | "quit")
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        // `\watch 2 SELECT ...`: the statement completes as if typed alone.
        if let Some(start) = statement_start(&line[..pos]) {
            let (at, pairs) = self.complete(&line[start..], pos - start, ctx)?;
            return Ok((start + at, pairs));
        }
        let vocabulary = self
            .vocabulary
            .read()
            .expect("the vocabulary lock is never poisoned");
        if !line.trim_start().starts_with('\\') {
            return Ok(complete_sql(&vocabulary, line, pos));
        }
        let before = &line[..pos];
        let words: Vec<&str> = before.split_whitespace().collect();
        let new_word = before.ends_with(char::is_whitespace);
        let start = if new_word {
            pos
        } else {
            before.rfind(char::is_whitespace).map_or(0, |i| i + 1)
        };
        // Words before the one being typed: the first is the meta-command's name.
        let typed = words.len() - usize::from(!new_word);
        let candidates: Vec<String> = match typed.checked_sub(1) {
            None => meta_command_names(),
            Some(index) => match Meta::named(words[0]).and_then(|m| m.definition().argument(index)) {
                Some(Argument::File) => return self.filenames.complete(line, pos, ctx),
                Some(argument) => argument_values(&vocabulary, argument, index, &words),
                None => Vec::new(),
            },
        };
        Ok((start, pairs(matching(candidates, &line[start..pos]))))
    }
}

/// Where the statement argument of a meta-command line starts, when the cursor is in it.
fn statement_start(before: &str) -> Option<usize> {
    if !before.trim_start().starts_with('\\') {
        return None;
    }
    let starts: Vec<usize> = before
        .char_indices()
        .filter(|&(i, c)| !c.is_whitespace() && (i == 0 || before[..i].ends_with(char::is_whitespace)))
        .map(|(i, _)| i)
        .collect();
    let name = before.split_whitespace().next()?;
    let index = Meta::named(name)?.definition().verbatim_from()?;
    // Word 0 is the name; a statement not started yet starts at the cursor.
    let word = index + 1;
    match starts.get(word) {
        Some(&start) => Some(start),
        None if starts.len() == word && before.ends_with(char::is_whitespace) => Some(before.len()),
        None => None,
    }
}

/// Every meta-command's name and aliases.
fn meta_command_names() -> Vec<String> {
    Meta::ALL
        .iter()
        .flat_map(|meta| meta.definition().names())
        .map(String::from)
        .collect()
}

/// What Tab offers for an `argument`, the `index`th of the meta-command line whose words are
/// `words`.
fn argument_values(vocabulary: &Vocabulary, argument: Argument, index: usize, words: &[&str]) -> Vec<String> {
    match argument {
        Argument::Table => vocabulary.tables.keys().cloned().collect(),
        Argument::Format => Format::ALL.iter().map(|f| f.name().to_string()).collect(),
        Argument::Switch => vec!["on".into(), "off".into()],
        Argument::SavedQuery => vocabulary.queries.keys().cloned().collect(),
        // The parameters of the saved query named before them.
        Argument::QueryParameters => words
            .get(1)
            .and_then(|query| vocabulary.queries.get(*query))
            .map(|params| params.iter().map(|p| format!("{p}=")).collect())
            .unwrap_or_default(),
        // The kind of chart comes first, if at all; then columns of the last result.
        Argument::ChartColumns => {
            let kinds = ChartKind::ALL.map(|kind| kind.name().to_string());
            let kinds = kinds.into_iter().filter(|_| index == 0);
            kinds
                .chain(vocabulary.result_columns.iter().map(|c| quoted_word(c)))
                .collect()
        }
        // Files come from the filename completer and statements complete as SQL (see
        // `statement_start`); counts, seconds and new names cannot be guessed.
        Argument::File
        | Argument::Statement
        | Argument::Count
        | Argument::Seconds
        | Argument::NewQueryName => Vec::new(),
    }
}

/// A word as a meta-command line must spell it: in double quotes if it holds a space.
fn quoted_word(word: &str) -> String {
    match word.contains(char::is_whitespace) {
        true => format!("\"{word}\""),
        false => word.to_string(),
    }
}

/// Completion of the SQL word before `pos`: only tables after FROM / JOIN, columns of the
/// statement's tables after `table.` or `alias.`, else columns, functions, keywords and tables.
fn complete_sql(vocabulary: &Vocabulary, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let tokens = lexer::tokens(line);
    if tokens.iter().any(|t| inside_literal(t, pos)) {
        return (pos, Vec::new());
    }
    let start = line[..pos]
        .rfind(|c: char| !(lexer::is_word_char(c) || c == '.'))
        .map_or(0, |i| i + 1);
    let word = &line[start..pos];
    let scope = Scope {
        vocabulary,
        mentioned: mentioned_tables(vocabulary, &tokens),
    };
    let candidates = match word.rsplit_once('.') {
        Some((qualifier, _)) => scope.qualified(qualifier),
        None if follows_table_keyword(&tokens, start) => vocabulary.tables.keys().cloned().collect(),
        None if word.is_empty() => scope.columns_in_scope().collect(),
        None => scope.anything(word),
    };
    (start, pairs(matching(candidates, word)))
}

/// What a statement can name: its tables (with aliases) and everything the session knows.
struct Scope<'v> {
    vocabulary: &'v Vocabulary,
    mentioned: Vec<(String, Option<String>)>,
}

impl Scope<'_> {
    fn columns<'a>(&'a self, table: &str) -> impl Iterator<Item = String> + 'a {
        self.vocabulary
            .tables
            .get(table)
            .into_iter()
            .flatten()
            .map(|c| quoted(c))
    }

    fn columns_in_scope(&self) -> impl Iterator<Item = String> + '_ {
        self.mentioned.iter().flat_map(|(table, _)| self.columns(table))
    }

    /// After `schema.`: its tables; after `table.` or `alias.`: the table's columns.
    fn qualified(&self, qualifier: &str) -> Vec<String> {
        let lower = qualifier.to_ascii_lowercase();
        let schema_prefix = format!("{lower}.");
        let table = self
            .mentioned
            .iter()
            .find(|(name, alias)| *name == lower || alias.as_deref() == Some(lower.as_str()))
            .map_or(lower.clone(), |(name, _)| name.clone());
        let tables = self
            .vocabulary
            .tables
            .keys()
            .filter(|t| t.starts_with(&schema_prefix));
        let columns = self.columns(&table).map(|c| format!("{qualifier}.{c}"));
        tables.cloned().chain(columns).collect()
    }

    /// Columns in scope, functions and keywords (in the case the word is typed in), tables.
    fn anything(&self, word: &str) -> Vec<String> {
        let upper = word.chars().all(|c| !c.is_ascii_lowercase());
        let case = |w: &str| match upper {
            true => w.to_ascii_uppercase(),
            false => w.to_ascii_lowercase(),
        };
        let functions = self.vocabulary.functions.iter().map(|f| case(f));
        let keywords = KEYWORDS.iter().map(|k| case(k));
        let tables = self.vocabulary.tables.keys().cloned();
        self.columns_in_scope()
            .chain(functions)
            .chain(keywords)
            .chain(tables)
            .collect()
    }
}

/// Candidates starting with `prefix` (ignoring case), sorted, without duplicates.
fn matching(candidates: Vec<String>, prefix: &str) -> Vec<String> {
    let unquoted = |text: &str| text.replace('"', "").to_lowercase();
    let prefix = unquoted(prefix);
    let mut found: Vec<String> = candidates
        .into_iter()
        .filter(|c| unquoted(c).starts_with(&prefix))
        .collect();
    found.sort();
    found.dedup();
    found
}

fn pairs(candidates: Vec<String>) -> Vec<Pair> {
    candidates
        .into_iter()
        .map(|c| Pair {
            display: c.clone(),
            replacement: c,
        })
        .collect()
}

/// A column name as SQL must spell it: quoted unless lower-case letters, digits and `_`.
fn quoted(column: &str) -> String {
    let plain = column.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match plain {
        true => column.to_string(),
        false => format!("\"{}\"", column.replace('"', "\"\"")),
    }
}

/// True when the cursor is inside a string, quoted identifier or comment.
fn inside_literal(token: &Token, pos: usize) -> bool {
    let literal = matches!(token.kind, Kind::String | Kind::QuotedIdent | Kind::Comment);
    let open_at_cursor = !token.closed || token.kind == Kind::Comment;
    literal && token.start < pos && (pos < token.end() || (pos == token.end() && open_at_cursor))
}

/// The statement's known tables with their aliases (`FROM silver.tweets t`, `... AS t`).
fn mentioned_tables(vocabulary: &Vocabulary, tokens: &[Token]) -> Vec<(String, Option<String>)> {
    lexer::dotted_names(tokens)
        .into_iter()
        .filter(|n| vocabulary.tables.contains_key(&n.name))
        .map(|n| {
            let mut next = lexer::next_significant(tokens, n.after);
            if next.is_some_and(|i| tokens[i].is_keyword("AS")) {
                next = next.and_then(|i| lexer::next_significant(tokens, i + 1));
            }
            let alias = next
                .and_then(|i| tokens[i].identifier())
                .filter(|a| !is_keyword(a));
            (n.name, alias)
        })
        .collect()
}

fn follows_table_keyword(tokens: &[Token], start: usize) -> bool {
    tokens
        .iter()
        .rev()
        .find(|t| t.end() <= start && t.is_significant())
        .is_some_and(|t| TABLE_CONTEXT.iter().any(|k| t.is_keyword(k)))
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

// The editor asks for highlighting only when its colour mode (from the same `Styling`) allows;
// the helper checks too, so that it never colours on its own.
impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        match self.styling {
            Styling::Colored => Cow::Owned(highlight(line)),
            Styling::Plain => Cow::Borrowed(line),
        }
    }

    /// Each typed character repaints the line, so a word is coloured as soon as it is one.
    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.styling == Styling::Colored
    }
}

/// `line` with ANSI colours: keywords, strings, numbers and comments; a meta-command's name.
fn highlight(line: &str) -> String {
    if line.trim_start().starts_with('\\') {
        let indent = line.len() - line.trim_start().len();
        let end = line[indent..]
            .find(char::is_whitespace)
            .map_or(line.len(), |i| indent + i);
        let (command, rest) = line.split_at(end);
        return format!("{COMMAND_STYLE}{command}{RESET}{rest}");
    }
    let mut out = String::with_capacity(line.len() * 2);
    for token in lexer::tokens(line) {
        let style = match token.kind {
            Kind::Word if is_keyword(token.text) => Some(KEYWORD_STYLE),
            Kind::String => Some(STRING_STYLE),
            Kind::Number => Some(NUMBER_STYLE),
            Kind::Comment => Some(COMMENT_STYLE),
            _ => None,
        };
        match style {
            Some(style) => out.push_str(&format!("{style}{}{RESET}", token.text)),
            None => out.push_str(token.text),
        }
    }
    out
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        let complete = input.trim_start().starts_with('\\') || is_quit(input) || lexer::is_complete(input);
        Ok(match complete {
            true => ValidationResult::Valid(None),
            false => ValidationResult::Incomplete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        let mut v = Vocabulary::default();
        v.tables
            .insert("bronze".into(), vec!["_offset".into(), "data".into()]);
        v.tables.insert(
            "silver.tweets".into(),
            vec!["company".into(), "created_at".into(), "Odd".into()],
        );
        v.tables.insert("silver.users".into(), vec!["id".into()]);
        v.functions = vec!["count".into(), "coalesce".into()];
        v.queries.insert("top".into(), vec!["hours".into()]);
        v.result_columns = vec!["minute".into(), "posts".into(), "mean sentiment".into()];
        v
    }

    /// Completes at `|` in `text`, else at the end.
    fn complete(text: &str) -> (usize, Vec<String>) {
        let pos = text.find('|').unwrap_or(text.len());
        let line = text.replacen('|', "", 1);
        let (start, pairs) = complete_sql(&vocabulary(), &line, pos);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn tables_after_from_and_schema_dot() {
        assert_eq!(
            complete("SELECT * FROM sil"),
            (14, vec!["silver.tweets".into(), "silver.users".into()])
        );
        assert_eq!(
            complete("SELECT * FROM silver.tw"),
            (14, vec!["silver.tweets".into()])
        );
        assert_eq!(complete("select * from b").1, vec!["bronze"]);
    }

    #[test]
    fn columns_of_the_statement_tables_by_name_or_alias() {
        assert_eq!(
            complete("SELECT * FROM silver.tweets WHERE comp").1,
            vec!["company"]
        );
        assert_eq!(
            complete("SELECT * FROM silver.tweets t WHERE t.cr").1,
            vec!["t.created_at"]
        );
        assert_eq!(complete("SELECT t.| FROM silver.tweets AS t").1.len(), 3);
        assert_eq!(
            complete("SELECT silver.tweets.o| FROM silver.tweets").1,
            vec!["silver.tweets.\"Odd\""]
        );
        assert_eq!(complete("SELECT * FROM bronze WHERE ").1, vec!["_offset", "data"]);
    }

    #[test]
    fn keywords_and_functions_follow_the_typed_case() {
        assert_eq!(complete("SELECT * FROM bronze WHER").1, vec!["WHERE"]);
        assert_eq!(complete("sel").1, vec!["select"]);
        assert_eq!(complete("SELECT CO").1, vec!["COALESCE", "COLUMNS", "COUNT"]);
        assert!(complete("SELECT 'sel").1.is_empty());
        assert!(complete("SELECT 1 -- sel").1.is_empty());
    }

    #[test]
    fn meta_commands_and_their_arguments() {
        let helper = ReplHelper::new(Arc::new(RwLock::new(vocabulary())), Styling::Plain);
        let history = rustyline::history::DefaultHistory::new();
        let complete = |line: &str| {
            let (start, pairs) = helper
                .complete(line, line.len(), &Context::new(&history))
                .unwrap();
            (
                start,
                pairs.into_iter().map(|p| p.replacement).collect::<Vec<_>>(),
            )
        };
        assert_eq!(complete("\\hi"), (0, vec!["\\history".to_string()]));
        assert_eq!(
            complete("\\qu"),
            (0, vec!["\\queries".to_string(), "\\quit".to_string()])
        );
        assert_eq!(complete("\\").1.len(), meta_command_names().len());
        assert_eq!(complete("\\d silver.t"), (3, vec!["silver.tweets".to_string()]));
        assert_eq!(complete("\\format m"), (8, vec!["markdown".to_string()]));
        assert_eq!(
            complete("\\timing "),
            (8, vec!["off".to_string(), "on".to_string()])
        );
        assert_eq!(complete("\\run t"), (5, vec!["top".to_string()]));
        assert_eq!(complete("\\run top h"), (9, vec!["hours=".to_string()]));
        assert_eq!(complete("\\run top hours=1 "), (17, vec!["hours=".to_string()]));
        assert_eq!(complete("\\history bronze ").1, Vec::<String>::new());

        // \chart: the kind first, then the last result's columns.
        let columns = ["\"mean sentiment\"", "minute", "posts"].map(String::from);
        let mut first = vec!["bar".to_string(), "line".to_string()];
        first.extend(columns.clone());
        first.sort();
        assert_eq!(complete("\\chart "), (7, first));
        assert_eq!(complete("\\chart line "), (12, columns.to_vec()));
        assert_eq!(complete("\\chart bar minute p"), (18, vec!["posts".to_string()]));
        // \watch: the statement completes as SQL, or as the chart it draws.
        assert_eq!(complete("\\watch 2 "), (9, Vec::<String>::new()));
        assert_eq!(complete("\\watch 2 SELECT * FROM sil").0, 23);
        assert_eq!(
            complete("\\watch 2 SELECT * FROM sil").1,
            ["silver.tweets", "silver.users"]
        );
        assert_eq!(complete("\\watch 0.5 \\cha"), (11, vec!["\\chart".to_string()]));
        assert_eq!(
            complete("\\watch 0.5 \\chart line mi"),
            (23, vec!["minute".to_string()])
        );
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "SELECT 'a', 1 FROM t -- c";
        let plain: String = highlight(line)
            .split('\x1b')
            .map(|p| p.split_once('m').map_or(p, |(_, r)| r))
            .collect();
        assert_eq!(plain, line);
        assert!(highlight(line).starts_with(&format!("{KEYWORD_STYLE}SELECT{RESET}")));
        assert_eq!(
            highlight("\\d bronze"),
            format!("{COMMAND_STYLE}\\d{RESET} bronze")
        );
    }

    #[test]
    fn colours_only_at_a_terminal_without_no_color() {
        let terminal = true;
        assert_eq!(Styling::choose(terminal, None), Styling::Colored);
        assert_eq!(Styling::choose(terminal, Some("".into())), Styling::Colored);
        assert_eq!(Styling::choose(terminal, Some("1".into())), Styling::Plain);
        assert_eq!(Styling::choose(!terminal, None), Styling::Plain);
    }

    #[test]
    fn a_plain_helper_leaves_the_line_as_typed() {
        let vocabulary = Arc::new(RwLock::new(Vocabulary::default()));
        let line = "SELECT 'a' FROM t";
        let plain = ReplHelper::new(vocabulary.clone(), Styling::Plain);
        assert_eq!(plain.highlight(line, 0), line);
        assert!(!plain.highlight_char(line, 0, CmdKind::Other));
        let colored = ReplHelper::new(vocabulary, Styling::Colored);
        assert!(colored.highlight(line, 0).contains(KEYWORD_STYLE));
        assert!(colored.highlight_char(line, 0, CmdKind::Other));
    }

    #[test]
    fn statements_are_complete_at_a_semicolon_and_commands_at_once() {
        assert!(is_quit("exit"));
        assert!(is_quit(" quit; "));
        assert!(!is_quit("exit_code"));
    }
}
