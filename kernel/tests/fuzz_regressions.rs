//! Replays every input kept in `fuzz/regressions/<target>/` (crashes the fuzzer found, and
//! hostile inputs written by hand) through the fuzz harness, the very code the cargo-fuzz
//! targets run, so `cargo test` checks them without the fuzzer. The device-tree target also
//! gets the libxl-generated fixtures.

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod harness;

use std::fs;
use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_saved_input_runs_clean_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let regressions = root.join("fuzz/regressions");
    let mut replayed = 0;
    for &(name, target) in harness::TARGETS {
        let mut files = inputs(&regressions.join(name));
        if name == "platform" {
            files.extend(inputs(&root.join("kernel/tests/fixtures")));
        }
        for file in files {
            let data = fs::read(&file).unwrap();
            println!("{name}: {}", file.display());
            target(&data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs under {}", regressions.display());
}

#[test]
fn every_saved_input_names_a_target() {
    let regressions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let loose = inputs(&regressions);
    assert!(
        loose.is_empty(),
        "inputs outside a target's directory: {loose:?}"
    );
    for entry in fs::read_dir(&regressions).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(
            harness::TARGETS.iter().any(|&(target, _)| target == name),
            "fuzz/regressions/{name} names no fuzz target"
        );
    }
}
