//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and kept regression inputs
//! (`fuzz/artifacts/<target>/`) through the same entry points and invariant checks as the
//! cargo-fuzz targets (`tower_sso::__fuzz`), on stable, as an ordinary test.
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use tower_sso::__fuzz::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_keeps_its_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "no corpus for fuzz target {name} in fuzz/corpus/{name}"
        );
        let artifacts = inputs(&root.join("artifacts").join(name));
        for path in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(path).expect("read a corpus file");
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failures.push(path.display().to_string());
            }
        }
        println!(
            "{name}: {} corpus inputs, {} regression inputs",
            corpus.len(),
            artifacts.len()
        );
    }
    assert!(failures.is_empty(), "invariants broken by {failures:#?}");
}

#[test]
fn every_fuzz_target_is_replayed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/fuzz_targets");
    let mut on_disk: Vec<String> = inputs(&root)
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "fuzz/fuzz_targets and __fuzz::TARGETS differ"
    );
}
