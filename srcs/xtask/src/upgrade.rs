//! `cargo xtask upgrade`: the rolling upgrade of the three VMs of
//! `vagrant up` (docs/vagrant.md, "A rolling upgrade"). One VM at a time:
//! `vagrant provision` (the new binary installed, its service restarted if
//! it changed, nothing else touched), then the service must answer `/ready`
//! before the next VM begins. Order: billing-vm (invisible: orders wait in
//! billing_queue), inventory-vm, gateway-vm. Only std and the `vagrant`
//! command, so it runs the same on Linux, macOS and Windows hosts.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::dotenv;

pub struct Options {
    /// Provision with `dist/` as it is (MP_SKIP_BUILD=1 for every VM).
    pub build: bool,
    /// Restart each service even if its binary and settings did not change.
    pub restart: bool,
}

/// One step of the upgrade: a VM and the service it runs.
pub struct Step {
    pub vm: &'static str,
    pub unit: &'static str,
}

pub const STEPS: [Step; 3] = [
    Step {
        vm: "billing-vm",
        unit: "billing-worker",
    },
    Step {
        vm: "inventory-vm",
        unit: "inventory-app",
    },
    Step {
        vm: "gateway-vm",
        unit: "api-gateway",
    },
];

/// What a step costs the clients of the default topology (one of each
/// service), said before it runs.
pub fn cost(vm: &str, host_port: &str) -> String {
    match vm {
        "billing-vm" => "none visible: orders are accepted throughout and wait in billing_queue \
                         while billing-worker restarts"
            .to_string(),
        "inventory-vm" => "the catalogue answers 502/503 (JSON) for the second inventory-app \
                           takes to restart; orders are not affected"
            .to_string(),
        _ => format!(
            "connections to port {host_port} are refused for the second api-gateway takes to \
             restart; requests in flight finish first"
        ),
    }
}

/// The VMs that `vagrant status --machine-readable` does not report as
/// running (lines `TIME,NAME,state,STATE`).
pub fn not_running<'a>(status: &str, vms: &[&'a str]) -> Vec<&'a str> {
    vms.iter()
        .copied()
        .filter(|vm| {
            !status.lines().any(|line| {
                let mut f = line.split(',');
                f.next();
                f.next() == Some(vm) && f.next() == Some("state") && f.next() == Some("running")
            })
        })
        .collect()
}

/// The provisioning log's lines that say what happened to the services
/// (restarted, or left running), without the log's prefixes.
pub fn service_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            (l.contains("restarting ") && l.contains(".service"))
                || l.contains("already running with current")
        })
        .map(|l| {
            l.split_once(": ")
                .map_or(l, |(_, rest)| rest)
                .trim()
                .to_string()
        })
        .collect()
}

/// The status code of an HTTP/1.x response's first line.
pub fn status_code(response: &str) -> Option<u16> {
    let line = response.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// True when GET `path` on `addr` answers 200 within `timeout`.
fn http_ok(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    let ask = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = [0u8; 64];
        let n = s.read(&mut head)?;
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    ask().ok().and_then(|r| status_code(&r)) == Some(200)
}

/// `vagrant ARGS` in the project folder, its output discarded: whether it
/// succeeded.
fn vagrant_ok(root: &Path, args: &[&str]) -> bool {
    Command::new("vagrant")
        .args(args)
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn env_value<'a>(vars: &'a [dotenv::Var], key: &str) -> Result<&'a str, String> {
    dotenv::get(vars, key).ok_or_else(|| format!(".env has no {key}"))
}

pub fn run(root: &Path, opts: &Options) -> Result<(), String> {
    let env_file = root.join(".env");
    let text = std::fs::read_to_string(&env_file)
        .map_err(|e| format!("cannot read {}: {e}", env_file.display()))?;
    let vars = dotenv::parse(&text, |k| std::env::var(k).ok()).map_err(|e| format!(".env:{e}"))?;
    let host_port = env_value(&vars, "HOST_GATEWAY_PORT")?;
    let gateway: SocketAddr = format!("127.0.0.1:{host_port}")
        .parse()
        .map_err(|_| format!("HOST_GATEWAY_PORT={host_port} in .env is not a port"))?;
    let worker_ready = format!(
        "curl -fsS -o /dev/null -m 3 http://{}:{}/ready",
        env_value(&vars, "VM_BILLING_IP")?,
        env_value(&vars, "BILLING_HEALTH_PORT")?
    );

    let status = Command::new("vagrant")
        .args(["status", "--machine-readable"])
        .current_dir(root)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| {
            format!("vagrant not found ({e}): this command upgrades the VMs of `vagrant up` (docs/vagrant.md)")
        })?;
    if !status.status.success() {
        return Err("vagrant status failed: run `vagrant up` first".to_string());
    }
    let vms: Vec<&str> = STEPS.iter().map(|s| s.vm).collect();
    let down = not_running(&String::from_utf8_lossy(&status.stdout), &vms);
    if !down.is_empty() {
        return Err(format!(
            "{} not running: start the VMs first (vagrant up)",
            down.join(", ")
        ));
    }

    std::fs::create_dir_all(root.join(".state"))
        .map_err(|e| format!("cannot create .state/: {e}"))?;
    for (i, step) in STEPS.iter().enumerate() {
        let started = Instant::now();
        println!(
            "==> {}: {}; expected cost: {}",
            step.vm,
            step.unit,
            cost(step.vm, host_port)
        );
        // Vagrant's trigger builds dist/ before the first provisioning
        // (for the VMs' architecture); the later ones use what it built.
        let skip_build = !opts.build || i > 0;
        if !skip_build {
            println!("    building dist/ first (Vagrant's trigger: cargo xtask dist)");
        }
        let rel_log = format!(".state/upgrade-{}.log", step.vm.trim_end_matches("-vm"));
        let log_path = root.join(&rel_log);
        let log = File::create(&log_path)
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let mut provision = Command::new("vagrant");
        provision
            .args(["provision", step.vm])
            .current_dir(root)
            .stdout(log)
            .stderr(log_err);
        if skip_build {
            provision.env("MP_SKIP_BUILD", "1");
        }
        if !provision.status().is_ok_and(|s| s.success()) {
            return Err(format!(
                "vagrant provision {} failed (log: {rel_log})",
                step.vm
            ));
        }
        if opts.restart {
            let restart = format!("sudo systemctl restart {}", step.unit);
            if !vagrant_ok(root, &["ssh", step.vm, "-c", &restart]) {
                return Err(format!(
                    "restarting {} on {} failed: vagrant ssh {}, then journalctl -u {}",
                    step.unit, step.vm, step.vm, step.unit
                ));
            }
        }
        // The worker's health listener is on billing-vm's private address,
        // open to gateway-vm only (Prometheus): asked from there. The others
        // through the gateway's /ready, which needs both, on the host forward.
        let ready = || {
            if step.vm == "billing-vm" {
                vagrant_ok(root, &["ssh", "gateway-vm", "-c", &worker_ready])
            } else {
                http_ok(gateway, "/ready", Duration::from_secs(3))
            }
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !ready() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} on {} is not ready 120 s after its upgrade: vagrant ssh {}, then journalctl -u {}",
                    step.unit, step.vm, step.vm, step.unit
                ));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
        for line in service_lines(&log_text) {
            eprintln!("    {line}");
        }
        println!("==> {} done in {} s", step.vm, started.elapsed().as_secs());
    }
    println!("==> all three VMs upgraded, one at a time");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_vms_count() {
        let status = "1,billing-vm,state,running\n1,inventory-vm,state,shutoff\n\
                      1,gateway-vm,provider-name,libvirt\n";
        assert_eq!(
            not_running(status, &["billing-vm", "inventory-vm", "gateway-vm"]),
            vec!["inventory-vm", "gateway-vm"]
        );
        assert!(not_running("1,gateway-vm,state,running\n", &["gateway-vm"]).is_empty());
    }

    #[test]
    fn the_log_says_what_each_service_did() {
        let log = "    billing-vm: ==> billing-worker: binary, settings, unit\n\
                   \x20   billing-vm:     restarting billing-worker.service (its binary, settings or unit changed)\n\
                   \x20   billing-vm:     prometheus-node-exporter.service already running with current settings\n\
                   \x20   billing-vm:     restarting postgres (nothing)\n";
        assert_eq!(
            service_lines(log),
            vec![
                "restarting billing-worker.service (its binary, settings or unit changed)",
                "prometheus-node-exporter.service already running with current settings"
            ]
        );
    }

    #[test]
    fn status_codes_of_http_1() {
        assert_eq!(status_code("HTTP/1.1 200 OK\r\nx: y\r\n"), Some(200));
        assert_eq!(
            status_code("HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_code("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(""), None);
    }

    #[test]
    fn http_ok_needs_a_200_from_a_listener() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            for answer in [
                "HTTP/1.1 200 OK\r\n\r\n",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n",
            ] {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                s.write_all(answer.as_bytes()).expect("write");
            }
        });
        assert!(http_ok(addr, "/ready", Duration::from_secs(2)));
        assert!(!http_ok(addr, "/ready", Duration::from_secs(2)));
        server.join().expect("server");
        // Nothing listens there any more.
        assert!(!http_ok(addr, "/ready", Duration::from_millis(300)));
    }
}
