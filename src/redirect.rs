//! Validation of post-login return targets, so the login flow is never an open redirector
//! (RFC 9700 §4.11.1).
//!
//! A target is accepted only if it is
//! - a same-origin relative path (see [`same_origin_relative`]), or
//! - an absolute `http`/`https` URL whose host is on the allow list of a [`RedirectPolicy`].
//!
//! Everything else (`javascript:`, `data:`, scheme-relative `//host`, `/\host`, URLs with user
//! info, control characters or white space, hosts spelled with non-ASCII or percent-encoded
//! characters, trailing dots, ...) is refused, and the caller falls back to its default page.
//! The rules follow oauth2-proxy's redirect validator, whose open-redirect corpus is part of the
//! tests.

use percent_encoding::percent_decode_str;
use url::{Host, Url};

/// Longest return target accepted.
const MAX_TARGET_LEN: usize = 4096;

/// One allow-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DomainRule {
    /// Lower-cased host (for IPv6, with brackets).
    host: String,
    /// `.example.com` / `*.example.com`: the domain and every subdomain.
    subdomains: bool,
    /// `None`: only the scheme's default port; `Some(None)`: any port (`:*`); `Some(Some(p))`: `p`.
    port: Option<Option<u16>>,
}

impl DomainRule {
    fn parse(entry: &str) -> Option<Self> {
        let e = entry.trim().to_ascii_lowercase();
        let (e, subdomains) = if let Some(rest) = e.strip_prefix("*.") {
            (rest.to_owned(), true)
        } else if let Some(rest) = e.strip_prefix('.') {
            (rest.to_owned(), true)
        } else {
            (e, false)
        };
        // Split off a port, taking care of bracketed IPv6 literals.
        let (host, port) = if e.starts_with('[') {
            let end = e.find(']')?;
            let (h, rest) = e.split_at(end + 1);
            match rest {
                "" => (h.to_owned(), None),
                r => (h.to_owned(), Some(parse_port(r.strip_prefix(':')?)?)),
            }
        } else {
            match e.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), Some(parse_port(p)?)),
                None => (e, None),
            }
        };
        let valid_host = !host.is_empty()
            && !host.ends_with('.')
            && !host.starts_with('.')
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
            });
        valid_host.then_some(DomainRule {
            host,
            subdomains,
            port,
        })
    }

    fn matches(&self, host: &str, port: Option<u16>, default_port: u16) -> bool {
        let host_ok = host == self.host
            || (self.subdomains
                && host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.');
        let port_ok = match self.port {
            None => port.is_none_or(|p| p == default_port),
            Some(None) => true,
            Some(Some(want)) => port.unwrap_or(default_port) == want,
        };
        host_ok && port_ok
    }
}

fn parse_port(p: &str) -> Option<Option<u16>> {
    if p == "*" {
        return Some(None);
    }
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|p| *p != 0).map(Some)
}

/// Which post-login return targets may be redirected to.
///
/// Relative same-origin paths are always allowed; absolute URLs only for the configured domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectPolicy {
    allowed_domains: Vec<DomainRule>,
}

impl RedirectPolicy {
    /// A policy allowing absolute `http`/`https` redirects to the given domains.
    ///
    /// Entry syntax (case-insensitive, as oauth2-proxy's `--whitelist-domain`):
    /// - `example.com`: exactly that host;
    /// - `.example.com` or `*.example.com`: `example.com` and any subdomain;
    /// - `host:8443`: that port only; `host:*`: any port; without a port, only the scheme's
    ///   default port (80 for http, 443 for https; an explicit `:443` on https counts as default);
    /// - IP literals are allowed (`127.0.0.1:3000`, `[::1]:8080`).
    ///
    /// Entries that cannot be parsed (empty, trailing dot, bad port, non-ASCII) are ignored with
    /// a warning. Internationalised domains must be given in their ASCII (`xn--`) form.
    pub fn new<I, S>(domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let allowed_domains = domains
            .into_iter()
            .filter_map(|d| {
                let rule = DomainRule::parse(d.as_ref());
                if rule.is_none() {
                    tracing::warn!(
                        entry = d.as_ref(),
                        "ignoring invalid redirect allow-list entry"
                    );
                }
                rule
            })
            .collect();
        Self { allowed_domains }
    }

    /// Whether any absolute-URL domain is allowed.
    pub fn has_allowed_domains(&self) -> bool {
        !self.allowed_domains.is_empty()
    }

    /// The target to redirect to after login, or `None` when it is not safe (the caller then uses
    /// its default page). An accepted target is returned exactly as given.
    ///
    /// Accepted: a same-origin relative path ([`same_origin_relative`]), or an absolute URL that
    /// - starts with `http://` or `https://` (any case) followed directly by the host,
    /// - consists of printable ASCII only (no white space, control characters or backslashes),
    /// - carries no user info (`user@`, `user:pass@`) and no percent-encoding or trailing dot in
    ///   the host,
    /// - and whose host and port match an allowed domain.
    pub fn validate(&self, target: &str) -> Option<String> {
        if same_origin_relative(target) || self.absolute_allowed(target) {
            Some(target.to_owned())
        } else {
            None
        }
    }

    fn absolute_allowed(&self, target: &str) -> bool {
        if self.allowed_domains.is_empty()
            || target.len() > MAX_TARGET_LEN
            || !is_clean_ascii(target.as_bytes())
        {
            return false;
        }
        let lower_prefix = target.get(..8).unwrap_or(target).to_ascii_lowercase();
        let (rest, default_port) = if lower_prefix.starts_with("https://") {
            (&target[8..], 443)
        } else if lower_prefix.starts_with("http://") {
            (&target[7..], 80)
        } else {
            return false;
        };
        // The authority as written: up to the first '/', '?' or '#'.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.is_empty() || authority.contains(['@', '%']) {
            return false;
        }
        let Ok(url) = Url::parse(target) else {
            return false;
        };
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return false;
        }
        let host = match url.host() {
            Some(Host::Domain(d)) => d.to_owned(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return false,
        };
        // The host as written (without the port) must be exactly what the URL parser understood:
        // refuses IDNA mappings (full-width dots, Unicode), IPv4 shorthands (`0x7f.1`), and
        // trailing dots.
        let written_host = if authority.starts_with('[') {
            authority
                .find(']')
                .map_or(authority, |end| &authority[..=end])
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, _)| h)
        };
        if !written_host.eq_ignore_ascii_case(&host) || host.ends_with('.') {
            return false;
        }
        let port = url.port();
        self.allowed_domains
            .iter()
            .any(|rule| rule.matches(&host, port, default_port))
    }
}

/// Whether `target` is a safe same-origin relative path: it starts with exactly one `/` followed
/// by a character other than `/` or `\` (or is just `/`), and neither as written nor after one
/// percent-decoding pass does it contain white space, control characters, backslashes, non-ASCII
/// characters, or anywhere (query and fragment included) `//`, `/./` or `/../`.
///
/// Stricter than a browser needs (`/a%20b` is refused), but never ambiguous: no browser or proxy
/// can turn an accepted path into a navigation to another origin.
pub fn same_origin_relative(target: &str) -> bool {
    if target.len() > MAX_TARGET_LEN || !target.starts_with('/') {
        return false;
    }
    let raw = target.as_bytes();
    if !is_clean_ascii(raw) || !path_is_safe(raw) {
        return false;
    }
    let decoded: Vec<u8> = percent_decode_str(target).collect();
    is_clean_ascii(&decoded) && path_is_safe(&decoded)
}

/// Printable ASCII without space or backslash.
fn is_clean_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b > 0x20 && b < 0x7f && b != b'\\')
}

/// A `/`-rooted target in which no `/` is followed by another `/` or by a `.`/`..` segment
/// (`//`, `/./`, `/../`), anywhere, query and fragment included (as oauth2-proxy: a same-origin
/// page must not be handed a scheme-relative URL to bounce the user on to).
fn path_is_safe(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let segments: Vec<&[u8]> = bytes.split(|&b| b == b'/').skip(1).collect();
    let inner = segments.len().saturating_sub(1);
    !segments[..inner]
        .iter()
        .any(|seg| matches!(*seg, b"" | b"." | b".."))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/openredirects.txt"
    ));

    /// Go's `url.QueryUnescape`, leniently: `+` is a space, `%XX` a byte, a bad escape stays as is.
    fn query_unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len()
                    && bytes[i + 1].is_ascii_hexdigit()
                    && bytes[i + 2].is_ascii_hexdigit() =>
                {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new([
            "www.whitelisteddomain.tld",
            ".example.com",
            "app.test:8443",
            "any.test:*",
        ])
    }

    #[test]
    fn open_redirect_corpus_is_refused() {
        let p = RedirectPolicy::new(["www.whitelisteddomain.tld"]);
        let lines: Vec<&str> = CORPUS.lines().collect();
        assert_eq!(lines.len(), 559);
        let passed: Vec<(&str, String)> = lines
            .iter()
            .map(|l| (*l, query_unescape(l)))
            .filter(|(_, d)| p.validate(d).is_some())
            .collect();
        for (line, decoded) in &passed {
            println!("accepted: {line:?} (decoded {decoded:?})");
        }
        assert!(
            passed.is_empty(),
            "{} corpus lines were accepted",
            passed.len()
        );
    }

    #[test]
    fn relative_paths() {
        let p = RedirectPolicy::default();
        for ok in [
            "/",
            "/ui/?login=success",
            "/a/b?c=d#e",
            "/a/b/",
            "/a/..b",
            "/a/.b/",
            "/a/.",
            "/a?x=1&y=a/b",
        ] {
            assert_eq!(p.validate(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "/\t/evil.com",
            "/ /evil.com",
            "/%09/evil.com",
            "/%2f/evil.com",
            "/%5cevil.com",
            "/%5c/evil.com",
            "/./evil.com",
            "/../evil.com",
            "/.//evil.com",
            "/%2e%2e/evil.com",
            "/a//b",
            "/a/../b",
            "/a/%0d%0aSet-Cookie:x",
            "/a\u{0}",
            "/é",
            "/a b",
            "\\/evil.com",
            "ui/x",
            "?a=b",
            "#x",
            "/a%20b",
            "/%00",
            "/%7f",
            "/ui/?next=//x",
            "/ui/?next=https://evil.com",
            "/a#/./x",
            "/a?u=%2f%2fevil.com",
        ] {
            assert_eq!(p.validate(bad), None, "{bad:?}");
        }
        assert!(same_origin_relative("/ui/"));
        assert!(!same_origin_relative("//ui/"));
    }

    #[test]
    fn absolute_urls() {
        let p = policy();
        for ok in [
            "https://www.whitelisteddomain.tld/x",
            "http://www.whitelisteddomain.tld/",
            "HTTPS://WWW.WhitelistedDomain.tld/x?y#z",
            "https://www.whitelisteddomain.tld",
            "https://www.whitelisteddomain.tld:443/",
            "https://sub.example.com/",
            "https://a.b.example.com/p",
            "https://example.com/",
            "https://app.test:8443/",
            "https://any.test:1234/",
            "https://any.test/",
        ] {
            assert_eq!(p.validate(ok).as_deref(), Some(ok), "{ok}");
        }
        for bad in [
            "https://www.whitelisteddomain.tld.evil.com/",
            "https://evil.com/",
            "https://evil.com@www.whitelisteddomain.tld/",
            "https://www.whitelisteddomain.tld@evil.com/",
            "https://user:pw@www.whitelisteddomain.tld/",
            "http:evil.com",
            "http:www.whitelisteddomain.tld",
            "https:/www.whitelisteddomain.tld/",
            "https:///www.whitelisteddomain.tld/",
            "javascript:alert(1)",
            "data:text/html,x",
            "ftp://www.whitelisteddomain.tld/",
            "https://www.whitelisteddomain.tld./",
            "https://www%2ewhitelisteddomain.tld/",
            "https://www。whitelisteddomain。tld/",
            "https://ｗｗｗ.whitelisteddomain.tld/",
            "https://www.whitelisteddomain.tld:8443/",
            "https://www.whitelisteddomain.tld:80/",
            "http://www.whitelisteddomain.tld:443/",
            "https://app.test/",
            "https://app.test:9443/",
            "https://evilexample.com/",
            "https://example.com.evil.com/",
            "https://www.whitelisteddomain.tld\\@evil.com/",
            "https://www.whitelisteddomain.tld\t/",
            " https://www.whitelisteddomain.tld/",
            "https://www.whitelisteddomain.tld/ x",
        ] {
            assert_eq!(p.validate(bad), None, "{bad:?}");
        }
        // No allowed domains: only relative paths.
        assert_eq!(
            RedirectPolicy::default().validate("https://www.whitelisteddomain.tld/"),
            None
        );
    }

    #[test]
    fn ip_and_port_rules() {
        let p = RedirectPolicy::new([
            "127.0.0.1:3000",
            "[::1]:8080",
            "bad:port",
            "",
            "x.com.",
            "10.0.0.1",
        ]);
        assert!(p.validate("http://127.0.0.1:3000/cb").is_some());
        assert!(p.validate("http://127.0.0.1/cb").is_none());
        assert!(p.validate("http://[::1]:8080/").is_some());
        assert!(p.validate("http://10.0.0.1/").is_some());
        assert!(p.validate("http://0x7f.1:3000/").is_none());
        assert!(p.validate("http://2130706433:3000/").is_none());
        assert_eq!(p.allowed_domains.len(), 3);
    }
}
