//! Property tests of what hostile input reaches first: deploy query strings, settings
//! files, function names, manifests. Each must answer every input with a value or an
//! error, never a panic, and accept exactly what its rules say.
//!
//! `cargo test -p runtime --test parsers` (set `PROPTEST_CASES=100000` for a longer run).

use proptest::prelude::*;
use runtime::limits::{Ceilings, Limits, Settings};
use service_ops::Mib;
use std::num::NonZeroU32;
use std::time::Duration;

fn defaults() -> Limits {
    Limits {
        memory: Mib::new(128),
        timeout: Duration::from_secs(30),
        max_concurrency: NonZeroU32::new(200).unwrap(),
        max_body_bytes: 16 << 20,
        log_budget_bytes: 1 << 16,
    }
}

const CEILINGS: Ceilings = Ceilings {
    memory: Mib::new(1024),
    body_bytes: 256 << 20,
};

proptest! {
    #[test]
    fn any_query_string_is_settings_or_an_error(query in ".{0,200}") {
        if let Ok(settings) = runtime::api::settings_from_query(Some(&query)) {
            // Whatever parsed is then checked against the ceilings, without panicking.
            let _ = settings.limits(&defaults(), &CEILINGS);
        }
    }

    #[test]
    fn query_shaped_input_never_panics(
        pairs in prop::collection::vec(
            (prop::sample::select(vec!["memory_mib", "timeout_secs", "max_concurrency", "max_body_bytes", "env", "allow", "x"]),
             "[-=a-zA-Z0-9.:%\\[\\]/]{0,24}"),
            0..6,
        )
    ) {
        let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Ok(settings) = runtime::api::settings_from_query(Some(&query.join("&")))
            && let Ok(limits) = settings.limits(&defaults(), &CEILINGS)
        {
            prop_assert!(limits.memory <= CEILINGS.memory);
            prop_assert!(limits.max_body_bytes <= CEILINGS.body_bytes);
            prop_assert!(limits.timeout >= Duration::from_millis(1));
            prop_assert!(limits.timeout <= Duration::from_secs(3600));
        }
    }

    /// The CLI's query (`settings_to_query`) is read back by the API as the same
    /// settings, whatever they hold.
    #[test]
    fn settings_survive_the_deploy_query_both_ways(
        pairs in prop::collection::vec(
            (prop::sample::select(vec!["memory_mib", "timeout_secs", "max_concurrency", "max_body_bytes", "env", "allow"]),
             "[-=a-zA-Z0-9.:% &+\\[\\]/]{0,24}"),
            0..8,
        )
    ) {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        if let Ok(settings) = runtime::api::settings_from_query(Some(&query.finish()))
            // NaN is not equal to itself (the limits refuse it later anyway).
            && settings.timeout_secs.is_none_or(|t| !t.is_nan())
        {
            let again = runtime::api::settings_from_query(Some(&runtime::api::settings_to_query(&settings)));
            prop_assert_eq!(again, Ok(settings));
        }
    }

    #[test]
    fn any_settings_file_is_settings_or_an_error(text in ".{0,300}") {
        if let Ok(settings) = Settings::parse(&text) {
            let _ = settings.limits(&defaults(), &CEILINGS);
        }
    }

    #[test]
    fn a_name_is_valid_exactly_when_it_follows_the_rule(name in ".{0,70}") {
        let rule = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with('-')
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        prop_assert_eq!(runtime::name::FunctionName::parse(&name).is_ok(), rule);
    }

    #[test]
    fn any_manifest_bytes_are_a_record_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = serde_json::from_slice::<runtime::store::Record>(&bytes);
    }
}
