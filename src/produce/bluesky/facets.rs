//! A post's facets (`app.bsky.richtext.facet`) as X's entities: tags become hashtags (or
//! cashtags, for tags written `$TICKER`), mentions and links become mentions and URLs.
//!
//! A facet marks a byte range of the UTF-8 text (start inclusive, end exclusive); X counts
//! characters (Unicode code points: an emoji is one), so every range is converted. A facet whose
//! range is empty, reversed, past the end of the text or inside a character, or whose feature
//! lacks its value, is dropped alone, with the reason: the post is fine (Bluesky's apps ignore
//! such facets too).

use serde::Serialize;
use serde_json::Value;

const TAG: &str = "app.bsky.richtext.facet#tag";
const MENTION: &str = "app.bsky.richtext.facet#mention";
const LINK: &str = "app.bsky.richtext.facet#link";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub start: usize,
    pub end: usize,
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mention {
    pub start: usize,
    pub end: usize,
    /// The handle as written, lower-cased (handles ignore case), without `@`.
    pub username: String,
    /// The DID the mention resolves to.
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub start: usize,
    pub end: usize,
    pub url: String,
    pub expanded_url: String,
    /// The text shown, often a shortened form of the URL.
    pub display_url: String,
}

/// X's `entities` object; every list is present, empty when the post has none.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Entities {
    pub hashtags: Vec<Tag>,
    pub cashtags: Vec<Tag>,
    pub mentions: Vec<Mention>,
    pub urls: Vec<Link>,
}

/// The entities of a post, and why each facet that could not be one was dropped.
#[derive(Debug, Default)]
pub struct Facets {
    pub entities: Entities,
    pub dropped: Vec<String>,
}

/// The entities of `text` that `facets` mark.
pub fn entities(text: &str, facets: &[Value]) -> Facets {
    let offsets = CharOffsets::new(text);
    let mut found = Facets::default();
    for facet in facets {
        if let Err(why) = add_facet(&mut found.entities, text, &offsets, facet) {
            found.dropped.push(why);
        }
    }
    found
}

fn add_facet(
    entities: &mut Entities,
    text: &str,
    offsets: &CharOffsets,
    facet: &Value,
) -> Result<(), String> {
    let byte = |name: &str| facet.get("index")?.get(name)?.as_u64();
    let (Some(byte_start), Some(byte_end)) = (byte("byteStart"), byte("byteEnd")) else {
        return Err("a facet without a byte range".into());
    };
    let (start, end) = offsets.span(byte_start, byte_end).ok_or_else(|| {
        format!(
            "a facet on bytes {byte_start}..{byte_end} of a {}-byte text: empty, past its end or inside a character",
            text.len()
        )
    })?;
    let written = &text[byte_start as usize..byte_end as usize];
    let features = facet.get("features").and_then(Value::as_array);
    for feature in features.into_iter().flatten() {
        add_feature(entities, feature, (start, end), written)?;
    }
    Ok(())
}

fn add_feature(
    entities: &mut Entities,
    feature: &Value,
    (start, end): (usize, usize),
    written: &str,
) -> Result<(), String> {
    let field = |name: &str| {
        feature
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
    };
    let missing = |kind: &str, name: &str| format!("a {kind} facet without its `{name}`");
    match feature.get("$type").and_then(Value::as_str) {
        Some(TAG) => {
            let tag = field("tag").ok_or_else(|| missing("tag", "tag"))?;
            let (list, tag) = match tag.strip_prefix('$') {
                Some(ticker) => (&mut entities.cashtags, ticker),
                None => (&mut entities.hashtags, tag.trim_start_matches('#')),
            };
            list.push(Tag {
                start,
                end,
                tag: tag.to_string(),
            });
        }
        Some(MENTION) => {
            let did = field("did").ok_or_else(|| missing("mention", "did"))?;
            entities.mentions.push(Mention {
                start,
                end,
                username: written.trim_start_matches(['@', '＠']).to_lowercase(),
                id: did.to_string(),
            });
        }
        Some(LINK) => {
            let uri = field("uri").ok_or_else(|| missing("link", "uri"))?;
            entities.urls.push(Link {
                start,
                end,
                url: uri.to_string(),
                expanded_url: uri.to_string(),
                display_url: written.to_string(),
            });
        }
        // A feature type of a later lexicon: nothing X has.
        _ => {}
    }
    Ok(())
}

/// The character offset of every byte offset of a text that starts a character (or ends the
/// text), computed in one pass.
struct CharOffsets {
    /// Per byte offset: its character offset, or `None` inside a character.
    chars: Vec<Option<usize>>,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let mut chars = vec![None; text.len() + 1];
        for (char_index, (byte, _)) in text.char_indices().enumerate() {
            chars[byte] = Some(char_index);
        }
        chars[text.len()] = Some(text.chars().count());
        Self { chars }
    }

    /// The character range of bytes `start..end`, if it is a non-empty range of whole
    /// characters within the text.
    fn span(&self, start: u64, end: u64) -> Option<(usize, usize)> {
        let at = |byte: u64| *self.chars.get(usize::try_from(byte).ok()?)?;
        let (start, end) = (at(start)?, at(end)?);
        (start < end).then_some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn facet(start: i64, end: i64, feature: Value) -> Value {
        json!({"index": {"byteStart": start, "byteEnd": end}, "features": [feature]})
    }

    fn tag(tag: &str) -> Value {
        json!({"$type": TAG, "tag": tag})
    }

    #[test]
    fn byte_ranges_become_character_offsets() {
        // "é" and "🚀" take 2 and 4 bytes: the tag after them starts at byte 8, character 4.
        let text = "é 🚀 #tag @bob.bsky.social https://x.co/…";
        let at = |part: &str| text.find(part).unwrap() as i64;
        let facets = [
            facet(at("#tag"), at("#tag") + 4, tag("tag")),
            facet(
                at("@bob"),
                at("@bob") + 16,
                json!({"$type": MENTION, "did": "did:plc:bob"}),
            ),
            facet(
                at("https"),
                text.len() as i64,
                json!({"$type": LINK, "uri": "https://x.co/full"}),
            ),
        ];
        let found = entities(text, &facets);
        assert!(found.dropped.is_empty(), "{:?}", found.dropped);
        let e = found.entities;
        assert_eq!(
            e.hashtags,
            [Tag {
                start: 4,
                end: 8,
                tag: "tag".into()
            }]
        );
        assert_eq!((e.mentions[0].start, e.mentions[0].end), (9, 25));
        assert_eq!(e.mentions[0].username, "bob.bsky.social");
        assert_eq!(e.mentions[0].id, "did:plc:bob");
        let chars: Vec<char> = text.chars().collect();
        let shown: String = chars[e.urls[0].start..e.urls[0].end].iter().collect();
        assert_eq!(shown, "https://x.co/…");
        assert_eq!(e.urls[0].display_url, shown);
        assert_eq!(e.urls[0].expanded_url, "https://x.co/full");
    }

    #[test]
    fn tags_written_with_a_dollar_are_cashtags() {
        let found = entities(
            "$AAPL #Apple",
            &[facet(0, 5, tag("$AAPL")), facet(6, 12, tag("Apple"))],
        );
        assert_eq!(found.entities.cashtags[0].tag, "AAPL");
        assert_eq!(found.entities.hashtags[0].tag, "Apple");
    }

    #[test]
    fn a_bad_facet_is_dropped_alone_with_its_reason() {
        let text = "🚀 ok #fine";
        let facets = [
            facet(0, 2, tag("split")),         // inside the rocket's 4 bytes
            facet(8, 40, tag("past_the_end")), // past the end
            facet(5, 5, tag("empty")),         // empty
            facet(9, 5, tag("reversed")),      // reversed
            facet(-1, 3, tag("negative")),     // not a byte offset
            json!({"features": [tag("no_index")]}),
            facet(5, 7, json!({"$type": MENTION})), // no DID
            facet(8, 13, tag("fine")),
            facet(5, 7, json!({"$type": "app.bsky.richtext.facet#future"})),
        ];
        let found = entities(text, &facets);
        assert_eq!(found.dropped.len(), 7, "{:#?}", found.dropped);
        assert!(
            found.dropped[0].contains("bytes 0..2 of a 13-byte text"),
            "{}",
            found.dropped[0]
        );
        assert!(
            found.dropped[6].contains("without its `did`"),
            "{}",
            found.dropped[6]
        );
        let tags: Vec<&str> = found.entities.hashtags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(tags, ["fine"]);
        assert_eq!(
            (found.entities.hashtags[0].start, found.entities.hashtags[0].end),
            (5, 10)
        );
    }
}
