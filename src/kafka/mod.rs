//! One way to reach Kafka: the brokers and the librdkafka options (security, timeouts) that the
//! source, the dead-letter topic and every producer share, and how a Kafka error is classified.

pub mod publisher;

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::settings::Redacted;

pub use publisher::{KafkaPublisher, PublishError};

/// The brokers and the client options of every Kafka client tweetlake creates. In the config
/// file these are `source.bootstrap_servers` and `source.kafka_options`.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties, passed through as they are; they override tweetlake's own.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConnection {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            options: BTreeMap::new(),
        }
    }
}

// Options may hold passwords (`sasl.password`, `ssl.key.password`): never shown.
impl std::fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConnection")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("options", &Redacted(&self.options))
            .finish()
    }
}

impl KafkaConnection {
    /// A librdkafka configuration for this connection: `defaults` (a client's own settings)
    /// first, then the user's options, which win.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

/// What a Kafka error means for a running pipeline, decided by its error code: a permanent
/// failure only goes away when the user fixes something, so retrying it only delays the news.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaFailure {
    /// The topic or partition does not exist (deleted while running, or never created).
    TopicMissing,
    /// The broker refused the credentials (SASL, TLS).
    AuthenticationFailed,
    /// The credentials are valid but lack a permission (topic, group or cluster ACLs).
    NotAuthorized,
    /// librdkafka or the broker rejected a setting.
    InvalidConfig,
    /// A broker down, a timeout, a rebalance: worth waiting out.
    Transient,
}

impl KafkaFailure {
    pub fn of(error: &KafkaError) -> Self {
        use RDKafkaErrorCode as Code;
        if matches!(
            error,
            KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_)
        ) {
            return Self::InvalidConfig;
        }
        match error.rdkafka_error_code() {
            Some(Code::UnknownTopicOrPartition | Code::UnknownTopic | Code::UnknownTopicId) => {
                Self::TopicMissing
            }
            Some(
                Code::Authentication
                | Code::SaslAuthenticationFailed
                | Code::UnsupportedSASLMechanism
                | Code::IllegalSASLState
                | Code::SSL,
            ) => Self::AuthenticationFailed,
            Some(
                Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::TransactionalIdAuthorizationFailed,
            ) => Self::NotAuthorized,
            Some(
                Code::InvalidConfig
                | Code::InvalidArgument
                | Code::Fatal
                | Code::MessageSizeTooLarge
                | Code::InvalidMessageSize,
            ) => Self::InvalidConfig,
            _ => Self::Transient,
        }
    }

    pub fn is_permanent(self) -> bool {
        self != Self::Transient
    }

    /// What to fix, as the end of an error line.
    pub fn hint(self) -> &'static str {
        match self {
            Self::TopicMissing => " (the topic does not exist, or was deleted: create it, or fix source.topic / source.topics)",
            Self::AuthenticationFailed => {
                " (the broker refused the credentials: check the sasl.* / ssl.* entries of source.kafka_options)"
            }
            Self::NotAuthorized => {
                " (not authorized: grant this principal access to the topic and group, or fix source.kafka_options)"
            }
            Self::InvalidConfig => " (check source.kafka_options)",
            Self::Transient => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code() {
        let consume = |code| KafkaFailure::of(&KafkaError::MessageConsumption(code));
        assert_eq!(
            consume(RDKafkaErrorCode::UnknownTopicOrPartition),
            KafkaFailure::TopicMissing
        );
        assert_eq!(
            consume(RDKafkaErrorCode::SaslAuthenticationFailed),
            KafkaFailure::AuthenticationFailed
        );
        assert_eq!(
            consume(RDKafkaErrorCode::TopicAuthorizationFailed),
            KafkaFailure::NotAuthorized
        );
        assert_eq!(consume(RDKafkaErrorCode::AllBrokersDown), KafkaFailure::Transient);
        assert_eq!(
            KafkaFailure::of(&KafkaError::ClientCreation("bad option".into())),
            KafkaFailure::InvalidConfig
        );
        assert!(!KafkaFailure::Transient.is_permanent());
        assert!(KafkaFailure::TopicMissing.is_permanent());
    }

    #[test]
    fn user_options_override_a_clients_defaults_and_passwords_never_show() {
        let connection = KafkaConnection {
            bootstrap_servers: "127.0.0.1:1".into(),
            options: [("linger.ms", "5"), ("sasl.password", "s3cr3t")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let config = connection.client_config(&[("linger.ms", "20"), ("acks", "all")]);
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:1"));
        assert!(!format!("{connection:?}").contains("s3cr3t"));
    }
}
