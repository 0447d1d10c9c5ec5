//! Start-up time to ready: starts a service binary, polls its readiness URL
//! every 2 ms over plain HTTP/1.1, and reports how long it took; then reads the
//! fresh process's RSS after it has settled, stops it (SIGTERM) and repeats.
//! Measured here rather than with curl in a shell loop, whose own process
//! start-up (several ms) would be larger than the resolution we want.

use bench_tools::{percentile, Args};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: startup --port PORT [--path /ready] [--runs N] [--settle SECONDS]
               [--timeout SECONDS] [--log FILE] -- COMMAND [ARGS...]
  Per run prints: run=I ready_ms=X rss_kb=Y; then: ready_ms_median=.. ready_ms_min=.. rss_kb_median=..
  The command inherits the environment; its output goes to --log (default: discarded).";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("startup: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = Args::parse(USAGE)?;
    let port: u16 = args
        .get("port")?
        .ok_or_else(|| format!("--port is required\n{USAGE}"))?;
    let path: String = args.get_or("path", "/ready".to_owned())?;
    let runs: usize = args.get_or("runs", 3)?;
    let settle: f64 = args.get_or("settle", 2.0)?;
    let timeout: f64 = args.get_or("timeout", 60.0)?;
    let log: Option<String> = args.get("log")?;
    let Some((program, program_args)) = args.rest.split_first() else {
        return Err(format!("no command after --\n{USAGE}"));
    };
    if http_ok(port, &path) {
        return Err(format!("something already answers on port {port}"));
    }

    let mut ready = Vec::with_capacity(runs);
    let mut rss = Vec::with_capacity(runs);
    for i in 1..=runs {
        let output = |log: &Option<String>| -> Result<Stdio, String> {
            match log {
                Some(path) => open_log(path).map(Stdio::from),
                None => Ok(Stdio::null()),
            }
        };
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(program_args)
            .stdin(Stdio::null())
            .stdout(output(&log)?)
            .stderr(output(&log)?)
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))?;
        let waited = wait_ready(&mut child, port, &path, Duration::from_secs_f64(timeout));
        let elapsed = started.elapsed();
        if let Err(e) = waited {
            stop(&mut child);
            return Err(e);
        }
        sleep(Duration::from_secs_f64(settle));
        let rss_kb = vm_rss_kb(child.id()).unwrap_or(0);
        stop(&mut child);
        let ready_us = elapsed.as_micros() as u64;
        println!(
            "run={i} ready_ms={:.1} rss_kb={rss_kb}",
            ready_us as f64 / 1000.0
        );
        ready.push(ready_us);
        rss.push(rss_kb);
        // Let the port and the database connections go before the next run.
        sleep(Duration::from_millis(300));
    }
    ready.sort_unstable();
    rss.sort_unstable();
    println!(
        "ready_ms_median={:.1} ready_ms_min={:.1} rss_kb_median={}",
        percentile(&ready, 50.0) as f64 / 1000.0,
        ready.first().copied().unwrap_or(0) as f64 / 1000.0,
        percentile(&rss, 50.0)
    );
    Ok(())
}

fn open_log(path: &str) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))
}

fn wait_ready(child: &mut Child, port: u16, path: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the service exited before it was ready ({status})"));
        }
        if http_ok(port, path) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready on port {port} after {timeout:?}"));
        }
        sleep(Duration::from_millis(2));
    }
}

/// True when GET http://127.0.0.1:PORT/PATH answers 200.
fn http_ok(port: u16, path: &str) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got += n,
        }
    }
    head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200")
}

fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// SIGTERM (a graceful stop, as systemd does), SIGKILL after 15 s.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
