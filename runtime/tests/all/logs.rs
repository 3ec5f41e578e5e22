//! A function's log lines, kept per function in memory and read through the deploy API
//! (`GET /functions/{name}/logs`, token required) and `runtime logs NAME [--follow]`:
//! only that function's lines, with the request id and version, within bounds.

use crate::{Deployer, TOKEN, cli};
use localrun::examples;
use std::io::BufRead;
use std::time::Duration;

fn start(extra: &[&str]) -> (tempfile::TempDir, localrun::Service) {
    let dir = crate::functions_dir(&[]);
    let mut args = vec!["--deploy-token", TOKEN];
    args.extend_from_slice(extra);
    let server = crate::start(dir.path(), &args);
    (dir, server)
}

async fn flood(client: &reqwest::Client, server: &localrun::Service, lines: u32, len: u32) {
    let url = format!(
        "{}/misbehave/flood?lines={lines}&len={len}",
        server.url("traffic")
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_functions_lines_are_its_own_with_request_and_version() {
    let (_dir, server) = start(&[]);
    let client = examples::client();
    flood(&client, &server, 3, 40).await;
    // hello logs nothing; its lines are none of misbehave's.
    let hello = client
        .get(format!("{}/hello/", server.url("traffic")))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.status(), 200);

    let ops = Deployer::new(&server, Some(TOKEN));
    let (_, described) = ops.get("misbehave").await;
    let version = described["version"].to_string();
    let out = cli(&server, &["logs", "misbehave", "-o", "json"], Some(TOKEN))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line["text"]
                .as_str()
                .unwrap()
                .starts_with(&format!("flood-line-{i} ")),
            "{line}"
        );
        assert_eq!(line["stream"], "stdout");
        assert_eq!(line["version"], version.as_str());
        assert_eq!(line["request_id"], lines[0]["request_id"]);
    }
    let out = cli(&server, &["logs", "hello"], Some(TOKEN))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // For people: when, the request, the version, the stream, the text.
    let out = cli(
        &server,
        &["logs", "misbehave", "--since", "5m"],
        Some(TOKEN),
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().count() == 3 && text.contains("stdout: flood-line-0"),
        "{text}"
    );
    assert!(text.contains(&format!(" v{version} ")), "{text}");

    // The token is required; a name that is not deployed and a bad parameter are
    // refused, saying why.
    let out = cli(&server, &["logs", "misbehave"], None).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let url = |path: &str| format!("{}/functions/{path}", server.url("ops"));
    for (path, status) in [
        ("nope/logs", 404),
        ("misbehave/logs?after=x", 400),
        ("misbehave/logs?since=0s", 400),
        ("misbehave/logs?tail=3", 400),
    ] {
        let response = client
            .get(url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    // A deleted function's lines go with it.
    assert_eq!(ops.delete("misbehave").await, 204);
    let response = client
        .get(url("misbehave/logs"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn follow_shows_a_requests_lines_as_they_come() {
    let (_dir, server) = start(&[]);
    let client = examples::client();
    let mut follower = cli(&server, &["logs", "misbehave", "--follow"], Some(TOKEN))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (seen, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if seen.send(line).is_err() {
                return;
            }
        }
    });
    flood(&client, &server, 2, 30).await;
    // It polls every 250 ms; 10 s bounds a loaded machine, it is not a speed goal.
    let first = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.contains("flood-line-0") && second.contains("flood-line-1"),
        "{first}\n{second}"
    );
    flood(&client, &server, 1, 30).await;
    let third = lines.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(third.contains("flood-line-0"), "{third}");
    follower.kill().unwrap();
    follower.wait().unwrap();
}

#[tokio::test]
async fn a_log_flood_stays_within_its_bounds() {
    let (_dir, server) = start(&["--log-ring-kib", "16", "--max-log-memory-mib", "1"]);
    let client = examples::client();
    // 4,000 lines of 200 bytes: 800 KB, against a 16 KiB ring.
    for _ in 0..4 {
        flood(&client, &server, 1000, 200).await;
    }
    let text = crate::metrics(&client, &server).await;
    let kept = crate::sample(&text, "runtime_log_memory_bytes").unwrap();
    assert!(kept > 0.0 && kept <= 16.0 * 1024.0, "{kept} bytes kept");
    let response = client
        .get(format!("{}/functions/misbehave/logs", server.url("ops")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = response.json().await.unwrap();
    let lines = v["lines"].as_array().unwrap();
    // The newest are kept: every kept line is the last request's (each request logs
    // up to its --log-budget-bytes, far more than the 16 KiB ring holds).
    assert!(
        !lines.is_empty() && lines.len() < 100,
        "{} lines kept",
        lines.len()
    );
    let last_request = &lines.last().unwrap()["request_id"];
    assert!(
        lines.iter().all(|l| &l["request_id"] == last_request),
        "{v}"
    );
    assert_eq!(v["next"], lines.last().unwrap()["seq"]);
}
