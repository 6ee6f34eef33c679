//! The `[metrics]` section.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::settings::InvalidSetting;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` where `run` serves /metrics, /healthz and /readyz; empty turns the server off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            // Loopback: exposing the port is a choice (`0.0.0.0:9464` in a container).
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.listen_address().map(drop)
    }

    /// Where to serve; `None` when the server is off.
    pub fn listen_address(&self) -> Result<Option<SocketAddr>, InvalidSetting> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            InvalidSetting::new(
                "listen",
                format!(
                    "`{listen}` is not an IP:PORT address: use e.g. 127.0.0.1:9464, 0.0.0.0:9464 or \
                     [::]:9464, or \"\" to turn the server off"
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> MetricsConfig {
        MetricsConfig {
            listen: listen.into(),
        }
    }

    #[test]
    fn listen_is_an_ip_and_port_or_empty_for_off() {
        let default = MetricsConfig::default().listen_address().unwrap();
        assert_eq!(default, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config("").listen_address().unwrap(), None);
        assert_eq!(
            config("[::]:9000").listen_address().unwrap(),
            Some("[::]:9000".parse().unwrap())
        );
        for bad in ["localhost:9464", "127.0.0.1", "9464", "127.0.0.1:http"] {
            let error = config(bad).validate().unwrap_err();
            assert_eq!(error.key, "listen");
            assert!(error.message.contains(bad), "{error}");
        }
    }
}
