//! The shared, lazily made connection to Redis or Redis Cluster, with every call bounded by a
//! timeout and every failure reduced to a message that names only its kind.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    Client, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError, Value,
};
use tokio::sync::OnceCell;

/// How many times the connection manager retries a (re)connection before the call fails; the
/// next call starts over.
const RECONNECT_RETRIES: usize = 2;
/// The first reconnection backoff.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// The longest reconnection backoff.
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// Where to connect.
enum Target {
    /// One server.
    Single {
        client: Client,
        /// `host:port` (or the socket path), for `Debug`: never the password.
        addr: String,
        db: i64,
    },
    /// A Redis Cluster, from its seed nodes.
    Cluster {
        /// `redis://host:port` URLs (without password).
        nodes: Vec<String>,
        password: Option<String>,
    },
}

/// A made connection. Both kinds multiplex and are cheap to clone.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

struct Inner {
    target: Target,
    /// Made on first use; if making it fails, the cell stays empty and the next call tries again.
    conn: OnceCell<Conn>,
}

/// A cheap-to-clone handle on one Redis connection, made on first use.
#[derive(Clone)]
pub(super) struct Connection {
    inner: Arc<Inner>,
}

/// A failure, reduced to a message naming its kind only (never the URL, a key or a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure(pub(super) String);

impl Connection {
    /// A connection to the single server at `url` (`redis://[[user]:password@]host[:port][/db]`).
    pub(super) fn single(url: &str) -> Result<Self, Failure> {
        let info = url
            .into_connection_info()
            .map_err(|_| Failure("redis: invalid URL".into()))?;
        Self::single_info(info)
    }

    /// A connection to the single server at `host:port`, with `password` if given (taken as is:
    /// no URL encoding).
    pub(super) fn single_host(
        host: &str,
        port: u16,
        password: Option<&str>,
    ) -> Result<Self, Failure> {
        if host.trim().is_empty() {
            return Err(Failure("redis: empty host".into()));
        }
        let info = ConnectionAddr::Tcp(host.trim().to_owned(), port)
            .into_connection_info()
            .map_err(|_| Failure("redis: invalid host".into()))?;
        let info = match password {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(settings)
            }
            None => info,
        };
        Self::single_info(info)
    }

    fn single_info(info: ConnectionInfo) -> Result<Self, Failure> {
        let addr = info.addr().to_string();
        let db = info.redis_settings().db();
        let client = Client::open(info).map_err(|e| describe(&e))?;
        Ok(Self::new(Target::Single { client, addr, db }))
    }

    /// A connection to the Redis Cluster seeded by `nodes` (`host:port` entries, or
    /// `redis://host:port` URLs).
    pub(super) fn cluster(
        nodes: impl IntoIterator<Item = impl AsRef<str>>,
        password: Option<&str>,
    ) -> Result<Self, Failure> {
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|n| node_url(n.as_ref()))
            .collect::<Result<_, _>>()?;
        if nodes.is_empty() {
            return Err(Failure("redis: no cluster nodes".into()));
        }
        let password = password.map(str::to_owned);
        // Validate the nodes now; the client used is built on first use, with the call timeout.
        cluster_client(&nodes, password.as_deref(), Duration::from_secs(1))?;
        Ok(Self::new(Target::Cluster { nodes, password }))
    }

    fn new(target: Target) -> Self {
        Self {
            inner: Arc::new(Inner {
                target,
                conn: OnceCell::new(),
            }),
        }
    }

    /// Runs `cmd`, connecting first if needed; the whole call is bounded by `timeout`.
    pub(super) async fn query(&self, cmd: &Cmd, timeout: Duration) -> Result<Value, Failure> {
        let call = async {
            let conn = self
                .inner
                .conn
                .get_or_try_init(|| self.connect(timeout))
                .await?;
            // `query_async` turns an error answer (`-NOAUTH ..`, `-WRONGTYPE ..`) into an `Err`.
            match conn.clone() {
                Conn::Single(mut c) => cmd.query_async::<Value>(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async::<Value>(&mut c).await,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(timed_out(timeout)),
        }
    }

    async fn connect(&self, timeout: Duration) -> Result<Conn, RedisError> {
        match &self.inner.target {
            Target::Single { client, .. } => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(RECONNECT_RETRIES)
                    .set_min_delay(RECONNECT_MIN_DELAY)
                    .set_max_delay(RECONNECT_MAX_DELAY);
                // Lazy: connects on the first command and reconnects by itself after an I/O error.
                ConnectionManager::new_lazy_with_config(client.clone(), config).map(Conn::Single)
            }
            Target::Cluster { nodes, password } => {
                let client = cluster_client(nodes, password.as_deref(), timeout)
                    .map_err(|_| RedisError::from((ErrorKind::InvalidClientConfig, "cluster")))?;
                client.get_async_connection().await.map(Conn::Cluster)
            }
        }
    }

    /// What `Debug` shows: the address(es), never a password.
    pub(super) fn describe_target(&self) -> String {
        match &self.inner.target {
            Target::Single { addr, db, .. } => format!("{addr}/{db}"),
            Target::Cluster { nodes, .. } => format!("cluster with {} nodes", nodes.len()),
        }
    }
}

/// `host:port` as a `redis://` URL; full `redis://` URLs are kept.
fn node_url(node: &str) -> Result<String, Failure> {
    let node = node.trim();
    if node.is_empty() {
        return Err(Failure("redis: empty cluster node".into()));
    }
    if node.contains("://") {
        Ok(node.to_owned())
    } else {
        Ok(format!("redis://{node}"))
    }
}

fn cluster_client(
    nodes: &[String],
    password: Option<&str>,
    timeout: Duration,
) -> Result<ClusterClient, Failure> {
    let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
        .connection_timeout(timeout)
        .response_timeout(timeout)
        .retries(2)
        .min_retry_wait(RECONNECT_MIN_DELAY.as_millis() as u64)
        .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64);
    if let Some(password) = password {
        builder = builder.password(password);
    }
    builder
        .build()
        .map_err(|_| Failure("redis: invalid cluster node".into()))
}

/// The error for a call that did not finish within `timeout`.
pub(super) fn timed_out(timeout: Duration) -> Failure {
    Failure(format!("redis: timed out after {timeout:?}"))
}

/// A failure's kind, as a message that holds no URL, key or value.
pub(super) fn describe(e: &RedisError) -> Failure {
    let kind = if e.is_connection_refusal() {
        "connection refused".to_owned()
    } else if e.is_timeout() {
        "timed out".to_owned()
    } else if e.kind() == ErrorKind::AuthenticationFailed {
        "authentication failed".to_owned()
    } else if e.is_connection_dropped() {
        "connection lost".to_owned()
    } else if e.is_io_error() {
        "I/O error".to_owned()
    } else if let Some(code) = e.code().filter(|c| is_error_code(c)) {
        format!("server error {code}")
    } else {
        let category = e.category();
        if category.is_empty() {
            "error".to_owned()
        } else {
            category.to_owned()
        }
    };
    Failure(format!("redis: {kind}"))
}

/// Whether `code` looks like a Redis error code (`ERR`, `NOAUTH`, `WRONGTYPE`, ...), safe to show.
fn is_error_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 32 && code.bytes().all(|b| b.is_ascii_uppercase())
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe_target())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls() {
        assert_eq!(node_url("10.0.0.1:7000").unwrap(), "redis://10.0.0.1:7000");
        assert_eq!(node_url(" h:1 ").unwrap(), "redis://h:1");
        assert_eq!(node_url("redis://h:1").unwrap(), "redis://h:1");
        assert!(node_url(" ").is_err());
    }

    #[test]
    fn invalid_url_is_refused_without_echoing_it() {
        let e = Connection::single("http://user:hunter2@example.com").unwrap_err();
        assert!(e.0.starts_with("redis: "), "{e:?}");
        assert!(!e.0.contains("hunter2"), "{e:?}");
    }

    #[test]
    fn host_port_and_raw_password() {
        let c = Connection::single_host("redis.internal", 6380, Some("p@ss/w:rd")).unwrap();
        assert_eq!(c.describe_target(), "redis.internal:6380/0");
        assert!(Connection::single_host(" ", 6380, None).is_err());
    }

    #[test]
    fn cluster_needs_nodes() {
        assert!(Connection::cluster(Vec::<String>::new(), None).is_err());
        assert!(Connection::cluster(["a:1", ""], None).is_err());
        let c = Connection::cluster(["a:1", "b:2", "c:3"], Some("pw")).unwrap();
        assert_eq!(c.describe_target(), "cluster with 3 nodes");
    }

    #[test]
    fn target_description_hides_the_password() {
        let c = Connection::single("redis://:hunter2@localhost:6390/3").unwrap();
        let d = c.describe_target();
        assert!(d.contains("localhost:6390") && d.ends_with("/3"), "{d}");
        assert!(!d.contains("hunter2"), "{d}");
    }

    #[test]
    fn errors_name_the_kind_only() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(describe(&io).0, "redis: connection refused");
        let t = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(describe(&t).0, "redis: timed out");
        let c = RedisError::from((ErrorKind::Client, "secret detail", "more".to_owned()));
        assert_eq!(describe(&c).0, "redis: client error");
        assert_eq!(
            timed_out(Duration::from_millis(500)).0,
            "redis: timed out after 500ms"
        );
        assert!(is_error_code("WRONGTYPE"));
        assert!(!is_error_code("value with spaces"));
    }
}
