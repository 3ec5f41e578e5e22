//! Per-function limits and settings: process-wide defaults, overridden per function by a
//! `NAME.toml` sidecar next to `NAME.wasm` or by the deploy call's query.

use serde::{Deserialize, Serialize};
use service_ops::Mib;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// What one function may use per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear-memory cap per instance.
    pub memory: Mib,
    /// Wall-clock time for the whole request, response body included.
    pub timeout: Duration,
    /// Instances alive at once; requests beyond it get 503.
    pub max_concurrency: NonZeroU32,
    /// Bytes of stdout and stderr one invocation may write to the host log
    /// (`--log-budget-bytes`; not a per-function setting: the log is the host's).
    pub log_budget_bytes: usize,
    /// Largest request body; larger gets 413.
    pub max_body_bytes: u64,
}

/// A function's settings file (`NAME.toml`). Every field is optional.
///
/// ```toml
/// memory_mib = 64
/// timeout_secs = 5
/// max_concurrency = 10
/// max_body_bytes = 1048576
/// allowed_outbound_hosts = ["api.example.com:443", "https://auth.example.com"]
/// [env]
/// GREETING = "hi"
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<Mib>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<NonZeroU32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Environment variables the guest sees (it sees none of the host's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `host`, `host:port`, or Spin's `https://host[:port]` / `http://host[:port]`
    /// (the scheme's port unless one is given) the guest may send HTTP requests to;
    /// empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
}

/// Settings that are well-formed but not allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("memory_mib must be from 1 to {max} (the runtime's --max-memory-mib, or its memory budget for instances if smaller), got {got}", max = max.get(), got = got.get())]
    Memory { got: Mib, max: Mib },
    #[error("timeout_secs must be from 0.001 to 3600, got {0}")]
    Timeout(f64),
    #[error(
        "max_body_bytes must be at most {max} (the runtime's body buffer, --max-body-buffer-mib), got {got}"
    )]
    Body { got: u64, max: u64 },
    #[error(
        "allowed outbound host {0:?} must be HOST, HOST:PORT or http(s)://HOST[:PORT] (a DNS name or an IP address, port 1-65535), with no path"
    )]
    Allow(String),
    #[error("{0}")]
    Syntax(String),
}

impl Settings {
    /// Settings from a `NAME.toml` file's text; unknown keys are refused.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Syntax(e.to_string()))
    }

    /// `defaults` with these overrides applied, checked against the runtime's `ceilings`.
    pub fn limits(&self, defaults: &Limits, ceilings: &Ceilings) -> Result<Limits, SettingsError> {
        let max_memory = ceilings.memory;
        let mut limits = defaults.clone();
        if let Some(mib) = self.memory_mib {
            if mib.get() == 0 || mib > max_memory {
                return Err(SettingsError::Memory {
                    got: mib,
                    max: max_memory,
                });
            }
            limits.memory = mib;
        }
        if let Some(secs) = self.timeout_secs {
            if !(secs.is_finite() && (0.001..=3600.0).contains(&secs)) {
                return Err(SettingsError::Timeout(secs));
            }
            limits.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(n) = self.max_concurrency {
            limits.max_concurrency = n;
        }
        if let Some(n) = self.max_body_bytes {
            if n > ceilings.body_bytes {
                return Err(SettingsError::Body {
                    got: n,
                    max: ceilings.body_bytes,
                });
            }
            limits.max_body_bytes = n;
        }
        if let Some(bad) = self
            .allowed_outbound_hosts
            .iter()
            .find(|entry| allow_entry(entry).is_none())
        {
            return Err(SettingsError::Allow(bad.clone()));
        }
        Ok(limits)
    }
}

/// The most any function's settings may ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceilings {
    /// `memory_mib`: the pool's slot size, or the instance-memory budget if smaller.
    pub memory: Mib,
    /// `max_body_bytes`: the process's body buffer, which a body must fit in.
    pub body_bytes: u64,
}

/// An allowed-hosts entry as the outbound policy matches it: `HOST` or `HOST:PORT`.
/// Written as Spin writes it, `https://HOST` is `HOST:443`, `http://HOST` `HOST:80`,
/// and `scheme://HOST:PORT` (with an optional trailing `/`) `HOST:PORT`. `None` if it is
/// none of these (a path, another scheme, a bad host or port).
pub fn allow_entry(entry: &str) -> Option<String> {
    let (rest, default_port) = match entry.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (rest, Some(443)),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (rest, Some(80)),
        Some(_) => return None,
        None => (entry, None),
    };
    let rest = match default_port {
        Some(_) => rest.strip_suffix('/').unwrap_or(rest),
        None => rest,
    };
    if !is_host_and_port(rest) {
        return None;
    }
    match (split_host_port(rest)?, default_port) {
        ((host, None), Some(port)) => Some(format!("{host}:{port}")),
        _ => Some(rest.to_string()),
    }
}

/// `HOST` or `HOST:PORT`: a DNS name (letters, digits, `-`, `.`), an IPv4 address or a
/// bracketed IPv6 one, and a port from 1 to 65535.
fn is_host_and_port(entry: &str) -> bool {
    let Some((host, _)) = split_host_port(entry) else {
        return false;
    };
    if let Some(v6) = host.strip_prefix('[') {
        return v6
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Splits `HOST[:PORT]` (an allow entry, a `Host` header) into the host, IPv6 brackets
/// kept as `http::Uri::host` keeps them, and the port if there is one; `None` if the
/// port is not 1-65535 or a bracket is unclosed. The host itself is not checked.
pub fn split_host_port(entry: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if entry.starts_with('[') {
        let close = entry.find(']')?;
        let (host, rest) = entry.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match entry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(port) => {
            let port = port.parse::<u16>().ok().filter(|&p| p > 0)?;
            Some((host, Some(port)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Limits {
        Limits {
            memory: Mib::new(128),
            timeout: Duration::from_secs(30),
            max_concurrency: NonZeroU32::new(100).unwrap(),
            max_body_bytes: 1 << 20,
            log_budget_bytes: 1 << 16,
        }
    }

    const MAX: Ceilings = Ceilings {
        memory: Mib::new(1024),
        body_bytes: 256 << 20,
    };

    #[test]
    fn overrides_apply_and_the_rest_stay_default() {
        let s = Settings::parse("memory_mib = 64\ntimeout_secs = 0.5\n[env]\nA = \"b\"\n").unwrap();
        let l = s.limits(&defaults(), &MAX).unwrap();
        assert_eq!(l.memory, Mib::new(64));
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.max_concurrency.get(), 100);
        assert_eq!(s.env["A"], "b");
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let e = Settings::parse("memory_mb = 3").unwrap_err();
        assert!(e.to_string().contains("memory_mb"), "{e}");
        let e = Settings::parse("memory_mib = 4096")
            .unwrap()
            .limits(&defaults(), &MAX)
            .unwrap_err();
        assert!(e.to_string().contains("1 to 1024"), "{e}");
        // What `memory_mib << 20` once wrapped to a 1 MiB limit: refused as it is read.
        let e = Settings::parse("memory_mib = 17592186044417").unwrap_err();
        assert!(e.to_string().contains("memory_mib"), "{e}");
        assert!(
            Settings::parse("timeout_secs = -1")
                .unwrap()
                .limits(&defaults(), &MAX)
                .is_err()
        );
        let e = Settings::parse("max_concurrency = 0").unwrap_err();
        assert!(e.to_string().contains("max_concurrency"), "{e}");
    }

    #[test]
    fn holes_in_settings_are_refused() {
        let refused = |text: &str| {
            Settings::parse(text)
                .unwrap()
                .limits(&defaults(), &MAX)
                .unwrap_err()
        };
        assert_eq!(
            refused("timeout_secs = 1e-300"),
            SettingsError::Timeout(1e-300)
        );
        assert!(matches!(
            refused("max_body_bytes = 268435457"),
            SettingsError::Body { .. }
        ));
        for entry in [
            "",
            ":99",
            "x:99999",
            "x:0",
            "x/y",
            "a..b",
            "[::1",
            "-x.com",
            "x:8a",
            "ftp://x",
            "https://x/path",
            "https://",
            "https://x:0",
            "*://x",
        ] {
            let text = format!("allowed_outbound_hosts = [{entry:?}]");
            assert_eq!(
                refused(&text),
                SettingsError::Allow(entry.into()),
                "{entry:?}"
            );
        }
        for entry in [
            "api.example.com",
            "api.example.com:443",
            "10.0.0.1:8080",
            "[::1]:80",
            "[::1]",
            "localhost",
            "https://api.example.com",
            "http://x/",
            "HTTPS://[::1]:8443",
        ] {
            let text = format!("allowed_outbound_hosts = [{entry:?}]");
            assert!(
                Settings::parse(&text)
                    .unwrap()
                    .limits(&defaults(), &MAX)
                    .is_ok(),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn a_scheme_means_its_port_as_spin_writes_entries() {
        for (entry, canonical) in [
            ("https://api.example.com", "api.example.com:443"),
            ("http://api.example.com/", "api.example.com:80"),
            ("https://api.example.com:8443", "api.example.com:8443"),
            ("HTTPS://[::1]", "[::1]:443"),
            ("api.example.com", "api.example.com"),
            ("10.0.0.1:8080", "10.0.0.1:8080"),
        ] {
            assert_eq!(allow_entry(entry).as_deref(), Some(canonical), "{entry}");
        }
        for entry in ["ftp://x", "https://x/y", "https://x:0", "x/y"] {
            assert_eq!(allow_entry(entry), None, "{entry}");
        }
    }
}
