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

#[cfg(test)]
mod tests {
    use super::*;

    // Ports of this test suite's own range (see README, "Tests").
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
