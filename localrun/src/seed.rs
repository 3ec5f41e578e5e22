//! The seed report's own two stacks, written here to answer like our example functions
//! (`seed-stacks/`), started on free loopback ports:
//!
//! - [`SeedPhp`]: PHP-FPM (a static pool) behind a real nginx speaking FastCGI, from the
//!   template compose also uses (`infra/nginx/seed-php/`);
//! - [`SeedNode`]: Node.js running the Express app, with `prom-client` metrics under our
//!   names on an ops port of its own.
//!
//! A missing program is an error naming the Debian package that provides it.

use crate::nginx::{Nginx, Site};
use crate::service::Service;
use anyhow::{Context, bail, ensure};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The PHP front controller, compiled in so the bench works from any directory.
const PHP_SCRIPT: &str = include_str!("../../seed-stacks/php/index.php");

/// Where to find PHP-FPM: `PHP_FPM` if set, else `php-fpm` or Debian's versioned
/// `php-fpmX.Y` on PATH or in /usr/sbin.
pub fn find_php_fpm() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PHP_FPM") {
        return Ok(path.into());
    }
    if let Some(path) = crate::find_program("php-fpm") {
        return Ok(path);
    }
    for dir in crate::program_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut versioned: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("php-fpm") && n.len() > "php-fpm".len())
            })
            .collect();
        versioned.sort();
        if let Some(newest) = versioned.pop() {
            return Ok(newest);
        }
    }
    bail!(
        "php-fpm not found (looked on PATH and in /usr/sbin; set PHP_FPM=/path/to/php-fpm). \
         Install it with `apt-get install -y php-fpm`, or run scripts/test as root, which does."
    )
}

/// Where to find Node.js: `NODE` if set, else `node` on PATH.
pub fn find_node() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NODE") {
        return Ok(path.into());
    }
    crate::find_program("node").context(
        "node not found (set NODE=/path/to/node). Install it with \
         `apt-get install -y nodejs npm`, or run scripts/test as root, which does.",
    )
}

/// The first line a program prints for `flag` (its version), or why not.
fn version_of(program: &Path, flag: &str) -> anyhow::Result<String> {
    let out = Command::new(program)
        .arg(flag)
        .output()
        .with_context(|| format!("running {} {flag}", program.display()))?;
    ensure!(
        out.status.success(),
        "{} {flag} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// A PHP-FPM master and its static pool of `children` workers, in a temporary prefix.
#[derive(Debug)]
pub struct PhpFpm {
    child: Child,
    addr: SocketAddr,
    script: PathBuf,
    version: String,
    _dir: tempfile::TempDir,
}

impl PhpFpm {
    /// Starts PHP-FPM with `children` workers on a free loopback port.
    pub fn start(children: usize) -> anyhow::Result<Self> {
        let binary = find_php_fpm()?;
        // "PHP 8.2.36 (fpm-fcgi) (built: ...)": the build date says nothing here.
        let version = version_of(&binary, "-v")?
            .split(" (built")
            .next()
            .unwrap_or_default()
            .to_string();
        let mut last_error = None;
        for _ in 0..5 {
            match Self::try_start(&binary, children, crate::free_port()?) {
                Ok((child, addr, script, dir)) => {
                    return Ok(Self {
                        child,
                        addr,
                        script,
                        version,
                        _dir: dir,
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn try_start(
        binary: &Path,
        children: usize,
        port: u16,
    ) -> anyhow::Result<(Child, SocketAddr, PathBuf, tempfile::TempDir)> {
        let dir = tempfile::Builder::new().prefix("php-fpm-").tempdir()?;
        let script = dir.path().join("index.php");
        std::fs::write(&script, PHP_SCRIPT)?;
        let root = rustix::process::geteuid().is_root();
        // As root, PHP-FPM insists on being told: the pool runs as root too (`-R`), which
        // the temporary prefix, private to this user, also needs.
        let user = if root {
            "user = root\ngroup = root\n"
        } else {
            ""
        };
        let conf = dir.path().join("php-fpm.conf");
        std::fs::write(
            &conf,
            format!(
                "[global]\n\
                 pid = {d}/php-fpm.pid\n\
                 error_log = /proc/self/fd/2\n\
                 log_level = warning\n\
                 daemonize = no\n\
                 \n\
                 [seed]\n\
                 {user}\
                 listen = 127.0.0.1:{port}\n\
                 listen.backlog = 4096\n\
                 pm = static\n\
                 pm.max_children = {children}\n\
                 pm.status_path = /fpm-status\n\
                 ping.path = /fpm-ping\n\
                 catch_workers_output = yes\n\
                 decorate_workers_output = no\n\
                 clear_env = yes\n\
                 request_terminate_timeout = 120s\n\
                 ; `memory` allocates up to 120 MiB in one string.\n\
                 php_admin_value[memory_limit] = 256M\n",
                d = dir.path().display()
            ),
        )?;
        let mut command = Command::new(binary);
        command.arg("--nodaemonize").arg("--fpm-config").arg(&conf);
        if root {
            command.arg("--allow-to-run-as-root");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(e) = crate::wait_for_port(addr, Duration::from_secs(10)) {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("php-fpm did not come up ({e}); it exited with {status}");
        }
        if let Some(status) = child.try_wait()? {
            bail!("php-fpm exited at start with {status} (port taken?)");
        }
        Ok((child, addr, script, dir))
    }

    /// The master's pid (the pool's workers are its children).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its configuration file: the master's command line names it, which tells this
    /// PHP-FPM's processes from any other's.
    pub fn config(&self) -> PathBuf {
        self._dir.path().join("php-fpm.conf")
    }

    /// What `php-fpm -v` says.
    pub fn version(&self) -> &str {
        &self.version
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // SIGTERM is PHP-FPM's fast stop: the master stops its pool and exits.
        crate::terminate_master(&mut self.child);
    }
}

/// The seed's PHP stack: nginx speaking FastCGI to a PHP-FPM pool.
#[derive(Debug)]
pub struct SeedPhp {
    pub nginx: Nginx,
    pub fpm: PhpFpm,
}

impl SeedPhp {
    /// `children` PHP-FPM workers behind nginx with `nginx_workers` workers.
    pub fn start(children: usize, nginx_workers: usize) -> anyhow::Result<Self> {
        let fpm = PhpFpm::start(children).context("starting php-fpm")?;
        let nginx = Nginx::start_site(&Site::php(fpm.addr, &fpm.script), nginx_workers)
            .context("starting nginx in front of php-fpm")?;
        Ok(Self { nginx, fpm })
    }

    /// `http://127.0.0.1:PORT` of nginx's traffic port.
    pub fn url(&self) -> String {
        self.nginx.url()
    }

    /// PHP-FPM's status page in OpenMetrics, through nginx's status port.
    pub fn fpm_metrics_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/fpm-status?openmetrics",
            self.nginx.ports().status
        )
    }
}

/// The seed's Node stack: `node server.js` (Express, prom-client).
#[derive(Debug)]
pub struct SeedNode {
    pub service: Service,
    version: String,
}

impl SeedNode {
    /// The app's directory: `SEED_NODE_DIR`, else `seed-stacks/node` in this workspace.
    pub fn app_dir() -> PathBuf {
        std::env::var_os("SEED_NODE_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../seed-stacks/node"),
            PathBuf::from,
        )
    }

    pub fn start() -> anyhow::Result<Self> {
        let node = find_node()?;
        let dir = Self::app_dir();
        ensure!(
            dir.join("node_modules/express/package.json").is_file()
                && dir.join("node_modules/prom-client/package.json").is_file(),
            "{} has no node_modules: run `npm ci --prefix {}` (scripts/test does)",
            dir.display(),
            dir.display()
        );
        let version = format!(
            "node {}, express {}",
            version_of(&node, "--version")?,
            package_version(&dir, "express")?
        );
        let service = Service::start_with(
            Command::new(&node)
                .arg(dir.join("server.js"))
                .env("SEED_NODE_LISTEN", "127.0.0.1:0")
                .env("SEED_NODE_OPS_LISTEN", "127.0.0.1:0")
                .env("NODE_ENV", "production"),
            &["traffic", "ops"],
        )
        .context("starting the seed's Node app")?;
        Ok(Self { service, version })
    }

    /// `node --version` and Express's version.
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// The installed version of an npm package, from its package.json.
fn package_version(app: &Path, package: &str) -> anyhow::Result<String> {
    let path = app.join("node_modules").join(package).join("package.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    json["version"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} has no version", path.display()))
}
