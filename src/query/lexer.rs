//! A small, forgiving SQL lexer: enough to split statements, find table names, highlight and
//! substitute parameters without ever failing on half-typed input.

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Space,
    /// A keyword or an unquoted identifier.
    Word,
    /// `"quoted identifier"`.
    QuotedIdent,
    /// `'string'`.
    String,
    Number,
    /// `-- line` or `/* block */`.
    Comment,
    /// Any other single character.
    Punct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    /// Byte offset in the lexed text.
    pub start: usize,
    /// False for a string, quoted identifier or block comment that is still open at the end.
    pub closed: bool,
}

impl Token<'_> {
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }

    /// Neither whitespace nor a comment.
    pub fn is_significant(&self) -> bool {
        !matches!(self.kind, Kind::Space | Kind::Comment)
    }

    pub fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct && self.text.starts_with(c)
    }

    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(keyword)
    }

    /// The identifier this token names: unquoted words are lower-cased, as DataFusion does.
    pub fn identifier(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_ascii_lowercase()),
            Kind::QuotedIdent if self.closed => Some(self.text[1..self.text.len() - 1].replace("\"\"", "\"")),
            _ => None,
        }
    }
}

pub fn tokens(sql: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < sql.len() {
        let rest = &sql[start..];
        let (kind, len, closed) = next_token(rest);
        out.push(Token {
            kind,
            text: &rest[..len],
            start,
            closed,
        });
        start += len;
    }
    out
}

fn next_token(rest: &str) -> (Kind, usize, bool) {
    let first = rest.chars().next().expect("not empty");
    let taken = |pred: fn(char) -> bool| rest.find(|c: char| !pred(c)).unwrap_or(rest.len());
    match first {
        c if c.is_whitespace() => (Kind::Space, taken(char::is_whitespace), true),
        c if c.is_alphabetic() || c == '_' => (Kind::Word, taken(is_word_char), true),
        c if c.is_ascii_digit() => (
            Kind::Number,
            taken(|c| c.is_ascii_alphanumeric() || c == '.'),
            true,
        ),
        '\'' => quoted(rest, '\'', Kind::String),
        '"' => quoted(rest, '"', Kind::QuotedIdent),
        '-' if rest.starts_with("--") => (Kind::Comment, rest.find('\n').unwrap_or(rest.len()), true),
        '/' if rest.starts_with("/*") => match rest[2..].find("*/") {
            Some(end) => (Kind::Comment, end + 4, true),
            None => (Kind::Comment, rest.len(), false),
        },
        c => (Kind::Punct, c.len_utf8(), true),
    }
}

pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// A string or quoted identifier; a doubled quote is an escaped quote.
fn quoted(rest: &str, quote: char, kind: Kind) -> (Kind, usize, bool) {
    let mut chars = rest.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            if chars.peek().is_some_and(|&(_, next)| next == quote) {
                chars.next();
            } else {
                return (kind, i + 1, true);
            }
        }
    }
    (kind, rest.len(), false)
}

/// True when `text` holds no SQL: only whitespace and comments.
pub fn is_blank(text: &str) -> bool {
    tokens(text).iter().all(|t| !t.is_significant())
}

/// True when a statement typed at the prompt is ready to run: it ends with `;` outside any
/// string or comment (text after the `;` may only be whitespace or comments).
pub fn is_complete(text: &str) -> bool {
    let tokens = tokens(text);
    tokens.last().is_none_or(|t| t.closed)
        && tokens
            .iter()
            .rev()
            .find(|t| t.is_significant())
            .is_none_or(|t| t.is_punct(';'))
}

/// One unit of input: a backslash meta-command line or one SQL statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Meta(String),
    Sql(String),
}

/// Splits a script into meta-command lines and `;`-terminated statements. A meta-command is a
/// line starting with `\` outside any statement; a last statement without `;` still counts.
pub fn split_inputs(text: &str) -> Vec<Input> {
    let mut inputs = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if is_blank(&pending) && line.trim_start().starts_with('\\') {
            pending.clear();
            inputs.push(Input::Meta(line.trim().to_string()));
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        let (statements, rest) = split_statements(&pending);
        inputs.extend(statements.into_iter().map(Input::Sql));
        pending = rest;
    }
    if !is_blank(&pending) {
        inputs.push(Input::Sql(pending.trim().to_string()));
    }
    inputs
}

/// The complete statements in `text` (without their `;`) and the text after the last one.
fn split_statements(text: &str) -> (Vec<String>, String) {
    let mut statements = Vec::new();
    let mut start = 0;
    for token in tokens(text).iter().filter(|t| t.is_punct(';')) {
        let statement = &text[start..token.start];
        if !is_blank(statement) {
            statements.push(statement.trim().to_string());
        }
        start = token.end();
    }
    (statements, text[start..].to_string())
}

/// A possibly dotted table name in the token stream, e.g. `silver.tweets` or `"gold"."x"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRef {
    /// Normalised dotted name: `silver.tweets`.
    pub name: String,
    /// Token index range `first..after`.
    pub first: usize,
    pub after: usize,
}

/// Every maximal `ident(.ident)*` sequence, in order.
pub fn dotted_names(tokens: &[Token]) -> Vec<NameRef> {
    let mut names = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Some(first) = tokens[i].identifier() else {
            i += 1;
            continue;
        };
        let mut parts = vec![first];
        let mut after = i + 1;
        while after + 1 < tokens.len() && tokens[after].is_punct('.') {
            match tokens[after + 1].identifier() {
                Some(part) => parts.push(part),
                None => break,
            }
            after += 2;
        }
        names.push(NameRef {
            name: parts.join("."),
            first: i,
            after,
        });
        i = after;
    }
    names
}

/// The index of the next significant token at or after `from`.
pub fn next_significant(tokens: &[Token], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| tokens[i].is_significant())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_comments_and_quoted_identifiers_hide_semicolons() {
        let text = "SELECT ';' AS \"a;b\" -- x;\n, 1 /* ; */ FROM t;\nSELECT 'it''s';  -- done";
        let inputs = split_inputs(text);
        assert_eq!(
            inputs,
            vec![
                Input::Sql("SELECT ';' AS \"a;b\" -- x;\n, 1 /* ; */ FROM t".into()),
                Input::Sql("SELECT 'it''s'".into()),
            ]
        );
    }

    #[test]
    fn meta_commands_are_lines_outside_statements() {
        let text = "\\timing off\nSELECT 1,\n\\not_meta\n2;\n\\d\nSELECT 3";
        assert_eq!(
            split_inputs(text),
            vec![
                Input::Meta("\\timing off".into()),
                Input::Sql("SELECT 1,\n\\not_meta\n2".into()),
                Input::Meta("\\d".into()),
                Input::Sql("SELECT 3".into()),
            ]
        );
    }

    #[test]
    fn completeness_needs_a_final_semicolon_outside_strings() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1; -- trailing comment"));
        assert!(is_complete("   "));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1; /* open"));
    }

    #[test]
    fn dotted_names_are_normalised() {
        let sql = "select * FROM Silver.Tweets t JOIN \"gold\".\"Odd\" USING (x)";
        let tokens = tokens(sql);
        let names: Vec<String> = dotted_names(&tokens).into_iter().map(|n| n.name).collect();
        assert_eq!(
            names,
            [
                "select",
                "from",
                "silver.tweets",
                "t",
                "join",
                "gold.Odd",
                "using",
                "x"
            ]
        );
    }
}
