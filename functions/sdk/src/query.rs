use crate::{Error, Request};
use std::str::FromStr;

/// The decoded query string of a request, with typed look-ups that turn a bad value
/// into a 400 naming the parameter.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { pairs }
    }

    pub fn of(request: &Request) -> Self {
        Self::parse(request.uri().query())
    }

    /// The last value given for `name`, if any.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` parsed as `T`, or `default` when absent. A value that does not parse, or
    /// falls outside `range`, is a 400 that says which parameter and what is allowed.
    pub fn get_in<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, Error>
    where
        T: FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.raw(name) else {
            return Ok(default);
        };
        let value: T = raw.trim().parse().map_err(|_| {
            Error::bad_request(format!(
                "query parameter `{name}` must be a number from {} to {}, got {raw:?}",
                range.start(),
                range.end()
            ))
        })?;
        if !range.contains(&value) {
            return Err(Error::bad_request(format!(
                "query parameter `{name}` must be from {} to {}, got {value}",
                range.start(),
                range.end()
            )));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_lookup_defaults_parses_and_rejects() {
        let q = Query::parse(Some("n=5&bad=x&big=99&n=7&enc=a%20b"));
        assert_eq!(q.get_in("missing", 3u32, 0..=10), Ok(3));
        assert_eq!(q.get_in("n", 0u32, 0..=10), Ok(7), "last value wins");
        assert_eq!(q.raw("enc"), Some("a b"));
        let e = q.get_in("bad", 0u32, 0..=10).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("`bad`"), "{}", e.message());
        let e = q.get_in("big", 0u32, 0..=10).unwrap_err();
        assert!(
            e.message().contains("from 0 to 10, got 99"),
            "{}",
            e.message()
        );
        assert!(
            q.get_in("n", 0i64, -5..=-1).is_err(),
            "7 is outside -5..=-1"
        );
    }
}
