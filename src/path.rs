//! Path matching for public paths and the layer's own endpoints.
//!
//! A path is matched only when it is *plain*: no dot segments, no empty segments, no `;`, no
//! backslash, and no percent-escape at all. Anything else (`/health/../whoami`,
//! `/health%2F..%2Fwhoami`, `/health;x/../whoami`, `//health`) is never public and never an SSO
//! endpoint; it goes through the session check like any protected path. This closes both ways a
//! normalisation mismatch can be abused: an upstream that normalises would otherwise see a
//! protected path behind a public prefix, and an upstream that does not normalise (a wildcard
//! route) would see a protected path that merely normalises to a public one.

/// Whether `path` is plain (see the module docs).
pub(crate) fn is_plain(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    if path
        .bytes()
        .any(|b| matches!(b, b'%' | b';' | b'\\') || b.is_ascii_control() || b == b' ')
    {
        return false;
    }
    // Every segment after the leading '/' must be non-empty (except a final one, for a trailing
    // slash) and not a dot segment.
    let rest = &path[1..];
    if rest.is_empty() {
        return true;
    }
    let mut segments = rest.split('/').peekable();
    while let Some(s) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(s, "." | "..") || (s.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// One public path pattern: an exact path, or a prefix ending in `/*` that matches everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    Exact(String),
    Prefix(String),
}

impl PathPattern {
    /// Parses `/health` (exact) or `/static/*` (everything under `/static/`). Errors name the problem.
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if let Some(prefix) = pattern.strip_suffix("/*") {
            let with_slash = format!("{prefix}/");
            if !is_plain(&with_slash) {
                return Err(format!(
                    "public path {pattern:?} must be a plain absolute path like /static/*"
                ));
            }
            Ok(PathPattern::Prefix(with_slash))
        } else if is_plain(pattern) && !pattern.contains('*') {
            Ok(PathPattern::Exact(pattern.to_owned()))
        } else {
            Err(format!(
                "public path {pattern:?} must be a plain absolute path like /health or /static/*"
            ))
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Prefix(p) => path.starts_with(p.as_str()),
        }
    }
}

/// The set of public paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PublicPaths {
    patterns: Vec<PathPattern>,
}

impl PublicPaths {
    pub(crate) fn new(patterns: Vec<PathPattern>) -> Self {
        Self { patterns }
    }

    /// Whether the request path (`uri.path()`, never the query) is public.
    pub(crate) fn matches(&self, path: &str) -> bool {
        // The patterns first: most requests match none, and then `is_plain` is not needed.
        self.patterns.iter().any(|p| p.matches(path)) && is_plain(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> PublicPaths {
        PublicPaths::new(vec![
            PathPattern::parse("/health").unwrap(),
            PathPattern::parse("/static/*").unwrap(),
        ])
    }

    #[test]
    fn plain_paths_match() {
        let p = public();
        assert!(p.matches("/health"));
        assert!(p.matches("/static/app.js"));
        assert!(p.matches("/static/a/b.css"));
        assert!(!p.matches("/healthz"));
        assert!(!p.matches("/health/"));
        assert!(!p.matches("/static"));
        assert!(!p.matches("/whoami"));
    }

    #[test]
    fn normalisation_tricks_never_public() {
        let p = public();
        for path in [
            "/health/../whoami",
            "/health%2F..%2Fwhoami",
            "/health%2f..%2fwhoami",
            "/health;x/../whoami",
            "/health;x",
            "/static/../whoami",
            "/static/%2e%2e/whoami",
            "/static/./x",
            "//health",
            "/static//x",
            "/health\\..\\whoami",
            "/%68ealth",
            "/health%00",
            "health",
            "",
        ] {
            assert!(!p.matches(path), "{path} must not be public");
        }
    }

    #[test]
    fn bad_patterns_refused() {
        for bad in ["health", "/a/../b", "/a*", "/x/*/y", "/%41", "//a"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
