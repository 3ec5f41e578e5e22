//! A WAGI test program: reads the request from the CGI variables and stdin, answers on
//! stdout, by PATH_INFO:
//!
//! - `/echo`: 200, the method, path, query, `X-Probe` header and body echoed back as
//!   headers and body;
//! - `/status`: `Status: 418`; `/status?code=N`: `Status: N`;
//! - `/headers?count=N`: a 200 with N distinct header lines;
//! - `/redirect`: `Location:` alone (302);
//! - `/garbage`: text without headers (the runtime answers 502);
//! - `/exit`: exits with code 3 and writes nothing (500);
//! - `/loop`: spins forever (504);
//! - `/grow?mib=N`: allocates and touches N MiB;
//! - `/sandbox`: what it can see of the host: files it can open, its environment;
//! - `/flood?mib=N`: a 200 with an N MiB body, ignoring failed writes, and exits 0;
//! - `/vars/...`: the request's path and client variables, one `NAME=value` a line.

use std::io::{Read, Write};

fn main() {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let path = var("PATH_INFO");
    let query = var("QUERY_STRING");
    let mut out = std::io::stdout().lock();
    match path.as_str() {
        "/echo" => {
            let mut body = Vec::new();
            std::io::stdin().read_to_end(&mut body).unwrap();
            write!(
                out,
                "Content-Type: application/octet-stream\r\nX-Method: {}\r\nX-Path: {}\r\nX-Query: {}\r\nX-Probe: {}\r\nX-Content-Length: {}\r\n\r\n",
                var("REQUEST_METHOD"),
                var("SCRIPT_NAME") + &path,
                query,
                var("HTTP_X_PROBE"),
                var("CONTENT_LENGTH"),
            )
            .unwrap();
            out.write_all(&body).unwrap();
        }
        "/status" => match query.strip_prefix("code=") {
            Some(code) => write!(out, "Status: {code}\nContent-Type: text/plain\n\n").unwrap(),
            None => write!(
                out,
                "Status: 418 I'm a teapot\nContent-Type: text/plain\n\nshort and stout\n"
            )
            .unwrap(),
        },
        "/headers" => {
            let count: usize = query
                .strip_prefix("count=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            for i in 0..count {
                let _ = writeln!(out, "X-H{i}: v");
            }
            let _ = write!(out, "Content-Type: text/plain\n\n");
        }
        "/redirect" => write!(out, "Location: /elsewhere\n\n").unwrap(),
        "/garbage" => write!(out, "this is not a CGI response").unwrap(),
        "/exit" => std::process::exit(3),
        "/loop" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/grow" => {
            let mib: usize = query
                .strip_prefix("mib=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let block = vec![1u8; mib << 20];
            write!(
                out,
                "Content-Type: text/plain\n\n{}\n",
                block.iter().map(|&b| b as usize).sum::<usize>()
            )
            .unwrap();
        }
        "/flood" => {
            // `mib=N` MiB of body; `&hold_ms=M`: then wait M ms before exiting (so that
            // several instances hold their output at once).
            let mut params = query.split('&');
            let mib: usize = params
                .next()
                .and_then(|p| p.strip_prefix("mib="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            let hold_ms: u64 = params
                .next()
                .and_then(|p| p.strip_prefix("hold_ms="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let _ = write!(out, "Content-Type: application/octet-stream\n\n");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..mib {
                // A write the host refuses is ignored: the module carries on and exits 0.
                let _ = out.write_all(&chunk);
            }
            let _ = out.flush();
            std::thread::sleep(std::time::Duration::from_millis(hold_ms));
        }
        p if p.starts_with("/vars") => {
            let _ = writeln!(out, "Content-Type: text/plain\n");
            for name in [
                "PATH_INFO",
                "X_RAW_PATH_INFO",
                "PATH_TRANSLATED",
                "X_MATCHED_ROUTE",
                "X_FULL_URL",
                "REMOTE_ADDR",
                "REMOTE_HOST",
                "HTTP_PROXY",
                "HTTP_X_MODE",
            ] {
                writeln!(out, "{name}={}", var(name)).unwrap();
            }
        }
        "/sandbox" => {
            let opened: Vec<&str> = ["/etc/passwd", "/", ".", "/proc/self/environ"]
                .into_iter()
                .filter(|p| std::fs::File::open(p).is_ok())
                .collect();
            let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            write!(
                out,
                "Content-Type: text/plain\n\nopened={}\nenv={}\n",
                opened.join(","),
                env.join(",")
            )
            .unwrap();
        }
        _ => write!(
            out,
            "Status: 404 Not Found\nContent-Type: text/plain\n\nno {path}\n"
        )
        .unwrap(),
    }
}
