//! `scripts/setup` and the patches it applies (patches/README.md): a clone that skipped
//! it fails saying what to run, every entry point runs it before cargo, and it refuses a
//! release, a patch or a lock that does not match.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The patch directories, as (crate, version).
fn patched_crates() -> Vec<(String, String)> {
    let mut crates: Vec<_> = std::fs::read_dir(root().join("patches"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            let (krate, version) = name.rsplit_once('-').unwrap();
            (krate.to_string(), version.to_string())
        })
        .collect();
    crates.sort();
    crates
}

/// Runs scripts/setup with its patches from `patches` and its output in `out`.
fn setup(patches: &Path, out: &Path, args: &[&str]) -> Output {
    Command::new(root().join("scripts/setup"))
        .args(args)
        .env("SVS_PATCHES_DIR", patches)
        .env("SVS_PATCHED_DIR", out)
        .output()
        .unwrap()
}

/// A copy of patches/ to break on purpose.
fn patches_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(root().join("patches/."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn every_patched_crate_is_wired_into_the_workspace() {
    let crates = patched_crates();
    assert!(!crates.is_empty(), "patches/ holds no patch directory");
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let patch = manifest["patch"]["crates-io"].as_table().unwrap();
    let exclude = manifest["workspace"]["exclude"].as_array().unwrap();
    assert!(
        exclude
            .iter()
            .any(|e| e.as_str() == Some("patched-by-scripts-setup")),
        "the workspace must exclude the patched trees: {exclude:?}"
    );
    for (krate, version) in &crates {
        assert_eq!(
            patch[krate.as_str()]["path"].as_str(),
            Some(format!("patched-by-scripts-setup/{krate}").as_str()),
            "[patch.crates-io] must point {krate} at its patched tree"
        );
        let dir = root().join(format!("patches/{krate}-{version}"));
        let checksum = std::fs::read_to_string(dir.join("registry.sha256")).unwrap();
        let hex = checksum.split_whitespace().next().unwrap();
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{checksum}"
        );
        let patches = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("patch".as_ref()))
            .count();
        assert!(patches > 0, "{} holds no .patch", dir.display());
    }
    // The patched trees are made on each machine, never committed nor sent to Docker.
    assert!(
        read(".gitignore")
            .lines()
            .any(|l| l == "/patched-by-scripts-setup/")
    );
    assert!(
        read(".dockerignore")
            .lines()
            .any(|l| l == "patched-by-scripts-setup/")
    );
}

/// Each entry point runs scripts/setup before its first cargo command: the README's two
/// commands (and .ci/run through scripts/test), the Dockerfile's builder, and the
/// scripts that build for measurements.
#[test]
fn every_entry_point_sets_up_before_cargo() {
    for path in [
        "scripts/test",
        "scripts/compare",
        "scripts/wrk-hello",
        "scripts/perf-figures",
        "scripts/soak",
        "scripts/replica-convergence",
        "infra/docker/Dockerfile",
    ] {
        let script = read(path);
        let code: Vec<&str> = script
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        let first = |needle: &str| code.iter().position(|l| l.contains(needle));
        let setup = first("scripts/setup")
            .or_else(|| first(r#""scripts", "setup""#))
            .unwrap_or_else(|| panic!("{path} never runs scripts/setup"));
        let cargo = first("cargo ")
            .or_else(|| first(r#"["cargo","#))
            .unwrap_or_else(|| panic!("{path} runs no cargo command"));
        assert!(
            setup <= cargo,
            "{path} runs cargo (line {}) before scripts/setup (line {})",
            cargo + 1,
            setup + 1
        );
    }
    let ci = read(".ci/run");
    let code: Vec<&str> = ci
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let test = code.iter().position(|l| l.starts_with("scripts/test"));
    let cargo = code.iter().position(|l| l.starts_with("cargo "));
    assert!(test.is_some(), ".ci/run does not run scripts/test");
    assert!(
        cargo.is_none_or(|cargo| test < Some(cargo)),
        ".ci/run runs cargo before scripts/test"
    );
}

/// A clone on which scripts/setup has not run: the first cargo command fails, and what it
/// prints names the directory scripts/setup makes.
#[test]
fn a_clone_that_skipped_setup_fails_naming_it() {
    let clone = tempfile::tempdir().unwrap();
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(files.status.success(), "{}", text(&files));
    for file in files.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let file = std::str::from_utf8(file).unwrap();
        let from = root().join(file);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = clone.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    assert!(!clone.path().join("patched-by-scripts-setup").exists());
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(clone.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "cargo resolved without the patched tree: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("patched-by-scripts-setup/") && stderr.contains("/Cargo.toml"),
        "{stderr}"
    );
}

/// On the real patches, into a directory of its own: the release with our lines in it,
/// left alone when run again, and `--check` notices a tree changed by hand.
#[test]
fn setup_builds_the_patched_tree_once_and_check_sees_tampering() {
    let out = tempfile::tempdir().unwrap();
    let patches = root().join("patches");
    let first = setup(&patches, out.path(), &[]);
    assert!(first.status.success(), "{}", text(&first));
    for (krate, version) in patched_crates() {
        let tree = out.path().join(&krate);
        let manifest = std::fs::read_to_string(tree.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("version = \"{version}\"")),
            "{manifest}"
        );
        // Every line a patch adds is in the tree.
        let dir = patches.join(format!("{krate}-{version}"));
        for patch in std::fs::read_dir(&dir).unwrap() {
            let patch = patch.unwrap().path();
            if patch.extension() != Some("patch".as_ref()) {
                continue;
            }
            let diff = std::fs::read_to_string(&patch).unwrap();
            let mut file = None;
            for line in diff.lines() {
                if let Some(name) = line.strip_prefix("+++ b/") {
                    file = Some(std::fs::read_to_string(tree.join(name.trim())).unwrap());
                } else if let (Some(added), Some(file)) = (line.strip_prefix('+'), &file) {
                    assert!(
                        file.contains(added),
                        "{} did not add {added:?}",
                        patch.display()
                    );
                }
            }
        }
    }
    let (krate, _) = &patched_crates()[0];
    let stamp = || std::fs::read(out.path().join(krate).join(".setup-stamp")).unwrap();
    let before = stamp();
    let again = setup(&patches, out.path(), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("up to date"),
        "{}",
        text(&again)
    );
    assert_eq!(stamp(), before);
    let check = setup(&patches, out.path(), &["--check"]);
    assert!(check.status.success(), "{}", text(&check));

    std::fs::write(
        out.path().join(krate).join("Cargo.toml"),
        "# changed by hand\n",
    )
    .unwrap();
    let check = setup(&patches, out.path(), &["--check"]);
    assert!(!check.status.success(), "{}", text(&check));
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("run scripts/setup"),
        "{}",
        text(&check)
    );
}

#[test]
fn setup_refuses_a_release_whose_checksum_differs() {
    let (krate, version) = &patched_crates()[0];
    let patches = patches_copy();
    let sums = patches
        .path()
        .join(format!("{krate}-{version}/registry.sha256"));
    let sum = std::fs::read_to_string(&sums).unwrap();
    let flipped = if sum.starts_with('0') { "1" } else { "0" };
    std::fs::write(&sums, format!("{flipped}{}", &sum[1..])).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = setup(patches.path(), out.path(), &[]);
    assert!(!run.status.success(), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("checksum"),
        "{}",
        text(&run)
    );
    assert!(!out.path().join(krate).exists());
}

#[test]
fn setup_refuses_a_patch_that_does_not_apply_cleanly() {
    let (krate, version) = &patched_crates()[0];
    let patches = patches_copy();
    let dir = patches.path().join(format!("{krate}-{version}"));
    let patch = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension() == Some("patch".as_ref()))
        .unwrap();
    // A context line that is not in the release.
    let diff = std::fs::read_to_string(&patch).unwrap();
    let context = diff
        .lines()
        .skip_while(|l| !l.starts_with("@@"))
        .find(|l| l.starts_with(' ') && l.trim().len() > 10)
        .unwrap();
    std::fs::write(
        &patch,
        diff.replacen(context, &format!(" {}", context.to_uppercase()), 1),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = setup(patches.path(), out.path(), &[]);
    assert!(!run.status.success(), "{}", text(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("does not apply"),
        "{}",
        text(&run)
    );
    assert!(!out.path().join(krate).exists());
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// An upgrade in Cargo.lock that the patches did not follow is refused, naming both.
#[test]
fn setup_refuses_patches_for_another_version_than_the_lock() {
    let (krate, version) = &patched_crates()[0];
    let patches = patches_copy();
    std::fs::rename(
        patches.path().join(format!("{krate}-{version}")),
        patches.path().join(format!("{krate}-0.0.1")),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = setup(patches.path(), out.path(), &[]);
    assert!(!run.status.success(), "{}", text(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains(&format!("Cargo.lock locks {krate} {version}")) && stderr.contains("0.0.1"),
        "{stderr}"
    );
}
