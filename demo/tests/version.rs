//! Cargo builds a package's binaries before its integration tests, so this file also makes
//! `cargo test --workspace` build `webjit` up front: tests/tests/cli.rs then finds it fresh
//! instead of compiling it inside a test.

#[test]
fn version_matches_the_package() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_webjit"))
        .arg("--version")
        .output()
        .expect("running webjit --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("webjit {}", env!("CARGO_PKG_VERSION")),
        "webjit --version"
    );
}
