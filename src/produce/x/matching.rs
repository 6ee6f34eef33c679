//! The company rules matched here instead of by X, for streams without X's rule engine
//! (Bluesky): the same [`Term`]s that [`rules`](super::rules) sends to X, read the way X
//! documents them, and `x.rule_filter` as far as it can be answered without X.
//!
//! - Matching ignores case; accents matter (`café` is not `cafe`).
//! - A keyword is a word of the text: the text splits into words at every character that is not
//!   a letter, a digit or `_`, so `apple` matches `Apple's` and `#apple`, not `pineapple`.
//! - A phrase is its words in a row (`"vision pro"` matches `Vision-Pro`).
//! - `#tag` and `$TAG` match the post's hashtags and cashtags exactly: those its text holds and
//!   those the caller adds (Bluesky's tag facets).
//! - `x.rule_filter` applies to every company: terms (`-spam`), `lang:xx`, `is:retweet`,
//!   `is:reply`, `is:quote`, `has:links`, `has:mentions`, `has:hashtags`, `has:cashtags` and
//!   `has:media`, each optionally negated with `-`. Other operators (`from:`, `place:`, groups)
//!   are refused: they would need X's data.

use serde::Serialize;

use super::rules::{company_terms, is_word_char, RuleConfigError, Term};
use super::XConfig;
use crate::transform::functions::tags_in;

/// Rule ids of local matches are `local:<ID>`: one per company, whatever X would split it into.
pub const LOCAL_RULE_PREFIX: &str = "local:";

/// Filter operators and the feature each asks about.
const OPERATORS: [(&str, Feature); 8] = [
    ("is:retweet", Feature::Retweet),
    ("is:reply", Feature::Reply),
    ("is:quote", Feature::Quote),
    ("has:links", Feature::Links),
    ("has:mentions", Feature::Mentions),
    ("has:hashtags", Feature::Hashtags),
    ("has:cashtags", Feature::Cashtags),
    ("has:media", Feature::Media),
];

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    #[error("config key x.{}: {source}", source.key())]
    Rules { source: RuleConfigError },
    #[error(
        "config key x.rule_filter: `{operator}` cannot be evaluated without X; the filter may hold terms, \
         lang:xx, is:retweet, is:reply, is:quote, has:links, has:mentions, has:hashtags, has:cashtags \
         and has:media, each optionally negated with `-`"
    )]
    UnsupportedFilter { operator: String },
}

/// What a filter operator asks of a post besides its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Retweet,
    Reply,
    Quote,
    Links,
    Mentions,
    /// Derived from the post's hashtags.
    Hashtags,
    /// Derived from the post's cashtags.
    Cashtags,
    Media,
}

/// A post as the rules see it.
#[derive(Debug, Default)]
pub struct Post {
    /// The words of the text, lower-cased.
    words: Vec<String>,
    /// Lower-cased, without `#` / `$`, distinct.
    hashtags: Vec<String>,
    cashtags: Vec<String>,
    lang: Option<String>,
    features: Vec<Feature>,
}

impl Post {
    /// A post with `text`: its words, and the hashtags and cashtags written in it.
    pub fn new(text: &str) -> Self {
        let tags = tags_in(text);
        Self {
            words: words(text),
            hashtags: tags.hashtags,
            cashtags: tags.cashtags,
            ..Self::default()
        }
    }

    /// A hashtag the text does not show as one (with or without `#`).
    pub fn add_hashtag(&mut self, tag: &str) {
        add_distinct(&mut self.hashtags, tag.trim_start_matches('#'));
    }

    /// A cashtag the text does not show as one (with or without `$`).
    pub fn add_cashtag(&mut self, tag: &str) {
        add_distinct(&mut self.cashtags, tag.trim_start_matches('$'));
    }

    /// The post's language, an ISO 639-1 code as X's `lang:` takes it.
    pub fn set_lang(&mut self, lang: &str) {
        self.lang = Some(lang.to_lowercase());
    }

    pub fn add_feature(&mut self, feature: Feature) {
        if !self.features.contains(&feature) {
            self.features.push(feature);
        }
    }

    fn has(&self, feature: Feature) -> bool {
        match feature {
            Feature::Hashtags => !self.hashtags.is_empty(),
            Feature::Cashtags => !self.cashtags.is_empty(),
            other => self.features.contains(&other),
        }
    }

    fn has_words(&self, wanted: &[String]) -> bool {
        !wanted.is_empty() && self.words.windows(wanted.len()).any(|run| run == wanted)
    }
}

fn add_distinct(list: &mut Vec<String>, value: &str) {
    let value = value.to_lowercase();
    if !value.is_empty() && !list.contains(&value) {
        list.push(value);
    }
}

/// The words of `text`, lower-cased.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !is_word_char(c))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A term, normalised for matching.
#[derive(Debug)]
enum Pattern {
    Cashtag(String),
    Hashtag(String),
    /// A keyword is one word, a phrase its words.
    Words(Vec<String>),
}

impl Pattern {
    fn of(term: &Term) -> Self {
        match term {
            Term::Cashtag(symbol) => Self::Cashtag(symbol.to_lowercase()),
            Term::Hashtag(symbol) => Self::Hashtag(symbol.to_lowercase()),
            Term::Keyword(text) | Term::Phrase(text) => Self::Words(words(text)),
        }
    }

    fn matches(&self, post: &Post) -> bool {
        match self {
            Self::Cashtag(symbol) => post.cashtags.contains(symbol),
            Self::Hashtag(symbol) => post.hashtags.contains(symbol),
            Self::Words(words) => post.has_words(words),
        }
    }
}

/// What one clause of the filter asks.
#[derive(Debug)]
enum Condition {
    Term(Pattern),
    Feature(Feature),
    Lang(String),
}

/// Whether a clause must hold or must not (`-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Holds,
    Negated,
}

#[derive(Debug)]
struct Clause {
    condition: Condition,
    polarity: Polarity,
}

impl Clause {
    fn parse(token: &str) -> Result<Self, MatcherError> {
        let unsupported = || MatcherError::UnsupportedFilter {
            operator: token.to_string(),
        };
        let (polarity, text) = match token.strip_prefix('-') {
            Some(rest) => (Polarity::Negated, rest),
            None => (Polarity::Holds, token),
        };
        let feature = OPERATORS.iter().find(|(name, _)| *name == text).map(|(_, f)| *f);
        let condition = match (feature, text.strip_prefix("lang:")) {
            (Some(feature), _) => Condition::Feature(feature),
            (None, Some(lang)) if !lang.is_empty() => Condition::Lang(lang.to_lowercase()),
            _ => Condition::Term(Pattern::of(&Term::parse(text).ok_or_else(unsupported)?)),
        };
        Ok(Self { condition, polarity })
    }

    fn holds(&self, post: &Post) -> bool {
        let holds = match &self.condition {
            Condition::Term(pattern) => pattern.matches(post),
            Condition::Feature(feature) => post.has(*feature),
            Condition::Lang(lang) => post.lang.as_ref() == Some(lang),
        };
        holds == (self.polarity == Polarity::Holds)
    }
}

/// The clauses of a filter: separated by spaces, a quoted phrase kept whole.
fn filter_tokens(filter: &str) -> Result<Vec<&str>, MatcherError> {
    let mut tokens = Vec::new();
    let mut rest = filter.trim_start();
    while !rest.is_empty() {
        let quoted = rest.strip_prefix('-').unwrap_or(rest).starts_with('"');
        let end = if quoted {
            let open = rest.find('"').expect("starts with a quote");
            let close = rest[open + 1..]
                .find('"')
                .ok_or_else(|| MatcherError::UnsupportedFilter {
                    operator: rest.to_string(),
                })?;
            open + 1 + close + 1
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        tokens.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    Ok(tokens)
}

/// A rule a post matched, as X lists it in `matching_rules`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMatch {
    pub id: String,
    pub tag: String,
}

/// One company's rule, ready to match.
#[derive(Debug)]
struct CompanyPatterns {
    rule: RuleMatch,
    patterns: Vec<Pattern>,
}

/// The companies of `[x.companies]` and `x.rule_filter`, matched against posts.
#[derive(Debug)]
pub struct RuleMatcher {
    companies: Vec<CompanyPatterns>,
    filter: Vec<Clause>,
}

impl RuleMatcher {
    pub fn new(config: &XConfig) -> Result<Self, MatcherError> {
        let companies = company_terms(config)
            .map_err(|source| MatcherError::Rules { source })?
            .into_iter()
            .map(|company| CompanyPatterns {
                rule: RuleMatch {
                    id: format!("{LOCAL_RULE_PREFIX}{}", company.company),
                    tag: company.tag,
                },
                patterns: company.terms.iter().map(Pattern::of).collect(),
            })
            .collect();
        let filter = filter_tokens(&config.rule_filter)?
            .into_iter()
            .map(Clause::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { companies, filter })
    }

    /// Whether the config lists any company.
    pub fn has_rules(&self) -> bool {
        !self.companies.is_empty()
    }

    /// The rules `post` matches, in company order.
    pub fn matching(&self, post: &Post) -> Vec<RuleMatch> {
        if !self.filter.iter().all(|clause| clause.holds(post)) {
            return Vec::new();
        }
        self.companies
            .iter()
            .filter(|company| company.patterns.iter().any(|p| p.matches(post)))
            .map(|company| company.rule.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(toml: &str) -> RuleMatcher {
        #[derive(serde::Deserialize)]
        struct File {
            x: XConfig,
        }
        let file: File = toml::from_str(&format!("[x]\n{toml}")).unwrap_or_else(|e| panic!("{e}"));
        RuleMatcher::new(&file.x).unwrap()
    }

    fn tags(matcher: &RuleMatcher, post: &Post) -> Vec<String> {
        matcher.matching(post).into_iter().map(|m| m.tag).collect()
    }

    const COMPANIES: &str = "[x.companies.AAPL]\ncashtags = [\"AAPL\"]\nhashtags = [\"apple\"]\n\
                             keywords = [\"vision pro\", \"tim_cook\", \"Äpfel\"]\n\
                             [x.companies.BRK]\ncashtags = [\"BRK.B\"]\n";

    #[test]
    fn each_kind_of_term_matches_as_x_reads_it() {
        let m = matcher(COMPANIES);
        let apple = |text: &str| tags(&m, &Post::new(text)) == ["company:AAPL"];
        assert!(apple("buying $aapl today"), "cashtags ignore case");
        assert!(apple("#Apple event"), "a hashtag");
        assert!(apple("The VISION-pro is here"), "a phrase is its words in a row");
        assert!(apple("hi tim_cook!"), "`_` is part of a word");
        assert!(apple("grüne äpfel"), "case folds beyond ASCII");
        assert!(!apple("pineapple vision and pro"), "words, not substrings");
        assert!(!apple("apfel"), "accents matter");
        assert!(!apple("$AAPLX"), "a longer cashtag is another one");
        assert_eq!(
            tags(&m, &Post::new("$BRK.B and $AAPL")),
            ["company:AAPL", "company:BRK"]
        );
        assert_eq!(
            m.matching(&Post::new("$BRK.B"))[0],
            RuleMatch {
                id: "local:BRK".into(),
                tag: "company:BRK".into()
            }
        );
    }

    #[test]
    fn tags_the_text_does_not_show_count_too() {
        let m = matcher(COMPANIES);
        let mut post = Post::new("no tags written here");
        assert!(tags(&m, &post).is_empty());
        post.add_cashtag("$Aapl");
        assert_eq!(tags(&m, &post), ["company:AAPL"]);
        let mut post = Post::new("");
        post.add_hashtag("#APPLE");
        assert_eq!(tags(&m, &post), ["company:AAPL"]);
    }

    #[test]
    fn the_filter_applies_to_every_company() {
        let m = matcher(&format!(
            "rule_filter = '-is:retweet lang:en -is:reply has:hashtags -\"sell now\" -spam'\n{COMPANIES}"
        ));
        let post = |text: &str, lang: &str, features: &[Feature]| {
            let mut post = Post::new(text);
            post.set_lang(lang);
            features.iter().for_each(|f| post.add_feature(*f));
            tags(&m, &post)
        };
        assert_eq!(post("$AAPL #x", "EN", &[Feature::Quote]), ["company:AAPL"]);
        assert!(post("$AAPL #x", "de", &[]).is_empty(), "lang:en");
        assert!(post("$AAPL #x", "en", &[Feature::Reply]).is_empty(), "-is:reply");
        assert!(post("$AAPL", "en", &[]).is_empty(), "has:hashtags");
        assert!(post("$AAPL #x sell now", "en", &[]).is_empty(), "-\"sell now\"");
        assert!(post("$AAPL #x SPAM", "en", &[]).is_empty(), "-spam");
    }

    #[test]
    fn filters_that_need_x_are_refused_naming_the_key() {
        for filter in ["from:apple", "(a OR b)", "place_country:US", "\"open"] {
            let toml = format!("rule_filter = '{filter}'\n{COMPANIES}");
            #[derive(serde::Deserialize)]
            struct File {
                x: XConfig,
            }
            let file: File = toml::from_str(&format!("[x]\n{toml}")).unwrap();
            let error = RuleMatcher::new(&file.x).unwrap_err().to_string();
            assert!(error.contains("x.rule_filter"), "{error}");
        }
        assert!(!matcher("").has_rules());
        assert!(matcher("").matching(&Post::new("$AAPL")).is_empty());
    }
}
