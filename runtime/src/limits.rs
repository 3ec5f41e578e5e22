//! Per-function limits and settings: process-wide defaults, overridden per function by a
//! `NAME.toml` sidecar next to `NAME.wasm`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// What one function may use per request.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear-memory cap per instance.
    pub memory_bytes: u64,
    /// Wall-clock time for the whole request, response body included.
    pub timeout: Duration,
    /// Instances alive at once; requests beyond it get 503.
    pub max_concurrency: u32,
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
/// allowed_outbound_hosts = ["api.example.com:443"]
/// [env]
/// GREETING = "hi"
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Environment variables the guest sees (it sees none of the host's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `host` or `host:port` the guest may send HTTP requests to; empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
}

impl Settings {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// `defaults` with this file's overrides applied, checked against `max_memory_bytes`.
    pub fn limits(&self, defaults: &Limits, max_memory_bytes: u64) -> Result<Limits, String> {
        let mut limits = defaults.clone();
        if let Some(mib) = self.memory_mib {
            if mib == 0 || mib << 20 > max_memory_bytes {
                return Err(format!(
                    "memory_mib must be from 1 to {} (the runtime's --max-memory-mib), got {mib}",
                    max_memory_bytes >> 20
                ));
            }
            limits.memory_bytes = mib << 20;
        }
        if let Some(secs) = self.timeout_secs {
            if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
                return Err(format!(
                    "timeout_secs must be more than 0 and at most 3600, got {secs}"
                ));
            }
            limits.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(n) = self.max_concurrency {
            if n == 0 {
                return Err("max_concurrency must be at least 1".into());
            }
            limits.max_concurrency = n;
        }
        if let Some(n) = self.max_body_bytes {
            limits.max_body_bytes = n;
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Limits {
        Limits {
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(30),
            max_concurrency: 100,
            max_body_bytes: 1 << 20,
        }
    }

    #[test]
    fn overrides_apply_and_the_rest_stay_default() {
        let s = Settings::parse("memory_mib = 64\ntimeout_secs = 0.5\n[env]\nA = \"b\"\n").unwrap();
        let l = s.limits(&defaults(), 1 << 30).unwrap();
        assert_eq!(l.memory_bytes, 64 << 20);
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.max_concurrency, 100);
        assert_eq!(s.env["A"], "b");
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        assert!(
            Settings::parse("memory_mb = 3")
                .unwrap_err()
                .contains("memory_mb")
        );
        let e = Settings::parse("memory_mib = 4096")
            .unwrap()
            .limits(&defaults(), 1 << 30)
            .unwrap_err();
        assert!(e.contains("1 to 1024"), "{e}");
        assert!(
            Settings::parse("timeout_secs = -1")
                .unwrap()
                .limits(&defaults(), 1 << 30)
                .is_err()
        );
        assert!(
            Settings::parse("max_concurrency = 0")
                .unwrap()
                .limits(&defaults(), 1 << 30)
                .is_err()
        );
    }
}
