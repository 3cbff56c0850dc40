//! Rate limits per client on the unauthenticated endpoints that cost the layer something (login
//! starts write to the verifier cache, callbacks call the identity provider, CLI polls read it).
//!
//! Each client address has a token bucket per kind of request, kept in a bounded, expiring
//! in-process map. The gate (protected requests) is never rate limited. See
//! [`SsoLayerBuilder::rate_limits`](crate::SsoLayerBuilder::rate_limits) and
//! [`SsoLayerBuilder::trusted_proxies`](crate::SsoLayerBuilder::trusted_proxies).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;

use crate::client_addr::Peer;
use crate::config::Problems;

/// One limit: a token bucket that holds up to `burst` requests and refills at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    per_minute: u32,
    burst: u32,
}

impl RateLimit {
    /// `per_minute` requests a minute on average, at most `burst` at once. Both must be at
    /// least 1 ([`SsoLayerBuilder::build`](crate::SsoLayerBuilder::build) says so otherwise).
    pub const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }

    /// The sustained rate, in requests a minute.
    pub const fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// The most requests allowed at once.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    fn scaled(self, factor: u32) -> Self {
        Self {
            per_minute: self.per_minute.saturating_mul(factor),
            burst: self.burst.saturating_mul(factor),
        }
    }

    /// Seconds for an empty bucket to fill up again.
    fn refill_time(self) -> Duration {
        Duration::from_secs_f64(f64::from(self.burst) * 60.0 / f64::from(self.per_minute.max(1)))
    }
}

/// The rate limits of the layer's unauthenticated endpoints, per client address.
///
/// The defaults are generous enough that no person meets them: 60 login starts a minute per
/// client with bursts of 20, and the same for callbacks; 120 CLI polls a minute with bursts of 20
/// (a CLI polls once a second). Requests without a known client
/// address (see [`ClientAddr`](crate::ClientAddr)) share one bucket per kind whose limits are
/// [`unknown_client_factor`](Self::unknown_client_factor) times larger, and a warning is logged
/// once.
///
/// ```
/// use tower_sso::{RateLimit, RateLimits};
///
/// let limits = RateLimits::default()
///     .login(RateLimit::new(120, 30))
///     .callback(None); // callbacks not limited
/// # let _ = limits;
/// let off = RateLimits::disabled();
/// # let _ = off;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimits {
    /// Login starts (`GET /sso/key/generate`); `None`: unlimited.
    pub login: Option<RateLimit>,
    /// Callbacks (`GET /sso/callback`); `None`: unlimited.
    pub callback: Option<RateLimit>,
    /// CLI login polls (`GET /sso/cli/poll/{key}`); `None`: unlimited.
    pub cli_poll: Option<RateLimit>,
    /// How much larger the limits of the one bucket shared by requests without a known client
    /// address are (default 10).
    pub unknown_client_factor: u32,
    /// How many clients are tracked at most (default 100 000). Past that, the least recently
    /// seen client's bucket is forgotten, as if it had refilled.
    pub max_clients: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login: Some(Self::DEFAULT),
            callback: Some(Self::DEFAULT),
            cli_poll: Some(Self::DEFAULT_CLI_POLL),
            unknown_client_factor: 10,
            max_clients: 100_000,
        }
    }
}

impl RateLimits {
    /// The default limit of each endpoint: 60 a minute, bursts of 20.
    pub const DEFAULT: RateLimit = RateLimit::new(60, 20);
    /// The default limit of CLI polls: 120 a minute, bursts of 20.
    pub const DEFAULT_CLI_POLL: RateLimit = RateLimit::new(120, 20);

    /// No rate limits at all.
    pub fn disabled() -> Self {
        Self {
            login: None,
            callback: None,
            cli_poll: None,
            ..Self::default()
        }
    }

    /// The limit on login starts per client (`None`: unlimited).
    pub fn login(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.login = limit.into();
        self
    }

    /// The limit on callbacks per client (`None`: unlimited).
    pub fn callback(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.callback = limit.into();
        self
    }

    /// The limit on CLI login polls per client (`None`: unlimited).
    pub fn cli_poll(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.cli_poll = limit.into();
        self
    }

    /// How much larger the limits shared by requests without a known client address are.
    pub fn unknown_client_factor(mut self, factor: u32) -> Self {
        self.unknown_client_factor = factor;
        self
    }

    /// How many clients are tracked at most.
    pub fn max_clients(mut self, n: u64) -> Self {
        self.max_clients = n;
        self
    }

    pub(crate) fn validate(&self, p: &mut Problems) {
        for (what, limit) in [
            ("login", self.login),
            ("callback", self.callback),
            ("CLI poll", self.cli_poll),
        ] {
            if let Some(l) = limit
                && (l.per_minute == 0 || l.burst == 0)
            {
                p.add(
                    "rate_limits (SSO_RATE_LIMIT_*)",
                    format!(
                        "the {what} limit must allow at least 1 a minute and a burst of 1 (use None to switch it off)"
                    ),
                );
            }
        }
        if self.unknown_client_factor == 0 {
            p.add(
                "rate_limits (SSO_RATE_LIMIT_*)",
                "unknown_client_factor must be at least 1",
            );
        }
        if self.max_clients == 0 {
            p.add(
                "rate_limits (SSO_RATE_LIMIT_*)",
                "max_clients must be at least 1",
            );
        }
    }
}

/// What a request is for, as far as the limits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Action {
    Login,
    Callback,
    CliPoll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    action: Action,
    /// `None`: the shared bucket of requests without a client address. IPv6 addresses are
    /// kept per /64 (what one host usually gets).
    client: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets, and the one-time warnings.
pub(crate) struct RateLimiter {
    limits: RateLimits,
    buckets: moka::sync::Cache<Key, Bucket>,
    warned_unknown: AtomicBool,
    warned_forwarded: AtomicBool,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        let factor = limits.unknown_client_factor.max(1);
        // A bucket idle for its refill time is full again: forgetting it then changes nothing.
        let idle = [limits.login, limits.callback, limits.cli_poll]
            .into_iter()
            .flatten()
            .flat_map(|l| [l.refill_time(), l.scaled(factor).refill_time()])
            .max()
            .unwrap_or(Duration::ZERO)
            + Duration::from_secs(1);
        let buckets = moka::sync::Cache::builder()
            .max_capacity(limits.max_clients.max(1))
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(idle)
            .build();
        Self {
            limits,
            buckets,
            warned_unknown: AtomicBool::new(false),
            warned_forwarded: AtomicBool::new(false),
        }
    }

    /// The configured limits.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Takes one token for `action` from the client's bucket. `Err(seconds)`: refused, retry
    /// after that many seconds.
    pub(crate) fn check(&self, action: Action, peer: Peer) -> Result<(), u64> {
        if self.limit(action).is_none() {
            return Ok(());
        }
        match peer {
            Peer::Unknown if !self.warned_unknown.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    "a login request carries no client address (insert tower_sso::ClientAddr, or serve axum with into_make_service_with_connect_info::<SocketAddr>()): all such requests share one rate-limit bucket"
                );
            }
            Peer::Direct {
                ip,
                forwarded: true,
            } if !self.warned_forwarded.swap(true, Ordering::Relaxed) => {
                tracing::warn!(
                    peer = %ip,
                    "X-Forwarded-For from a peer that is not a trusted proxy is ignored: if this is your reverse proxy, configure trusted_proxies (SSO_TRUSTED_PROXIES), or every client behind it shares its rate limits"
                );
            }
            _ => {}
        }
        self.check_at(action, peer.ip(), Instant::now())
    }

    fn limit(&self, action: Action) -> Option<RateLimit> {
        match action {
            Action::Login => self.limits.login,
            Action::Callback => self.limits.callback,
            Action::CliPoll => self.limits.cli_poll,
        }
    }

    fn check_at(&self, action: Action, client: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let Some(limit) = self.limit(action) else {
            return Ok(());
        };
        let limit = match client {
            Some(_) => limit,
            None => limit.scaled(self.limits.unknown_client_factor.max(1)),
        };
        let key = Key {
            action,
            client: client.map(per_host),
        };
        let capacity = f64::from(limit.burst);
        let per_sec = f64::from(limit.per_minute) / 60.0;
        let mut verdict = Ok(());
        // Atomic per key (moka's per-key lock, held only for this closure: nothing awaits).
        self.buckets.entry(key).and_compute_with(|entry| {
            let mut bucket = entry.map(|e| e.into_value()).unwrap_or(Bucket {
                tokens: capacity,
                at: now,
            });
            let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
            bucket.at = now;
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
            } else {
                let wait = (1.0 - bucket.tokens) / per_sec;
                // Less a nanosecond of float noise, so that 10.000000001 s reads as 10.
                verdict = Err(((wait - 1e-9).ceil() as u64).max(1));
            }
            Op::Put(bucket)
        });
        verdict
    }
}

/// The bucket key of an address: IPv4 as is, IPv6 per /64.
fn per_host(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !(u128::MAX >> 64)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn bursts_then_the_sustained_rate_then_429_with_retry_after() {
        let l = RateLimiter::new(RateLimits::default());
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(
                l.check_at(Action::Login, ip("203.0.113.7"), t0),
                Ok(()),
                "{i}"
            );
        }
        assert_eq!(l.check_at(Action::Login, ip("203.0.113.7"), t0), Err(1));
        // Another client, and another kind of request, have their own buckets.
        assert_eq!(l.check_at(Action::Login, ip("203.0.113.8"), t0), Ok(()));
        assert_eq!(l.check_at(Action::Callback, ip("203.0.113.7"), t0), Ok(()));
        // One a second comes back.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(l.check_at(Action::Login, ip("203.0.113.7"), t1), Ok(()));
        assert_eq!(l.check_at(Action::Login, ip("203.0.113.7"), t1), Err(1));
        // A real user's pace, one a second for ten minutes, is never refused.
        let l = RateLimiter::new(RateLimits::default());
        for s in 0..600 {
            let t = t0 + Duration::from_secs(s);
            assert_eq!(l.check_at(Action::Login, ip("198.51.100.1"), t), Ok(()));
        }
    }

    #[test]
    fn retry_after_counts_the_seconds_to_the_next_token() {
        let l = RateLimiter::new(RateLimits::default().login(RateLimit::new(2, 1)));
        let t0 = Instant::now();
        assert_eq!(l.check_at(Action::Login, ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(l.check_at(Action::Login, ip("192.0.2.1"), t0), Err(30));
        let t = t0 + Duration::from_secs(20);
        assert_eq!(l.check_at(Action::Login, ip("192.0.2.1"), t), Err(10));
        let t = t0 + Duration::from_secs(30);
        assert_eq!(l.check_at(Action::Login, ip("192.0.2.1"), t), Ok(()));
    }

    #[test]
    fn unknown_clients_share_a_larger_bucket() {
        let l = RateLimiter::new(
            RateLimits::default()
                .login(RateLimit::new(60, 2))
                .unknown_client_factor(3),
        );
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(l.check_at(Action::Login, None, t0), Ok(()));
        }
        assert!(l.check_at(Action::Login, None, t0).is_err());
    }

    #[test]
    fn ipv6_clients_are_kept_per_64() {
        let l = RateLimiter::new(RateLimits::default().login(RateLimit::new(60, 1)));
        let t0 = Instant::now();
        assert_eq!(l.check_at(Action::Login, ip("2001:db8:1:2::1"), t0), Ok(()));
        assert!(
            l.check_at(Action::Login, ip("2001:db8:1:2:ffff::9"), t0)
                .is_err()
        );
        assert_eq!(l.check_at(Action::Login, ip("2001:db8:1:3::1"), t0), Ok(()));
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let l = RateLimiter::new(RateLimits::disabled());
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(l.check_at(Action::Login, ip("192.0.2.1"), t0), Ok(()));
            assert_eq!(l.check(Action::Callback, Peer::Unknown), Ok(()));
        }
    }

    #[test]
    fn memory_is_bounded() {
        let l = RateLimiter::new(RateLimits::default().max_clients(100));
        let t0 = Instant::now();
        for i in 0..5000u32 {
            let addr = IpAddr::V4(i.into());
            let _ = l.check_at(Action::Login, Some(addr), t0);
        }
        l.buckets.run_pending_tasks();
        assert!(
            l.buckets.entry_count() <= 100,
            "{}",
            l.buckets.entry_count()
        );
    }

    #[test]
    fn bad_limits_are_configuration_errors() {
        let mut p = Problems::default();
        RateLimits::default()
            .login(RateLimit::new(0, 5))
            .callback(RateLimit::new(5, 0))
            .unknown_client_factor(0)
            .max_clients(0)
            .validate(&mut p);
        assert_eq!(p.0.len(), 4, "{:?}", p.0);
        let mut p = Problems::default();
        RateLimits::default().validate(&mut p);
        RateLimits::disabled().validate(&mut p);
        assert!(p.0.is_empty());
    }
}
