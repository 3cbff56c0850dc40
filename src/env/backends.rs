//! Where the environment puts shared state: Redis (`REDIS_URL`, or LiteLLM's `REDIS_HOST` /
//! `REDIS_PORT` / `REDIS_PASSWORD`, or `REDIS_CLUSTER_NODES`) for the verifier cache and the
//! revocation feed, PostgreSQL (`DATABASE_URL`) for the user store.
//!
//! A variable set for a backend this build lacks (feature `redis` or `postgres` off) is a
//! configuration error rather than a silent fall-back to per-process state: several instances
//! each keeping their own login state is the failure that sends half of the logins back to the
//! login page.

use super::Env;
use crate::layer::SsoLayerBuilder;

/// Where the Redis variables point.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RedisTarget {
    /// One server, by URL (`redis://[user:password@]host:port[/db]`).
    Url(String),
    /// A Redis Cluster, by its seed nodes (`host:port`).
    Cluster {
        nodes: Vec<String>,
        password: Option<String>,
    },
}

/// Reads the backend variables into `b`.
pub(super) fn backends_from_env<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
) -> SsoLayerBuilder {
    let b = match redis_target(env) {
        Some(target) => with_redis(env, b, target),
        None => b,
    };
    match env.get("DATABASE_URL") {
        Some(url) => with_postgres(env, b, &url),
        None => b,
    }
}

/// The Redis the variables name, if any: `REDIS_CLUSTER_NODES`, else `REDIS_URL`, else
/// `REDIS_HOST` (with `REDIS_PORT`, default 6379, and `REDIS_PASSWORD`).
fn redis_target<F: Fn(&str) -> Option<String>>(env: &mut Env<F>) -> Option<RedisTarget> {
    let password = env.get("REDIS_PASSWORD");
    if let Some(raw) = env.get("REDIS_CLUSTER_NODES") {
        return match parse_cluster_nodes(&raw) {
            Ok(nodes) => Some(RedisTarget::Cluster { nodes, password }),
            Err(e) => {
                env.bad("REDIS_CLUSTER_NODES", e);
                None
            }
        };
    }
    if let Some(url) = env.get("REDIS_URL") {
        return Some(RedisTarget::Url(url));
    }
    let Some(host) = env.get("REDIS_HOST") else {
        if env.get("REDIS_PORT").is_some() || password.is_some() {
            env.bad(
                "REDIS_HOST",
                "is not set, but REDIS_PORT or REDIS_PASSWORD is",
            );
        }
        return None;
    };
    let port = match env.get("REDIS_PORT").map(|p| p.parse::<u16>()) {
        None => 6379,
        Some(Ok(p)) if p > 0 => p,
        Some(_) => {
            env.bad("REDIS_PORT", "must be a port number (1-65535)");
            return None;
        }
    };
    match redis_url(&host, port, password.as_deref()) {
        Ok(url) => Some(RedisTarget::Url(url)),
        Err(e) => {
            env.bad("REDIS_HOST", e);
            None
        }
    }
}

/// `redis://[:password@]host:port`, the password percent-encoded.
fn redis_url(host: &str, port: u16, password: Option<&str>) -> Result<String, String> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut url = url::Url::parse(&format!("redis://{host}:{port}"))
        .map_err(|_| format!("{host:?} is not a host name or address"))?;
    if url.host_str().is_none_or(str::is_empty) || url.path() != "" && url.path() != "/" {
        return Err(format!("{host:?} is not a host name or address"));
    }
    if let Some(pw) = password {
        url.set_password(Some(pw))
            .map_err(|()| "cannot carry a password".to_owned())?;
    }
    Ok(url.into())
}

/// `REDIS_CLUSTER_NODES`: comma-separated `host:port`, or LiteLLM's JSON list of
/// `{"host": .., "port": ..}` objects.
fn parse_cluster_nodes(raw: &str) -> Result<Vec<String>, String> {
    let nodes: Vec<String> = if raw.trim_start().starts_with('[') {
        #[derive(serde::Deserialize)]
        struct Node {
            host: String,
            port: serde_json::Value,
        }
        let list: Vec<Node> = serde_json::from_str(raw).map_err(|_| {
            "must be comma-separated host:port, or a JSON list of {\"host\", \"port\"}".to_owned()
        })?;
        list.into_iter()
            .map(|n| match n.port {
                serde_json::Value::Number(p) => format!("{}:{p}", n.host),
                serde_json::Value::String(p) => format!("{}:{p}", n.host),
                _ => format!("{}:", n.host),
            })
            .collect()
    } else {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if nodes.is_empty() {
        return Err("lists no node".to_owned());
    }
    for node in &nodes {
        let valid = node.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            return Err(format!("{node:?} is not host:port"));
        }
    }
    Ok(nodes)
}

/// The URL with any password replaced by `***`, for labels and messages.
#[cfg_attr(not(any(feature = "redis", feature = "postgres")), allow(dead_code))]
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.into()
        }
        Err(_) => "(unparsable URL)".to_owned(),
    }
}

#[cfg(feature = "redis")]
fn with_redis<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
    target: RedisTarget,
) -> SsoLayerBuilder {
    use crate::cache::RedisVerifierCache;
    let (variable, label, cache) = match &target {
        RedisTarget::Url(url) => (
            if env.get("REDIS_URL").is_some() {
                "REDIS_URL"
            } else {
                "REDIS_HOST"
            },
            format!("Redis at {}", redacted(url)),
            RedisVerifierCache::from_url(url),
        ),
        RedisTarget::Cluster { nodes, password } => (
            "REDIS_CLUSTER_NODES",
            format!("Redis Cluster at {}", nodes.join(",")),
            RedisVerifierCache::cluster(nodes, password.as_deref()),
        ),
    };
    match cache {
        Ok(cache) => {
            let feed = cache.revocations();
            b.verifier_cache(cache)
                .revocation_feed(feed)
                .label_backends(Some(label.clone()), None, Some(label))
        }
        Err(e) => {
            env.bad(variable, e.to_string());
            b
        }
    }
}

#[cfg(not(feature = "redis"))]
fn with_redis<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
    target: RedisTarget,
) -> SsoLayerBuilder {
    let variable = match target {
        RedisTarget::Cluster { .. } => "REDIS_CLUSTER_NODES",
        RedisTarget::Url(_) if env.get("REDIS_URL").is_some() => "REDIS_URL",
        RedisTarget::Url(_) => "REDIS_HOST",
    };
    env.bad(
        variable,
        "is set, but tower-sso was built without its `redis` feature: enable it to share login state between instances",
    );
    b
}

#[cfg(feature = "postgres")]
fn with_postgres<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
    url: &str,
) -> SsoLayerBuilder {
    match crate::store::PostgresUserStore::connect_lazy(url) {
        Ok(store) => {
            let label = format!("PostgreSQL at {}", redacted(url));
            b.user_store(store).label_backends(None, Some(label), None)
        }
        Err(e) => {
            env.bad("DATABASE_URL", e.to_string());
            b
        }
    }
}

#[cfg(not(feature = "postgres"))]
fn with_postgres<F: Fn(&str) -> Option<String>>(
    env: &mut Env<F>,
    b: SsoLayerBuilder,
    _url: &str,
) -> SsoLayerBuilder {
    env.bad(
        "DATABASE_URL",
        "is set, but tower-sso was built without its `postgres` feature: enable it to keep users in PostgreSQL",
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(vars: &[(&str, &str)]) -> (Option<RedisTarget>, Vec<String>) {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut env = Env {
            lookup: move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()),
            problems: Vec::new(),
        };
        let t = redis_target(&mut env);
        let problems = env.problems.iter().map(|p| p.to_string()).collect();
        (t, problems)
    }

    #[test]
    fn redis_variables_in_order_of_precedence() {
        assert_eq!(target(&[]), (None, vec![]));
        let (t, p) = target(&[
            ("REDIS_CLUSTER_NODES", "10.0.0.1:7000, 10.0.0.2:7001"),
            ("REDIS_URL", "redis://ignored"),
            ("REDIS_PASSWORD", "pw"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            t,
            Some(RedisTarget::Cluster {
                nodes: vec!["10.0.0.1:7000".into(), "10.0.0.2:7001".into()],
                password: Some("pw".into()),
            })
        );
        let (t, _) = target(&[("REDIS_URL", "redis://r:6380/2"), ("REDIS_HOST", "x")]);
        assert_eq!(t, Some(RedisTarget::Url("redis://r:6380/2".into())));
        let (t, _) = target(&[("REDIS_HOST", "cache.internal")]);
        assert_eq!(
            t,
            Some(RedisTarget::Url("redis://cache.internal:6379".into()))
        );
    }

    #[test]
    fn litellm_host_port_password_make_a_url_with_the_password_encoded() {
        let (t, p) = target(&[
            ("REDIS_HOST", "127.0.0.1"),
            ("REDIS_PORT", "6390"),
            ("REDIS_PASSWORD", "p@ss:w/rd"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        let Some(RedisTarget::Url(url)) = t else {
            panic!("{t:?}")
        };
        assert_eq!(url, "redis://:p%40ss%3Aw%2Frd@127.0.0.1:6390");
        assert_eq!(redacted(&url), "redis://:***@127.0.0.1:6390");
        let (t, _) = target(&[("REDIS_HOST", "::1")]);
        assert_eq!(t, Some(RedisTarget::Url("redis://[::1]:6379".into())));
    }

    #[test]
    fn cluster_nodes_as_litellm_json() {
        let (t, p) = target(&[(
            "REDIS_CLUSTER_NODES",
            r#"[{"host": "127.0.0.1", "port": 7001}, {"host": "127.0.0.1", "port": "7002"}]"#,
        )]);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            t,
            Some(RedisTarget::Cluster {
                nodes: vec!["127.0.0.1:7001".into(), "127.0.0.1:7002".into()],
                password: None,
            })
        );
    }

    #[test]
    fn bad_redis_variables_are_named() {
        for (vars, variable) in [
            (
                vec![("REDIS_CLUSTER_NODES", "a:1,b")],
                "REDIS_CLUSTER_NODES",
            ),
            (
                vec![("REDIS_CLUSTER_NODES", "[{\"host\": 1}]")],
                "REDIS_CLUSTER_NODES",
            ),
            (vec![("REDIS_CLUSTER_NODES", ",")], "REDIS_CLUSTER_NODES"),
            (
                vec![("REDIS_HOST", "h"), ("REDIS_PORT", "99999")],
                "REDIS_PORT",
            ),
            (vec![("REDIS_HOST", "h"), ("REDIS_PORT", "0")], "REDIS_PORT"),
            (vec![("REDIS_HOST", "a/b")], "REDIS_HOST"),
            (vec![("REDIS_PASSWORD", "secret-pw")], "REDIS_HOST"),
        ] {
            let (t, p) = target(&vars);
            assert_eq!(t, None, "{vars:?}");
            assert_eq!(p.len(), 1, "{vars:?}: {p:?}");
            assert!(p[0].contains(variable), "{vars:?}: {p:?}");
            assert!(!p[0].contains("secret-pw"), "{p:?}");
        }
    }
}
