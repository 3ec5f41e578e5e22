//! Static checks of the Kubernetes manifests (no cluster runs on these machines): every
//! kustomization renders (`kubectl kustomize`) and validates against the Kubernetes
//! schemas (`kubernetes-validate --strict`), and what neither knows holds: every probe,
//! Service and scrape target names a port the container listens on and a path it
//! serves, every reference names something rendered, the pods meet the `restricted`
//! Pod Security Standard, and the runtime's settings fit its container.

use crate::compose::{infra, stages, strings, tool};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

fn k8s() -> PathBuf {
    infra().join("k8s")
}

/// Every kustomization a user applies: the base and each overlay.
fn kustomizations() -> Vec<PathBuf> {
    let mut dirs = vec![k8s().join("base")];
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(k8s().join("overlays"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    overlays.sort();
    dirs.extend(overlays);
    dirs
}

/// `kubectl kustomize DIR`: the rendered text.
fn render_text(dir: &Path) -> String {
    let out = std::process::Command::new(tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn render(dir: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&render_text(dir)).unwrap()
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec().map(Vec::as_slice).unwrap_or_default()
}

/// A container's environment as NAME → value.
fn env(container: &Yaml) -> BTreeMap<String, String> {
    list(&container["env"])
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The port of `HOST:PORT`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The ports a container really listens on, from what configures it: our binaries'
/// `*_LISTEN` variables (or the image's defaults, its Dockerfile stage's EXPOSE), the
/// nginx template's variables, and for images of others the ports compose uses them on.
fn listens_on(container: &Yaml) -> BTreeSet<u16> {
    let image = container["image"].as_str().unwrap();
    let env = env(container);
    let dockerfile = std::fs::read_to_string(infra().join("docker/Dockerfile")).unwrap();
    let stages = stages(&dockerfile);
    if let Some(ours) = image.strip_prefix("serverless-vs-server/") {
        let ours = ours.split(':').next().unwrap();
        let prefix = ours.to_uppercase();
        let mut ports = stages[ours].0.clone();
        for (var, default) in [("LISTEN", 8080), ("OPS_LISTEN", 8081)] {
            if let Some(addr) = env.get(&format!("{prefix}_{var}")) {
                // The image's default for this listener is replaced.
                let image_default = match (ours, var) {
                    ("webserver", "LISTEN") => 8000,
                    ("webserver", "OPS_LISTEN") => 8001,
                    _ => default,
                };
                ports.remove(&image_default);
                if !addr.starts_with("127.") {
                    ports.insert(port_of(addr));
                }
            }
        }
        return ports;
    }
    if image.starts_with("nginxinc/nginx-unprivileged:") {
        return ["NGINX_PORT", "NGINX_STATUS_PORT"]
            .iter()
            .map(|v| env[*v].parse().unwrap())
            .collect();
    }
    let compose = crate::compose::compose();
    let repo = image.split(':').next().unwrap();
    let mut ports = BTreeSet::new();
    for (name, service) in crate::compose::services(&compose) {
        if service["image"]
            .as_str()
            .is_some_and(|i| i.starts_with(repo))
        {
            ports.extend(&crate::compose::listening(&compose)[&name]);
        }
    }
    assert!(!ports.is_empty(), "{image}: no compose service runs it");
    ports
}

/// A container's declared ports, name → number.
fn declared(container: &Yaml) -> BTreeMap<String, u16> {
    list(&container["ports"])
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_i64().unwrap() as u16,
            )
        })
        .collect()
}

fn containers(deployment: &Yaml) -> &[Yaml] {
    list(&deployment["spec"]["template"]["spec"]["containers"])
}

/// The container `name` of the Deployment `deployment`.
fn container<'a>(docs: &'a [Yaml], deployment: &str, name: &str) -> &'a Yaml {
    containers(named(docs, "Deployment", deployment))
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name} in {deployment}"))
}

#[test]
fn every_kustomization_renders_and_validates_against_the_kubernetes_schemas() {
    let validate = tool("kubernetes-validate");
    for dir in kustomizations() {
        let rendered = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(rendered.path(), render_text(&dir)).unwrap();
        let out = std::process::Command::new(&validate)
            .args(["--strict", "--quiet"])
            .arg(rendered.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn probes_services_and_autoscalers_name_ports_and_workloads_that_exist() {
    for dir in kustomizations() {
        let docs = render(&dir);
        let deployments = of_kind(&docs, "Deployment");
        assert!(deployments.len() >= 4, "{}", dir.display());
        for deployment in &deployments {
            let name = deployment["metadata"]["name"].as_str().unwrap();
            for container in containers(deployment) {
                let cname = container["name"].as_str().unwrap();
                let ports = declared(container);
                let real = listens_on(container);
                for (port_name, number) in &ports {
                    assert!(
                        real.contains(number),
                        "{name}/{cname}: port {port_name} ({number}) is not one it listens on ({real:?})"
                    );
                }
                for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
                    let get = &container[probe]["httpGet"];
                    if get.is_badvalue() {
                        continue;
                    }
                    let port = get["port"].as_str().unwrap();
                    assert!(
                        ports.contains_key(port),
                        "{name}/{cname}: {probe} port {port} is not declared"
                    );
                }
            }
        }
        for service in of_kind(&docs, "Service") {
            let name = service["metadata"]["name"].as_str().unwrap();
            let selector = service["spec"]["selector"].as_hash().unwrap();
            let matching: Vec<_> = deployments
                .iter()
                .filter(|d| {
                    let labels = &d["spec"]["template"]["metadata"]["labels"];
                    selector
                        .iter()
                        .all(|(k, v)| labels[k.as_str().unwrap()].as_str() == v.as_str())
                })
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "Service {name} selects {}",
                matching.len()
            );
            for port in list(&service["spec"]["ports"]) {
                let target = port["targetPort"].as_str().unwrap();
                assert!(
                    containers(matching[0])
                        .iter()
                        .any(|c| declared(c).contains_key(target)),
                    "Service {name}: no container port named {target}"
                );
            }
        }
        for hpa in of_kind(&docs, "HorizontalPodAutoscaler") {
            let target = hpa["spec"]["scaleTargetRef"]["name"].as_str().unwrap();
            let deployment = named(&docs, "Deployment", target);
            // Utilization is relative to requests: every container needs a CPU request.
            for container in containers(deployment) {
                assert!(
                    !container["resources"]["requests"]["cpu"].is_badvalue(),
                    "{target}/{}: no CPU request, so its autoscaler cannot work",
                    container["name"].as_str().unwrap()
                );
            }
        }
        for side in ["runtime", "traditional"] {
            named(&docs, "HorizontalPodAutoscaler", side);
        }
    }
}

#[tokio::test]
async fn probe_paths_are_served_by_the_real_programs() {
    let docs = render(&k8s().join("base"));
    let client = reqwest::Client::new();
    let mut checked = 0;
    for (deployment, program) in [("runtime", "runtime"), ("traditional", "webserver")] {
        let c = container(&docs, deployment, program);
        let functions = tempfile::tempdir().unwrap();
        let mut args = vec!["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"];
        if program == "runtime" {
            args.extend(["--functions-dir", functions.path().to_str().unwrap()]);
        }
        let server = localrun::Service::start(
            localrun::workspace_binary(program),
            &args,
            &["traffic", "ops"],
        )
        .unwrap();
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let get = &c[probe]["httpGet"];
            if get.is_badvalue() {
                continue;
            }
            // Every probe of ours is on the ops listener.
            assert_eq!(get["port"].as_str(), Some("ops"));
            let path = get["path"].as_str().unwrap();
            let url = format!("{}{path}", server.url("ops"));
            let status = client.get(&url).send().await.unwrap().status();
            assert_eq!(status, 200, "{deployment}/{program} {probe}: GET {url}");
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked}");
    // nginx's probes: the status server of the template it renders.
    let nginx = container(&docs, "traditional", "nginx");
    let template =
        std::fs::read_to_string(infra().join("nginx/templates/default.conf.template")).unwrap();
    let status_server = template
        .split("listen ${NGINX_STATUS_PORT};")
        .nth(1)
        .unwrap();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &nginx[probe]["httpGet"];
        assert_eq!(get["port"].as_str(), Some("status"));
        let path = get["path"].as_str().unwrap();
        assert!(
            status_server.contains(&format!("location = {path} ")),
            "nginx {probe}: {path} is not served on the status port"
        );
    }
    // The exporter reads stub_status on that port.
    let exporter = container(&docs, "traditional", "nginx-exporter");
    let uri = strings(&exporter["args"]).join(" ");
    let status_port = &env(nginx)["NGINX_STATUS_PORT"];
    assert!(
        uri.contains(&format!("127.0.0.1:{status_port}/stub_status"))
            && status_server.contains("location = /stub_status"),
        "{uri}"
    );
    assert_eq!(
        env(nginx)["WEBSERVER_UPSTREAM"],
        format!(
            "127.0.0.1:{}",
            port_of(&env(container(&docs, "traditional", "webserver"))["WEBSERVER_LISTEN"])
        )
    );
}

#[test]
fn volumes_name_what_is_rendered_and_the_token_secret_is_documented() {
    let guide = std::fs::read_to_string(infra().join("../docs/deploy.md")).unwrap();
    for dir in kustomizations() {
        let docs = render(&dir);
        for deployment in of_kind(&docs, "Deployment") {
            for volume in list(&deployment["spec"]["template"]["spec"]["volumes"]) {
                if let Some(name) = volume["configMap"]["name"].as_str() {
                    named(&docs, "ConfigMap", name);
                } else if let Some(name) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                    named(&docs, "PersistentVolumeClaim", name);
                } else if let Some(name) = volume["secret"]["secretName"].as_str() {
                    // Never in git: docs/deploy.md has the command that creates it.
                    assert!(
                        ["runtime-deploy-token", "runtime-cache-key"].contains(&name),
                        "{name}"
                    );
                    assert!(
                        guide.contains(&format!("create secret generic {name}")),
                        "docs/deploy.md does not say how to create the Secret {name}"
                    );
                } else {
                    assert!(!volume["emptyDir"].is_badvalue(), "{volume:?}");
                }
            }
        }
        // Every dashboard and rule file is in its ConfigMap.
        let dashboards = named_prefix(&docs, "grafana-dashboards");
        for entry in std::fs::read_dir(infra().join("grafana/dashboards")).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !dashboards["data"][file.as_str()].is_badvalue(),
                "dashboard {file} is not provisioned in Kubernetes"
            );
        }
        let rules = named_prefix(&docs, "prometheus-rules");
        for entry in std::fs::read_dir(infra().join("prometheus/rules")).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!rules["data"][file.as_str()].is_badvalue(), "rules {file}");
        }
    }
}

/// The ConfigMap generated as `prefix` (kustomize appends a content hash).
fn named_prefix<'a>(docs: &'a [Yaml], prefix: &str) -> &'a Yaml {
    of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
        })
        .unwrap_or_else(|| panic!("no ConfigMap {prefix}"))
}

#[test]
fn every_pod_meets_the_restricted_pod_security_standard_and_images_are_pinned() {
    for dir in kustomizations() {
        let docs = render(&dir);
        let namespace = &of_kind(&docs, "Namespace")[0];
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str(),
            Some("restricted")
        );
        for deployment in of_kind(&docs, "Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap();
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(
                pod["securityContext"]["runAsNonRoot"].as_bool(),
                Some(true),
                "{name}"
            );
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"].as_str(),
                Some("RuntimeDefault"),
                "{name}"
            );
            for container in containers(deployment) {
                let c = container["name"].as_str().unwrap();
                let sc = &container["securityContext"];
                assert_eq!(
                    sc["allowPrivilegeEscalation"].as_bool(),
                    Some(false),
                    "{name}/{c}"
                );
                assert_eq!(
                    sc["readOnlyRootFilesystem"].as_bool(),
                    Some(true),
                    "{name}/{c}"
                );
                assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}/{c}");
                assert!(
                    !container["resources"]["limits"]["memory"].is_badvalue(),
                    "{name}/{c}: no memory limit"
                );
                let image = container["image"].as_str().unwrap();
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(
                    !tag.is_empty() && tag != "latest",
                    "{name}/{c}: image {image} is not pinned"
                );
            }
        }
    }
}

#[test]
fn network_policies_keep_every_port_but_traffic_to_those_that_need_it() {
    for dir in kustomizations() {
        let docs = render(&dir);
        let policies = of_kind(&docs, "NetworkPolicy");
        for side in ["runtime", "traditional"] {
            let policy = policies
                .iter()
                .find(|p| {
                    p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"].as_str()
                        == Some(side)
                })
                .unwrap_or_else(|| panic!("{}: no NetworkPolicy selects {side}", dir.display()));
            assert!(
                strings(&policy["spec"]["policyTypes"]).contains(&"Ingress".to_string()),
                "{side}"
            );
            // Every port the side's containers declare is either traffic or named in a
            // rule that says who may reach it; no rule opens another port to everyone.
            let mut opened = BTreeSet::new();
            for rule in list(&policy["spec"]["ingress"]) {
                let ports: Vec<String> = list(&rule["ports"])
                    .iter()
                    .map(|p| match &p["port"] {
                        Yaml::String(name) => name.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                let from = list(&rule["from"]);
                if from.is_empty() {
                    assert_eq!(ports, ["traffic"], "{side}: {ports:?} open to everyone");
                } else {
                    for peer in from {
                        let labels = &peer["podSelector"]["matchLabels"];
                        assert!(
                            labels["app.kubernetes.io/name"].as_str() == Some("prometheus")
                                || labels["serverless-vs-server/deploy-client"].as_str()
                                    == Some("true"),
                            "{side}: {ports:?} open to {peer:?}"
                        );
                    }
                }
                opened.extend(ports);
            }
            let deployment = named(&docs, "Deployment", side);
            for container in containers(deployment) {
                for name in declared(container).keys() {
                    // nginx's status port is read by the exporter in the same pod.
                    if name == "status" {
                        continue;
                    }
                    assert!(
                        opened.contains(name),
                        "{side}: port {name} has no rule (the policy would close it)"
                    );
                }
            }
        }
        // The runtime's ops port: Prometheus and deploy clients, never everyone.
        let runtime = policies
            .iter()
            .find(|p| p["metadata"]["name"].as_str() == Some("runtime"))
            .unwrap();
        let ops_rule = list(&runtime["spec"]["ingress"])
            .iter()
            .find(|r| {
                list(&r["ports"])
                    .iter()
                    .any(|p| p["port"].as_str() == Some("ops"))
            })
            .expect("a rule for the runtime's ops port");
        assert!(!list(&ops_rule["from"]).is_empty());
    }
}

/// `128Mi`, `1Gi` → MiB.
fn mib(quantity: &str) -> u64 {
    if let Some(n) = quantity.strip_suffix("Gi") {
        n.parse::<u64>().unwrap() * 1024
    } else {
        quantity.strip_suffix("Mi").unwrap().parse().unwrap()
    }
}

#[test]
fn the_runtime_shares_its_store_and_its_budget_fits_its_container() {
    let help = std::process::Command::new(localrun::workspace_binary("runtime"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let webserver_help = std::process::Command::new(localrun::workspace_binary("webserver"))
        .arg("--help")
        .output()
        .unwrap();
    let webserver_help = String::from_utf8(webserver_help.stdout).unwrap();
    for dir in kustomizations() {
        let docs = render(&dir);
        let deployment = named(&docs, "Deployment", "runtime");
        let runtime = &containers(deployment)[0];
        let vars = env(runtime);
        for name in vars.keys() {
            assert!(
                help.contains(&format!("[env: {name}")),
                "no flag reads {name}"
            );
        }
        let webserver = container(&docs, "traditional", "webserver");
        for name in env(webserver).keys() {
            assert!(
                webserver_help.contains(&format!("[env: {name}")),
                "no flag reads {name}"
            );
        }
        assert_eq!(vars["RUNTIME_SHARED_STORE"], "true");
        assert!(deployment["spec"]["replicas"].as_i64().unwrap() >= 2);
        let mounts: BTreeMap<&str, &str> = list(&runtime["volumeMounts"])
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap(),
                    m["mountPath"].as_str().unwrap(),
                )
            })
            .collect();
        // The store is a directory of its own below the volume (which the runtime's
        // group can write), so the runtime creates it private.
        let store = Path::new(&vars["RUNTIME_STORE_DIR"]);
        assert_eq!(store.parent().unwrap(), Path::new(mounts["store"]));
        assert!(Path::new(&vars["RUNTIME_DEPLOY_TOKEN_FILE"]).starts_with(mounts["token"]));
        let claim = named(&docs, "PersistentVolumeClaim", "runtime-store");
        let modes = strings(&claim["spec"]["accessModes"]);
        let nodes = if dir.ends_with("kind") {
            "ReadWriteOnce"
        } else {
            "ReadWriteMany"
        };
        assert_eq!(modes, [nodes], "{}", dir.display());
        // The instances' budget, plus the runtime itself, fits the memory limit.
        let limit = mib(runtime["resources"]["limits"]["memory"].as_str().unwrap());
        let budget: u64 = vars["RUNTIME_MAX_TOTAL_MEMORY_MIB"].parse().unwrap();
        assert!(
            budget * 4 <= limit * 3,
            "budget {budget} MiB in a {limit} MiB container"
        );
        let per_instance: u64 = vars["RUNTIME_MAX_MEMORY_MIB"].parse().unwrap();
        assert!(per_instance <= budget);
        // Every budget of host memory the runtime keeps, added up, leaves the runtime's
        // own 256 MiB (binary, loaded code, buffers) inside the limit: instances, request
        // bodies (the 256 MiB default alone would not fit beside 640 MiB of instances).
        let bodies: u64 = vars
            .get("RUNTIME_MAX_BODY_BUFFER_MIB")
            .map_or(256, |v| v.parse().unwrap());
        // And compiles, which run in child processes in the same container.
        let compile: u64 = vars
            .get("RUNTIME_COMPILE_MEMORY_MIB")
            .map_or(1024, |v| v.parse().unwrap());
        let compiles: u64 = vars
            .get("RUNTIME_MAX_CONCURRENT_COMPILES")
            .map_or(u64::MAX / 4096, |v| v.parse().unwrap());
        let compiling = compile * compiles;
        assert!(
            budget + bodies + compiling + 256 <= limit,
            "instances {budget} + bodies {bodies} + compiles {compiling} + the runtime's own \
             256 MiB > {limit} MiB"
        );
        // Ops stays inside the cluster.
        let ops = named(&docs, "Service", "runtime-ops");
        assert_eq!(ops["spec"]["type"].as_str(), Some("ClusterIP"));
    }
}

#[test]
fn prometheus_scrapes_every_side_under_the_job_names_the_rules_and_dashboards_use() {
    let docs = render(&k8s().join("base"));
    let config = named_prefix(&docs, "prometheus-config")["data"]["prometheus.yml"]
        .as_str()
        .unwrap()
        .to_string();
    let mut config = YamlLoader::load_from_str(&config).unwrap().remove(0);

    // The `pods` job keeps container ports named ops or metrics; its job label is the
    // container's name, nginx-exporter's renamed nginx.
    let pods = list(&config["scrape_configs"])
        .iter()
        .find(|j| j["job_name"].as_str() == Some("pods"))
        .unwrap();
    let relabel = list(&pods["relabel_configs"]);
    let keep = relabel
        .iter()
        .find(|r| {
            r["source_labels"][0].as_str() == Some("__meta_kubernetes_pod_container_port_name")
        })
        .unwrap()["regex"]
        .as_str()
        .unwrap()
        .to_string();
    let kept: BTreeSet<&str> = keep.split('|').collect();
    let mut jobs = BTreeSet::new();
    for deployment in of_kind(&docs, "Deployment") {
        for container in containers(deployment) {
            if declared(container)
                .keys()
                .any(|p| kept.contains(p.as_str()))
            {
                let name = container["name"].as_str().unwrap();
                let renamed = relabel.iter().find(|r| {
                    r["source_labels"][0].as_str() == Some("job")
                        && r["regex"].as_str() == Some(name)
                });
                jobs.insert(
                    renamed
                        .map(|r| r["replacement"].as_str().unwrap())
                        .unwrap_or(name)
                        .to_string(),
                );
            }
        }
    }
    assert_eq!(
        jobs,
        ["nginx", "runtime", "webserver"].map(String::from).into(),
        "the jobs compose's Prometheus has, which the rules and dashboards select"
    );

    // promtool checks the rest. Debian's Prometheus is built without Kubernetes
    // discovery, so that part is swapped for a static target; the rules are the repo's.
    let hash = config.as_mut_hash().unwrap();
    hash.insert(
        Yaml::String("rule_files".into()),
        Yaml::Array(vec![Yaml::String(
            infra().join("prometheus/rules/*.yml").display().to_string(),
        )]),
    );
    // The service account's token, which only exists in a pod: promtool wants a file.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token").unwrap();
    for job in config["scrape_configs"].as_mut_vec().unwrap() {
        let job = job.as_mut_hash().unwrap();
        if job
            .remove(&Yaml::String("kubernetes_sd_configs".into()))
            .is_some()
        {
            let target = YamlLoader::load_from_str("- targets: ['discovered:1']").unwrap();
            job.insert(Yaml::String("static_configs".into()), target[0].clone());
        }
        if let Some(Yaml::Hash(auth)) = job.get_mut(&Yaml::String("authorization".into())) {
            let file = Yaml::String("credentials_file".into());
            assert_eq!(
                auth[&file].as_str(),
                Some("/var/run/secrets/kubernetes.io/serviceaccount/token")
            );
            auth.insert(file, Yaml::String(token.display().to_string()));
        }
    }
    let mut text = String::new();
    yaml_rust2::YamlEmitter::new(&mut text)
        .dump(&config)
        .unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_kind_cluster_maps_every_node_port_and_in_flight_scaling_names_a_real_metric() {
    let docs = render(&k8s().join("overlays/kind"));
    let cluster = std::fs::read_to_string(k8s().join("overlays/kind/cluster.yaml")).unwrap();
    let cluster = YamlLoader::load_from_str(&cluster).unwrap().remove(0);
    let mapped: BTreeSet<i64> = list(&cluster["nodes"][0]["extraPortMappings"])
        .iter()
        .map(|m| m["containerPort"].as_i64().unwrap())
        .collect();
    let node_ports: BTreeSet<i64> = of_kind(&docs, "Service")
        .iter()
        .flat_map(|s| list(&s["spec"]["ports"]))
        .filter_map(|p| p["nodePort"].as_i64())
        .collect();
    assert_eq!(mapped, node_ports);
    assert!(node_ports.len() >= 4);
    for service in of_kind(&docs, "Service") {
        if service["metadata"]["name"].as_str() == Some("runtime-ops") {
            assert_eq!(service["spec"]["type"].as_str(), Some("ClusterIP"));
        }
    }

    let docs = render(&k8s().join("overlays/in-flight"));
    let hpa = named(&docs, "HorizontalPodAutoscaler", "runtime");
    let metric = list(&hpa["spec"]["metrics"])
        .iter()
        .find(|m| m["type"].as_str() == Some("Pods"))
        .unwrap()["pods"]["metric"]["name"]
        .as_str()
        .unwrap();
    let values = std::fs::read_to_string(
        k8s().join("components/in-flight-autoscaling/prometheus-adapter-values.yaml"),
    )
    .unwrap();
    let values = YamlLoader::load_from_str(&values).unwrap().remove(0);
    let rule = &values["rules"]["custom"][0];
    assert_eq!(rule["name"]["as"].as_str(), Some(metric));
    assert!(rule["seriesQuery"].as_str().unwrap().starts_with(metric));
    // The adapter reaches the Prometheus the base runs.
    let service = named(&docs, "Service", "prometheus");
    let url = values["prometheus"]["url"].as_str().unwrap();
    assert_eq!(url, "http://prometheus.serverless-vs-server.svc");
    assert_eq!(
        values["prometheus"]["port"].as_i64(),
        service["spec"]["ports"][0]["port"].as_i64()
    );
    // The runtime exports the metric (a gauge per function, so per pod it sums).
    let source = std::fs::read_to_string(infra().join("../runtime/src/metrics.rs")).unwrap();
    assert!(
        source.contains(&format!("\"{metric}\"")),
        "the runtime has no {metric}"
    );
}
