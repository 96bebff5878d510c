//! Every shipped example configuration stays valid: `gslbd check` accepts each one.
#![allow(clippy::unwrap_used)]

mod common;

#[test]
fn every_example_config_passes_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out =
                std::process::Command::new(common::bin()).args(["check", "--config"]).arg(&path).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
            assert!(stdout.starts_with("ok: 1 zones"), "{}: {stdout}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} examples found: one per policy and the chains");
}
