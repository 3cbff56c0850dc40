//! Configuration errors: [`SsoLayerBuilder::build`](crate::SsoLayerBuilder::build) and
//! [`SsoLayer::from_env`](crate::SsoLayer::from_env) report every problem at once.

use std::fmt;

/// One configuration problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting (builder method or environment variable name).
    pub setting: String,
    /// What is wrong. Never contains a secret value.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `setting`.
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.problem)
    }
}

/// Every configuration problem found, in the order found. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Whether some problem concerns `setting`.
    pub fn mentions(&self, setting: &str) -> bool {
        self.0.iter().any(|e| e.setting == setting)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid tower-sso configuration ({} problem",
            self.0.len()
        )?;
        if self.0.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for e in &self.0 {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects problems while a configuration is validated.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub(crate) Vec<ConfigError>);

impl Problems {
    pub(crate) fn add(&mut self, setting: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError::new(setting, problem));
    }
}

/// `raw` as it may be shown in a message: any userinfo (`user:password@`) before the host is
/// replaced by `***`, whether or not the text parses as a URL.
pub(crate) fn redact_url(raw: &str) -> std::borrow::Cow<'_, str> {
    let (scheme_end, authority) = match raw.find("://") {
        Some(i) => (i + 3, &raw[i + 3..]),
        None => (0, raw),
    };
    let authority_len = authority.find(['/', '?', '#']).unwrap_or(authority.len());
    match authority[..authority_len].rfind('@') {
        Some(at) => format!("{}***{}", &raw[..scheme_end], &raw[scheme_end + at..]).into(),
        None => raw.into(),
    }
}

/// Whether `url` may be used to talk to an identity provider: https, or http on a loopback host.
/// Messages never show the URL's userinfo.
pub(crate) fn check_idp_url(raw: &str) -> Result<url::Url, String> {
    let url = redact_url(raw);
    let url = url.as_ref();
    let parsed = url::Url::parse(raw).map_err(|e| format!("{url:?} is not a valid URL ({e})"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback(&parsed) => {}
        "http" => {
            return Err(format!(
                "{url:?} must use https (plain http is allowed only on loopback)"
            ));
        }
        other => return Err(format!("{url:?} has unsupported scheme {other:?}")),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?} must not contain credentials"));
    }
    Ok(parsed)
}

pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a duration like LiteLLM's `LITELLM_UI_SESSION_DURATION`: `24h`, `24hr`, `30m`, `7d`,
/// `3600s`, or plain seconds.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 24h, 30m, 7d or 3600s"))?;
    let mult = match unit.trim() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => {
            return Err(format!(
                "{text:?} is not a duration like 24h, 30m, 7d or 3600s"
            ));
        }
    };
    let secs = n
        .checked_mul(mult)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if secs == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("24hr").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("3600").unwrap(), Duration::from_secs(3600));
        for bad in ["", "h", "0s", "-1h", "1y", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn idp_urls() {
        assert!(check_idp_url("https://idp.example.com/authorize").is_ok());
        assert!(check_idp_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_idp_url("http://localhost/x").is_ok());
        assert!(check_idp_url("http://idp.example.com/x").is_err());
        assert!(check_idp_url("ftp://idp.example.com/x").is_err());
        assert!(check_idp_url("https://user:pw@idp.example.com/").is_err());
        assert!(check_idp_url("not a url").is_err());
    }

    #[test]
    fn urls_are_shown_without_userinfo() {
        assert_eq!(
            redact_url("https://user:pw@host.example/p?q=a@b"),
            "https://***@host.example/p?q=a@b"
        );
        assert_eq!(redact_url("https://a@b:pw@host/x"), "https://***@host/x");
        assert_eq!(redact_url("https://host/path@x"), "https://host/path@x");
        assert_eq!(redact_url("user:pw@host"), "***@host");
        assert_eq!(redact_url("https://u:pw@ho st"), "https://***@ho st");
        assert_eq!(redact_url("https://host"), "https://host");
        for bad in [
            "https://user:pw@idp.example.com/",
            "http://user:pw@idp.example.com/",
            "ftp://user:pw@idp.example.com/",
            "https://user:pw@idp exa mple.com/",
            "http://user:pw@[::1",
        ] {
            let e = check_idp_url(bad).unwrap_err();
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn errors_list_everything() {
        let mut p = Problems::default();
        p.add("PROXY_BASE_URL", "is not set");
        p.add("LITELLM_MASTER_KEY", "is not set");
        let e = ConfigErrors(p.0);
        let text = e.to_string();
        assert!(
            text.contains("2 problems")
                && text.contains("PROXY_BASE_URL")
                && text.contains("LITELLM_MASTER_KEY")
        );
        assert!(e.mentions("PROXY_BASE_URL"));
    }
}
