//! Which company a post or tag is about, from the analysts' list of aliases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, ListArray, StringBuilder};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::{exec_err, Result};
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::text::{decode_entities, push_lowercase, StringList};
use super::udf::{map_text, udf, Arg};

/// The header a company CSV starts with.
const HEADER: &str = "alias,company_id";

/// The companies the desk follows, by alias, as listed in `sql/companies.csv`.
///
/// The CSV starts with the header `alias,company_id`, then one alias per line: a cashtag
/// (`$aapl`), a hashtag (`#iphone`) or a name of one or more words (`apple`, `bank of america`).
/// Blank lines are skipped; fields are not quoted, so they hold no commas. An alias listed twice
/// must name the same company.
///
/// Matching is case-insensitive and word by word. Text and aliases are split into words the same
/// way: letters, digits and `_`, with `&`, `.` and `-` inside a word, and a `$` or `#` just before
/// it kept as its sigil. So `AT&T`, `Coca-Cola` and `$BRK.B` are one word each, and `McDonald's`
/// is the words `mcdonald s`, which the alias `McDonald's` is too. A bare name matches anywhere
/// in a text, so keep ambiguous words (`meta`, `apple`) out of the list if they mislead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyMap {
    /// Shared, as every session's `company_of` reads the same aliases.
    aliases: Arc<Aliases>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Aliases {
    /// Company id by alias words, joined by single spaces.
    companies: HashMap<String, String>,
    /// The most words in one alias.
    longest: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CompanyMapError {
    #[error("cannot read the company list {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
}

impl CompanyMap {
    /// Reads the CSV at `path` (see [`CompanyMap`] for its format).
    pub fn load(path: &Path) -> Result<Self, CompanyMapError> {
        let csv = std::fs::read_to_string(path).map_err(|source| CompanyMapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&csv, &path.display().to_string())
    }

    /// Parses CSV text (see [`CompanyMap`] for its format).
    pub fn from_csv_str(csv: &str) -> Result<Self, CompanyMapError> {
        Self::parse(csv, "<companies csv>")
    }

    /// The number of aliases.
    pub fn len(&self) -> usize {
        self.aliases.companies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.companies.is_empty()
    }

    fn parse(csv: &str, origin: &str) -> Result<Self, CompanyMapError> {
        let invalid = |line: usize, message: String| CompanyMapError::Invalid {
            origin: origin.to_string(),
            line,
            message,
        };
        let mut lines = csv
            .lines()
            .enumerate()
            .map(|(index, line)| (index + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty());
        match lines.next() {
            Some((_, header)) if header.replace(' ', "").eq_ignore_ascii_case(HEADER) => {}
            Some((line, header)) => {
                return Err(invalid(
                    line,
                    format!("expected the header `{HEADER}`, found `{header}`"),
                ))
            }
            None => return Err(invalid(1, format!("empty: expected the header `{HEADER}`"))),
        }
        let mut map = Aliases::default();
        let mut words = StringList::default();
        for (line, row) in lines {
            let (alias, company) = parse_row(row).map_err(|message| invalid(line, message))?;
            split_words(alias, &mut words);
            if words.len() == 0 {
                return Err(invalid(line, format!("alias `{alias}` has no letters or digits")));
            }
            let key = words.iter().collect::<Vec<_>>().join(" ");
            match map.companies.get(&key) {
                Some(known) if known != company => {
                    return Err(invalid(
                        line,
                        format!("alias `{alias}` is already listed for `{known}`"),
                    ))
                }
                _ => {}
            }
            map.longest = map.longest.max(words.len());
            map.companies.insert(key, company.to_string());
        }
        Ok(Self {
            aliases: Arc::new(map),
        })
    }

    /// The company of the first alias in `words`, trying the longest alias first at each word.
    /// A word with a sigil also matches its bare alias (`#Apple` matches `apple`).
    fn find(&self, words: &StringList, key: &mut String, input: Words) -> Option<&str> {
        for start in 0..words.len() {
            for count in (1..=self.aliases.longest.min(words.len() - start)).rev() {
                let found = if count == 1 {
                    self.find_word(words.get(start), key, input)
                } else {
                    key.clear();
                    for (i, word) in words.iter().skip(start).take(count).enumerate() {
                        key.push_str(if i == 0 { "" } else { " " });
                        key.push_str(word);
                    }
                    self.get(key)
                };
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    fn find_word(&self, word: &str, key: &mut String, input: Words) -> Option<&str> {
        if let Some(company) = self.get(word) {
            return Some(company);
        }
        if let Some(bare) = word.strip_prefix(['$', '#']) {
            return self.get(bare);
        }
        if input == Words::Text {
            return None;
        }
        ['$', '#'].into_iter().find_map(|sigil| {
            key.clear();
            key.push(sigil);
            key.push_str(word);
            self.get(key)
        })
    }

    fn get(&self, alias: &str) -> Option<&str> {
        self.aliases.companies.get(alias).map(String::as_str)
    }
}

fn parse_row(row: &str) -> Result<(&str, &str), String> {
    let fields: Vec<&str> = row.split(',').map(str::trim).collect();
    let [alias, company] = fields[..] else {
        return Err(format!(
            "expected `alias,company_id`, found {} fields in `{row}`",
            fields.len()
        ));
    };
    if row.contains('"') {
        return Err(format!("quoted fields are not supported: `{row}`"));
    }
    if company.is_empty() {
        return Err(format!("alias `{alias}` has no company id"));
    }
    Ok((alias, company))
}

/// The words of `text`, lower-cased (see [`CompanyMap`]).
fn split_words(text: &str, words: &mut StringList) {
    let starts_word = |c: char| c.is_alphanumeric() || c == '_';
    let joins = |c: char| matches!(c, '&' | '.' | '-');
    words.clear();
    let mut rest = text;
    while let Some(begin) = rest.find(starts_word) {
        let sigil = rest[..begin]
            .chars()
            .next_back()
            .filter(|c| matches!(c, '$' | '#'));
        let after = &rest[begin..];
        let len = after
            .find(|c| !(starts_word(c) || joins(c)))
            .unwrap_or(after.len());
        let word = after[..len].trim_end_matches(joins);
        words.push_with(|buffer| {
            buffer.extend(sigil);
            push_lowercase(buffer, word);
        });
        rest = &after[len..];
    }
}

/// `company_of(text_or_tags) -> Utf8`: the id of the company that a text, a tag or a list of tags
/// is about, by the aliases of `sql/companies.csv` (see [`CompanyMap`]); NULL if none matches.
///
/// For a text (a post, a tag, a name), the first alias in it wins, the longest at the same
/// word. For a list, such as `extract_cashtags(text)`, the first element that matches wins; an
/// element without sigil also matches a cashtag, then a hashtag alias.
///
/// ```sql
/// SELECT company_of('$AAPL'), company_of('#Apple'), company_of('apple');  -- 'AAPL' three times
/// SELECT coalesce(company_of(extract_cashtags(text)), company_of(text)) AS company FROM posts;
/// ```
pub(super) fn company_of(companies: &CompanyMap) -> ScalarUDF {
    let companies = companies.clone();
    udf(
        "company_of",
        &[Arg::TextOrTextList],
        DataType::Utf8,
        Arc::new(move |args| match args[0].as_list_opt::<i32>() {
            Some(lists) => of_lists(&companies, lists),
            None => of_texts(&companies, &args[0]),
        }),
    )
}

/// Scratch space for matching, reused from row to row.
#[derive(Default)]
struct Matcher {
    decoded: String,
    words: StringList,
    key: String,
}

/// What the words being matched are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Words {
    /// A post's text.
    Text,
    /// Tags without their sigil, as the extract functions return them: a bare word also
    /// matches as a cashtag, then as a hashtag (`aapl` matches `$aapl`).
    Tags,
}

impl Matcher {
    fn company<'a>(&mut self, companies: &'a CompanyMap, text: &str, input: Words) -> Option<&'a str> {
        split_words(decode_entities(text, &mut self.decoded), &mut self.words);
        companies.find(&self.words, &mut self.key, input)
    }
}

fn of_texts(companies: &CompanyMap, texts: &ArrayRef) -> Result<ArrayRef> {
    let mut matcher = Matcher::default();
    map_text(texts, |text, out| {
        match matcher.company(companies, text, Words::Text) {
            Some(company) => {
                out.push_str(company);
                true
            }
            None => false,
        }
    })
}

fn of_lists(companies: &CompanyMap, lists: &ListArray) -> Result<ArrayRef> {
    let Some(tags) = lists.values().as_string_opt::<i32>() else {
        return exec_err!("company_of: expected a list of Utf8, got {}", lists.data_type());
    };
    let mut matcher = Matcher::default();
    let mut builder = StringBuilder::with_capacity(lists.len(), 0);
    for (row, range) in lists.value_offsets().windows(2).enumerate() {
        let elements = (range[0] as usize..range[1] as usize).filter(|&i| tags.is_valid(i));
        let mut found = elements.filter_map(|i| matcher.company(companies, tags.value(i), Words::Tags));
        builder.append_option(found.next().filter(|_| lists.is_valid(row)));
    }
    Ok(Arc::new(builder.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "alias,company_id\n$aapl,AAPL\n#apple,AAPL\napple,AAPL\n\n$brk.b,BRK\n\
                       bank of america,BAC\nbank,BANKCO\nAT&T,T\nMcDonald's,MCD\n#日本,JP\n";

    fn company(map: &CompanyMap, text: &str, input: Words) -> Option<String> {
        Matcher::default().company(map, text, input).map(str::to_string)
    }

    #[test]
    fn matches_are_case_insensitive_in_every_form() {
        let map = CompanyMap::from_csv_str(CSV).unwrap();
        for text in [
            "$AAPL",
            "#Apple",
            "apple",
            "APPLE.",
            "I like $aapl!",
            "#APPLE rocks",
            "Apple's",
        ] {
            assert_eq!(
                company(&map, text, Words::Text).as_deref(),
                Some("AAPL"),
                "{text}"
            );
        }
        assert_eq!(
            company(&map, "AT&amp;T earnings", Words::Text).as_deref(),
            Some("T")
        );
        assert_eq!(company(&map, "$BRK.B", Words::Text).as_deref(), Some("BRK"));
        assert_eq!(
            company(&map, "at McDonald's today", Words::Text).as_deref(),
            Some("MCD")
        );
        assert_eq!(company(&map, "#日本", Words::Text).as_deref(), Some("JP"));
        for text in ["", "aapl", "pineapple", "🚀", "مرحبا"] {
            assert_eq!(company(&map, text, Words::Text), None, "{text}");
        }
    }

    #[test]
    fn the_first_and_longest_alias_wins() {
        let map = CompanyMap::from_csv_str(CSV).unwrap();
        assert_eq!(
            company(&map, "Bank of America vs $AAPL", Words::Text).as_deref(),
            Some("BAC")
        );
        assert_eq!(
            company(&map, "the bank of england", Words::Text).as_deref(),
            Some("BANKCO")
        );
        assert_eq!(
            company(&map, "apple and bank of america", Words::Text).as_deref(),
            Some("AAPL")
        );
    }

    #[test]
    fn bare_tags_match_sigil_aliases() {
        let map = CompanyMap::from_csv_str("alias,company_id\n$tsla,TSLA\n#cybertruck,TSLA\n").unwrap();
        assert_eq!(company(&map, "tsla", Words::Tags).as_deref(), Some("TSLA"));
        assert_eq!(company(&map, "cybertruck", Words::Tags).as_deref(), Some("TSLA"));
        assert_eq!(company(&map, "tsla", Words::Text), None);
    }

    #[test]
    fn invalid_files_say_where() {
        let error = |csv: &str| CompanyMap::from_csv_str(csv).unwrap_err().to_string();
        assert!(error("").contains("expected the header"));
        assert!(error("name,id\n").contains(":1: expected the header"));
        assert!(error("alias,company_id\n$aapl\n").contains(":2: expected `alias,company_id`, found 1"));
        assert!(error("alias,company_id\n\"a,b\",X\n").contains(":2:"));
        assert!(error("alias,company_id\n$aapl,\n").contains("no company id"));
        assert!(error("alias,company_id\n!!!,X\n").contains("no letters or digits"));
        assert!(error("alias,company_id\napple,AAPL\nApple,APL\n")
            .contains(":3: alias `Apple` is already listed for `AAPL`"));
        assert!(CompanyMap::from_csv_str("Alias, Company_ID\napple,AAPL\napple,AAPL\n").is_ok());
        let missing = CompanyMap::load(Path::new("/nonexistent/companies.csv")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/companies.csv"));
    }

    #[test]
    fn the_shipped_list_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/companies.csv");
        let map = CompanyMap::load(&path).unwrap();
        assert_eq!(company(&map, "$NVDA", Words::Text).as_deref(), Some("NVDA"));
        assert_eq!(company(&map, "#iphone", Words::Text).as_deref(), Some("AAPL"));
    }
}
