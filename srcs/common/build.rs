//! Records the commit the binaries are built from, for the `build_info`
//! metric: `MP_GIT_COMMIT` when the build sets it (a checkout-less build such
//! as a container image's can pass it), else `git rev-parse`, else `unknown`.
//! Cargo reruns this only when `MP_GIT_COMMIT` or the checked-out HEAD
//! changes.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MP_GIT_COMMIT");
    let from_git = || {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_owned())
    };
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-path", "HEAD"])
        .output()
    {
        if let Ok(head) = String::from_utf8(out.stdout) {
            let head = head.trim();
            if out.status.success() && !head.is_empty() {
                println!("cargo:rerun-if-changed={head}");
            }
        }
    }
    let commit = std::env::var("MP_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(from_git)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MP_BUILD_COMMIT={commit}");
}
