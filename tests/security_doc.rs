//! SECURITY.md names the test that proves each defence: every such name must exist, so the page
//! cannot go on citing a test that was renamed or removed.

use std::path::Path;

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn every_test_security_md_cites_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("SECURITY.md")).expect("SECURITY.md");
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("tests"), &mut files);

    // Test names are backticked snake_case identifiers with at least three words.
    let cited: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.matches('_').count() >= 2
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .collect();
    assert!(cited.len() > 50, "only {} test names found", cited.len());
    let missing: Vec<&str> = cited
        .iter()
        .copied()
        .filter(|name| {
            !files.iter().any(|(_, text)| {
                text.contains(&format!("fn {name}(")) || text.contains(&format!("{name}: "))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "SECURITY.md cites unknown tests: {missing:?}"
    );
}
