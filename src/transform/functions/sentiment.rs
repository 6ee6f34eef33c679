//! VADER sentiment (Hutto & Gilbert, ICWSM 2014), ported from the Python package
//! `vaderSentiment` 3.3.2.
//!
//! The port follows the Python code rule by rule, quirks included (noted where they matter), so
//! scores match the reference: `tests/functions.rs` checks them against scores the Python package
//! computed. The lexicons next to this file are the package's own, under its MIT licence (see
//! `NOTICE` there). The package's list of "sentiment-laden idioms" is not ported: 3.3.2 never
//! applies it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use deltalake::arrow::array::StringBuilder;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::text::push_lowercase;
use super::udf::{map_text_to_f64, numbers, udf, Arg};

/// `sentiment(text) -> Float64`: the VADER compound score, from -1 (most negative) to 1.
///
/// The same number as Python's `SentimentIntensityAnalyzer().polarity_scores(text)['compound']`
/// (vaderSentiment 3.3.2), rounded to 4 decimals as it does. VADER reads English: negations,
/// boosters ("very"), dampeners ("kind of"), "but", ALL CAPS, `!!!`, emoticons and emoji. Text in
/// other languages mostly scores 0.
///
/// ```sql
/// SELECT sentiment('$TSLA is NOT doing great, but the new model is AMAZING!!! 🚀');  -- 0.7923
/// ```
pub(super) fn sentiment() -> ScalarUDF {
    udf(
        "sentiment",
        &[Arg::Text],
        DataType::Float64,
        Arc::new(|args| {
            let mut vader = Vader::default();
            map_text_to_f64(&args[0], |text| vader.compound(text))
        }),
    )
}

/// `sentiment_label(score) -> Utf8`: `'positive'` for a score >= 0.05, `'negative'` for <= -0.05,
/// else `'neutral'` (VADER's own thresholds). NULL or NaN gives NULL.
///
/// ```sql
/// SELECT sentiment_label(sentiment(text)) AS mood, count(*) FROM silver.tweets GROUP BY mood;
/// ```
pub(super) fn sentiment_label() -> ScalarUDF {
    udf(
        "sentiment_label",
        &[Arg::Number],
        DataType::Utf8,
        Arc::new(|args| {
            let scores = numbers(&args[0])?;
            let mut builder = StringBuilder::with_capacity(scores.len(), scores.len() * 8);
            for score in scores {
                builder.append_option(score.and_then(label));
            }
            Ok(Arc::new(builder.finish()))
        }),
    )
}

fn label(score: f64) -> Option<&'static str> {
    match score {
        score if score >= 0.05 => Some("positive"),
        score if score <= -0.05 => Some("negative"),
        score if score.is_nan() => None,
        _ => Some("neutral"),
    }
}

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
/// The boost of a word in ALL CAPS among words that are not.
const C_INCR: f64 = 0.733;
/// The factor of a negated valence.
const N_SCALAR: f64 = -0.74;
/// The normalisation constant: about the largest expected sum of valences.
const ALPHA: f64 = 15.0;

/// Words that negate the sentiment word after them (the Python source's list, kept compact).
#[rustfmt::skip]
const NEGATE: &[&str] = &[
    "aint", "arent", "cannot", "cant", "couldnt", "darent", "didnt", "doesnt", "ain't", "aren't", "can't",
    "couldn't", "daren't", "didn't", "doesn't", "dont", "hadnt", "hasnt", "havent", "isnt", "mightnt",
    "mustnt", "neither", "don't", "hadn't", "hasn't", "haven't", "isn't", "mightn't", "mustn't", "neednt",
    "needn't", "never", "none", "nope", "nor", "not", "nothing", "nowhere", "oughtnt", "shant", "shouldnt",
    "uhuh", "wasnt", "werent", "oughtn't", "shan't", "shouldn't", "uh-uh", "wasn't", "weren't", "without",
    "wont", "wouldnt", "won't", "wouldn't", "rarely", "seldom", "despite",
];

/// Degree adverbs: boosters add to a following word's intensity, dampeners take from it.
#[rustfmt::skip]
const BOOSTERS: &[(&str, f64)] = &[
    ("absolutely", B_INCR), ("amazingly", B_INCR), ("awfully", B_INCR), ("completely", B_INCR),
    ("considerable", B_INCR), ("considerably", B_INCR), ("decidedly", B_INCR), ("deeply", B_INCR),
    ("effing", B_INCR), ("enormous", B_INCR), ("enormously", B_INCR), ("entirely", B_INCR),
    ("especially", B_INCR), ("exceptional", B_INCR), ("exceptionally", B_INCR), ("extreme", B_INCR),
    ("extremely", B_INCR), ("fabulously", B_INCR), ("flipping", B_INCR), ("flippin", B_INCR),
    ("frackin", B_INCR), ("fracking", B_INCR), ("fricking", B_INCR), ("frickin", B_INCR),
    ("frigging", B_INCR), ("friggin", B_INCR), ("fully", B_INCR), ("fuckin", B_INCR), ("fucking", B_INCR),
    ("fuggin", B_INCR), ("fugging", B_INCR), ("greatly", B_INCR), ("hella", B_INCR), ("highly", B_INCR),
    ("hugely", B_INCR), ("incredible", B_INCR), ("incredibly", B_INCR), ("intensely", B_INCR),
    ("major", B_INCR), ("majorly", B_INCR), ("more", B_INCR), ("most", B_INCR), ("particularly", B_INCR),
    ("purely", B_INCR), ("quite", B_INCR), ("really", B_INCR), ("remarkably", B_INCR), ("so", B_INCR),
    ("substantially", B_INCR), ("thoroughly", B_INCR), ("total", B_INCR), ("totally", B_INCR),
    ("tremendous", B_INCR), ("tremendously", B_INCR), ("uber", B_INCR), ("unbelievably", B_INCR),
    ("unusually", B_INCR), ("utter", B_INCR), ("utterly", B_INCR), ("very", B_INCR), ("almost", B_DECR),
    ("barely", B_DECR), ("hardly", B_DECR), ("just enough", B_DECR), ("kind of", B_DECR), ("kinda", B_DECR),
    ("kindof", B_DECR), ("kind-of", B_DECR), ("less", B_DECR), ("little", B_DECR), ("marginal", B_DECR),
    ("marginally", B_DECR), ("occasional", B_DECR), ("occasionally", B_DECR), ("partly", B_DECR),
    ("scarce", B_DECR), ("scarcely", B_DECR), ("slight", B_DECR), ("slightly", B_DECR), ("somewhat", B_DECR),
    ("sort of", B_DECR), ("sorta", B_DECR), ("sortof", B_DECR), ("sort-of", B_DECR),
];

/// Idioms and phrases whose valence replaces that of the lexicon word in them.
const SPECIAL_CASES: &[(&[&str], f64)] = &[
    (&["the", "shit"], 3.0),
    (&["the", "bomb"], 3.0),
    (&["bad", "ass"], 1.5),
    (&["badass"], 1.5),
    (&["bus", "stop"], 0.0),
    (&["yeah", "right"], -2.0),
    (&["kiss", "of", "death"], -1.5),
    (&["to", "die", "for"], 3.0),
    (&["beating", "heart"], 3.5),
];

struct Lexicon {
    words: HashMap<&'static str, f64>,
    /// Emoji by character: Python compares one character at a time, so the lexicon's
    /// multi-character sequences can never match and are left out.
    emoji: HashMap<char, &'static str>,
    /// The one-word boosters; the two-word ones are looked up in [`BOOSTERS`].
    boosters: HashMap<&'static str, f64>,
    negations: HashSet<&'static str>,
}

fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    LEXICON.get_or_init(|| Lexicon {
        words: parse_words(include_str!("vader_lexicon.txt")),
        emoji: parse_emoji(include_str!("vader_emoji.txt")),
        boosters: BOOSTERS
            .iter()
            .copied()
            .filter(|(word, _)| !word.contains(' '))
            .collect(),
        negations: NEGATE.iter().copied().collect(),
    })
}

/// `word<TAB>mean<TAB>...` lines; a later line wins, as in Python's dict.
fn parse_words(file: &'static str) -> HashMap<&'static str, f64> {
    file.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split('\t');
            Some((fields.next()?, fields.next()?.parse().ok()?))
        })
        .collect()
}

/// `emoji<TAB>description` lines.
fn parse_emoji(file: &'static str) -> HashMap<char, &'static str> {
    file.lines()
        .filter_map(|line| {
            let (emoji, description) = line.trim().split_once('\t')?;
            let mut chars = emoji.chars();
            let single = chars.next().filter(|_| chars.next().is_none())?;
            Some((single, description.split('\t').next()?))
        })
        .collect()
}

/// Scores texts, reusing its buffers from one text to the next.
#[derive(Default)]
pub(super) struct Vader {
    /// The text with each emoji replaced by its description.
    text: String,
    tokens: Vec<Token>,
    /// The lower-cased tokens, one after the other.
    lower: String,
    sentiments: Vec<f64>,
}

/// A word of `Vader::text` and its lower-cased form in `Vader::lower`, as byte ranges.
#[derive(Clone, Copy)]
struct Token {
    word: (usize, usize),
    lower: (usize, usize),
}

impl Vader {
    /// The compound score of `input`, in [-1, 1], rounded to 4 decimals.
    pub(super) fn compound(&mut self, input: &str) -> f64 {
        let lexicon = lexicon();
        self.describe_emoji(input, lexicon);
        self.split_words();
        let cap_differential = self.cap_differential();
        self.sentiments.clear();
        for i in 0..self.tokens.len() {
            let modifier = lexicon.boosters.contains_key(self.low(i))
                || (self.low(i) == "kind" && i + 1 < self.tokens.len() && self.low(i + 1) == "of");
            let valence = if modifier {
                0.0
            } else {
                self.valence(i, cap_differential, lexicon)
            };
            self.sentiments.push(valence);
        }
        self.but_check();
        self.score()
    }

    fn word(&self, i: usize) -> &str {
        let (start, end) = self.tokens[i].word;
        &self.text[start..end]
    }

    fn low(&self, i: usize) -> &str {
        let (start, end) = self.tokens[i].lower;
        &self.lower[start..end]
    }

    fn describe_emoji(&mut self, input: &str, lexicon: &Lexicon) {
        self.text.clear();
        let mut prev_space = true;
        for c in input.chars() {
            // No emoji is ASCII: skip the lookup for the bulk of most posts.
            let description = if c.is_ascii() { None } else { lexicon.emoji.get(&c) };
            match description {
                Some(description) => {
                    if !prev_space {
                        self.text.push(' ');
                    }
                    self.text.push_str(description);
                    prev_space = false;
                }
                None => {
                    self.text.push(c);
                    prev_space = c == ' ';
                }
            }
        }
    }

    /// Python's `str.split()`, then each word stripped of ASCII punctuation unless that leaves
    /// two characters or fewer (so emoticons like `:)` survive).
    fn split_words(&mut self) {
        let Self {
            text, tokens, lower, ..
        } = self;
        tokens.clear();
        lower.clear();
        let mut start = None;
        let ends = text.char_indices().chain(std::iter::once((text.len(), ' ')));
        for (at, c) in ends {
            match (start, is_python_space(c)) {
                (None, false) => start = Some(at),
                (Some(from), true) => {
                    let raw = &text[from..at];
                    let punctuation = |c: char| c.is_ascii_punctuation();
                    let stripped = raw.trim_matches(punctuation);
                    let (word_start, word) = if stripped.chars().nth(2).is_none() {
                        (from, raw)
                    } else {
                        (
                            from + raw.len() - raw.trim_start_matches(punctuation).len(),
                            stripped,
                        )
                    };
                    let lower_start = lower.len();
                    push_lowercase(lower, word);
                    tokens.push(Token {
                        word: (word_start, word_start + word.len()),
                        lower: (lower_start, lower.len()),
                    });
                    start = None;
                }
                _ => {}
            }
        }
    }

    /// True if some but not all words are in ALL CAPS.
    fn cap_differential(&self) -> bool {
        let capitals = (0..self.tokens.len())
            .filter(|&i| is_python_upper(self.word(i)))
            .count();
        let others = self.tokens.len() - capitals;
        0 < others && others < self.tokens.len()
    }

    fn valence(&self, i: usize, cap_differential: bool, lexicon: &Lexicon) -> f64 {
        let item = self.low(i);
        let Some(&base) = lexicon.words.get(item) else {
            return 0.0;
        };
        let mut valence = base;
        let last = self.tokens.len() - 1;
        // "no" before a lexicon word negates that word instead of counting itself.
        if item == "no" && i != last && lexicon.words.contains_key(self.low(i + 1)) {
            valence = 0.0;
        }
        if (i > 0 && self.low(i - 1) == "no")
            || (i > 1 && self.low(i - 2) == "no")
            || (i > 2 && self.low(i - 3) == "no" && matches!(self.low(i - 1), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        if cap_differential && is_python_upper(self.word(i)) {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for distance in 0..3 {
            if i > distance && !lexicon.words.contains_key(self.low(i - distance - 1)) {
                let scalar = self.scalar_inc_dec(i - distance - 1, valence, cap_differential, lexicon);
                // Modifiers further from the word count less.
                valence += match distance {
                    1 => scalar * 0.95,
                    2 => scalar * 0.9,
                    _ => scalar,
                };
                valence = self.negation_check(valence, distance, i, lexicon);
                if distance == 2 {
                    valence = self.special_idioms_check(valence, i);
                }
            }
        }
        self.least_check(valence, i, lexicon)
    }

    /// The boost of the booster or dampener at `j` (0 if it is neither), signed like `valence`.
    fn scalar_inc_dec(&self, j: usize, valence: f64, cap_differential: bool, lexicon: &Lexicon) -> f64 {
        let Some(&boost) = lexicon.boosters.get(self.low(j)) else {
            return 0.0;
        };
        let mut scalar = if valence < 0.0 { -boost } else { boost };
        if cap_differential && is_python_upper(self.word(j)) {
            scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        scalar
    }

    /// Negation by a word up to `distance + 1` words before `i`, and "never so", "without doubt".
    fn negation_check(&self, valence: f64, distance: usize, i: usize, lexicon: &Lexicon) -> f64 {
        let negated = |word: &str| lexicon.negations.contains(word) || word.contains("n't");
        let so_or_this = |word: &str| word == "so" || word == "this";
        let back = |n: usize| self.low(i - n);
        let factor = match distance {
            0 if negated(back(1)) => N_SCALAR,
            0 => 1.0,
            1 if back(2) == "never" && so_or_this(back(1)) => 1.25,
            1 if back(2) == "without" && back(1) == "doubt" => 1.0,
            1 if negated(back(2)) => N_SCALAR,
            1 => 1.0,
            // Python's `and`/`or` precedence: a "so" or "this" just before suffices.
            _ if (back(3) == "never" && so_or_this(back(2))) || so_or_this(back(1)) => 1.25,
            _ if back(3) == "without" && (back(2) == "doubt" || back(1) == "doubt") => 1.0,
            _ if negated(back(3)) => N_SCALAR,
            _ => 1.0,
        };
        valence * factor
    }

    /// Called with `i >= 3` only.
    fn special_idioms_check(&self, mut valence: f64, i: usize) -> f64 {
        let (w3, w2, w1, w0) = (self.low(i - 3), self.low(i - 2), self.low(i - 1), self.low(i));
        let before: [&[&str]; 5] = [&[w1, w0], &[w2, w1, w0], &[w2, w1], &[w3, w2, w1], &[w3, w2]];
        if let Some(special) = before.iter().find_map(|words| special_case(words)) {
            valence = special;
        }
        let after = |n: usize| (i + n < self.tokens.len()).then(|| self.low(i + n));
        if let Some(special) = after(1).and_then(|w| special_case(&[w0, w])) {
            valence = special;
        }
        if let Some(special) = after(1)
            .zip(after(2))
            .and_then(|(a, b)| special_case(&[w0, a, b]))
        {
            valence = special;
        }
        // Two-word dampeners such as "kind of" before the word.
        for pair in [[w3, w2], [w2, w1]] {
            valence += two_word_booster(pair).unwrap_or(0.0);
        }
        valence
    }

    /// "least" before the word negates it, except in "at least" and "very least".
    fn least_check(&self, valence: f64, i: usize, lexicon: &Lexicon) -> f64 {
        let least = i > 0 && self.low(i - 1) == "least" && !lexicon.words.contains_key("least");
        let at_least = i > 1 && matches!(self.low(i - 2), "at" | "very");
        if least && !at_least {
            valence * N_SCALAR
        } else {
            valence
        }
    }

    /// Words after the first "but" weigh 1.5 times, words before it half.
    fn but_check(&mut self) {
        let Some(but) = (0..self.tokens.len()).find(|&i| self.low(i) == "but") else {
            return;
        };
        for k in 0..self.sentiments.len() {
            let value = self.sentiments[k];
            // Python rescales `sentiments.index(value)`, the first equal value, not position k.
            let at = self.sentiments.iter().position(|&v| v == value).unwrap_or(k);
            if at < but {
                self.sentiments[at] = value * 0.5;
            } else if at > but {
                self.sentiments[at] = value * 1.5;
            }
        }
    }

    fn score(&self) -> f64 {
        if self.sentiments.is_empty() {
            return 0.0;
        }
        let mut sum: f64 = self.sentiments.iter().sum();
        let emphasis = punctuation_emphasis(&self.text);
        if sum > 0.0 {
            sum += emphasis;
        } else if sum < 0.0 {
            sum -= emphasis;
        }
        let compound = (sum / (sum * sum + ALPHA).sqrt()).clamp(-1.0, 1.0);
        (compound * 1e4).round_ties_even() / 1e4
    }
}

/// Up to four `!` add emphasis; so do two or more `?`.
fn punctuation_emphasis(text: &str) -> f64 {
    let count = |mark| text.bytes().filter(|&b| b == mark).count();
    let exclamations = count(b'!').min(4) as f64 * 0.292;
    let questions = match count(b'?') {
        0 | 1 => 0.0,
        n @ (2 | 3) => n as f64 * 0.18,
        _ => 0.96,
    };
    exclamations + questions
}

fn special_case(words: &[&str]) -> Option<f64> {
    SPECIAL_CASES
        .iter()
        .find(|(phrase, _)| *phrase == words)
        .map(|&(_, valence)| valence)
}

fn two_word_booster([first, second]: [&str; 2]) -> Option<f64> {
    BOOSTERS.iter().find_map(|&(phrase, boost)| {
        let (a, b) = phrase.split_once(' ')?;
        (a == first && b == second).then_some(boost)
    })
}

/// Python's `str.isspace`: Unicode whitespace plus the information separators U+001C-U+001F.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.isupper`: some cased character and no lower-case or title-case one.
fn is_python_upper(word: &str) -> bool {
    let mut cased = false;
    for c in word.chars() {
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

/// The title-case letters (Unicode category Lt), such as `ǅ`.
fn is_titlecase(c: char) -> bool {
    matches!(c,
        '\u{1c5}' | '\u{1c8}' | '\u{1cb}' | '\u{1f2}' | '\u{1f88}'..='\u{1f8f}' | '\u{1f98}'..='\u{1f9f}'
        | '\u{1fa8}'..='\u{1faf}' | '\u{1fbc}' | '\u{1fcc}' | '\u{1ffc}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(text: &str) -> f64 {
        Vader::default().compound(text)
    }

    #[test]
    fn lexicons_parse_like_python() {
        // Python's dicts hold 7506 words (a few lines repeat) and 1212 one-character emoji.
        assert_eq!(lexicon().words.len(), 7506);
        assert_eq!(lexicon().emoji.len(), 1212);
        assert_eq!(lexicon().words["good"], 1.9);
        assert_eq!(lexicon().emoji[&'😁'], "beaming face with smiling eyes");
    }

    #[test]
    fn readme_examples_score_as_in_python() {
        // From vaderSentiment 3.3.2's own demo, with the scores it prints.
        for (text, expected) in [
            ("VADER is smart, handsome, and funny.", 0.8316),
            ("VADER is VERY SMART, handsome, and FUNNY!!!", 0.9342),
            ("VADER is not smart, handsome, nor funny.", -0.7424),
            ("At least it isn't a horrible book.", 0.431),
            ("The book was only kind of good.", 0.3832),
            ("Today only kinda sux! But I'll get by, lol", 0.5249),
            ("Catch utf-8 emoji such as 💘 and 💋 and 😁", 0.875),
            ("Not bad at all", 0.431),
        ] {
            assert_eq!(score(text), expected, "{text}");
        }
    }

    #[test]
    fn empty_and_wordless_texts_are_neutral() {
        for text in [
            "",
            "   ",
            "\u{1c}",
            "!!!",
            "12345",
            "日本語のテキスト",
            "مرحبا بالعالم",
            "שלום עולם",
        ] {
            assert_eq!(score(text), 0.0, "{text:?}");
        }
    }

    #[test]
    fn buffers_are_reused_without_leaking_between_texts() {
        let mut vader = Vader::default();
        let first = vader.compound("I love this, but the ending was terrible!!");
        vader.compound("完全に無関係な😁テキスト but GREAT");
        assert_eq!(
            vader.compound("I love this, but the ending was terrible!!"),
            first
        );
    }

    #[test]
    fn labels_use_vader_thresholds() {
        assert_eq!(label(0.05), Some("positive"));
        assert_eq!(label(-0.05), Some("negative"));
        assert_eq!(label(0.0499), Some("neutral"));
        assert_eq!(label(f64::NAN), None);
    }

    #[test]
    fn python_string_predicates() {
        assert!(is_python_upper("GREAT!") && is_python_upper("ÉTÉ") && !is_python_upper("ǅX"));
        assert!(!is_python_upper("123") && !is_python_upper("Great") && !is_python_upper(""));
        assert!(is_python_space('\u{1f}') && is_python_space('\u{3000}') && !is_python_space('\u{200b}'));
    }
}
