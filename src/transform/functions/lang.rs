//! The language of a post's text, guessed from its script and common words.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::logical_expr::ScalarUDF;

use super::text::{decode_entities, pieces, Piece};
use super::udf::{map_text, udf, Arg};

/// `detect_lang(text) -> Utf8`: a guess at the language of a post, as an ISO 639-1 code, or
/// `'und'` (undetermined).
///
/// A heuristic, not a model: fast and free of dependencies, but only as good as the rules.
/// URLs, @mentions, #hashtags and $cashtags are skipped. The script with the most letters
/// decides (a Han, kana or Hangul character counts as two, as it carries more than a Latin
/// letter): kana gives `ja` (with or without Han), Han alone `zh`, Hangul `ko`, Arabic script
/// `ar` (Persian and Urdu too), Hebrew `he`, Cyrillic `ru` (`uk` with ї, є or ґ), Greek `el`,
/// Thai `th`, Devanagari `hi`. Latin text is `en`, `es`, `fr`, `de`, `pt` or `it` by which
/// language's common short words (and letters such as ñ, ß, ã) it holds most; no letters, no such
/// words, or a tie give `und`. Prefer X's own `lang` field where it is set.
///
/// ```sql
/// SELECT coalesce(nullif(lang, 'und'), detect_lang(text)) AS lang FROM silver.tweets;
/// SELECT detect_lang('¡Me encanta el nuevo producto de Apple!');  -- 'es'
/// ```
pub(super) fn detect_lang() -> ScalarUDF {
    udf(
        "detect_lang",
        &[Arg::Text],
        DataType::Utf8,
        Arc::new(|args| {
            let mut decoded = String::new();
            let mut word = String::new();
            map_text(&args[0], |text, out| {
                out.push_str(detect(decode_entities(text, &mut decoded), &mut word));
                true
            })
        }),
    )
}

const UNDETERMINED: &str = "und";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Latin,
    /// Han and kana together: Japanese mixes both.
    Cjk,
    Hangul,
    Arabic,
    Hebrew,
    Cyrillic,
    Greek,
    Thai,
    Devanagari,
}

const SCRIPTS: usize = 9;

/// `word` is scratch space.
fn detect(text: &str, word: &mut String) -> &'static str {
    let mut counts = [0usize; SCRIPTS];
    let (mut kana, mut ukrainian) = (false, false);
    for piece in pieces(text) {
        let Piece::Char(c) = piece else { continue };
        if let Some((script, weight)) = script(c) {
            counts[script as usize] += weight;
        }
        kana |= is_kana(c);
        ukrainian |= matches!(c, 'ї' | 'є' | 'ґ' | 'Ї' | 'Є' | 'Ґ');
    }
    let Some(best) = (0..SCRIPTS)
        .filter(|&s| counts[s] > 0)
        .max_by_key(|&s| (counts[s], SCRIPTS - s))
    else {
        return UNDETERMINED;
    };
    match ALL_SCRIPTS[best] {
        Script::Latin => latin_language(text, word),
        Script::Cjk if kana => "ja",
        Script::Cjk => "zh",
        Script::Hangul => "ko",
        Script::Arabic => "ar",
        Script::Hebrew => "he",
        Script::Cyrillic if ukrainian => "uk",
        Script::Cyrillic => "ru",
        Script::Greek => "el",
        Script::Thai => "th",
        Script::Devanagari => "hi",
    }
}

const ALL_SCRIPTS: [Script; SCRIPTS] = [
    Script::Latin,
    Script::Cjk,
    Script::Hangul,
    Script::Arabic,
    Script::Hebrew,
    Script::Cyrillic,
    Script::Greek,
    Script::Thai,
    Script::Devanagari,
];

/// The script of a letter and its weight.
fn script(c: char) -> Option<(Script, usize)> {
    let script = match c {
        'a'..='z' | 'A'..='Z' | '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}' if c.is_alphabetic() => {
            Script::Latin
        }
        '\u{3400}'..='\u{4dbf}'
        | '\u{4e00}'..='\u{9fff}'
        | '\u{f900}'..='\u{faff}'
        | '\u{20000}'..='\u{2ebef}' => Script::Cjk,
        _ if is_kana(c) => Script::Cjk,
        '\u{ac00}'..='\u{d7af}' | '\u{1100}'..='\u{11ff}' | '\u{3130}'..='\u{318f}' => Script::Hangul,
        '\u{600}'..='\u{6ff}'
        | '\u{750}'..='\u{77f}'
        | '\u{8a0}'..='\u{8ff}'
        | '\u{fb50}'..='\u{fdff}'
        | '\u{fe70}'..='\u{feff}'
            if c.is_alphabetic() =>
        {
            Script::Arabic
        }
        '\u{5d0}'..='\u{5ea}' | '\u{fb1d}'..='\u{fb4f}' => Script::Hebrew,
        '\u{400}'..='\u{52f}' if c.is_alphabetic() => Script::Cyrillic,
        '\u{370}'..='\u{3ff}' | '\u{1f00}'..='\u{1fff}' if c.is_alphabetic() => Script::Greek,
        '\u{e01}'..='\u{e4e}' if c.is_alphabetic() => Script::Thai,
        '\u{900}'..='\u{97f}' if c.is_alphabetic() => Script::Devanagari,
        _ => return None,
    };
    Some((
        script,
        if matches!(script, Script::Cjk | Script::Hangul) {
            2
        } else {
            1
        },
    ))
}

fn is_kana(c: char) -> bool {
    matches!(c,
        '\u{3041}'..='\u{309f}' | '\u{30a0}'..='\u{30ff}' | '\u{31f0}'..='\u{31ff}' | '\u{ff66}'..='\u{ff9f}')
}

const LATIN_LANGUAGES: [&str; 6] = ["en", "es", "fr", "de", "pt", "it"];

/// Common short words of each Latin language; a word in several lists counts for each.
const STOPWORDS: [&[&str]; 6] = [
    &[
        "the", "and", "is", "are", "was", "were", "to", "of", "in", "it", "this", "that", "for", "with",
        "you", "not", "on", "be", "have", "has", "my", "your", "what", "just", "but", "so", "at", "all",
        "will", "from", "they", "we", "i", "been", "would", "can", "do", "if", "or", "an", "there", "their",
        "very", "about", "today", "why", "nobody", "no", "new", "now", "more",
    ],
    &[
        "el", "la", "los", "las", "de", "del", "que", "y", "en", "un", "una", "es", "por", "para", "con",
        "no", "se", "lo", "su", "al", "como", "más", "pero", "muy", "está", "este", "esta", "hoy", "mi",
        "yo", "me", "tiene", "ya", "son", "hay", "nuevo", "también", "sí", "qué",
    ],
    &[
        "le", "la", "les", "de", "des", "du", "et", "est", "un", "une", "en", "que", "qui", "pour", "pas",
        "dans", "sur", "au", "aux", "avec", "ce", "cette", "je", "il", "elle", "nous", "vous", "mais",
        "très", "plus", "sont", "c", "j", "l", "d", "qu", "aujourd", "hui", "ça", "être",
    ],
    &[
        "der", "die", "das", "und", "ist", "nicht", "ein", "eine", "zu", "den", "dem", "mit", "auf", "für",
        "von", "sich", "es", "ich", "du", "wir", "sie", "auch", "nach", "bei", "heute", "sehr", "aber",
        "wie", "noch", "nur", "schon", "im", "am", "des", "oder", "ja", "nein", "neue", "neuen",
    ],
    &[
        "o", "os", "as", "de", "do", "da", "dos", "das", "que", "e", "é", "em", "um", "uma", "não", "para",
        "com", "por", "mais", "muito", "mas", "se", "no", "na", "nos", "está", "isso", "hoje", "eu", "você",
        "ao", "foi", "novo", "também",
    ],
    &[
        "il", "lo", "la", "gli", "le", "di", "del", "della", "che", "e", "è", "un", "una", "in", "per",
        "non", "con", "sono", "ma", "molto", "anche", "questo", "questa", "oggi", "io", "ho", "ha", "più",
        "come", "nel", "alla", "dei", "nuovo",
    ],
];

/// Letters found in one of the Latin languages only, among these six.
const TELLTALE_LETTERS: [(char, usize); 8] = [
    ('ñ', 1),
    ('ß', 3),
    ('ä', 3),
    ('ö', 3),
    ('ü', 3),
    ('ã', 4),
    ('õ', 4),
    ('œ', 2),
];

/// Each stopword with the bit set of the languages it belongs to.
fn stopwords() -> &'static HashMap<&'static str, u8> {
    static STOPWORDS_BY_WORD: OnceLock<HashMap<&'static str, u8>> = OnceLock::new();
    STOPWORDS_BY_WORD.get_or_init(|| {
        let mut languages = HashMap::new();
        for (language, words) in STOPWORDS.iter().enumerate() {
            for word in *words {
                *languages.entry(*word).or_insert(0) |= 1 << language;
            }
        }
        languages
    })
}

fn latin_language(text: &str, word: &mut String) -> &'static str {
    let mut scores = [0usize; LATIN_LANGUAGES.len()];
    let mut add = |languages: u8| {
        for (language, score) in scores.iter_mut().enumerate() {
            *score += usize::from(languages & (1 << language) != 0);
        }
    };
    for piece in pieces(text) {
        match piece {
            Piece::Char(c) if c.is_alphabetic() => {
                let lower = c.to_lowercase().next().unwrap_or(c);
                word.push(lower);
                // No telltale letter is ASCII, and most letters are.
                let telltale = if lower.is_ascii() {
                    None
                } else {
                    TELLTALE_LETTERS.iter().find(|(letter, _)| *letter == lower)
                };
                if let Some(&(_, language)) = telltale {
                    add(1 << language);
                }
            }
            _ => {
                add(word_languages(word));
                word.clear();
            }
        }
    }
    add(word_languages(word));
    word.clear();
    pick(&scores)
}

fn word_languages(word: &str) -> u8 {
    stopwords().get(word).copied().unwrap_or(0)
}

/// The language with the highest score, if it is positive and unique.
fn pick(scores: &[usize; 6]) -> &'static str {
    let best = scores.iter().copied().max().unwrap_or(0);
    let mut leaders = scores.iter().enumerate().filter(|(_, &score)| score == best);
    match (leaders.next(), leaders.next()) {
        (Some((language, _)), None) if best > 0 => LATIN_LANGUAGES[language],
        _ => UNDETERMINED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(text: &str) -> &'static str {
        detect(text, &mut String::new())
    }

    #[test]
    fn scripts_decide_outside_latin() {
        assert_eq!(lang("東京の新製品、とても良いです！最高"), "ja");
        assert_eq!(lang("カタカナだけ"), "ja");
        assert_eq!(lang("我很惊讶地看到这个"), "zh");
        assert_eq!(lang("오늘 주식 시장이 좋다"), "ko");
        assert_eq!(lang("أخبار سيئة عن Apple اليوم"), "ar");
        assert_eq!(lang("שלום עולם, מה שלומך"), "he");
        assert_eq!(lang("Привет, как дела?"), "ru");
        assert_eq!(lang("Привіт, як справи? Їжак"), "uk");
        assert_eq!(lang("Καλημέρα κόσμε"), "el");
        assert_eq!(lang("สวัสดีครับ"), "th");
        assert_eq!(lang("नमस्ते दुनिया"), "hi");
    }

    #[test]
    fn stopwords_decide_latin() {
        assert_eq!(lang("Loving the new Apple update, battery life is great!"), "en");
        assert_eq!(
            lang("¡Me encanta el nuevo producto de Apple! Excelente trabajo"),
            "es"
        );
        assert_eq!(lang("Je ne sais pas si c'est une bonne idée"), "fr");
        assert_eq!(lang("Apple Aktie fällt nach schwachen Zahlen, schlecht."), "de");
        assert_eq!(lang("Não sei o que fazer com isso hoje"), "pt");
        assert_eq!(lang("Questo è molto bello, anche oggi"), "it");
    }

    #[test]
    fn entities_and_leftovers_are_undetermined() {
        assert_eq!(lang(""), "und");
        assert_eq!(lang("🚀🚀🔥 123 !!!"), "und");
        assert_eq!(lang("$AAPL $TSLA #NVDA @elonmusk https://t.co/abcdefghij"), "und");
        assert_eq!(lang("Xyzzy plugh"), "und");
        assert_eq!(lang("de la"), "und");
        assert_eq!(lang("أخبار https://t.co/abcdefghijklmnop @some_user"), "ar");
    }
}
