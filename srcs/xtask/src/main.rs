//! `cargo xtask <task>`; see lib.rs and docs/vagrant.md ("The build").

use std::process::ExitCode;

use xtask::target::{choose_linker, Arch, HostFacts};
use xtask::{dist, dotenv, preflight, project_root, toolchain, upgrade};

const USAGE: &str = "usage:
  cargo xtask dist [--arch amd64|arm64] [--portable] [--force] [--no-install]
      static musl binaries of the three services in dist/<arch>/ (default amd64),
      rebuilt only when a source changed. --portable links with zig (cargo-zigbuild)
      even where musl-gcc would do; MP_BUILD_PORTABLE=1 does the same. Missing pieces
      (rustup target, cargo-zigbuild, ziglang) are installed unless --no-install or
      MP_NO_INSTALL=1, which print the commands instead.
  cargo xtask preflight [--arch amd64|arm64] [--portable] [--port N] [--no-toolchain]
                        [--vagrant VERSION --virtualbox VERSION]
      what `vagrant up` checks first: the build toolchain (unless dist/ is up to date),
      host port N free, and a Vagrant new enough for the VirtualBox version.
  cargo xtask dotenv FILE
      FILE resolved by the .env rules (environment ignored), as KEY<TAB>VALUE lines.
  cargo xtask upgrade [--no-build] [--restart]
      the rolling upgrade of the VMs of `vagrant up`: `vagrant provision` one VM at a
      time (billing-vm, inventory-vm, gateway-vm), each service ready before the next.
      --no-build uses dist/ as it is; --restart restarts each service even if nothing
      changed (a rolling restart, e.g. after a change of .env).";

struct Args {
    arch: Arch,
    portable: bool,
    force: bool,
    may_install: bool,
    port: Option<u16>,
    toolchain: bool,
    vagrant: Option<String>,
    virtualbox: Option<String>,
    build: bool,
    restart: bool,
    rest: Vec<String>,
}

fn flag_env(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1")
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        arch: Arch::Amd64,
        portable: flag_env("MP_BUILD_PORTABLE"),
        force: false,
        may_install: !flag_env("MP_NO_INSTALL"),
        port: None,
        toolchain: true,
        vagrant: None,
        virtualbox: None,
        build: true,
        restart: false,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--arch" => {
                let v = it.next().ok_or("--arch needs a value: amd64 or arm64")?;
                a.arch =
                    Arch::parse(v).ok_or_else(|| format!("--arch {v}: expected amd64 or arm64"))?;
            }
            "--portable" => a.portable = true,
            "--force" => a.force = true,
            "--no-install" => a.may_install = false,
            "--port" => {
                let v = it.next().ok_or("--port needs a value")?;
                a.port = Some(
                    v.parse()
                        .map_err(|_| format!("--port {v}: expected a port number (1-65535)"))?,
                );
            }
            "--no-toolchain" => a.toolchain = false,
            "--no-build" => a.build = false,
            "--restart" => a.restart = true,
            "--vagrant" => a.vagrant = Some(it.next().ok_or("--vagrant needs a version")?.clone()),
            "--virtualbox" => {
                a.virtualbox = Some(it.next().ok_or("--virtualbox needs a version")?.clone())
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => a.rest.push(s.to_string()),
        }
    }
    Ok(a)
}

fn preflight_cmd(a: &Args) -> Result<(), String> {
    let root = project_root();
    let cache = root.join(".cache").join("ziglang");
    let mut problems = Vec::new();
    if let Some(port) = a.port {
        match preflight::check_port(port) {
            Ok(()) => println!("==> preflight: host port {port} is free"),
            Err(e) => problems.push(e),
        }
    }
    if let (Some(vagrant), Some(vbox)) = (&a.vagrant, &a.virtualbox) {
        match preflight::check_vagrant_for_virtualbox(vagrant, vbox) {
            Ok(()) => println!("==> preflight: Vagrant {vagrant} drives VirtualBox {vbox}"),
            Err(e) => problems.push(e),
        }
    }
    if !a.toolchain {
        println!("==> preflight: toolchain not checked (MP_SKIP_BUILD=1: dist/ is used as it is)");
    } else if dist::stale_reason(&root, a.arch, a.portable).is_none() {
        println!(
            "==> preflight: dist/{}/ is up to date, no build needed",
            a.arch
        );
    } else {
        let tc = toolchain::probe(a.arch, &cache);
        let host = HostFacts {
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            musl_gcc: tc.musl_gcc,
            linker_configured: tc.linker_configured,
        };
        let linker = choose_linker(host, a.arch, a.portable);
        let plan = toolchain::plan(&tc, linker, a.arch, a.may_install);
        println!(
            "==> preflight: build for {} with {}",
            a.arch.triple(),
            dist::linker_name(linker)
        );
        for i in &plan.installs {
            println!("    will install first: {}", i.command(a.arch, &cache));
        }
        problems.extend(plan.missing);
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn dotenv_cmd(a: &Args) -> Result<(), String> {
    let [file] = a.rest.as_slice() else {
        return Err("dotenv needs one FILE".to_string());
    };
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let vars = dotenv::parse(&text, |_| None).map_err(|e| format!("{file}:{e}"))?;
    for v in vars {
        println!("{}\t{}", v.key, v.value);
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let parsed = match parse_args(rest) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match task.as_str() {
        "dist" => dist::run(
            &project_root(),
            &dist::Options {
                arch: parsed.arch,
                portable: parsed.portable,
                force: parsed.force,
                may_install: parsed.may_install,
            },
        ),
        "preflight" => preflight_cmd(&parsed),
        "dotenv" => dotenv_cmd(&parsed),
        "upgrade" => upgrade::run(
            &project_root(),
            &upgrade::Options {
                build: parsed.build,
                restart: parsed.restart,
            },
        ),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("xtask: unknown task {other}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for line in e.lines() {
                eprintln!("xtask: ERROR: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
