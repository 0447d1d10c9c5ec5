//! What the build needs on the host, what is missing, and how each missing
//! piece is installed: `probe` looks (runs commands), `plan` decides (pure,
//! tested), `install` acts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::target::{Arch, Linker};

/// Where zig comes from, in cargo-zigbuild's own search order, plus our cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zig {
    /// `python3 -m ziglang` works (cargo-zigbuild's first choice).
    PythonModule,
    /// `zig` on PATH.
    OnPath,
    /// `pip install --target .cache/ziglang ziglang` done earlier by us.
    Cached(PathBuf),
}

/// The facts about the host that decide what to install.
#[derive(Debug, Clone, Default)]
pub struct Toolchain {
    pub rust_target: bool,
    pub rustup: bool,
    pub musl_gcc: bool,
    pub linker_configured: bool,
    pub cargo_zigbuild: bool,
    pub zig: Option<Zig>,
    /// A Python command whose `-m pip` works ("python3", "python" or "py").
    pub python_with_pip: Option<String>,
}

/// Something the build installs by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    RustTarget,
    CargoZigbuild,
    Ziglang { python: String },
}

/// What `dist` will do first, or why it cannot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub installs: Vec<Install>,
    /// One message per missing piece: what is missing and the command that fixes it.
    pub missing: Vec<String>,
}

pub const RUSTUP_URL: &str = "https://rustup.rs";
pub const ZIG_URL: &str = "https://ziglang.org/download/";

impl Install {
    /// The command, as the user would type it.
    pub fn command(&self, arch: Arch, cache: &Path) -> String {
        match self {
            Install::RustTarget => format!("rustup target add {}", arch.triple()),
            Install::CargoZigbuild => "cargo install cargo-zigbuild --locked".to_string(),
            Install::Ziglang { python } => {
                format!(
                    "{python} -m pip install --target \"{}\" ziglang",
                    cache.display()
                )
            }
        }
    }
}

/// Decides what to install. With `may_install` false, every install becomes
/// a missing piece whose message is that install's command.
pub fn plan(tc: &Toolchain, linker: Linker, arch: Arch, may_install: bool) -> Plan {
    let mut p = Plan::default();
    let need = |install: Install, p: &mut Plan| {
        if may_install {
            p.installs.push(install);
        } else {
            let what = match &install {
                Install::RustTarget => format!("the Rust target {}", arch.triple()),
                Install::CargoZigbuild => "cargo-zigbuild (the portable linker driver)".to_string(),
                Install::Ziglang { .. } => "zig (the portable linker)".to_string(),
            };
            p.missing.push(format!(
                "{what} is missing; install it with: {}",
                install.command(arch, Path::new(".cache/ziglang"))
            ));
        }
    };
    if !tc.rust_target {
        if tc.rustup {
            need(Install::RustTarget, &mut p);
        } else {
            p.missing.push(format!(
                "the Rust target {t} is missing and rustup is not available to add it: install Rust with rustup ({RUSTUP_URL}), then run: rustup target add {t}",
                t = arch.triple()
            ));
        }
    }
    match linker {
        Linker::MuslGcc | Linker::UserConfigured => {}
        Linker::Zig => {
            if !tc.cargo_zigbuild {
                need(Install::CargoZigbuild, &mut p);
            }
            if tc.zig.is_none() {
                match &tc.python_with_pip {
                    Some(python) => need(Install::Ziglang { python: python.clone() }, &mut p),
                    None => p.missing.push(format!(
                        "zig (the portable linker) is missing, and no Python 3 with pip is there to install it: run `pip install ziglang` once Python 3 is installed (https://www.python.org/downloads/), or install zig ({ZIG_URL}) and put it on PATH"
                    )),
                }
            }
        }
    }
    p
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// The zig binary a pip --target install leaves in `cache`.
pub fn cached_zig(cache: &Path) -> PathBuf {
    let exe = if cfg!(windows) { "zig.exe" } else { "zig" };
    cache.join("ziglang").join(exe)
}

fn rust_target_installed(arch: Arch) -> bool {
    let Ok(out) = Command::new("rustc").args(["--print", "sysroot"]).output() else {
        return false;
    };
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Path::new(&sysroot)
        .join("lib")
        .join("rustlib")
        .join(arch.triple())
        .is_dir()
}

/// Looks at the host (runs `rustc`, `rustup`, `zig`, `python3`... with --version).
pub fn probe(arch: Arch, cache: &Path) -> Toolchain {
    let python_zig =
        std::env::var("CARGO_ZIGBUILD_PYTHON_PATH").unwrap_or_else(|_| "python3".to_string());
    let path_zig = std::env::var("CARGO_ZIGBUILD_ZIG_PATH").unwrap_or_else(|_| "zig".to_string());
    let zig = if runs(&python_zig, &["-m", "ziglang", "version"]) {
        Some(Zig::PythonModule)
    } else if runs(&path_zig, &["version"]) {
        Some(Zig::OnPath)
    } else if runs(&cached_zig(cache).to_string_lossy(), &["version"]) {
        Some(Zig::Cached(cached_zig(cache)))
    } else {
        None
    };
    Toolchain {
        rust_target: rust_target_installed(arch),
        rustup: runs("rustup", &["--version"]),
        musl_gcc: runs(arch.musl_gcc(), &["--version"]),
        linker_configured: std::env::var_os(arch.linker_env()).is_some(),
        cargo_zigbuild: runs("cargo-zigbuild", &["--version"]),
        zig,
        python_with_pip: ["python3", "python", "py"]
            .into_iter()
            .find(|p| runs(p, &["-m", "pip", "--version"]))
            .map(str::to_string),
    }
}

/// Runs one install; the error names the command that failed.
pub fn install(what: &Install, arch: Arch, cache: &Path) -> Result<(), String> {
    let command = what.command(arch, cache);
    println!("==> xtask: installing: {command}");
    let status = match what {
        Install::RustTarget => Command::new("rustup")
            .args(["target", "add", arch.triple()])
            .status(),
        Install::CargoZigbuild => Command::new(cargo())
            .args(["install", "cargo-zigbuild", "--locked"])
            .status(),
        Install::Ziglang { python } => Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(cache)
            .arg("ziglang")
            .status(),
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{command}` failed ({s}); see its output above")),
        Err(e) => Err(format!("could not run `{command}`: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Toolchain {
        Toolchain {
            rust_target: true,
            rustup: true,
            musl_gcc: true,
            linker_configured: false,
            cargo_zigbuild: true,
            zig: Some(Zig::OnPath),
            python_with_pip: Some("python3".into()),
        }
    }

    #[test]
    fn a_ready_host_needs_nothing() {
        assert_eq!(
            plan(&ready(), Linker::Zig, Arch::Amd64, true),
            Plan::default()
        );
        assert_eq!(
            plan(&ready(), Linker::MuslGcc, Arch::Amd64, false),
            Plan::default()
        );
    }

    #[test]
    fn the_portable_linker_is_installed_when_missing() {
        let tc = Toolchain {
            cargo_zigbuild: false,
            zig: None,
            ..ready()
        };
        let p = plan(&tc, Linker::Zig, Arch::Amd64, true);
        assert_eq!(
            p.installs,
            vec![
                Install::CargoZigbuild,
                Install::Ziglang {
                    python: "python3".into()
                }
            ]
        );
        assert!(p.missing.is_empty());
        // musl-gcc builds do not need it.
        assert_eq!(
            plan(&tc, Linker::MuslGcc, Arch::Amd64, true),
            Plan::default()
        );
    }

    #[test]
    fn without_permission_to_install_each_missing_piece_names_its_command() {
        let tc = Toolchain {
            rust_target: false,
            cargo_zigbuild: false,
            zig: None,
            ..ready()
        };
        let p = plan(&tc, Linker::Zig, Arch::Arm64, false);
        assert!(p.installs.is_empty());
        assert_eq!(
            p.missing,
            vec![
                "the Rust target aarch64-unknown-linux-musl is missing; install it with: rustup target add aarch64-unknown-linux-musl",
                "cargo-zigbuild (the portable linker driver) is missing; install it with: cargo install cargo-zigbuild --locked",
                "zig (the portable linker) is missing; install it with: python3 -m pip install --target \".cache/ziglang\" ziglang",
            ]
        );
    }

    #[test]
    fn no_rustup_and_no_python_say_where_to_get_them() {
        let tc = Toolchain {
            rust_target: false,
            rustup: false,
            zig: None,
            python_with_pip: None,
            ..ready()
        };
        let p = plan(&tc, Linker::Zig, Arch::Amd64, true);
        assert!(p.installs.is_empty());
        assert_eq!(p.missing.len(), 2);
        assert!(
            p.missing[0].contains("rustup is not available") && p.missing[0].contains(RUSTUP_URL)
        );
        assert!(p.missing[0].ends_with("rustup target add x86_64-unknown-linux-musl"));
        assert!(p.missing[1].contains("pip install ziglang") && p.missing[1].contains(ZIG_URL));
    }
}
