//! A guest that traps (even after answering), spins, hoards memory or overflows its stack
//! fails its own request with a precise status, while other requests, even concurrent
//! ones, carry on.

use localrun::examples;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[tokio::test]
async fn misbehaving_guests_fail_only_their_own_request() {
    let dir = crate::functions_dir(&[(
        "spinner",
        artifacts::MISBEHAVE_COMPONENT,
        "timeout_secs = 1\n",
    )]);
    let server = crate::start(dir.path(), &["--memory-mib", "32"]);
    let client = examples::client();
    let base = server.url("traffic");

    // Keep hello busy until the others have all misbehaved: none of its requests may
    // fail, and some must have run while failing requests were in flight (counted when
    // one was in flight both when a hello request left and when its answer came).
    let failing = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let hello = {
        let client = client.clone();
        let url = format!("{base}/hello/");
        let (failing, done) = (failing.clone(), done.clone());
        tokio::spawn(async move {
            let (mut answered, mut overlapped) = (0, 0);
            while !done.load(Ordering::SeqCst) {
                let during = failing.load(Ordering::SeqCst) > 0;
                let (status, v) = crate::get_json(&client, &url).await;
                assert_eq!(status, 200, "hello failed while others misbehaved: {v}");
                answered += 1;
                overlapped += usize::from(during && failing.load(Ordering::SeqCst) > 0);
            }
            (answered, overlapped)
        })
    };

    let cases = [
        ("misbehave/trap", 500, "trapped"),
        ("misbehave/oom", 500, "memory limit of 32 MiB"),
        ("misbehave/stack", 500, "trapped"),
        ("spinner/loop", 504, "timed out"),
        // Its response was set and its body begun: the client still hears the trap.
        ("plain-wasi/trap-after-answering", 500, "trapped"),
    ];
    let runs = cases.map(|(path, status, message)| {
        let client = client.clone();
        let url = format!("{base}/{path}");
        let failing = failing.clone();
        tokio::spawn(async move {
            failing.fetch_add(1, Ordering::SeqCst);
            let (got, v) = crate::get_json(&client, &url).await;
            failing.fetch_sub(1, Ordering::SeqCst);
            assert_eq!(got, status, "{url}: {v}");
            let error = v["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(message),
                "{url}: error {error:?} should mention {message:?}"
            );
        })
    });
    for run in runs {
        run.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let (answered, overlapped) = hello.await.unwrap();
    assert!(
        overlapped > 0,
        "no hello request ran while the others failed ({answered} answered in all)"
    );

    // The host is still fine, and counted each failure by reason.
    let (status, _) = crate::get_json(&client, &format!("{base}/misbehave/counter")).await;
    assert_eq!(status, 200);
    let text = crate::metrics(&client, &server).await;
    for (function, reason) in [
        ("misbehave", "trap"),
        ("misbehave", "memory"),
        ("spinner", "timeout"),
        ("plain-wasi", "trap"),
    ] {
        let series = format!(
            r#"faas_errors_total{{function="{function}",reason="{reason}",version="current"}}"#
        );
        assert!(
            crate::sample(&text, &series).unwrap_or(0.0) >= 1.0,
            "no {series} in\n{text}"
        );
    }
    assert_eq!(
        crate::sample(&text, r#"faas_timeouts_total{function="spinner"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        crate::sample(&text, r#"faas_active_instances{function="misbehave"}"#),
        Some(0.0),
        "{text}"
    );
}

/// A guest that fails after its headers went out cannot change the status any more; its
/// body then ends in an error (no final chunk), so the client cannot take the cut-off
/// body for a complete answer. The runtime carries on.
#[tokio::test]
async fn a_guest_failing_mid_body_cuts_the_response_short() {
    let dir = crate::functions_dir(&[]);
    let server = crate::start(dir.path(), &[]);
    let client = examples::client();
    let base = server.url("traffic");
    let response = client
        .get(format!("{base}/plain-wasi/panic-after-answering"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await;
    assert!(body.is_err(), "a cut-off body read as complete: {body:?}");

    // A guest that finishes normally still ends its body cleanly.
    let ok = client
        .get(format!("{base}/plain-wasi/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.text().await.unwrap(),
        "plain wasi says hi to /plain-wasi/fine\n"
    );
    let text = crate::metrics(&client, &server).await;
    assert_eq!(
        crate::sample(
            &text,
            r#"faas_errors_total{function="plain-wasi",reason="trap",version="current"}"#
        ),
        Some(1.0),
        "{text}"
    );
}
