//! Synthetic X API v2 filtered-stream messages: realistic shapes and sizes (1-4 KB with
//! includes), deterministic for a seed. Used by benchmarks, tests and `produce synth`.

use serde_json::{json, Value};

/// A company the desk follows: its id, cashtag and hashtags.
pub struct Company {
    pub id: &'static str,
    pub name: &'static str,
    pub cashtag: &'static str,
    pub hashtags: &'static [&'static str],
}

pub const COMPANIES: &[Company] = &[
    Company {
        id: "AAPL",
        name: "Apple",
        cashtag: "AAPL",
        hashtags: &["apple", "iphone", "wwdc"],
    },
    Company {
        id: "TSLA",
        name: "Tesla",
        cashtag: "TSLA",
        hashtags: &["tesla", "ev", "cybertruck"],
    },
    Company {
        id: "MSFT",
        name: "Microsoft",
        cashtag: "MSFT",
        hashtags: &["microsoft", "azure", "xbox"],
    },
    Company {
        id: "NVDA",
        name: "NVIDIA",
        cashtag: "NVDA",
        hashtags: &["nvidia", "gpu", "ai"],
    },
    Company {
        id: "AMZN",
        name: "Amazon",
        cashtag: "AMZN",
        hashtags: &["amazon", "aws", "primeday"],
    },
    Company {
        id: "GOOGL",
        name: "Alphabet",
        cashtag: "GOOGL",
        hashtags: &["google", "gemini", "android"],
    },
    Company {
        id: "META",
        name: "Meta",
        cashtag: "META",
        hashtags: &["meta", "instagram", "threads"],
    },
    Company {
        id: "NFLX",
        name: "Netflix",
        cashtag: "NFLX",
        hashtags: &["netflix", "streaming"],
    },
];

const OPINIONS: &[&str] = &[
    "Loving the new {name} update, battery life is great!",
    "{name} earnings beat expectations, strong quarter 🚀",
    "Terrible support from {name} today, really disappointed.",
    "Not sure what to think about {name} guidance. Holding for now.",
    "{name} is overvalued and the growth story is broken, selling.",
    "Just bought more ${tag}. Best decision this year 😍🔥",
    "Why is nobody talking about the {name} lawsuit? This is bad.",
    "{name} keynote was boring, nothing new announced.",
    "Wow, {name} stock up 8% on huge AI demand. Amazing!",
    "¡Me encanta el nuevo producto de {name}! Excelente trabajo",
    "{name} Aktie fällt nach schwachen Zahlen, schlecht.",
    "{name}の新製品、とても良いです！最高",
    "أخبار سيئة عن {name} اليوم",
    "RT-worthy thread on ${tag} valuation 👇 lots of good points",
];

/// An X place: id, full name, name, country, country code, bounding box.
type Place = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    [f64; 4],
);

const PLACES: &[Place] = &[
    (
        "01a9a39529b27f36",
        "Manhattan, NY",
        "Manhattan",
        "United States",
        "US",
        [-74.026675, 40.683935, -73.910408, 40.877483],
    ),
    (
        "457b4814b4240d87",
        "London, England",
        "London",
        "United Kingdom",
        "GB",
        [-0.187894, 51.483718, -0.109978, 51.5164655],
    ),
    (
        "0d5ca3d2c4b6f0a1",
        "Tokyo, Japan",
        "Tokyo",
        "Japan",
        "JP",
        [139.5628, 35.5288, 139.9189, 35.8175],
    ),
    (
        "7d62cffe6f98f349",
        "San Jose, CA",
        "San Jose",
        "United States",
        "US",
        [-122.035311, 37.193164, -121.71215, 37.469154],
    ),
    (
        "2f1a9b7d3e4c5a60",
        "Berlin, Germany",
        "Berlin",
        "Germany",
        "DE",
        [13.088333, 52.338262, 13.760469, 52.675454],
    ),
    (
        "5e02a0f0d91c76d2",
        "São Paulo, Brazil",
        "São Paulo",
        "Brazil",
        "BR",
        [-46.826039, -24.008814, -46.365052, -23.356792],
    ),
];

const LANGS: &[&str] = &[
    "en", "en", "en", "en", "es", "de", "ja", "ar", "en", "en", "en", "en", "en", "en",
];

/// Deterministic pseudo-random numbers (SplitMix64): no dependency, same stream for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Settings of the generator.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    pub seed: u64,
    /// Share of records that are malformed (bad JSON or wrong types), 0.0 to 1.0.
    pub malformed_share: f64,
    /// Epoch seconds of the first post; posts are about 50 ms apart.
    pub start_epoch_secs: i64,
    /// Sequence number before the first post: post ids (and times) continue from it, so
    /// generators with different starts never produce the same post id.
    pub first_sequence: u64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            malformed_share: 0.0,
            start_epoch_secs: 1_795_000_000,
            first_sequence: 0,
        }
    }
}

pub struct Synth {
    rng: Rng,
    options: SynthOptions,
    sequence: u64,
}

impl Synth {
    pub fn new(options: SynthOptions) -> Self {
        Self {
            rng: Rng::new(options.seed),
            sequence: options.first_sequence,
            options,
        }
    }

    /// The next message as one JSON line (no trailing newline).
    pub fn next_message(&mut self) -> String {
        self.sequence += 1;
        if self.rng.chance(self.options.malformed_share) {
            return self.malformed();
        }
        self.post().to_string()
    }

    fn post_id(&self) -> String {
        format!("{}", 1_870_000_000_000_000_000u64 + self.sequence)
    }

    fn created_at(&self) -> String {
        let seconds = self.options.start_epoch_secs + (self.sequence / 20) as i64;
        let millis = (self.sequence % 20) * 50;
        let time = chrono::DateTime::from_timestamp(seconds, 0).expect("valid epoch");
        format!("{}.{millis:03}Z", time.format("%Y-%m-%dT%H:%M:%S"))
    }

    fn malformed(&mut self) -> String {
        let id = self.post_id();
        match self.rng.below(4) {
            0 => format!("{{\"data\":{{\"id\":\"{id}\",\"text\":\"truncated"),
            1 => format!("{{\"data\":{{\"id\":{id},\"text\":\"id is a number\"}}}}"),
            2 => format!("{{\"data\":{{\"id\":\"{id}\",\"created_at\":\"not a time\"}}}}"),
            _ => "not json at all".to_string(),
        }
    }

    fn post(&mut self) -> Value {
        let company = self.rng.pick(COMPANIES);
        let id = self.post_id();
        let author = format!("{}", 1_500_000_000_000_000_000u64 + self.rng.below(50_000));
        let template = *self.rng.pick(OPINIONS);
        let hashtag = *self.rng.pick(company.hashtags);
        let mut text = template
            .replace("{name}", company.name)
            .replace("{tag}", company.cashtag);
        text.push_str(&format!(" ${} #{hashtag}", company.cashtag));
        let cashtag_at = text.chars().count() - company.cashtag.len() - hashtag.len() - 3;
        let hashtag_at = text.chars().count() - hashtag.len() - 1;
        let is_retweet = self.rng.chance(0.15);
        let is_quote = !is_retweet && self.rng.chance(0.05);
        let long = self.rng.chance(0.05);
        let followers = 10u64.pow(self.rng.below(7) as u32) * (1 + self.rng.below(9));
        let mut data = json!({
            "id": id,
            "edit_history_tweet_ids": [id],
            "text": if is_retweet { format!("RT @marketwatch: {text}") } else { text.clone() },
            "author_id": author,
            "created_at": self.created_at(),
            "lang": *self.rng.pick(LANGS),
            "conversation_id": id,
            "possibly_sensitive": false,
            "reply_settings": "everyone",
            "entities": {
                "cashtags": [{"start": cashtag_at, "end": cashtag_at + company.cashtag.len() + 1, "tag": company.cashtag}],
                "hashtags": [{"start": hashtag_at, "end": hashtag_at + hashtag.len() + 1, "tag": hashtag}],
                "annotations": [{"start": 0, "end": company.name.len() - 1, "probability": 0.92, "type": "Organization", "normalized_text": company.name}],
            },
            "public_metrics": {
                "retweet_count": self.rng.below(500), "reply_count": self.rng.below(100),
                "like_count": self.rng.below(5000), "quote_count": self.rng.below(50),
                "impression_count": self.rng.below(200_000), "bookmark_count": self.rng.below(40),
            },
            "context_annotations": self.context_annotations(company),
        });
        let mut includes = json!({ "users": [self.user(&author, followers)] });
        if is_retweet || is_quote {
            let referenced = format!("{}", 1_860_000_000_000_000_000u64 + self.rng.below(1_000_000));
            let kind = if is_retweet { "retweeted" } else { "quoted" };
            data["referenced_tweets"] = json!([{ "type": kind, "id": referenced }]);
            includes["tweets"] = json!([{ "id": referenced, "text": text, "author_id": "1500000000000000001",
                "created_at": self.created_at(), "lang": "en" }]);
        }
        if long {
            data["note_tweet"] =
                json!({ "text": format!("{text} {}", "Long-form analysis follows. ".repeat(20)) });
        }
        self.add_geo(&mut data, &mut includes);
        json!({
            "data": data,
            "includes": includes,
            "matching_rules": [{ "id": format!("18000000000000000{:02}", self.rng.below(99)), "tag": format!("company:{}", company.id) }],
        })
    }

    fn user(&mut self, id: &str, followers: u64) -> Value {
        let handle = format!("trader_{}", &id[id.len() - 5..]);
        json!({
            "id": id, "name": format!("Trader {}", &id[id.len() - 5..]), "username": handle,
            "location": *self.rng.pick(&["New York, NY", "London", "東京", "Berlin", "", "the moon 🌙"]),
            "description": "Markets, macro and tech. Opinions are my own, not investment advice. Charts daily 📈 #investing #stocks $SPY",
            "created_at": "2014-05-01T12:00:00.000Z", "protected": false, "verified": self.rng.chance(0.1),
            "verified_type": "none", "profile_image_url": format!("https://pbs.twimg.com/profile_images/{id}/photo_normal.jpg"),
            "public_metrics": { "followers_count": followers, "following_count": self.rng.below(2000),
                "tweet_count": self.rng.below(100_000), "listed_count": self.rng.below(500), "like_count": self.rng.below(50_000) },
        })
    }

    fn context_annotations(&mut self, company: &Company) -> Value {
        let n = 2 + self.rng.below(4);
        (0..n)
            .map(|i| json!({
                "domain": { "id": format!("{}", 45 + i), "name": "Brand Vertical", "description": "Top level entities that describe a Brands industry" },
                "entity": { "id": format!("{}", 781974596752842752u64 + i), "name": company.name, "description": format!("{} and its products", company.name) },
            }))
            .collect()
    }

    fn add_geo(&mut self, data: &mut Value, includes: &mut Value) {
        let roll = self.rng.below(100);
        if roll >= 30 {
            return;
        }
        let (id, full_name, name, country, code, bbox) = *self.rng.pick(PLACES);
        data["geo"] = json!({ "place_id": id });
        if roll < 10 {
            let lon = (bbox[0] + bbox[2]) / 2.0;
            let lat = (bbox[1] + bbox[3]) / 2.0;
            data["geo"]["coordinates"] = json!({ "type": "Point", "coordinates": [lon, lat] });
        }
        includes["places"] = json!([{ "id": id, "full_name": full_name, "name": name, "country": country,
            "country_code": code, "place_type": "city",
            "geo": { "type": "Feature", "bbox": bbox, "properties": {} } }]);
    }
}

/// `count` messages as JSONL bytes, for benchmarks and tests.
pub fn jsonl(options: SynthOptions, count: usize) -> Vec<u8> {
    let mut synth = Synth::new(options);
    let mut out = Vec::with_capacity(count * 2200);
    for _ in 0..count {
        out.extend_from_slice(synth.next_message().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_messages_and_realistic_sizes() {
        let a = jsonl(SynthOptions::default(), 200);
        assert_eq!(a, jsonl(SynthOptions::default(), 200));
        let sizes: Vec<usize> = a
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::len)
            .collect();
        assert_eq!(sizes.len(), 200);
        assert!(
            sizes.iter().all(|&s| (1000..=4096).contains(&s)),
            "sizes {:?}",
            sizes.iter().minmax()
        );
    }

    trait MinMax {
        fn minmax(self) -> (usize, usize);
    }
    impl<'a, I: Iterator<Item = &'a usize>> MinMax for I {
        fn minmax(self) -> (usize, usize) {
            self.fold((usize::MAX, 0), |(lo, hi), &s| (lo.min(s), hi.max(s)))
        }
    }

    #[test]
    fn malformed_share_is_respected() {
        let options = SynthOptions {
            malformed_share: 0.2,
            ..Default::default()
        };
        let text = jsonl(options, 2000);
        let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let good = |l: &[u8]| {
            serde_json::from_slice::<Value>(l).is_ok_and(|v| v["data"]["context_annotations"].is_array())
        };
        let bad = lines.iter().filter(|l| !good(l)).count();
        assert_eq!(lines.len(), 2000);
        assert!((320..480).contains(&bad), "{bad} malformed of 2000");
    }
}
