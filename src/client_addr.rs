//! Who is asking: the client address the rate limits are kept per.
//!
//! The address is the connection's peer, read from the request extensions: [`ClientAddr`]
//! (inserted by a plain hyper server, see its docs) or, with the `axum` feature, axum's
//! `ConnectInfo<SocketAddr>`. `X-Forwarded-For` is believed only when the peer is a configured
//! [trusted proxy](crate::SsoLayerBuilder::trusted_proxies), and then only as far as the
//! right-most address that is not itself a trusted proxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::HeaderMap;

/// The peer address of the connection a request came in on, for a plain hyper server.
///
/// The layer keeps its rate limits per client address, and reads it from the request
/// extensions. axum users get it from `Router::into_make_service_with_connect_info::<SocketAddr>()`
/// (feature `axum`); a hyper server inserts this type itself, once per connection:
///
/// ```
/// use std::net::SocketAddr;
/// use http::Request;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_sso::{ClientAddr, SsoLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let sso = SsoLayer::builder()
/// #     .base_url("https://gateway.example.com")
/// #     .session_secret("a long random secret, at least 16 bytes")
/// #     .build()?;
/// # let app_service = tower::service_fn(|_req: Request<String>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// // In the accept loop: `let (stream, peer) = listener.accept().await?;`
/// let peer: SocketAddr = "203.0.113.7:50312".parse()?;
/// let svc = ServiceBuilder::new()
///     .map_request(move |mut req: Request<String>| {
///         req.extensions_mut().insert(ClientAddr(peer));
///         req
///     })
///     .layer(sso)
///     .service(app_service);
/// // then serve `svc` on that connection, e.g. with
/// // `hyper_util::service::TowerToHyperService::new(svc)`.
/// # let _ = svc.oneshot(Request::get("/").body(String::new())?).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub SocketAddr);

/// One trusted proxy entry: an address or a CIDR range.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl fmt::Debug for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl IpRange {
    /// Parses `10.0.0.0/8`, `127.0.0.1`, `::1` or `fd00::/8`. The bits below the prefix must be
    /// zero (`10.0.0.1/8` is refused: it is probably a typo).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{t:?} is not an IP address or CIDR range"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{t:?} has an invalid prefix length (0 to {max})")),
            },
        };
        if mask(addr, prefix) != addr {
            return Err(format!(
                "{t:?} has host bits set below the /{prefix} prefix (did you mean {}/{prefix}?)",
                mask(addr, prefix)
            ));
        }
        Ok(Self {
            network: addr,
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

/// `ip` with every bit below `prefix` cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The proxies whose `X-Forwarded-For` is believed. Empty by default.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    ranges: Vec<IpRange>,
}

/// The most `X-Forwarded-For` entries looked at, right to left.
const MAX_FORWARDED_HOPS: usize = 32;

impl TrustedProxies {
    pub(crate) fn new(ranges: Vec<IpRange>) -> Self {
        Self { ranges }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// Whether the connection's peer (never an `X-Forwarded-For` entry) is a trusted proxy.
    /// `false` when the request carries no peer address.
    pub(crate) fn peer_is_trusted(&self, extensions: &http::Extensions) -> bool {
        peer_addr(extensions).is_some_and(|peer| self.trusts(peer.to_canonical()))
    }

    /// The client address of a request: the peer, or, when the peer is a trusted proxy, the
    /// right-most `X-Forwarded-For` entry that is not itself a trusted proxy (if every entry is
    /// trusted, the left-most one). `None` when the request carries no peer address.
    pub(crate) fn client_ip(&self, extensions: &http::Extensions, headers: &HeaderMap) -> Peer {
        let Some(peer) = peer_addr(extensions) else {
            return Peer::Unknown;
        };
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return Peer::Direct {
                ip: peer,
                forwarded: headers.contains_key("x-forwarded-for"),
            };
        }
        let mut client = peer;
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
            .take(MAX_FORWARDED_HOPS);
        for entry in entries {
            // A hop we cannot read ends the chain: the last address we could is the client.
            let Some(ip) = parse_forwarded(entry) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Peer::Proxied(client)
    }
}

/// What the request says about its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// No peer address in the request extensions.
    Unknown,
    /// Straight from an untrusted peer (`forwarded`: it sent an `X-Forwarded-For` we ignored).
    Direct { ip: IpAddr, forwarded: bool },
    /// Through trusted proxies.
    Proxied(IpAddr),
}

impl Peer {
    pub(crate) fn ip(self) -> Option<IpAddr> {
        match self {
            Peer::Unknown => None,
            Peer::Direct { ip, .. } | Peer::Proxied(ip) => Some(ip),
        }
    }
}

/// The peer address the server recorded: [`ClientAddr`], else axum's `ConnectInfo`.
fn peer_addr(extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(ClientAddr(addr)) = extensions.get::<ClientAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    None
}

/// One `X-Forwarded-For` entry: `203.0.113.7`, `2001:db8::1`, `203.0.113.7:4711` or
/// `[2001:db8::1]:4711`.
fn parse_forwarded(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    text.parse::<SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| IpRange::parse(s).unwrap()).collect())
    }

    fn ext(peer: &str) -> http::Extensions {
        let mut e = http::Extensions::new();
        e.insert(ClientAddr(peer.parse().unwrap()));
        e
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.1.2.3")) && !r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.9.9.9")), "IPv4-mapped IPv6");
        let r = IpRange::parse(" 127.0.0.1 ").unwrap();
        assert!(r.contains(ip("127.0.0.1")) && !r.contains(ip("127.0.0.2")));
        let r = IpRange::parse("fd00::/8").unwrap();
        assert!(r.contains(ip("fd12::1")) && !r.contains(ip("fe80::1")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.1/8",
            "example.com",
            "10.0.0.0/x",
            "10.0.0.0/-1",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            none.client_ip(&ext("203.0.113.7:1"), &h),
            Peer::Direct {
                ip: ip("203.0.113.7"),
                forwarded: true
            }
        );
        assert_eq!(none.client_ip(&http::Extensions::new(), &h), Peer::Unknown);

        let t = proxies(&["10.0.0.0/8", "127.0.0.1", "fd00::/8"]);
        // Right-most untrusted entry; what the client put on the left is ignored.
        let h = xff(&["6.6.6.6, 198.51.100.9, 10.0.0.2"]);
        assert_eq!(
            t.client_ip(&ext("127.0.0.1:9"), &h),
            Peer::Proxied(ip("198.51.100.9"))
        );
        // Across several headers, with ports and IPv6.
        let h = xff(&["6.6.6.6", "[2001:db8::7]:4711", "fd00::1, 10.1.1.1:80"]);
        assert_eq!(
            t.client_ip(&ext("10.0.0.1:9"), &h),
            Peer::Proxied(ip("2001:db8::7"))
        );
        // Every hop trusted: the left-most.
        let h = xff(&["10.0.0.5, 10.0.0.6"]);
        assert_eq!(
            t.client_ip(&ext("10.0.0.1:9"), &h),
            Peer::Proxied(ip("10.0.0.5"))
        );
        // No header: the proxy itself.
        assert_eq!(
            t.client_ip(&ext("10.0.0.1:9"), &HeaderMap::new()),
            Peer::Proxied(ip("10.0.0.1"))
        );
        // Garbage ends the chain at the last readable hop.
        let h = xff(&["1.1.1.1, garbage, 10.0.0.3"]);
        assert_eq!(
            t.client_ip(&ext("10.0.0.1:9"), &h),
            Peer::Proxied(ip("10.0.0.3"))
        );
        // An untrusted peer behind a trusted range's lookalike.
        assert_eq!(
            t.client_ip(&ext("[::ffff:10.0.0.1]:9"), &xff(&["5.5.5.5"])),
            Peer::Proxied(ip("5.5.5.5"))
        );
    }

    #[test]
    fn a_long_forwarded_chain_is_read_only_so_far() {
        let t = proxies(&["10.0.0.0/8"]);
        let chain = vec!["10.0.0.9"; 1000].join(", ");
        let h = xff(&[&format!("1.2.3.4, {chain}")]);
        // Past the hop bound, the left-most hop read is the answer (a trusted proxy's address).
        assert_eq!(
            t.client_ip(&ext("10.0.0.1:9"), &h),
            Peer::Proxied(ip("10.0.0.9"))
        );
    }
}
