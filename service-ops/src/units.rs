//! Values both servers' flags and settings share, parsed once into types that cannot hold
//! a bad value: a memory size that cannot overflow when turned into bytes, and a duration
//! that is never zero.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A memory size in whole mebibytes. Held as a `u32`, so its size in bytes
/// (at most 4 PiB) always fits a `u64`: no conversion can wrap.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Mib(u32);

impl Mib {
    pub const fn new(mib: u32) -> Self {
        Self(mib)
    }

    /// The size in MiB.
    pub const fn get(self) -> u32 {
        self.0
    }

    pub const fn bytes(self) -> u64 {
        (self.0 as u64) << 20
    }

    /// The size in bytes as a `usize`, saturating on a 32-bit host.
    pub fn bytes_usize(self) -> usize {
        usize::try_from(self.bytes()).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MiB", self.0)
    }
}

/// Why a text is not a [`Mib`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a whole number of MiB from 0 to {max}", max = u32::MAX)]
pub struct MibError(String);

impl FromStr for Mib {
    type Err = MibError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<u32>()
            .map(Self)
            .map_err(|_| MibError(s.to_string()))
    }
}

impl TryFrom<u64> for Mib {
    type Error = MibError;

    fn try_from(mib: u64) -> Result<Self, Self::Error> {
        u32::try_from(mib)
            .map(Self)
            .map_err(|_| MibError(mib.to_string()))
    }
}

/// A linear-memory size flag: whole MiB from 1 to 4096 (a wasm32 memory is at most
/// 4 GiB).
pub fn wasm_memory_mib(s: &str) -> Result<Mib, String> {
    let mib: Mib = s.parse().map_err(|e: MibError| e.to_string())?;
    if !(1..=4096).contains(&mib.get()) {
        return Err(format!(
            "{mib} is not a wasm32 memory size: from 1 to 4096 MiB"
        ));
    }
    Ok(mib)
}

/// A duration flag: `30s`, `500ms`, `1m 30s` (humantime), or a bare number of seconds
/// (`30`, `0.5`), as the `*-secs` flags used to take. Zero, negative and non-finite
/// values are refused: every duration flag of ours is a limit that must allow something.
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let duration = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Duration::try_from_secs_f64(secs)
            .map_err(|e| format!("{s:?} is not a usable number of seconds: {e}"))?,
        Ok(_) => return Err(format!("{s:?} must be a positive duration")),
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not a duration (like 30s, 500ms or 1m): {e}"))?,
    };
    if duration.is_zero() {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_converts_without_wrapping() {
        assert_eq!(Mib::new(128).bytes(), 128 << 20);
        assert_eq!(Mib::new(u32::MAX).bytes(), u64::from(u32::MAX) << 20);
        assert_eq!("64".parse::<Mib>(), Ok(Mib::new(64)));
        // 2^44 + 1 MiB is what `memory_mib << 20` wrapped to 1 MiB.
        assert!("17592186044417".parse::<Mib>().is_err());
        assert!(Mib::try_from(17_592_186_044_417u64).is_err());
        assert!("-1".parse::<Mib>().is_err());
        assert!("1.5".parse::<Mib>().is_err());
        assert_eq!(Mib::new(32).to_string(), "32 MiB");
        let json: Mib = serde_json::from_str("16").unwrap();
        assert_eq!(json, Mib::new(16));
        assert!(serde_json::from_str::<Mib>("17592186044417").is_err());
    }

    #[test]
    fn wasm_memory_sizes() {
        assert_eq!(wasm_memory_mib("128"), Ok(Mib::new(128)));
        assert_eq!(wasm_memory_mib("4096"), Ok(Mib::new(4096)));
        for bad in ["0", "4097", "17592186044417", "x"] {
            assert!(wasm_memory_mib(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(positive_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(positive_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["0", "-1", "0s", "inf", "NaN", "soon", "", "1e300"] {
            assert!(positive_duration(bad).is_err(), "{bad:?}");
        }
    }
}
