//! The revocation feed on a Redis stream.
//!
//! One stream per key prefix, `{prefix}revocations`. Each revocation is an entry with fields
//! `sid` (the session id, or a `sid:`/`sub:` key), `exp` (when the session expires, seconds since
//! the epoch) and, for the `sid:`/`sub:` kinds, `before` (the issue-time bound), with an
//! id Redis assigns (`<milliseconds>-<sequence>`, increasing), which is the cursor. Publishing
//! also trims the entries older than the retention (`XADD .. MINID`), so the stream stays small.
//! Reading is a plain `XRANGE` from just after the cursor: no blocking commands, which would stall
//! the shared connection.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::{Cmd, Value};

use super::connection::Connection;
use super::prefixed;
use crate::revocation::{RevocationError, RevocationRequest, RevocationResponse, RevokedSession};

/// How many revocations one `Since` answers at most.
const BATCH: usize = 1000;

/// The stream's key, after the prefix.
const STREAM_KEY: &str = "revocations";

/// The [revocation feed](crate::revocation) on Redis or Redis Cluster: a stream at
/// `{prefix}revocations`, from [`RedisVerifierCache::revocations`](super::RedisVerifierCache::revocations).
///
/// `Publish` appends an entry and drops entries older than the
/// [retention](super::RedisVerifierCache::revocation_retention); `Since` answers at most 1000
/// revocations after the cursor (`more` is true when the batch is full). The cursor is a stream
/// entry id. Entries that are not well-formed are skipped with a warning.
///
/// Cheap to clone; shares the cache's connection, and the same timeout bounds every call.
#[derive(Clone)]
pub struct RedisRevocations {
    conn: Connection,
    key: String,
    timeout: Duration,
    retention: Duration,
}

impl RedisRevocations {
    pub(super) fn new(
        conn: Connection,
        prefix: &str,
        timeout: Duration,
        retention: Duration,
    ) -> Self {
        Self {
            conn,
            key: prefixed(prefix, STREAM_KEY),
            timeout,
            retention,
        }
    }

    async fn call_inner(
        self,
        req: RevocationRequest,
    ) -> Result<RevocationResponse, RevocationError> {
        match req {
            RevocationRequest::Publish(session) => {
                let min_id = min_id(now_millis(), self.retention);
                let mut cmd = ::redis::cmd("XADD");
                // Exact trimming (`=`, not `~`): approximate trimming only drops whole internal
                // nodes (100 entries), so a quiet stream would keep old entries for ever. Logouts
                // are rare; trimming the few expired entries each time costs little.
                cmd.arg(&self.key)
                    .arg("MINID")
                    .arg("=")
                    .arg(min_id)
                    .arg("*")
                    .arg("sid")
                    .arg(&session.session_id)
                    .arg("exp")
                    .arg(session.expires_at);
                if let Some(before) = session.issued_before {
                    cmd.arg("before").arg(before);
                }
                self.query(&cmd).await?;
                Ok(RevocationResponse::Published)
            }
            RevocationRequest::Since { cursor } => {
                let start = match &cursor {
                    None => "-".to_owned(),
                    Some(c) if is_stream_id(c) => format!("({c}"),
                    Some(_) => return Err(RevocationError("redis: invalid cursor".into())),
                };
                let mut cmd = ::redis::cmd("XRANGE");
                cmd.arg(&self.key)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(BATCH);
                let answer = self.query(&cmd).await?;
                let batch = parse_range(answer)
                    .ok_or_else(|| RevocationError("redis: unexpected answer to XRANGE".into()))?;
                Ok(RevocationResponse::Revoked {
                    more: batch.entries >= BATCH,
                    cursor: batch.last_id.or(cursor),
                    sessions: batch.sessions,
                })
            }
        }
    }

    async fn query(&self, cmd: &Cmd) -> Result<Value, RevocationError> {
        self.conn
            .query(cmd, self.timeout)
            .await
            .map_err(|f| RevocationError(f.0))
    }
}

/// Milliseconds since the epoch (0 if the clock is before it).
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The oldest stream id to keep: `now - retention`, in milliseconds.
fn min_id(now_ms: u64, retention: Duration) -> u64 {
    let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
    now_ms.saturating_sub(retention_ms)
}

/// Whether `s` is a stream entry id, `<ms>-<seq>`.
fn is_stream_id(s: &str) -> bool {
    let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
    s.split_once('-')
        .is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

/// One `XRANGE` answer, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// The well-formed revocations, in order.
    sessions: Vec<RevokedSession>,
    /// The id of the last entry (well-formed or not).
    last_id: Option<String>,
    /// How many entries the answer held (well-formed or not).
    entries: usize,
}

/// Parses an `XRANGE` answer: `[[id, [field, value, ..]], ..]`. `None` if it is not that shape at
/// the top level; malformed entries are skipped.
fn parse_range(answer: Value) -> Option<Batch> {
    let Value::Array(items) = answer else {
        return None;
    };
    let mut batch = Batch {
        entries: items.len(),
        ..Batch::default()
    };
    for item in items {
        let Value::Array(parts) = item else {
            tracing::warn!("revocation stream: skipping an entry that is not an array");
            continue;
        };
        let mut parts = parts.into_iter();
        let Some(id) = parts.next().and_then(text) else {
            tracing::warn!("revocation stream: skipping an entry without an id");
            continue;
        };
        if !is_stream_id(&id) {
            tracing::warn!("revocation stream: skipping an entry with a malformed id");
            continue;
        }
        batch.last_id = Some(id);
        match parts.next().and_then(parse_fields) {
            Some(session) => batch.sessions.push(session),
            None => tracing::warn!("revocation stream: skipping a malformed entry"),
        }
    }
    Some(batch)
}

/// The `sid` and `exp` fields of an entry (a flat field/value array, or a map in RESP3).
fn parse_fields(fields: Value) -> Option<RevokedSession> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    let mut sid = None;
    let mut exp = None;
    let mut before = None;
    for (k, v) in pairs {
        match text(k).as_deref() {
            Some("sid") => sid = text(v),
            Some("exp") => exp = text(v).and_then(|e| e.parse::<u64>().ok()),
            Some("before") => before = text(v).and_then(|e| e.parse::<u64>().ok()),
            _ => {}
        }
    }
    Some(RevokedSession {
        session_id: sid.filter(|s| !s.is_empty())?,
        expires_at: exp?,
        issued_before: before,
    })
}

/// A string-like value as text.
fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

impl fmt::Debug for RedisRevocations {
    /// Shows where and the stream key; never the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("server", &self.conn.describe_target())
            .field("key", &self.key)
            .field("timeout", &self.timeout)
            .field("retention", &self.retention)
            .finish()
    }
}

impl tower::Service<RevocationRequest> for RedisRevocations {
    type Response = RevocationResponse;
    type Error = RevocationError;
    type Future = Pin<Box<dyn Future<Output = Result<RevocationResponse, RevocationError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RevocationRequest) -> Self::Future {
        Box::pin(self.clone().call_inner(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    fn revoked(sid: &str, exp: u64) -> RevokedSession {
        RevokedSession::session(sid, exp)
    }

    #[test]
    fn parses_entries_and_skips_malformed_ones() {
        let answer = Value::Array(vec![
            entry("1-0", &["sid", "a", "exp", "100"]),
            entry("2-0", &["exp", "200", "sid", "b", "extra", "x"]),
            entry("3-0", &["sid", "c"]),
            entry("4-0", &["sid", "d", "exp", "soon"]),
            entry("5-0", &["sid", "", "exp", "1"]),
            entry("6-0", &["sid", "e", "exp"]),
            Value::Int(7),
            Value::Array(vec![]),
            entry("not-an-id", &["sid", "f", "exp", "1"]),
            Value::Array(vec![
                bulk("8-0"),
                Value::Map(vec![(bulk("sid"), bulk("g")), (bulk("exp"), bulk("800"))]),
            ]),
        ]);
        let batch = parse_range(answer).unwrap();
        assert_eq!(
            batch.sessions,
            vec![revoked("a", 100), revoked("b", 200), revoked("g", 800)]
        );
        assert_eq!(batch.last_id.as_deref(), Some("8-0"));
        assert_eq!(batch.entries, 10);
    }

    #[test]
    fn parses_the_issue_time_bound_of_idp_revocations() {
        let answer = Value::Array(vec![entry(
            "1-0",
            &["sid", "sid:okta|abc", "exp", "900", "before", "50"],
        )]);
        let batch = parse_range(answer).unwrap();
        assert_eq!(
            batch.sessions,
            vec![RevokedSession::idp_session("okta", "abc", 50, 900)]
        );
    }

    #[test]
    fn empty_and_wrong_answers() {
        assert_eq!(parse_range(Value::Array(vec![])), Some(Batch::default()));
        assert_eq!(parse_range(Value::Nil), None);
        assert_eq!(parse_range(Value::Okay), None);
    }

    #[test]
    fn stream_ids() {
        assert!(is_stream_id("1700000000000-0"));
        assert!(is_stream_id("0-1"));
        assert!(!is_stream_id("1700000000000"));
        assert!(!is_stream_id("-"));
        assert!(!is_stream_id("1-"));
        assert!(!is_stream_id("a-1"));
        assert!(!is_stream_id("1-1-1"));
        assert!(!is_stream_id("1-1 "));
    }

    #[test]
    fn min_id_saturates() {
        assert_eq!(min_id(10_000, Duration::from_secs(3)), 7_000);
        assert_eq!(min_id(10, Duration::from_secs(3)), 0);
        assert_eq!(min_id(10, Duration::MAX), 0);
    }

    #[test]
    fn stream_key_uses_the_prefix() {
        let c = crate::cache::RedisVerifierCache::from_url("redis://localhost")
            .unwrap()
            .key_prefix("p:");
        assert_eq!(c.revocations().key, "p:revocations");
    }

    #[tokio::test]
    async fn invalid_cursor_is_refused_before_any_call() {
        let c = crate::cache::RedisVerifierCache::from_url("redis://127.0.0.1:1").unwrap();
        let e = tower::ServiceExt::oneshot(
            c.revocations(),
            RevocationRequest::Since {
                cursor: Some("(0-0 +".into()),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(e.0, "redis: invalid cursor");
    }
}
