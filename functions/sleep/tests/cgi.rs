//! The native build of `sleep`'s binary is a CGI program: started with CGI variables it
//! answers on stdout (its timer runs on the SDK's own executor); started by hand, it
//! says what it is and exits 2.

use std::process::Command;

fn run(vars: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sleep-wagi"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .expect("the binary runs")
}

#[test]
fn answers_a_cgi_request_on_stdout() {
    let out = run(&[
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/sleep"),
        ("PATH_INFO", "/"),
        ("QUERY_STRING", "min_ms=3&max_ms=3"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Status: 200 OK\ncontent-type: application/json\n\n{\"slept_ms\":3}"
    );

    let out = run(&[("REQUEST_METHOD", "GET"), ("QUERY_STRING", "min_ms=x")]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Status: 400 Bad Request\n"), "{text}");
}

#[test]
fn outside_a_cgi_host_it_says_so() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("REQUEST_METHOD is not set"),
        "{out:?}"
    );
}
