//! Checks made before `vagrant up` boots anything, each failing with one
//! message that says what to do.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// The host port Vagrant will forward to the gateway must be free on
/// 127.0.0.1 (where the forward listens). Bound and connected to, because
/// some systems let a specific bind succeed beside a wildcard listener.
pub fn check_port(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let taken = TcpListener::bind(addr).is_err()
        || TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok();
    if taken {
        Err(port_taken_message(port))
    } else {
        Ok(())
    }
}

pub fn port_taken_message(port: u16) -> String {
    format!(
        "host port {port} (HOST_GATEWAY_PORT in .env) is already in use on 127.0.0.1. \
         Stop the program that uses it (a gateway-vm of another copy of this project? see `vagrant global-status`), \
         or set HOST_GATEWAY_PORT in .env to a free port, then run `vagrant up` again."
    )
}

/// The leading `MAJOR.MINOR.PATCH` of a version string such as "7.1.4r165100"
/// or "2.4.1" (missing parts are 0).
pub fn parse_version(s: &str) -> Option<(u32, u32, u32)> {
    let head: String = s
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = head.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    Some((major, minor, patch))
}

/// The oldest Vagrant that drives a VirtualBox version: Vagrant's VirtualBox
/// provider lists the versions it knows, and an older Vagrant refuses a newer
/// VirtualBox with "The provider 'virtualbox' that was requested ... isn't usable".
pub fn vagrant_minimum_for_virtualbox(vbox: (u32, u32, u32)) -> Option<(u32, u32, u32)> {
    match (vbox.0, vbox.1) {
        (7, 0) => Some((2, 3, 2)),
        (7, m) if m >= 1 => Some((2, 4, 2)),
        (v, _) if v > 7 => Some((2, 4, 2)),
        _ => None,
    }
}

pub fn check_vagrant_for_virtualbox(vagrant: &str, vbox: &str) -> Result<(), String> {
    let (Some(have), Some(vb)) = (parse_version(vagrant), parse_version(vbox)) else {
        return Ok(()); // unknown strings: let Vagrant itself judge
    };
    match vagrant_minimum_for_virtualbox(vb) {
        Some(need) if have < need => Err(format!(
            "VirtualBox {}.{} needs Vagrant {}.{}.{} or newer, and this is Vagrant {vagrant}: \
             install a current Vagrant (https://developer.hashicorp.com/vagrant/install), then run `vagrant up` again.",
            vb.0, vb.1, need.0, need.1, need.2
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vagrant_must_know_the_virtualbox_version() {
        assert_eq!(check_vagrant_for_virtualbox("2.3.1", "7.0.20r163906").unwrap_err(),
            "VirtualBox 7.0 needs Vagrant 2.3.2 or newer, and this is Vagrant 2.3.1: install a current Vagrant (https://developer.hashicorp.com/vagrant/install), then run `vagrant up` again.");
        assert!(check_vagrant_for_virtualbox("2.3.2", "7.0.20r163906").is_ok());
        assert!(check_vagrant_for_virtualbox("2.4.1", "7.1.4r165100")
            .unwrap_err()
            .starts_with("VirtualBox 7.1 needs Vagrant 2.4.2"));
        assert!(check_vagrant_for_virtualbox("2.4.2", "7.1.4r165100").is_ok());
        assert!(check_vagrant_for_virtualbox("2.2.19", "6.1.50").is_ok());
        assert!(check_vagrant_for_virtualbox("2.4.3", "not a version").is_ok());
        assert_eq!(parse_version("7.1.4r165100"), Some((7, 1, 4)));
        assert_eq!(parse_version("2.4"), Some((2, 4, 0)));
    }

    // Ports of this test suite's own range (see docs/testing.md).
    const TAKEN: u16 = 21080;
    const FREE: u16 = 21081;

    #[test]
    fn a_taken_port_is_refused_with_the_fix() {
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, TAKEN)).unwrap();
        let e = check_port(TAKEN).unwrap_err();
        assert!(
            e.starts_with("host port 21080 (HOST_GATEWAY_PORT in .env) is already in use"),
            "{e}"
        );
        assert!(
            e.contains("set HOST_GATEWAY_PORT in .env to a free port"),
            "{e}"
        );
    }

    #[test]
    fn a_wildcard_listener_counts_as_taken() {
        let _listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, TAKEN + 2)).unwrap();
        assert!(check_port(TAKEN + 2).is_err());
    }

    #[test]
    fn a_free_port_passes() {
        assert_eq!(check_port(FREE), Ok(()));
    }
}
