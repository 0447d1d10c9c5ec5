//! Which binaries to build and how to link them, as pure functions of the host
//! (so the choice a macOS or Windows host makes is tested on Linux too).

use std::fmt;

/// A VM architecture, named as Debian names it (`dpkg --print-architecture`):
/// that is the folder under dist/ the provisioning scripts look in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Accepts the Debian name or the Rust/uname one.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" | "x86_64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn debian(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The musl-gcc cross name cc-rs looks for (Debian's musl-tools ships the x86_64 one).
    pub fn musl_gcc(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64-linux-musl-gcc",
            Arch::Arm64 => "aarch64-linux-musl-gcc",
        }
    }

    /// `std::env::consts::ARCH` of a host with this CPU.
    pub fn rust_arch(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }

    /// The ELF `e_machine` its binaries carry.
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::Amd64 => goblin::elf::header::EM_X86_64,
            Arch::Arm64 => goblin::elf::header::EM_AARCH64,
        }
    }

    /// The cargo environment variable that names a linker for this target.
    pub fn linker_env(self) -> String {
        format!(
            "CARGO_TARGET_{}_LINKER",
            self.triple().to_uppercase().replace('-', "_")
        )
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.debian())
    }
}

/// How the static binaries get linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linker {
    /// Plain `cargo build` with the distribution's musl-gcc (x86_64 Linux hosts).
    MuslGcc,
    /// `cargo zigbuild`: zig as C compiler and linker, the same on every host OS.
    Zig,
    /// The user set CARGO_TARGET_<TRIPLE>_LINKER: plain `cargo build`, their linker.
    UserConfigured,
}

/// What the linker choice depends on.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts<'a> {
    /// `std::env::consts::OS`: "linux", "macos", "windows", ...
    pub os: &'a str,
    /// `std::env::consts::ARCH`: "x86_64", "aarch64", ...
    pub arch: &'a str,
    /// The target's musl-gcc is on PATH.
    pub musl_gcc: bool,
    /// CARGO_TARGET_<TRIPLE>_LINKER is set.
    pub linker_configured: bool,
}

/// Native musl-gcc only on a Linux host building for its own CPU (that is what
/// Debian's musl-tools can do); zig everywhere else, or when `portable` forces
/// it. A linker the user configured wins unless `portable` is asked for.
pub fn choose_linker(host: HostFacts<'_>, target: Arch, portable: bool) -> Linker {
    if portable {
        Linker::Zig
    } else if host.linker_configured {
        Linker::UserConfigured
    } else if host.os == "linux" && host.arch == target.rust_arch() && host.musl_gcc {
        Linker::MuslGcc
    } else {
        Linker::Zig
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(os: &'static str, arch: &'static str, musl_gcc: bool) -> HostFacts<'static> {
        HostFacts {
            os,
            arch,
            musl_gcc,
            linker_configured: false,
        }
    }

    #[test]
    fn linux_x86_64_with_musl_gcc_links_natively() {
        assert_eq!(
            choose_linker(host("linux", "x86_64", true), Arch::Amd64, false),
            Linker::MuslGcc
        );
    }

    #[test]
    fn portable_forces_zig() {
        assert_eq!(
            choose_linker(host("linux", "x86_64", true), Arch::Amd64, true),
            Linker::Zig
        );
        let configured = HostFacts {
            linker_configured: true,
            ..host("linux", "x86_64", true)
        };
        assert_eq!(choose_linker(configured, Arch::Amd64, true), Linker::Zig);
    }

    #[test]
    fn linux_without_musl_gcc_uses_zig() {
        assert_eq!(
            choose_linker(host("linux", "x86_64", false), Arch::Amd64, false),
            Linker::Zig
        );
    }

    #[test]
    fn macos_and_windows_use_zig_on_either_cpu() {
        for os in ["macos", "windows"] {
            for arch in ["x86_64", "aarch64"] {
                // Even if a tool of that name were on PATH: it would be no Linux linker.
                assert_eq!(
                    choose_linker(host(os, arch, true), Arch::Amd64, false),
                    Linker::Zig,
                    "{os} {arch}"
                );
            }
        }
    }

    #[test]
    fn a_cross_architecture_build_on_linux_uses_zig() {
        assert_eq!(
            choose_linker(host("linux", "aarch64", true), Arch::Amd64, false),
            Linker::Zig
        );
        assert_eq!(
            choose_linker(host("linux", "x86_64", true), Arch::Arm64, false),
            Linker::Zig
        );
        assert_eq!(
            choose_linker(host("linux", "aarch64", true), Arch::Arm64, false),
            Linker::MuslGcc
        );
    }

    #[test]
    fn a_configured_linker_is_respected() {
        let h = HostFacts {
            linker_configured: true,
            ..host("macos", "aarch64", false)
        };
        assert_eq!(choose_linker(h, Arch::Amd64, false), Linker::UserConfigured);
    }

    #[test]
    fn arch_names() {
        assert_eq!(Arch::parse("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::parse("aarch64"), Some(Arch::Arm64));
        assert_eq!(
            Arch::parse("arm64").map(Arch::triple),
            Some("aarch64-unknown-linux-musl")
        );
        assert_eq!(Arch::parse("riscv64"), None);
        assert_eq!(
            Arch::Amd64.linker_env(),
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER"
        );
    }
}
