//! Static checks of the compose stack (CI machines have no Docker engine): the compose file
//! against the compose-spec schema (check-jsonschema), the Dockerfile through hadolint,
//! and what neither tool knows: every mounted path and build input exists, every scrape
//! target and URL names a service and a port it listens on, every image is pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

pub fn infra() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra")
}

pub fn compose() -> Yaml {
    let text = std::fs::read_to_string(infra().join("docker-compose.yml")).unwrap();
    YamlLoader::load_from_str(&text)
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
}

pub fn services(compose: &Yaml) -> Vec<(String, &Yaml)> {
    compose["services"]
        .as_hash()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

pub fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| {
            v.iter()
                .filter_map(|x| match x {
                    Yaml::String(s) => Some(s.clone()),
                    Yaml::Integer(i) => Some(i.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Python tool scripts/test installs; missing is a failure, not a skip.
pub fn tool(name: &str) -> PathBuf {
    localrun::find_program(name).unwrap_or_else(|| {
        panic!("{name} not found: scripts/test installs it (pip, in a venv it puts on PATH)")
    })
}

fn run(program: &Path, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(infra())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {} failed:\n{}{}",
        program.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_file_matches_the_compose_spec() {
    run(
        &tool("check-jsonschema"),
        &[
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        ],
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    run(&tool("hadolint"), &["docker/Dockerfile"]);
}

/// The Dockerfile's stages: name → (EXPOSEd ports, COPY sources from the context).
pub fn stages(dockerfile: &str) -> BTreeMap<String, (BTreeSet<u16>, Vec<String>)> {
    let mut stages = BTreeMap::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("FROM") => {
                current = words
                    .iter()
                    .position(|w| w.eq_ignore_ascii_case("as"))
                    .map(|i| words[i + 1].to_string())
                    .unwrap_or_default();
                stages.insert(current.clone(), (BTreeSet::new(), Vec::new()));
            }
            Some("EXPOSE") => {
                let ports = &mut stages.get_mut(&current).unwrap().0;
                ports.extend(words[1..].iter().map(|p| p.parse::<u16>().unwrap()));
            }
            Some("COPY") if !line.contains("--from=") => {
                let args: Vec<&str> = words[1..]
                    .iter()
                    .copied()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let sources = &mut stages.get_mut(&current).unwrap().1;
                sources.extend(args[..args.len() - 1].iter().map(|s| s.to_string()));
            }
            _ => {}
        }
    }
    stages
}

/// Each service's container ports: `ports` (container side), `expose`, and the EXPOSE
/// lines of the Dockerfile stage it is built from.
pub fn listening(compose: &Yaml) -> BTreeMap<String, BTreeSet<u16>> {
    let mut map = BTreeMap::new();
    for (name, service) in services(compose) {
        let mut ports = BTreeSet::new();
        for mapping in strings(&service["ports"]) {
            let container = mapping.rsplit(':').next().unwrap();
            ports.insert(container.parse::<u16>().unwrap());
        }
        for port in strings(&service["expose"]) {
            ports.insert(port.parse::<u16>().unwrap());
        }
        if let Some(target) = service["build"]["target"].as_str() {
            let context = infra().join(service["build"]["context"].as_str().unwrap());
            let dockerfile = context.join(service["build"]["dockerfile"].as_str().unwrap());
            let stages = stages(&std::fs::read_to_string(dockerfile).unwrap());
            ports.extend(&stages[target].0);
        }
        map.insert(name, ports);
    }
    map
}

#[test]
fn build_inputs_and_mounted_paths_exist() {
    let compose = compose();
    let named: BTreeSet<String> = compose["volumes"]
        .as_hash()
        .map(|h| h.keys().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let mut checked = 0;
    for (name, service) in services(&compose) {
        if let Some(context) = service["build"]["context"].as_str() {
            let context = infra().join(context);
            let dockerfile = context.join(service["build"]["dockerfile"].as_str().unwrap());
            assert!(dockerfile.is_file(), "{name}: no {}", dockerfile.display());
            let stages = stages(&std::fs::read_to_string(&dockerfile).unwrap());
            let target = service["build"]["target"].as_str().unwrap();
            assert!(
                stages.contains_key(target),
                "{name}: no stage {target} in {}",
                dockerfile.display()
            );
            for (stage, (_, sources)) in &stages {
                for source in sources {
                    assert!(
                        context.join(source).exists(),
                        "Dockerfile stage {stage} copies {source}, which is not in the context"
                    );
                }
            }
        }
        for volume in strings(&service["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if source.starts_with('.') {
                let path = infra().join(source);
                assert!(
                    path.exists(),
                    "{name} mounts {source}, which does not exist"
                );
                checked += 1;
            } else if !source.starts_with('/') {
                assert!(
                    named.contains(source),
                    "{name} uses volume {source}, not declared"
                );
            }
        }
        for dependency in service["depends_on"]
            .as_hash()
            .map(|h| h.keys().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            let dependency = dependency.as_str().unwrap();
            assert!(
                compose["services"][dependency].as_hash().is_some(),
                "{name} depends on unknown service {dependency}"
            );
        }
    }
    assert!(checked >= 5, "only {checked} repository paths mounted");
    // The scrape config Prometheus gets in compose is the one the dashboard test uses.
    assert!(
        strings(&compose["services"]["prometheus"]["volumes"])
            .iter()
            .any(|v| v.starts_with("./prometheus/prometheus.yml:")),
        "compose must mount infra/prometheus/prometheus.yml, the file the tests check"
    );
}

#[test]
fn every_image_is_pinned_and_healthy_dependencies_have_health_checks() {
    let compose = compose();
    for (name, service) in services(&compose) {
        let image = service["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no image"));
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest" && !tag.contains('/'),
            "{name}: image {image} is not pinned to a tag"
        );
        if service["build"].as_hash().is_none() {
            assert!(
                tag.chars().any(|c| c.is_ascii_digit()),
                "{name}: {image} should name a version"
            );
        }
        assert_eq!(
            service["restart"]
                .as_str()
                .or(service["<<"]["restart"].as_str()),
            Some("unless-stopped"),
            "{name}: restart policy"
        );
        for (dependency, how) in service["depends_on"].as_hash().into_iter().flatten() {
            let dependency = dependency.as_str().unwrap();
            if how["condition"].as_str() == Some("service_healthy") {
                assert!(
                    compose["services"][dependency]["healthcheck"]
                        .as_hash()
                        .is_some(),
                    "{name} waits for {dependency} to be healthy, which has no healthcheck"
                );
            }
        }
    }
}

/// `host:port` → (host, port).
fn host_port(text: &str) -> (String, u16) {
    let (host, port) = text.rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

#[test]
fn every_scrape_target_and_url_names_a_service_port() {
    let compose = compose();
    let listening = listening(&compose);
    let check = |what: &str, host: &str, port: u16| {
        let ports = listening
            .get(host)
            .unwrap_or_else(|| panic!("{what}: {host} is not a compose service"));
        assert!(
            ports.contains(&port),
            "{what}: {host} does not listen on {port} (it does on {ports:?})"
        );
    };

    let prometheus = std::fs::read_to_string(infra().join("prometheus/prometheus.yml")).unwrap();
    let prometheus = YamlLoader::load_from_str(&prometheus).unwrap().remove(0);
    let mut jobs = Vec::new();
    for job in prometheus["scrape_configs"].as_vec().unwrap() {
        let name = job["job_name"].as_str().unwrap();
        jobs.push(name.to_string());
        for config in job["static_configs"].as_vec().unwrap() {
            for target in strings(&config["targets"]) {
                let (host, port) = host_port(&target);
                // Prometheus scraping itself.
                let host = if host == "localhost" {
                    "prometheus"
                } else {
                    &host
                };
                check(&format!("scrape job {name}"), host, port);
            }
        }
    }
    for side in ["runtime", "webserver", "nginx", "cadvisor", "prometheus"] {
        assert!(jobs.iter().any(|j| j == side), "no scrape job {side}");
    }

    // URLs services are configured with (exporter, bench, nginx's upstream).
    let mut urls = Vec::new();
    for (_, service) in services(&compose) {
        urls.extend(strings(&service["command"]));
        if let Some(env) = service["environment"].as_hash() {
            urls.extend(env.values().filter_map(|v| v.as_str().map(str::to_string)));
        }
    }
    let mut seen = 0;
    for text in urls {
        for part in text.split(['=', ' ']) {
            let rest = part.strip_prefix("http://").unwrap_or(part);
            let authority = rest.split('/').next().unwrap();
            if let Some((host, port)) = authority.rsplit_once(':')
                && let Ok(port) = port.parse::<u16>()
                && listening.contains_key(host)
            {
                check(&format!("URL {part}"), host, port);
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 6,
        "expected the exporter, bench and nginx URLs, saw {seen}"
    );
}

#[test]
fn dashboards_are_validated_against_the_grafana_version_compose_runs() {
    let compose = compose();
    let image = compose["services"]["grafana"]["image"].as_str().unwrap();
    let version = image.rsplit_once(':').unwrap().1;
    let script =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/test"))
            .unwrap();
    let pinned = script
        .lines()
        .find_map(|l| l.strip_prefix("grafana_schema_version="))
        .expect("scripts/test pins grafana_schema_version");
    assert_eq!(
        pinned, version,
        "scripts/test validates dashboards against Grafana {pinned}, compose runs {image}"
    );
}

/// One Rust everywhere: rust-toolchain.toml pins it, the workspace's `rust-version` is
/// its major.minor, and the Dockerfile builds with exactly it (so rustup downloads
/// nothing inside the image build).
#[test]
fn the_toolchain_is_the_same_in_the_pin_the_workspace_and_the_dockerfile() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let pin: toml::Table = toml::from_str(&read("rust-toolchain.toml")).unwrap();
    let channel = pin["toolchain"]["channel"].as_str().unwrap().to_string();
    assert_eq!(
        channel.split('.').count(),
        3,
        "pin an exact release, not {channel:?}"
    );
    let targets = pin["toolchain"]["targets"].as_array().unwrap();
    assert!(
        targets.iter().any(|t| t.as_str() == Some("wasm32-wasip2")),
        "{pin}"
    );

    let workspace: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let rust_version = workspace["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    assert!(
        channel.starts_with(&format!("{rust_version}.")),
        "rust-version {rust_version} is not the pinned {channel}"
    );

    let dockerfile = read("infra/docker/Dockerfile");
    let image = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .expect("a rust builder image");
    let tag = image.split_whitespace().next().unwrap();
    assert!(
        tag == channel || tag.starts_with(&format!("{channel}-")),
        "the Dockerfile builds with rust:{tag}, the pin says {channel}"
    );
}

/// Every `RUNTIME_*` / `WEBSERVER_*` variable compose and the Dockerfile set is one the
/// binary reads (a misspelt one would be ignored in silence), and compose gives the
/// runtime a generated deploy token rather than a default everyone knows.
#[test]
fn environment_variables_name_real_flags_and_the_token_is_generated() {
    let compose = compose();
    let dockerfile = std::fs::read_to_string(infra().join("docker/Dockerfile")).unwrap();
    for binary in ["runtime", "webserver"] {
        let help = std::process::Command::new(localrun::workspace_binary(binary))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8(help.stdout).unwrap();
        let prefix = format!("{}_", binary.to_uppercase());
        let mut names: Vec<String> = compose["services"][binary]["environment"]
            .as_hash()
            .map(|env| {
                env.keys()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        names.extend(
            dockerfile
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|word| word.starts_with(&prefix) && word.len() > prefix.len())
                .map(str::to_string),
        );
        assert!(!names.is_empty(), "no {prefix}* variables found");
        for name in names {
            assert!(
                help.contains(&format!("[env: {name}")),
                "{binary} has no flag read from {name}"
            );
        }
    }
    let env = &compose["services"]["runtime"]["environment"];
    assert!(
        env["RUNTIME_DEPLOY_TOKEN"].is_badvalue(),
        "compose sets a fixed token"
    );
    assert_eq!(env["RUNTIME_CREATE_DEPLOY_TOKEN"].as_str(), Some("true"));
    let file = env["RUNTIME_DEPLOY_TOKEN_FILE"].as_str().unwrap();
    let dir = std::path::Path::new(file)
        .parent()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        strings(&compose["services"]["runtime"]["volumes"])
            .iter()
            .any(|v| v.ends_with(&format!(":{dir}"))),
        "the token's directory {dir} is not a volume: it would be lost with the container"
    );
    assert!(
        dockerfile.contains(dir),
        "the image does not create {dir} for its user"
    );
}
