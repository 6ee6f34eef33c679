//! Producers of X stream messages: the X API's filtered stream ([`x`]), Bluesky's Jetstream made
//! X messages ([`bluesky`]), and the synthetic generator ([`synth`]).

pub mod bluesky;
pub mod synth;
mod throughput;
pub mod x;

/// The post id of a stream message (`data.id`), used as the Kafka key so that every delivery
/// of a post lands in one partition. `None` for messages without one (errors, bad JSON).
pub fn post_id(message: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        data: Option<Data<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let message: Message = serde_json::from_slice(message).ok()?;
    Some(message.data?.id?.into_owned())
}

#[cfg(test)]
mod tests {
    use super::post_id;

    #[test]
    fn the_key_is_the_post_id_even_after_nested_ids() {
        let message =
            br#"{"data":{"entities":{"mentions":[{"id":"9"}]},"id":"1870","text":"hi"},"includes":{}}"#;
        assert_eq!(post_id(message).as_deref(), Some("1870"));
        assert_eq!(post_id(b"{not json"), None);
        assert_eq!(post_id(br#"{"errors":[{"title":"x"}]}"#), None);
    }
}
