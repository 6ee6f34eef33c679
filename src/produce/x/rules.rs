//! Filtered-stream rules from the config, and keeping X's rules in line with them.
//!
//! Each company in `[x.companies]` becomes one rule, `$CASHTAG OR #hashtag OR keyword OR "a
//! phrase"`, tagged `company:<ID>` (the tag the SQL models read the company from); a company with
//! more terms than fit in `x.max_rule_length` gets several rules with the same tag. The config is
//! the whole truth: a sync deletes every other rule of the app.

use std::collections::BTreeMap;

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{join_problems, CompanyTerms, Problem, XApi, XConfig, XError};

pub const RULES_PATH: &str = "/2/tweets/search/stream/rules";

/// Rules of company `AAPL` are tagged `company:AAPL`.
pub const TAG_PREFIX: &str = "company:";

/// A rule to have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSpec {
    pub value: String,
    pub tag: String,
}

/// A rule X has.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rule {
    pub id: String,
    pub value: String,
    pub tag: Option<String>,
}

impl RuleSpec {
    fn matches(&self, rule: &Rule) -> bool {
        rule.value == self.value && rule.tag.as_deref() == Some(self.tag.as_str())
    }
}

/// A company's entry in the config that cannot become a rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleConfigError {
    #[error("company ids use letters, digits, '_', '-' and '.' only")]
    CompanyId { company: String },
    #[error("list at least one of cashtags, hashtags or keywords")]
    NoTerms { company: String },
    #[error("`{term}`: {reason}")]
    Term {
        company: String,
        list: &'static str,
        term: String,
        reason: &'static str,
    },
    #[error("`{term}` alone makes a rule of {length} characters, above x.max_rule_length ({max})")]
    TooLong {
        company: String,
        term: String,
        length: usize,
        max: usize,
    },
}

impl RuleConfigError {
    /// The config key at fault, within the `[x]` section.
    pub fn key(&self) -> String {
        match self {
            Self::Term { company, list, .. } => format!("companies.{company}.{list}"),
            Self::CompanyId { company } | Self::NoTerms { company } | Self::TooLong { company, .. } => {
                format!("companies.{company}")
            }
        }
    }
}

/// One term of a rule: any of a company's terms matches its posts (they are joined with OR).
/// Displayed in rule syntax: `$AAPL`, `#iphone`, `apple`, `"vision pro"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `$AAPL`: the post has this cashtag.
    Cashtag(String),
    /// `#iphone`: the post has exactly this hashtag.
    Hashtag(String),
    /// `apple`: a word of the post's text.
    Keyword(String),
    /// `"vision pro"`: these words in a row in the post's text.
    Phrase(String),
}

impl std::fmt::Display for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cashtag(symbol) => write!(f, "${symbol}"),
            Self::Hashtag(symbol) => write!(f, "#{symbol}"),
            Self::Keyword(word) => f.write_str(word),
            Self::Phrase(phrase) => write!(f, "\"{phrase}\""),
        }
    }
}

impl Term {
    /// A term written in rule syntax, as [`Display`](std::fmt::Display) writes it; `None` for
    /// anything else (an operator such as `from:x` or `lang:en`, a group, `OR`).
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(phrase) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            let valid = !phrase.trim().is_empty() && !phrase.contains('"');
            return valid.then(|| Self::Phrase(phrase.to_string()));
        }
        match text.chars().next()? {
            '$' => symbol(text, '$', "._").map(|s| Self::Cashtag(s.to_string())),
            '#' => symbol(text, '#', "").map(|s| Self::Hashtag(s.to_string())),
            _ if is_word(text) && !["OR", "AND"].contains(&text) => Some(Self::Keyword(text.to_string())),
            _ => None,
        }
    }
}

/// A company of `[x.companies]` and its terms, ready to be rules or matched locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyRule {
    pub company: String,
    /// `company:<ID>`: the tag of its rules.
    pub tag: String,
    pub terms: Vec<Term>,
}

/// Every company of the config with its terms, in company order.
pub fn company_terms(config: &XConfig) -> Result<Vec<CompanyRule>, RuleConfigError> {
    let mut companies = Vec::new();
    for (company, terms) in &config.companies {
        if company.is_empty()
            || !company
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(RuleConfigError::CompanyId {
                company: company.clone(),
            });
        }
        companies.push(CompanyRule {
            company: company.clone(),
            tag: format!("{TAG_PREFIX}{company}"),
            terms: rule_terms(company, terms)?,
        });
    }
    Ok(companies)
}

/// The rules the config asks for, in company order.
pub fn company_rules(config: &XConfig) -> Result<Vec<RuleSpec>, RuleConfigError> {
    let mut rules = Vec::new();
    for CompanyRule { company, tag, terms } in company_terms(config)? {
        let terms = terms.iter().map(Term::to_string).collect();
        for value in pack(&company, terms, &config.rule_filter, config.max_rule_length)? {
            rules.push(RuleSpec {
                value,
                tag: tag.clone(),
            });
        }
    }
    Ok(rules)
}

/// A company's terms as the config lists them: cashtags, hashtags, then keywords and phrases.
fn rule_terms(company: &str, terms: &CompanyTerms) -> Result<Vec<Term>, RuleConfigError> {
    let invalid = |list, term: &str, reason| RuleConfigError::Term {
        company: company.to_string(),
        list,
        term: term.to_string(),
        reason,
    };
    let mut out = Vec::new();
    for raw in &terms.cashtags {
        let symbol = symbol(raw, '$', "._").ok_or_else(|| {
            invalid(
                "cashtags",
                raw,
                "a cashtag is letters, digits, '_' and '.' (the `$` is optional)",
            )
        })?;
        out.push(Term::Cashtag(symbol.to_string()));
    }
    for raw in &terms.hashtags {
        let symbol = symbol(raw, '#', "").ok_or_else(|| {
            invalid(
                "hashtags",
                raw,
                "a hashtag is letters, digits and '_' (the `#` is optional)",
            )
        })?;
        out.push(Term::Hashtag(symbol.to_string()));
    }
    for raw in &terms.keywords {
        let keyword = raw.trim();
        if keyword.is_empty() || keyword.contains('"') {
            return Err(invalid("keywords", raw, "a keyword is not empty and has no `\"`"));
        }
        out.push(if is_word(keyword) && !["OR", "AND"].contains(&keyword) {
            Term::Keyword(keyword.to_string())
        } else {
            // A phrase, or a word X would read as an operator (`from:x`, `-x`, `OR`): matched exactly.
            Term::Phrase(keyword.to_string())
        });
    }
    if out.is_empty() {
        return Err(RuleConfigError::NoTerms {
            company: company.to_string(),
        });
    }
    Ok(out)
}

/// `raw` without its optional sigil, if it is a word (plus the `extra` characters).
fn symbol<'a>(raw: &'a str, sigil: char, extra: &str) -> Option<&'a str> {
    let raw = raw.trim();
    let name = raw.strip_prefix(sigil).unwrap_or(raw);
    let valid = !name.is_empty() && name.chars().all(|c| is_word_char(c) || extra.contains(c));
    valid.then_some(name)
}

fn is_word(text: &str) -> bool {
    text.chars().all(is_word_char)
}

/// What a word of the rule language is made of: letters, digits and `_`.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Joins `terms` with OR into as few rules as fit in `max` characters, in order.
fn pack(company: &str, terms: Vec<String>, filter: &str, max: usize) -> Result<Vec<String>, RuleConfigError> {
    let mut values = Vec::new();
    let mut group: Vec<String> = Vec::new();
    for term in terms {
        group.push(term);
        if rule_value(&group, filter).chars().count() <= max {
            continue;
        }
        let term = group.pop().expect("just pushed");
        if !group.is_empty() {
            values.push(rule_value(&group, filter));
        }
        let length = rule_value(std::slice::from_ref(&term), filter).chars().count();
        if length > max {
            return Err(RuleConfigError::TooLong {
                company: company.to_string(),
                term,
                length,
                max,
            });
        }
        group = vec![term];
    }
    values.push(rule_value(&group, filter));
    Ok(values)
}

fn rule_value(terms: &[String], filter: &str) -> String {
    let any = terms.join(" OR ");
    match (filter.trim(), terms.len()) {
        ("", _) => any,
        (filter, 1) => format!("{any} {filter}"),
        // AND binds before OR in X's syntax: the filter applies to every term only in parentheses.
        (filter, _) => format!("({any}) {filter}"),
    }
}

/// What a sync changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RulePlan {
    pub add: Vec<RuleSpec>,
    pub delete: Vec<Rule>,
    pub keep: Vec<Rule>,
}

impl RulePlan {
    pub fn new(desired: &[RuleSpec], current: Vec<Rule>) -> Self {
        let (keep, delete): (Vec<Rule>, Vec<Rule>) = current
            .into_iter()
            .partition(|rule| desired.iter().any(|spec| spec.matches(rule)));
        let add = desired
            .iter()
            .filter(|spec| !keep.iter().any(|rule| spec.matches(rule)))
            .cloned()
            .collect();
        Self { add, delete, keep }
    }

    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.delete.is_empty()
    }
}

/// Every rule of the app.
pub async fn list(api: &XApi) -> Result<Vec<Rule>, XError> {
    #[derive(Deserialize)]
    struct Page {
        #[serde(default)]
        data: Vec<Rule>,
        meta: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        next_token: Option<String>,
    }
    const WHAT: &str = "list the stream rules";
    let mut rules = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let mut request = api
            .request(Method::GET, RULES_PATH)
            .query(&[("max_results", "1000")]);
        if let Some(token) = &next_token {
            request = request.query(&[("pagination_token", token)]);
        }
        let page: Page = api.json(WHAT, api.send(WHAT, request).await?).await?;
        rules.extend(page.data);
        next_token = page.meta.and_then(|m| m.next_token);
        if next_token.is_none() {
            return Ok(rules);
        }
    }
}

/// Whether a sync changes X's rules or only has X validate the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// X validates the change (its `dry_run`); nothing changes.
    DryRun,
    /// The change is validated, then made.
    Apply,
}

/// Brings the app's rules in line with `desired`, or only validates the change. Returns the plan.
pub async fn sync(api: &XApi, desired: &[RuleSpec], mode: SyncMode) -> Result<RulePlan, XError> {
    let plan = RulePlan::new(desired, list(api).await?);
    // A rule whose tag changed keeps its value, which X accepted before and would now call a
    // duplicate: validate only the new values.
    let new_values: Vec<RuleSpec> = plan
        .add
        .iter()
        .filter(|spec| !plan.delete.iter().any(|rule| rule.value == spec.value))
        .cloned()
        .collect();
    // The whole change is validated before any of it is made, so a bad rule changes nothing.
    change(api, Change::Delete(&plan.delete), SyncMode::DryRun).await?;
    change(api, Change::Add(&new_values), SyncMode::DryRun).await?;
    if mode == SyncMode::Apply {
        // Deletions first: X refuses a value that is still there under its old tag.
        change(api, Change::Delete(&plan.delete), SyncMode::Apply).await?;
        change(api, Change::Add(&plan.add), SyncMode::Apply).await?;
    }
    Ok(plan)
}

enum Change<'a> {
    Add(&'a [RuleSpec]),
    Delete(&'a [Rule]),
}

/// One `POST .../rules`; nothing to send is no request.
async fn change(api: &XApi, change: Change<'_>, mode: SyncMode) -> Result<(), XError> {
    #[derive(Deserialize)]
    struct Reply {
        #[serde(default)]
        errors: Vec<Problem>,
        meta: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(default)]
        summary: BTreeMap<String, serde_json::Value>,
    }
    let (what, body) = match change {
        Change::Add([]) | Change::Delete([]) => return Ok(()),
        Change::Add(rules) => ("add stream rules", serde_json::json!({ "add": rules })),
        Change::Delete(rules) => {
            let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
            (
                "delete stream rules",
                serde_json::json!({ "delete": { "ids": ids } }),
            )
        }
    };
    let mut request = api
        .request(Method::POST, RULES_PATH)
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if mode == SyncMode::DryRun {
        request = request.query(&[("dry_run", "true")]);
    }
    let reply: Reply = api.json(what, api.send(what, request).await?).await?;
    if reply.errors.is_empty() {
        return Ok(());
    }
    let summary = reply.meta.map(|m| m.summary).unwrap_or_default();
    Err(XError::RulesRejected {
        summary: summary
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        errors: join_problems(&reply.errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `[x]` section of a config file whose section body is `toml`.
    fn config(toml: &str) -> XConfig {
        #[derive(Deserialize)]
        struct File {
            x: XConfig,
        }
        let file: File = toml::from_str(&format!("[x]\n{toml}")).unwrap_or_else(|e| panic!("{e}"));
        file.x
    }

    fn values(config: &XConfig) -> Vec<(String, String)> {
        company_rules(config)
            .unwrap()
            .into_iter()
            .map(|r| (r.tag, r.value))
            .collect()
    }

    #[test]
    fn each_company_is_one_or_rule_tagged_with_its_id() {
        let x = config(
            "[x.companies.AAPL]\ncashtags = [\"AAPL\"]\nhashtags = [\"#apple\", \"iphone\"]\n\
             keywords = [\"vision pro\", \"tim_cook\", \"from:apple\", \"OR\", \"Äpfel\"]\n\
             [x.companies.BRK]\ncashtags = [\"$BRK.B\"]\n",
        );
        assert_eq!(
            values(&x),
            [
                (
                    "company:AAPL".into(),
                    "$AAPL OR #apple OR #iphone OR \"vision pro\" OR tim_cook OR \"from:apple\" OR \"OR\" OR Äpfel"
                        .into()
                ),
                ("company:BRK".into(), "$BRK.B".into())
            ]
        );
    }

    #[test]
    fn terms_read_back_as_they_are_written_and_operators_are_no_terms() {
        let x = config(
            "[x.companies.A]\ncashtags = [\"BRK.B\"]\nhashtags = [\"#apple\"]\n\
             keywords = [\"tim_cook\", \"vision pro\", \"from:apple\"]\n",
        );
        let terms = &company_terms(&x).unwrap()[0].terms;
        for term in terms {
            assert_eq!(Term::parse(&term.to_string()).as_ref(), Some(term));
        }
        for operator in ["from:apple", "lang:en", "(a", "OR", "$", "#", "\"\"", "-x"] {
            assert_eq!(Term::parse(operator), None, "{operator}");
        }
    }

    #[test]
    fn a_filter_applies_to_every_term_and_long_lists_split_within_the_limit() {
        let x = config(
            "max_rule_length = 40\nrule_filter = \"-is:retweet\"\n[x.companies.T]\n\
             hashtags = [\"one\", \"two\", \"three\", \"four\", \"five\", \"six\"]\n\
             [x.companies.U]\ncashtags = [\"U\"]\n",
        );
        let rules = values(&x);
        let expected = [
            ("company:T", "(#one OR #two OR #three) -is:retweet"),
            ("company:T", "(#four OR #five OR #six) -is:retweet"),
            ("company:U", "$U -is:retweet"),
        ];
        assert_eq!(rules, expected.map(|(t, v)| (t.to_string(), v.to_string())));
        assert!(rules.iter().all(|(_, v)| v.chars().count() <= 40));
    }

    #[test]
    fn a_plan_keeps_matching_rules_deletes_the_rest_and_adds_what_is_missing() {
        let spec = |value: &str, tag: &str| RuleSpec {
            value: value.into(),
            tag: tag.into(),
        };
        let rule = |id: &str, value: &str, tag: Option<&str>| Rule {
            id: id.into(),
            value: value.into(),
            tag: tag.map(Into::into),
        };
        let desired = [spec("$AAPL", "company:AAPL"), spec("$TSLA", "company:TSLA")];
        let current = vec![
            rule("1", "$AAPL", Some("company:AAPL")),
            rule("2", "$TSLA", Some("company:TESLA")),
            rule("3", "cats", None),
        ];
        let plan = RulePlan::new(&desired, current);
        assert_eq!(plan.keep, [rule("1", "$AAPL", Some("company:AAPL"))]);
        assert_eq!(
            plan.delete,
            [rule("2", "$TSLA", Some("company:TESLA")), rule("3", "cats", None)]
        );
        assert_eq!(plan.add, [spec("$TSLA", "company:TSLA")]);
        assert!(RulePlan::new(
            &desired,
            plan.keep
                .into_iter()
                .chain([rule("4", "$TSLA", Some("company:TSLA"))])
                .collect()
        )
        .is_empty());
    }
}
