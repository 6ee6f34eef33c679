//! Post text: entities (URLs, @mentions, #hashtags, $cashtags), HTML entities and cleaning.
//!
//! Entities follow X's own rules (twitter-text) closely enough for analytics. A sigil counts only
//! at the start or after a character that is not a letter, digit or one of `_ & @ # $ ! % *`,
//! so e-mail addresses, `AT&T` and `US$5` hold none. X escapes `&`, `<` and `>` in post text,
//! so entities are found in the text after HTML entities are decoded, as X itself does.

use std::sync::Arc;

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::udf::{map_text, map_text_to_list, text_list_type, udf, Arg};

/// `clean_text(text) -> Utf8`: the words of a post for reading or scoring.
///
/// Removes a leading `RT @user:` prefix, URLs and @mentions; decodes HTML entities (`&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&#39;`, `&apos;`, `&nbsp;`, `&#NNN;`, `&#xHH;`; an invalid one
/// stays as written); collapses every run of whitespace into one space and trims. Hashtags,
/// cashtags and emoji stay.
///
/// ```sql
/// SELECT clean_text('RT @bob: Q3 beat &amp; raised 🚀 https://t.co/x1 #earnings');
/// -- 'Q3 beat & raised 🚀 #earnings'
/// ```
pub(super) fn clean_text() -> ScalarUDF {
    udf(
        "clean_text",
        &[Arg::Text],
        DataType::Utf8,
        Arc::new(|args| {
            let mut decoded = String::new();
            map_text(&args[0], |text, out| {
                clean(text, &mut decoded, out);
                true
            })
        }),
    )
}

/// `extract_hashtags(text) -> List<Utf8>`: the post's hashtags, lower-cased, without `#`.
///
/// Each distinct tag appears once, in order of first appearance. A tag is letters (any script,
/// so CJK, Arabic or Hangul tags work), digits, `_` and combining marks, with at least one
/// letter: `#100` is no tag. The full-width `＃` counts too. An empty text gives an empty list.
///
/// ```sql
/// SELECT extract_hashtags('Loving #WWDC and #日本 #wwdc #100');  -- ['wwdc', '日本']
/// ```
pub(super) fn extract_hashtags() -> ScalarUDF {
    extractor("extract_hashtags", Kind::Hashtag)
}

/// `extract_cashtags(text) -> List<Utf8>`: the post's cashtags, lower-cased, without `$`.
///
/// Each distinct tag appears once, in order of first appearance. A cashtag is 1-6 ASCII letters
/// with an optional `.X` or `_X` suffix of 1-2 letters (`$BRK.B`); `$100` and `$TOOLONG` are
/// none.
///
/// ```sql
/// SELECT extract_cashtags('$AAPL up, $BRK.B flat, paid $100, $aapl again');  -- ['aapl', 'brk.b']
/// ```
pub(super) fn extract_cashtags() -> ScalarUDF {
    extractor("extract_cashtags", Kind::Cashtag)
}

/// `extract_mentions(text) -> List<Utf8>`: the usernames the post mentions, lower-cased, without
/// `@`.
///
/// Each distinct username appears once, in order of first appearance; a username is 1-15 ASCII
/// letters, digits or `_`. The user of a leading `RT @user:` counts.
///
/// ```sql
/// SELECT extract_mentions('RT @Bob: thanks @alice and @BOB, mail me@x.com');  -- ['bob', 'alice']
/// ```
pub(super) fn extract_mentions() -> ScalarUDF {
    extractor("extract_mentions", Kind::Mention)
}

/// `extract_urls(text) -> List<Utf8>`: the post's URLs (`http://`, `https://` or `www.`), as
/// written.
///
/// Each distinct URL appears once, in order of first appearance. A URL ends at whitespace, at a
/// non-ASCII character or at `"<>`; trailing punctuation and an unbalanced `)` or `]` are left
/// out.
///
/// ```sql
/// SELECT extract_urls('see https://t.co/AbC1. (www.example.com/a)');
/// -- ['https://t.co/AbC1', 'www.example.com/a']
/// ```
pub(super) fn extract_urls() -> ScalarUDF {
    extractor("extract_urls", Kind::Url)
}

/// The hashtags and cashtags written in a text: what `extract_hashtags` and `extract_cashtags`
/// return, for Rust callers (the Bluesky producer matches rules on them).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TextTags {
    pub hashtags: Vec<String>,
    pub cashtags: Vec<String>,
}

/// The distinct hashtags and cashtags of `text`, lower-cased, without sigil, in order of first
/// appearance.
pub fn tags_in(text: &str) -> TextTags {
    let mut decoded = String::new();
    let mut tags = TextTags::default();
    for piece in pieces(decode_entities(text, &mut decoded)) {
        let (list, value) = match piece {
            Piece::Entity {
                kind: Kind::Hashtag,
                value,
                ..
            } => (&mut tags.hashtags, value),
            Piece::Entity {
                kind: Kind::Cashtag,
                value,
                ..
            } => (&mut tags.cashtags, value),
            _ => continue,
        };
        let value = value.to_lowercase();
        if !list.contains(&value) {
            list.push(value);
        }
    }
    tags
}

fn extractor(name: &'static str, wanted: Kind) -> ScalarUDF {
    udf(
        name,
        &[Arg::Text],
        text_list_type(),
        Arc::new(move |args| {
            let mut decoded = String::new();
            let mut found = StringList::default();
            map_text_to_list(&args[0], |text, items| {
                found.clear();
                for piece in pieces(decode_entities(text, &mut decoded)) {
                    if let Piece::Entity { kind, value, .. } = piece {
                        if kind == wanted {
                            // URL paths are case-sensitive; usernames and tags are not.
                            let case = match kind {
                                Kind::Url => Case::Keep,
                                _ => Case::Fold,
                            };
                            found.push_distinct(value, case);
                        }
                    }
                }
                found.iter().for_each(|item| items.append_value(item));
            })
        }),
    )
}

/// Whether a list keeps its strings' case or lower-cases them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Fold,
}

/// Strings one after another in one reused buffer, so a row's list costs no allocation.
#[derive(Debug, Default)]
pub(super) struct StringList {
    text: String,
    ends: Vec<usize>,
}

impl StringList {
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Appends the string that `write` writes.
    pub(super) fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    /// Appends `value` (lower-cased for [`Case::Fold`]) unless the list already holds it.
    fn push_distinct(&mut self, value: &str, case: Case) {
        let (start, earlier) = (self.text.len(), self.len());
        self.push_with(|text| match case {
            Case::Fold => push_lowercase(text, value),
            Case::Keep => text.push_str(value),
        });
        if self.iter().take(earlier).any(|seen| seen == &self.text[start..]) {
            self.text.truncate(start);
            self.ends.pop();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(super) fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// Writes the cleaned `text` into `out`; `decoded` is scratch space.
fn clean(text: &str, decoded: &mut String, out: &mut String) {
    let body = without_retweet_prefix(decode_entities(text, decoded));
    for piece in pieces(body) {
        match piece {
            Piece::Entity {
                kind: Kind::Url | Kind::Mention,
                ..
            } => {}
            Piece::Entity { span, .. } => out.push_str(span),
            Piece::Char(c) if c.is_whitespace() => {
                if !out.is_empty() && !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            Piece::Char(c) => out.push(c),
        }
    }
    out.truncate(out.trim_end().len());
}

/// `text` without a leading `RT @user:` (the colon optional), as X writes retweets.
fn without_retweet_prefix(text: &str) -> &str {
    let start = text.trim_start();
    if !start.get(..2).is_some_and(|rt| rt.eq_ignore_ascii_case("rt")) {
        return text;
    }
    let handle = start[2..].trim_start();
    let Some(sigil) = handle.chars().next().filter(|c| matches!(c, '@' | '＠')) else {
        return text;
    };
    let Some(name) = mention(&handle[sigil.len_utf8()..]) else {
        return text;
    };
    let rest = &handle[sigil.len_utf8() + name.len()..];
    rest.strip_prefix(':').unwrap_or(rest)
}

/// `text` with its HTML entities decoded: `text` itself when it has none, else `buffer`.
pub(super) fn decode_entities<'a>(text: &'a str, buffer: &'a mut String) -> &'a str {
    if !text.contains('&') {
        return text;
    }
    buffer.clear();
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        buffer.push_str(&rest[..at]);
        rest = &rest[at..];
        match html_entity(rest) {
            Some((decoded, len)) => {
                buffer.push(decoded);
                rest = &rest[len..];
            }
            None => {
                buffer.push('&');
                rest = &rest[1..];
            }
        }
    }
    buffer.push_str(rest);
    buffer
}

/// The character of the entity that `text` starts with, and the entity's length.
fn html_entity(text: &str) -> Option<(char, usize)> {
    // The longest entity decoded, `&#x10FFFF;`, has 10 bytes; ';' is ASCII so `end` is a boundary.
    let end = text.bytes().take(11).position(|b| b == b';')?;
    let decoded = match &text[1..end] {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        name => numeric_entity(name.strip_prefix('#')?)?,
    };
    Some((decoded, end + 1))
}

/// The character of `NNN` or `xHH`; None for a non-character, NUL or a surrogate.
fn numeric_entity(number: &str) -> Option<char> {
    let (digits, radix) = match number.strip_prefix(['x', 'X']) {
        Some(hex) => (hex, 16),
        None => (number, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let code = u32::from_str_radix(digits, radix).ok()?;
    char::from_u32(code).filter(|&c| c != '\0')
}

/// Appends `text` lower-cased, without allocating for ASCII text.
pub(super) fn push_lowercase(buffer: &mut String, text: &str) {
    if text.is_ascii() {
        buffer.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        buffer.push_str(&text.to_lowercase());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Url,
    Mention,
    Hashtag,
    Cashtag,
}

/// A piece of post text: an entity or one other character.
#[derive(Debug, PartialEq)]
pub(super) enum Piece<'a> {
    /// `span` is the entity as written; `value` is it without its sigil (a URL's is all of it).
    Entity {
        kind: Kind,
        span: &'a str,
        value: &'a str,
    },
    Char(char),
}

/// The pieces of a text, in order; they cover all of it.
pub(super) fn pieces(text: &str) -> Pieces<'_> {
    Pieces {
        text,
        pos: 0,
        prev: None,
    }
}

pub(super) struct Pieces<'a> {
    text: &'a str,
    pos: usize,
    prev: Option<char>,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let rest = &self.text[self.pos..];
        let first = rest.chars().next()?;
        let piece = entity(rest, first, self.prev).unwrap_or(Piece::Char(first));
        let taken = match piece {
            Piece::Entity { span, .. } => span,
            Piece::Char(_) => &rest[..first.len_utf8()],
        };
        self.prev = taken.chars().next_back();
        self.pos += taken.len();
        Some(piece)
    }
}

/// The entity that `rest` starts with, given the character before it.
fn entity(rest: &str, first: char, prev: Option<char>) -> Option<Piece<'_>> {
    let tail = &rest[first.len_utf8()..];
    let (kind, value) = match first {
        'h' | 'H' | 'w' | 'W' if !prev.is_some_and(char::is_alphanumeric) => (Kind::Url, url(rest)?),
        _ if !sigil_may_follow(prev) => return None,
        '#' | '＃' => (Kind::Hashtag, hashtag(tail)?),
        '@' | '＠' => (Kind::Mention, mention(tail)?),
        '$' => (Kind::Cashtag, cashtag(tail)?),
        _ => return None,
    };
    let sigil = if kind == Kind::Url { 0 } else { first.len_utf8() };
    Some(Piece::Entity {
        kind,
        span: &rest[..sigil + value.len()],
        value,
    })
}

fn sigil_may_follow(prev: Option<char>) -> bool {
    prev.is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '&' | '@' | '#' | '$' | '!' | '%' | '*')))
}

/// The URL that `rest` starts with.
fn url(rest: &str) -> Option<&str> {
    let prefix = ["https://", "http://", "www."]
        .into_iter()
        .find(|prefix| {
            rest.get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        })?
        .len();
    let end = rest.find(|c: char| !is_url_char(c)).unwrap_or(rest.len());
    let url = trim_url_end(&rest[..end]);
    url.as_bytes()
        .get(prefix)
        .is_some_and(u8::is_ascii_alphanumeric)
        .then_some(url)
}

fn is_url_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>')
}

/// `url` without the sentence punctuation that usually follows a URL.
fn trim_url_end(mut url: &str) -> &str {
    let unbalanced = |url: &str, open, close| url.matches(open).count() < url.matches(close).count();
    while let Some(last) = url.bytes().next_back() {
        let trailing = match last {
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b'\'' | b'*' => true,
            b')' => unbalanced(url, '(', ')'),
            b']' => unbalanced(url, '[', ']'),
            _ => false,
        };
        if !trailing {
            break;
        }
        url = &url[..url.len() - 1];
    }
    url
}

/// The hashtag (without `#`) that `tail` starts with.
fn hashtag(tail: &str) -> Option<&str> {
    let end = tail.find(|c| !is_hashtag_char(c)).unwrap_or(tail.len());
    let (tag, after) = tail.split_at(end);
    let glued = after.starts_with(['#', '＃']) || after.starts_with("://");
    (tag.chars().any(char::is_alphabetic) && !glued).then_some(tag)
}

fn is_hashtag_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '\u{200c}' | '\u{200d}') || is_word_mark(c)
}

/// Combining marks, and the signs of Indic and Thai scripts (viramas, tone marks) that Rust's
/// alphanumeric test leaves out although they are part of words.
fn is_word_mark(c: char) -> bool {
    let combining = matches!(c,
        '\u{300}'..='\u{36f}' | '\u{1ab0}'..='\u{1aff}' | '\u{1dc0}'..='\u{1dff}' | '\u{fe20}'..='\u{fe2f}');
    let indic_or_thai = matches!(c, '\u{900}'..='\u{dff}' | '\u{e00}'..='\u{e7f}');
    let punctuation = matches!(
        c,
        '\u{964}' | '\u{965}' | '\u{e3f}' | '\u{e4f}' | '\u{e5a}' | '\u{e5b}'
    );
    combining || (indic_or_thai && !punctuation)
}

/// The username (without `@`) that `tail` starts with.
fn mention(tail: &str) -> Option<&str> {
    let end = tail
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(tail.len());
    let (name, after) = tail.split_at(end);
    let glued = after.starts_with(|c: char| matches!(c, '@' | '＠') || c.is_alphanumeric())
        || after.starts_with("://");
    ((1..=15).contains(&name.len()) && !glued).then_some(name)
}

/// The cashtag (without `$`) that `tail` starts with.
fn cashtag(tail: &str) -> Option<&str> {
    let letters = |text: &str| text.bytes().take_while(u8::is_ascii_alphabetic).count();
    let ends_word = |text: &str| !text.starts_with(|c: char| c.is_alphanumeric() || c == '_');
    let base = letters(tail);
    if !(1..=6).contains(&base) {
        return None;
    }
    if let Some(after) = tail[base..].strip_prefix(['.', '_']) {
        let suffix = letters(after);
        if (1..=2).contains(&suffix) && ends_word(&after[suffix..]) {
            return Some(&tail[..base + 1 + suffix]);
        }
    }
    ends_word(&tail[base..]).then_some(&tail[..base])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entities(text: &str) -> Vec<(Kind, &str)> {
        pieces(text)
            .filter_map(|piece| match piece {
                Piece::Entity { kind, value, .. } => Some((kind, value)),
                Piece::Char(_) => None,
            })
            .collect()
    }

    fn cleaned(text: &str) -> String {
        let mut out = String::new();
        clean(text, &mut String::new(), &mut out);
        out
    }

    #[test]
    fn pieces_cover_the_whole_text() {
        let text = "RT @a: $AAPL #x https://t.co/y 🚀 日本語 @@b";
        let mut rebuilt = String::new();
        for piece in pieces(text) {
            match piece {
                Piece::Entity { span, .. } => rebuilt.push_str(span),
                Piece::Char(c) => rebuilt.push(c),
            }
        }
        assert_eq!(rebuilt, text);
    }

    #[test]
    fn hashtags_are_unicode_and_need_a_letter() {
        use Kind::Hashtag as H;
        assert_eq!(
            entities("#日本 #東京2020 #한국 #مرحبا #שלום #हिन्दी #ภาษาไทย"),
            [
                (H, "日本"),
                (H, "東京2020"),
                (H, "한국"),
                (H, "مرحبا"),
                (H, "שלום"),
                (H, "हिन्दी"),
                (H, "ภาษาไทย")
            ]
        );
        assert_eq!(entities("#100 #_ #1a ＃全角"), [(H, "1a"), (H, "全角")]);
        assert_eq!(entities("#tag。次 #tag🚀"), [(H, "tag"), (H, "tag")]);
        assert!(entities("page#anchor &#39; ##x #a#b #️⃣ #").is_empty());
    }

    #[test]
    fn cashtags_are_short_ascii_tickers() {
        use Kind::Cashtag as C;
        assert_eq!(
            entities("$AAPL, ($tsla) $BRK.B $RDS_A $BRK.BBB $X."),
            [
                (C, "AAPL"),
                (C, "tsla"),
                (C, "BRK.B"),
                (C, "RDS_A"),
                (C, "BRK"),
                (C, "X")
            ]
        );
        assert!(entities("$100 $5B $TOOLONG US$5 $ $AAPL1 $日本").is_empty());
    }

    #[test]
    fn tags_in_a_text_are_what_the_extractors_find() {
        assert_eq!(
            tags_in("#Apple &amp; $AAPL, #apple again, $brk.b, me@x.com #100"),
            TextTags {
                hashtags: vec!["apple".into()],
                cashtags: vec!["aapl".into(), "brk.b".into()],
            }
        );
        assert_eq!(tags_in(""), TextTags::default());
    }

    #[test]
    fn mentions_are_usernames_not_emails() {
        use Kind::Mention as M;
        assert_eq!(
            entities("@bob: hi @Alice_1 ＠jp"),
            [(M, "bob"), (M, "Alice_1"), (M, "jp")]
        );
        assert!(entities("me@example.com @ @sixteen_chars_xx @josé @a@b").is_empty());
    }

    #[test]
    fn urls_end_before_trailing_punctuation() {
        use Kind::Url as U;
        assert_eq!(
            entities("see https://t.co/AbC1. (www.example.com/a) HTTP://X.CO/q?a=1&b=2!"),
            [
                (U, "https://t.co/AbC1"),
                (U, "www.example.com/a"),
                (U, "HTTP://X.CO/q?a=1&b=2")
            ]
        );
        assert_eq!(
            entities("https://en.wikipedia.org/wiki/A_(b)"),
            [(U, "https://en.wikipedia.org/wiki/A_(b)")]
        );
        assert_eq!(entities("https://t.co/x日本"), [(U, "https://t.co/x")]);
        assert!(entities("https:// nohttps://x.com www. http://").is_empty());
    }

    #[test]
    fn html_entities_decode_once() {
        let decode = |text| decode_entities(text, &mut String::new()).to_string();
        assert_eq!(
            decode("a &amp; b &lt;3 &gt; &quot;q&quot; it&#39;s &apos;"),
            "a & b <3 > \"q\" it's '"
        );
        assert_eq!(decode("&#128640; &#x1F680; &#X41;"), "🚀 🚀 A");
        assert_eq!(
            decode("&amp;lt; && &bogus; &#0; &#xD800; &#+65; &#x110000; &#;"),
            "&lt; && &bogus; &#0; &#xD800; &#+65; &#x110000; &#;"
        );
        assert_eq!(decode("trailing &"), "trailing &");
    }

    #[test]
    fn clean_text_keeps_words_hashtags_and_emoji() {
        assert_eq!(
            cleaned("RT @bob: Q3 beat &amp; raised 🚀 https://t.co/x1 #earnings"),
            "Q3 beat & raised 🚀 #earnings"
        );
        assert_eq!(cleaned("  @a   @b  hello\n\t world   @c "), "hello world");
        assert_eq!(cleaned("rt @x great $TSLA"), "great $TSLA");
        assert_eq!(cleaned("RT is not a prefix here"), "RT is not a prefix here");
        assert_eq!(cleaned("مرحبا @user بالعالم"), "مرحبا بالعالم");
        assert_eq!(cleaned("東京　タワー https://t.co/z"), "東京 タワー");
        assert_eq!(cleaned(""), "");
        assert_eq!(cleaned("https://t.co/only @only"), "");
        assert_eq!(cleaned("a&nbsp;&nbsp;b&#10;c"), "a b c");
    }

    #[test]
    fn distinct_keeps_first_appearances() {
        let mut found = StringList::default();
        for value in ["B", "a", "b", "c", "A", "é", "É"] {
            found.push_distinct(value, Case::Fold);
        }
        assert_eq!(found.iter().collect::<Vec<_>>(), ["b", "a", "c", "é"]);
        found.clear();
        assert_eq!(found.len(), 0);
        found.push_distinct("Case", Case::Keep);
        found.push_distinct("case", Case::Keep);
        assert_eq!(found.iter().collect::<Vec<_>>(), ["Case", "case"]);
    }
}
