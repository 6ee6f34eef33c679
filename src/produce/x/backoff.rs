//! X's reconnect policy for the filtered stream (`handling-disconnections` in X's docs), and the
//! clock it waits on, so tests can check the schedule without waiting it out. `produce bluesky`
//! reconnects to Jetstream by the same policy (Jetstream documents none of its own).
//!
//! After an established connection drops, reconnect at once. When an attempt then fails:
//! network errors back off linearly (+250 ms per attempt, up to 16 s), HTTP errors
//! exponentially (5 s doubling up to 320 s), and 429 exponentially from 1 minute, or until
//! `x-rate-limit-reset` when that is later.

use std::future::Future;
use std::time::{Duration, SystemTime};

pub const NETWORK_STEP: Duration = Duration::from_millis(250);
pub const NETWORK_MAX: Duration = Duration::from_secs(16);
pub const HTTP_FIRST: Duration = Duration::from_secs(5);
pub const HTTP_MAX: Duration = Duration::from_secs(320);
pub const RATE_LIMIT_FIRST: Duration = Duration::from_secs(60);
/// X's docs set no ceiling for 429; one 15-minute rate-limit window always renews the quota.
pub const RATE_LIMIT_MAX: Duration = Duration::from_secs(15 * 60);

/// Why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP response, or a connection that died before delivering anything.
    Network,
    /// A retryable HTTP error (5xx), or an in-stream disconnect before any data.
    Http,
    /// HTTP 429; `reset` is the `x-rate-limit-reset` time when the response had one.
    RateLimited { reset: Option<SystemTime> },
}

/// How long to wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub delay: Duration,
    /// The policy's ceiling is reached: X recommends alerting on this.
    pub at_max: bool,
}

/// Consecutive failed attempts per kind since the last established connection.
#[derive(Debug, Default)]
pub struct Backoff {
    network: u32,
    http: u32,
    rate_limited: u32,
}

impl Backoff {
    /// A connection delivered data: the next drop reconnects at once and failures start over.
    pub fn established(&mut self) {
        *self = Self::default();
    }

    /// The wait after a failed attempt at `now`.
    pub fn after(&mut self, failure: Failure, now: SystemTime) -> Wait {
        match failure {
            Failure::Network => {
                self.network = self.network.saturating_add(1);
                capped(NETWORK_STEP.saturating_mul(self.network), NETWORK_MAX)
            }
            Failure::Http => {
                self.http = self.http.saturating_add(1);
                capped(doubled(HTTP_FIRST, self.http), HTTP_MAX)
            }
            Failure::RateLimited { reset } => {
                self.rate_limited = self.rate_limited.saturating_add(1);
                let wait = capped(doubled(RATE_LIMIT_FIRST, self.rate_limited), RATE_LIMIT_MAX);
                let until_reset = reset.and_then(|r| r.duration_since(now).ok()).unwrap_or_default();
                Wait {
                    delay: wait.delay.max(until_reset),
                    ..wait
                }
            }
        }
    }

    /// [`Self::after`], logged for the stream named `stream`: at the policy's ceiling as an error
    /// (X recommends alerting on it), else as a warning.
    pub fn after_logged(&mut self, failure: Failure, now: SystemTime, stream: &str, why: &str) -> Wait {
        let wait = self.after(failure, now);
        let delay = wait.delay;
        if wait.at_max {
            tracing::error!("{stream}: {why}; reconnect backoff at its maximum, retrying in {delay:?}");
        } else {
            tracing::warn!("{stream}: {why}; retrying in {delay:?}");
        }
        wait
    }
}

/// `first` doubled for every attempt after the first one.
fn doubled(first: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
}

fn capped(delay: Duration, max: Duration) -> Wait {
    Wait {
        delay: delay.min(max),
        at_max: delay >= max,
    }
}

/// Wall-clock time and waiting: the real ones in production, a recording fake in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(failures: &[Failure]) -> Vec<(u64, bool)> {
        let mut backoff = Backoff::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        failures
            .iter()
            .map(|f| {
                let wait = backoff.after(*f, now);
                (wait.delay.as_millis() as u64, wait.at_max)
            })
            .collect()
    }

    #[test]
    fn network_errors_back_off_linearly_up_to_16_s() {
        let waits = schedule(&[Failure::Network; 66]);
        assert_eq!(
            &waits[..4],
            [(250, false), (500, false), (750, false), (1000, false)]
        );
        assert_eq!(waits[62], (15_750, false));
        assert_eq!(&waits[63..], [(16_000, true); 3]);
    }

    #[test]
    fn http_errors_back_off_exponentially_from_5_s_up_to_320_s() {
        let secs: Vec<(u64, bool)> = schedule(&[Failure::Http; 9])
            .into_iter()
            .map(|(ms, max)| (ms / 1000, max))
            .collect();
        let expected = [5, 10, 20, 40, 80, 160, 320, 320, 320].map(|s| (s, s == 320));
        assert_eq!(secs, expected);
        assert_eq!(
            schedule(&[Failure::Http; 100])[99],
            (320_000, true),
            "no overflow"
        );
    }

    #[test]
    fn rate_limits_double_from_a_minute_and_honour_a_later_reset() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut backoff = Backoff::default();
        let plain = Failure::RateLimited { reset: None };
        let soon = Failure::RateLimited {
            reset: Some(now + Duration::from_secs(30)),
        };
        let late = Failure::RateLimited {
            reset: Some(now + Duration::from_secs(200)),
        };
        let past = Failure::RateLimited {
            reset: Some(now - Duration::from_secs(5)),
        };
        let delays: Vec<u64> = [plain, soon, late, past, plain, plain]
            .iter()
            .map(|f| backoff.after(*f, now).delay.as_secs())
            .collect();
        assert_eq!(delays, [60, 120, 240, 480, 900, 900]);
        assert!(backoff.after(plain, now).at_max);
        backoff.established();
        assert_eq!(
            backoff.after(late, now).delay.as_secs(),
            200,
            "the reset is later than 60 s"
        );
    }

    #[test]
    fn an_established_connection_starts_every_kind_over_and_kinds_count_apart() {
        let mut backoff = Backoff::default();
        let now = SystemTime::UNIX_EPOCH;
        backoff.after(Failure::Network, now);
        backoff.after(Failure::Network, now);
        assert_eq!(
            backoff.after(Failure::Http, now).delay,
            HTTP_FIRST,
            "kinds count apart"
        );
        assert_eq!(backoff.after(Failure::Network, now).delay, NETWORK_STEP * 3);
        backoff.established();
        assert_eq!(backoff.after(Failure::Network, now).delay, NETWORK_STEP);
        assert_eq!(backoff.after(Failure::Http, now).delay, HTTP_FIRST);
    }
}
