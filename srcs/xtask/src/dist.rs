//! `cargo xtask dist`: the three services as static, stripped musl binaries in
//! dist/<debian-arch>/, rebuilt only when a source changed since the stamp.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use crate::target::{choose_linker, Arch, HostFacts, Linker};
use crate::{elf, toolchain};

pub const BINARIES: [&str; 3] = ["api-gateway", "inventory-app", "billing-worker"];
const STAMP: &str = ".build-stamp";

#[derive(Debug, Clone)]
pub struct Options {
    pub arch: Arch,
    /// Link with zig even where musl-gcc would do (what macOS/Windows hosts do).
    pub portable: bool,
    pub force: bool,
    /// Install missing pieces (rustup target, cargo-zigbuild, ziglang) by itself.
    pub may_install: bool,
}

pub fn linker_name(l: Linker) -> &'static str {
    match l {
        Linker::MuslGcc => "musl-gcc",
        Linker::Zig => "zig",
        Linker::UserConfigured => "configured",
    }
}

/// The folder the binaries of `arch` go to.
pub fn arch_dir(root: &Path, arch: Arch) -> PathBuf {
    root.join("dist").join(arch.debian())
}

fn newest_source(root: &Path) -> Option<SystemTime> {
    fn walk(dir: &Path, skip: &Path, newest: &mut Option<SystemTime>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path == skip {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&path, skip, newest);
            } else if let Ok(t) = meta.modified() {
                *newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    // The xtask's own sources do not change the services; srcs/vendor/ (the
    // patched dependencies the services build against) does.
    let mut newest = None;
    walk(
        &root.join("srcs"),
        &root.join("srcs").join("xtask"),
        &mut newest,
    );
    for f in ["Cargo.toml", "Cargo.lock", ".cargo/config.toml"] {
        if let Ok(t) = fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
        }
    }
    newest
}

/// Why dist/<arch>/ must be rebuilt, or None when it is up to date: every
/// binary there, the stamp newer than every source, and made with a linker
/// the request accepts (a portable request wants zig-made binaries).
pub fn stale_reason(root: &Path, arch: Arch, want_zig: bool) -> Option<String> {
    let dir = arch_dir(root, arch);
    if let Some(b) = BINARIES.iter().find(|b| !dir.join(b).is_file()) {
        return Some(format!("dist/{arch}/{b} is missing"));
    }
    let stamp = dir.join(STAMP);
    let Ok(built) = fs::metadata(&stamp).and_then(|m| m.modified()) else {
        return Some(format!("dist/{arch}/{STAMP} is missing"));
    };
    if want_zig && fs::read_to_string(&stamp).map_or(true, |s| s.trim() != "linker=zig") {
        return Some("a portable (zig) build was asked for".to_string());
    }
    match newest_source(root) {
        Some(t) if t > built => Some("a source file changed since the last build".to_string()),
        _ => None,
    }
}

pub fn run(root: &Path, opts: &Options) -> Result<(), String> {
    let arch = opts.arch;
    let cache = root.join(".cache").join("ziglang");
    if !opts.force {
        match stale_reason(root, arch, opts.portable) {
            None => {
                println!("==> xtask: dist/{arch}/ is up to date (no source changed since it was built; --force rebuilds)");
                return Ok(());
            }
            Some(why) => println!("==> xtask: building dist/{arch}/: {why}"),
        }
    }
    let tc = toolchain::probe(arch, &cache);
    let host = HostFacts {
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        musl_gcc: tc.musl_gcc,
        linker_configured: tc.linker_configured,
    };
    let linker = choose_linker(host, arch, opts.portable);
    let plan = toolchain::plan(&tc, linker, arch, opts.may_install);
    if !plan.missing.is_empty() {
        return Err(plan.missing.join("\n"));
    }
    for install in &plan.installs {
        toolchain::install(install, arch, &cache)?;
    }
    let zig_from_cache = matches!(tc.zig, Some(toolchain::Zig::Cached(_)))
        || plan
            .installs
            .iter()
            .any(|i| matches!(i, toolchain::Install::Ziglang { .. }));
    build(
        root,
        arch,
        linker,
        zig_from_cache.then(|| toolchain::cached_zig(&cache)),
    )?;
    install_binaries(root, arch, linker)
}

fn build(root: &Path, arch: Arch, linker: Linker, zig: Option<PathBuf>) -> Result<(), String> {
    let mut cmd = Command::new(toolchain::cargo());
    cmd.current_dir(root);
    cmd.arg(if linker == Linker::Zig {
        "zigbuild"
    } else {
        "build"
    });
    cmd.args(["--release", "--target", arch.triple()]);
    for b in BINARIES {
        cmd.args(["-p", b, "--bin", b]);
    }
    if let Some(zig) = zig {
        cmd.env("CARGO_ZIGBUILD_ZIG_PATH", zig);
    }
    println!(
        "==> xtask: cargo {} --release --target {} (linker: {})",
        if linker == Linker::Zig {
            "zigbuild"
        } else {
            "build"
        },
        arch.triple(),
        linker_name(linker)
    );
    let status = cmd
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "the release build failed ({status}); the compiler's messages are above"
        ))
    }
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

fn install_binaries(root: &Path, arch: Arch, linker: Linker) -> Result<(), String> {
    let out = target_dir(root).join(arch.triple()).join("release");
    let dir = arch_dir(root, arch);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut bad = Vec::new();
    for b in BINARIES {
        let built = out.join(b);
        let bytes = fs::read(&built)
            .map_err(|e| format!("cargo finished but {} is unreadable: {e}", built.display()))?;
        match elf::check(&bytes, arch) {
            Ok(desc) => println!("    {b:<16} {:>6} KiB  {desc}", bytes.len() / 1024),
            Err(e) => {
                bad.push(format!("{b}: {e}"));
                continue;
            }
        }
        let dest = dir.join(b);
        // Replaced only when changed, atomically: a VM being provisioned never
        // sees half a file, and unchanged binaries keep their time.
        if fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            let tmp = dir.join(format!("{b}.tmp"));
            fs::write(&tmp, &bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
            set_executable(&tmp)?;
            fs::rename(&tmp, &dest)
                .map_err(|e| format!("cannot replace {}: {e}", dest.display()))?;
        }
    }
    if !bad.is_empty() {
        return Err(format!(
            "the built binaries are not what the VMs need:\n  {}",
            bad.join("\n  ")
        ));
    }
    let stamp = dir.join(STAMP);
    fs::write(&stamp, format!("linker={}\n", linker_name(linker)))
        .map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    println!("==> xtask: OK: static binaries in dist/{arch}/");
    Ok(())
}

#[cfg(unix)]
fn set_executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn set_executable(_: &Path) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xtask-dist-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("srcs/common/src")).unwrap();
        fs::create_dir_all(dir.join("srcs/xtask/src")).unwrap();
        fs::create_dir_all(dir.join("dist/amd64")).unwrap();
        fs::write(dir.join("srcs/common/src/lib.rs"), "").unwrap();
        fs::write(dir.join("Cargo.toml"), "").unwrap();
        for b in BINARIES {
            fs::write(dir.join("dist/amd64").join(b), "").unwrap();
        }
        dir
    }

    /// Sets `path`'s modification time `secs` seconds ahead of now.
    fn later(path: &Path, secs: u64) {
        let t = SystemTime::now() + std::time::Duration::from_secs(secs);
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn staleness_follows_the_stamp_the_sources_and_the_linker() {
        let root = tree();
        assert_eq!(
            stale_reason(&root, Arch::Amd64, false).as_deref(),
            Some("dist/amd64/.build-stamp is missing")
        );
        fs::write(root.join("dist/amd64/.build-stamp"), "linker=musl-gcc\n").unwrap();
        later(&root.join("dist/amd64/.build-stamp"), 5);
        assert_eq!(stale_reason(&root, Arch::Amd64, false), None);
        assert_eq!(
            stale_reason(&root, Arch::Amd64, true).as_deref(),
            Some("a portable (zig) build was asked for")
        );
        assert_eq!(
            stale_reason(&root, Arch::Arm64, false).as_deref(),
            Some("dist/arm64/api-gateway is missing")
        );

        // The xtask's own sources do not make the services stale...
        fs::write(root.join("srcs/xtask/src/main.rs"), "").unwrap();
        later(&root.join("srcs/xtask/src/main.rs"), 60);
        assert_eq!(stale_reason(&root, Arch::Amd64, false), None);
        // ...a service's do.
        later(&root.join("srcs/common/src/lib.rs"), 60);
        assert_eq!(
            stale_reason(&root, Arch::Amd64, false).as_deref(),
            Some("a source file changed since the last build")
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
