//! The front door and the docs behind it: README.md stays short, every relative link in
//! it, the top-level guides and docs/ points at a file that exists (and, with `#anchor`,
//! at a heading of that file, slugged as GitHub does), and every page in docs/ is
//! reachable from the README.

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// README.md, the guides beside it, patches/README.md and every page under docs/, as
/// paths relative to the repository root.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = [
        "README.md",
        "ARCHITECTURE.md",
        "CONTRIBUTING.md",
        "SECURITY.md",
        "patches/README.md",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let mut dirs = vec![PathBuf::from("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(root().join(&dir)).unwrap() {
            let path = dir.join(entry.unwrap().file_name());
            if root().join(&path).is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

/// GitHub's anchor for a heading: lower case, letters, digits, `-` and `_` kept, spaces
/// made `-`, everything else dropped; a repeated one gets `-1`, `-2`, ...
fn slug(heading: &str, seen: &mut HashMap<String, usize>) -> String {
    let base: String = heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    let n = seen.entry(base.clone()).or_insert(0);
    let slug = if *n == 0 {
        base.clone()
    } else {
        format!("{base}-{n}")
    };
    *n += 1;
    slug
}

struct Page {
    anchors: BTreeSet<String>,
    /// Link targets as written, with the line they are on.
    links: Vec<(usize, String)>,
    /// Level-one headings.
    titles: usize,
}

/// `page` relative to the repository root, or absolute.
fn read(page: &Path) -> Page {
    let text = std::fs::read_to_string(root().join(page))
        .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let mut page = Page {
        anchors: BTreeSet::new(),
        links: Vec::new(),
        titles: 0,
    };
    let mut seen = HashMap::new();
    let mut heading: Option<String> = None;
    for (event, range) in Parser::new(&text).into_offset_iter() {
        let line = text[..range.start].lines().count().max(1);
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                page.titles += usize::from(level == HeadingLevel::H1);
                heading = Some(String::new());
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let h = heading.take().unwrap();
                page.anchors.insert(slug(&h, &mut seen));
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                page.links.push((line, dest_url.to_string()));
            }
            _ => {}
        }
    }
    page
}

/// `dir/../x` made `x`, without touching the file system (a missing file must stay
/// missing, not fail to canonicalize).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => assert!(out.pop(), "{} leaves the repository", path.display()),
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Where each relative link of `page` leads: (line, target as written, file, anchor).
fn relative_links(page: &Path, parsed: &Page) -> Vec<(usize, String, PathBuf, Option<String>)> {
    let dir = page.parent().unwrap_or(Path::new(""));
    parsed
        .links
        .iter()
        .filter(|(_, dest)| !dest.contains("://") && !dest.starts_with("mailto:"))
        .map(|(line, dest)| {
            let (file, anchor) = match dest.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor.to_string())),
                None => (dest.as_str(), None),
            };
            let file = if file.is_empty() {
                page.to_path_buf()
            } else {
                normal(&dir.join(file))
            };
            (*line, dest.clone(), file, anchor)
        })
        .collect()
}

#[test]
fn the_readme_is_a_front_door_under_200_lines_with_one_title() {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = text.lines().count();
    assert!(
        lines < 200,
        "README.md has {lines} lines: move depth to docs/"
    );
    for page in pages() {
        assert_eq!(read(&page).titles, 1, "{} has one # title", page.display());
    }
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let pages = pages();
    let parsed: HashMap<&PathBuf, Page> = pages.iter().map(|p| (p, read(p))).collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        for (line, dest, file, anchor) in relative_links(page, &parsed[page]) {
            checked += 1;
            if !root().join(&file).exists() {
                broken.push(format!("{}:{line}: {dest}: no such file", page.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            let anchors = match parsed.get(&file) {
                Some(target) => &target.anchors,
                None if file.extension().is_some_and(|e| e == "md") => &read(&file).anchors,
                None => {
                    broken.push(format!(
                        "{}:{line}: {dest}: an anchor into a non-Markdown file",
                        page.display()
                    ));
                    continue;
                }
            };
            if !anchors.contains(&anchor) {
                broken.push(format!(
                    "{}:{line}: {dest}: {} has no heading #{anchor} (it has {anchors:?})",
                    page.display(),
                    file.display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    // The README alone links every page of docs/ (below), so there is something to check.
    assert!(checked >= 10, "only {checked} relative links found");
}

#[test]
fn every_page_is_reachable_from_the_readme() {
    let pages = pages();
    let mut reached = BTreeSet::from([PathBuf::from("README.md")]);
    let mut queue = vec![PathBuf::from("README.md")];
    while let Some(page) = queue.pop() {
        for (_, _, file, _) in relative_links(&page, &read(&page)) {
            if pages.contains(&file) && reached.insert(file.clone()) {
                queue.push(file);
            }
        }
    }
    let orphans: Vec<_> = pages.iter().filter(|p| !reached.contains(*p)).collect();
    assert!(
        orphans.is_empty(),
        "not reachable from README.md: {orphans:?}"
    );
}

#[test]
fn the_checker_sees_a_broken_link_a_missing_anchor_and_a_code_span() {
    // The checker's own parts against a page written to fail them.
    let mut seen = HashMap::new();
    assert_eq!(
        slug("WASI 0.1 modules, the WAGI way", &mut seen),
        "wasi-01-modules-the-wagi-way"
    );
    assert_eq!(slug("The seed's `hello`", &mut seen), "the-seeds-hello");
    assert_eq!(slug("The seed's `hello`", &mut seen), "the-seeds-hello-1");
    // Outside the repository, so the other tests never list it.
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    std::fs::write(
        &page,
        "# Page\n\n## Here\n\n[ok](#here) [gone](#nowhere) [none](missing.md) `[code](missing.md)`\n",
    )
    .unwrap();
    let parsed = read(&page);
    let links = relative_links(&page, &parsed);
    assert_eq!(links.len(), 3, "the code span is not a link: {links:?}");
    assert!(parsed.anchors.contains("here"));
    assert!(!parsed.anchors.contains("nowhere"));
    assert!(!root().join(&links[2].2).exists());
}
