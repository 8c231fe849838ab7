//! Embeds the git revision the CLI is built from (`WEBJIT_GIT_REV`), which every `--json`
//! report records: `git describe --always --dirty`, or "unknown" outside a checkout.

use std::process::Command;

fn main() {
    let rev = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=WEBJIT_GIT_REV={rev}");
    // A commit moves HEAD's branch and rewrites the index; staging or editing rewrites the
    // index too (the dirty flag).
    for p in ["../.git/HEAD", "../.git/index", "../.git/refs/heads"] {
        println!("cargo:rerun-if-changed={p}");
    }
}
