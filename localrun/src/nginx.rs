use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server configs compose uses, compiled in so binaries work from any directory.
const PROXY_TEMPLATE: &str = include_str!("../../infra/nginx/templates/default.conf.template");
const PHP_TEMPLATE: &str = include_str!("../../infra/nginx/seed-php/default.conf.template");

/// What nginx serves: one of compose's templates and the values of its variables (the
/// listen ports are added by [`Nginx`]).
#[derive(Debug, Clone)]
pub struct Site {
    template: std::borrow::Cow<'static, str>,
    vars: Vec<(&'static str, String)>,
}

impl Site {
    /// A reverse proxy to the webserver at `upstream` (the traditional side).
    pub fn proxy(upstream: SocketAddr) -> Self {
        Self {
            template: PROXY_TEMPLATE.into(),
            vars: vec![("WEBSERVER_UPSTREAM", upstream.to_string())],
        }
    }

    /// One application per webserver, as the seed deploys its apps: `/{prefix}-{i}/rest`
    /// is proxied to `upstreams[i]` as `/{prefix}/rest` (query kept), with the same
    /// upstream keep-alive and headers as [`Site::proxy`]; any other path is 404.
    /// `prefix` is a function name (letters, digits, `-`, `_`).
    pub fn applications(prefix: &str, upstreams: &[SocketAddr]) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !prefix.is_empty()
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "application prefix {prefix:?}: letters, digits, '-' or '_' only"
        );
        anyhow::ensure!(!upstreams.is_empty(), "no application to proxy to");
        let mut text = String::new();
        for (i, addr) in upstreams.iter().enumerate() {
            // Few idle connections per application and worker: a thousand applications
            // must not hold a thousand times the single app's 64.
            text.push_str(&format!(
                "upstream app{i} {{\n    server {addr};\n    keepalive 4;\n    \
                 keepalive_requests 100000;\n    keepalive_timeout 9s;\n}}\n"
            ));
        }
        text.push_str(&format!(
            "server {{\n    listen ${{NGINX_PORT}};\n    access_log off;\n    \
             client_max_body_size 16m;\n\n    \
             location ~ ^/{prefix}-(?<app>[0-9]+)(?<rest>/.*)$ {{\n        \
             proxy_pass http://app$app/{prefix}$rest$is_args$args;\n        \
             proxy_http_version 1.1;\n        proxy_set_header Connection \"\";\n        \
             proxy_set_header Host $host;\n        \
             proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n        \
             proxy_set_header X-Request-Id $request_id;\n        \
             proxy_read_timeout 120s;\n    }}\n\n    \
             location / {{\n        return 404;\n    }}\n}}\n\n\
             server {{\n    listen ${{NGINX_STATUS_PORT}};\n    access_log off;\n    \
             location = /stub_status {{\n        stub_status;\n    }}\n}}\n"
        ));
        Ok(Self {
            template: text.into(),
            vars: Vec::new(),
        })
    }

    /// FastCGI to PHP-FPM at `fpm`, every request to the front controller `script`
    /// (the seed's PHP stack).
    pub fn php(fpm: SocketAddr, script: &Path) -> Self {
        Self {
            template: PHP_TEMPLATE.into(),
            vars: vec![
                ("PHP_FPM_UPSTREAM", fpm.to_string()),
                ("SEED_PHP_SCRIPT", script.display().to_string()),
            ],
        }
    }

    /// The template with every variable filled; one left unset is an error, not a
    /// silent empty string.
    pub fn render(&self, ports: NginxPorts) -> anyhow::Result<String> {
        let mut text = self.template.to_string();
        let listen = [
            ("NGINX_PORT", format!("127.0.0.1:{}", ports.traffic)),
            ("NGINX_STATUS_PORT", format!("127.0.0.1:{}", ports.status)),
        ];
        for (var, value) in self.vars.iter().chain(&listen) {
            text = text.replace(&format!("${{{var}}}"), value);
        }
        if let Some(pos) = text.find("${") {
            bail!(
                "nginx template has an unrendered variable near {:?}",
                &text[pos..(pos + 40).min(text.len())]
            );
        }
        Ok(text)
    }
}

/// Where to find nginx: `NGINX` if set, else `nginx` on PATH or in /usr/sbin (Debian
/// puts it there, and /usr/sbin is not on every user's PATH).
pub fn find_nginx() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NGINX") {
        return Ok(path.into());
    }
    crate::find_program("nginx").context(
        "nginx not found (looked on PATH and in /usr/sbin; set NGINX=/path/to/nginx). \
             Install it with `apt-get install -y nginx`, or run scripts/test as root, which does.",
    )
}

/// Ports nginx listens on.
#[derive(Debug, Clone, Copy)]
pub struct NginxPorts {
    /// Traffic, proxied to the webserver.
    pub traffic: u16,
    /// `/stub_status` and `/healthz`.
    pub status: u16,
}

/// The proxy template filled for `upstream` (see [`Site::render`]).
pub fn render_nginx_template(upstream: SocketAddr, ports: NginxPorts) -> anyhow::Result<String> {
    Site::proxy(upstream).render(ports)
}

/// A real nginx master and its workers, in a temporary prefix, serving a [`Site`].
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    ports: NginxPorts,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx proxying to `upstream` with `workers` worker processes, on free
    /// loopback ports. Retries a few times if another process takes a port first.
    pub fn start(upstream: SocketAddr, workers: usize) -> anyhow::Result<Self> {
        Self::start_site(&Site::proxy(upstream), workers)
    }

    /// Starts nginx serving `site` with `workers` worker processes, on free loopback
    /// ports.
    pub fn start_site(site: &Site, workers: usize) -> anyhow::Result<Self> {
        let binary = find_nginx()?;
        let mut last_error = None;
        for _ in 0..5 {
            let ports = NginxPorts {
                traffic: crate::free_port()?,
                status: crate::free_port()?,
            };
            match Self::try_start(&binary, site, ports, workers) {
                Ok(nginx) => return Ok(nginx),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn try_start(
        binary: &Path,
        site: &Site,
        ports: NginxPorts,
        workers: usize,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("nginx-").tempdir()?;
        let prefix = dir.path();
        std::fs::create_dir_all(prefix.join("logs"))?;
        std::fs::write(prefix.join("default.conf"), site.render(ports)?)?;
        // The main context, as the official image's nginx.conf but local: no `user`
        // switch beyond nginx's own default, temp files and pid inside the prefix.
        let main = format!(
            "daemon off;\n\
             master_process on;\n\
             worker_processes {workers};\n\
             pid {p}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             \x20   default_type application/octet-stream;\n\
             \x20   sendfile on;\n\
             \x20   keepalive_timeout 65;\n\
             \x20   client_body_temp_path {p}/client_body;\n\
             \x20   proxy_temp_path {p}/proxy;\n\
             \x20   fastcgi_temp_path {p}/fastcgi;\n\
             \x20   uwsgi_temp_path {p}/uwsgi;\n\
             \x20   scgi_temp_path {p}/scgi;\n\
             \x20   include {p}/default.conf;\n\
             }}\n",
            p = prefix.display()
        );
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, main)?;

        // The same prefix, config and log target for the check and the real start.
        let nginx = || {
            let mut command = Command::new(binary);
            command
                .arg("-p")
                .arg(prefix)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg("stderr");
            command
        };
        let check = nginx()
            .arg("-t")
            .arg("-q")
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !check.status.success() {
            bail!(
                "nginx -t rejected the config: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        }

        let mut child = nginx()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let ready = crate::wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], ports.traffic)),
            Duration::from_secs(10),
        )
        .and_then(|()| {
            crate::wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], ports.status)),
                Duration::from_secs(10),
            )
        });
        if let Err(e) = ready {
            let _ = child.kill();
            let status = child.wait()?;
            bail!("nginx did not come up ({e}); it exited with {status}");
        }
        if let Some(status) = child.try_wait()? {
            bail!("nginx exited at start with {status} (port taken?)");
        }
        Ok(Self { child, ports, dir })
    }

    pub fn ports(&self) -> NginxPorts {
        self.ports
    }

    /// `http://127.0.0.1:PORT` of the traffic port.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.traffic)
    }

    /// `http://127.0.0.1:PORT/stub_status`.
    pub fn stub_status_url(&self) -> String {
        format!("http://127.0.0.1:{}/stub_status", self.ports.status)
    }

    /// The master's pid (workers are its children).
    /// Its configuration file: the master's command line names it, which tells this
    /// nginx's processes from any other's.
    pub fn config(&self) -> std::path::PathBuf {
        self.dir.path().join("nginx.conf")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The prefix directory holding the rendered config.
    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master stops its workers and exits.
        crate::terminate_master(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_application_site_routes_each_prefix_to_its_own_upstream() {
        let upstreams: Vec<SocketAddr> = ["127.0.0.1:9001", "127.0.0.1:9002"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let ports = NginxPorts {
            traffic: 8080,
            status: 8081,
        };
        let text = Site::applications("hello", &upstreams)
            .unwrap()
            .render(ports)
            .unwrap();
        assert!(
            text.contains("upstream app0 {\n    server 127.0.0.1:9001;"),
            "{text}"
        );
        assert!(
            text.contains("upstream app1 {\n    server 127.0.0.1:9002;"),
            "{text}"
        );
        assert!(text.contains("listen 127.0.0.1:8080;"), "{text}");
        assert!(
            text.contains("proxy_pass http://app$app/hello$rest$is_args$args;"),
            "{text}"
        );
        // A prefix that could break out of the regex or the path is refused.
        for bad in ["", "he/llo", "a$b", "x y"] {
            let err = Site::applications(bad, &upstreams).unwrap_err().to_string();
            assert!(err.contains("letters, digits"), "{bad:?}: {err}");
        }
        assert!(Site::applications("hello", &[]).is_err());
    }
}
