//! A function's name, checked once where it enters the runtime (the deploy API's path, a
//! stored manifest, a file in `--functions-dir`); everything after takes a
//! [`FunctionName`] as proof and checks nothing again. Names are path segments, file
//! names in the store and metric label values.

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::sync::Arc;

/// 1-63 of `a-z`, `0-9` and `-`, not starting with `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "Arc<str>")]
pub struct FunctionName(Arc<str>);

/// A name that breaks the rule, and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid function name {0:?}: use 1-63 of a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct NameError(pub String);

impl FunctionName {
    /// `name` if it is one a function may have (see [`NameError`] for the rule).
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        match ok {
            true => Ok(Self(name.into())),
            false => Err(NameError(name.to_string())),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as the metric labels and logs hold it (a clone is a reference count).
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = NameError;

    fn try_from(name: String) -> Result<Self, NameError> {
        Self::parse(&name)
    }
}

impl From<FunctionName> for Arc<str> {
    fn from(name: FunctionName) -> Self {
        name.0
    }
}

impl std::str::FromStr for FunctionName {
    type Err = NameError;

    fn from_str(name: &str) -> Result<Self, NameError> {
        Self::parse(name)
    }
}

impl std::ops::Deref for FunctionName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for FunctionName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for FunctionName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in ["hello", "a", "fn-2", "0x", &"x".repeat(63)] {
            assert_eq!(FunctionName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "-a",
            "Hello",
            "a_b",
            "a/b",
            "..",
            "/etc/passwd",
            "a.wasm",
            &"x".repeat(64),
        ] {
            let err = FunctionName::parse(bad).unwrap_err();
            assert_eq!(err, NameError(bad.to_string()));
        }
    }

    #[test]
    fn a_manifest_with_a_bad_name_does_not_parse() {
        #[derive(Debug, Deserialize)]
        struct Record {
            name: FunctionName,
        }
        let record: Record = serde_json::from_str(r#"{"name":"ok"}"#).unwrap();
        assert_eq!(record.name.as_str(), "ok");
        let err = serde_json::from_str::<Record>(r#"{"name":"../etc"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid function name"), "{err}");
    }
}
