use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// One of our servers, running. Its stdout and stderr are echoed to our stderr
/// (prefixed with its name, so test output shows what it said), and its log lines are
/// kept for [`Service::wait_for_log`].
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    addrs: HashMap<String, SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `program` with `args` and waits until it has announced every listener in
    /// `listeners` (e.g. `["traffic", "ops"]`) with a `NAME listening on http://ADDR` line.
    pub fn start(
        program: impl AsRef<Path>,
        args: &[&str],
        listeners: &[&str],
    ) -> anyhow::Result<Self> {
        Self::start_with(Command::new(program.as_ref()).args(args), listeners)
    }

    /// Like [`Service::start`], for a command the caller has configured (env, cwd).
    pub fn start_with(command: &mut Command, listeners: &[&str]) -> anyhow::Result<Self> {
        let name = Path::new(command.get_program())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (prefix, lines, announce) = (name.clone(), log.clone(), tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
                if let Some(listener) = announced(&line) {
                    let _ = announce.send(listener);
                }
                lines.lock().expect("log lock").push(line);
            }
        });
        let prefix = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
                if let Some(listener) = announced(&line) {
                    let _ = tx.send(listener);
                }
            }
        });

        let mut service = Self {
            name,
            child,
            addrs: HashMap::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !listeners.iter().all(|l| service.addrs.contains_key(*l)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((what, addr)) => {
                    service.addrs.insert(what, addr);
                }
                Err(_) => {
                    let status = service.child.try_wait().ok().flatten();
                    bail!(
                        "{} did not announce listeners {listeners:?} (got {:?}); exit status: {status:?}",
                        service.name,
                        service.addrs
                    );
                }
            }
        }
        Ok(service)
    }

    /// The address the `listener` announced.
    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("{} announced no {listener:?} listener", self.name))
    }

    /// `http://ADDR` of `listener`.
    pub fn url(&self, listener: &str) -> String {
        format!("http://{}", self.addr(listener))
    }

    /// Waits up to `timeout` for a line on the service's stderr (its log) containing
    /// `needle`, and returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .log
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l.contains(needle))
            {
                return Ok(line.clone());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} logged no line containing {needle:?} within {timeout:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let pid = Pid::from_raw(self.child.id() as i32).context("pid 0")?;
        kill_process(pid, signal).with_context(|| format!("signalling {}", self.name))?;
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.signal(Signal::TERM)?;
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        match self.child.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => bail!("{} still running {timeout:?} later", self.name),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A listener a program announced: ours print `NAME listening on http://ADDR`;
/// `wasmtime serve` prints `Serving HTTP on http://ADDR/`, taken as `traffic`.
fn announced(line: &str) -> Option<(String, SocketAddr)> {
    if let Some((what, url)) = line.split_once(" listening on http://") {
        let addr = url.trim().parse().ok()?;
        return Some((what.trim().to_string(), addr));
    }
    let url = line.trim().strip_prefix("Serving HTTP on http://")?;
    let addr = url.trim_end_matches('/').parse().ok()?;
    Some(("traffic".to_string(), addr))
}

#[cfg(test)]
mod tests {
    #[test]
    fn announcements_of_ours_and_of_wasmtime_serve() {
        let addr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            super::announced("ops listening on http://127.0.0.1:8080"),
            Some(("ops".to_string(), addr))
        );
        assert_eq!(
            super::announced("Serving HTTP on http://127.0.0.1:8080/"),
            Some(("traffic".to_string(), addr))
        );
        assert_eq!(super::announced("listening soon"), None);
    }
}
