//! A list of servers in one setting (`*_DB_HOST`, `*_RABBITMQ_HOST`), for the
//! high-availability topology where a service knows every node of a cluster.

/// Parses `a,b:5433,c`: comma-separated hosts, each optionally with its own
/// port, `default_port` otherwise. An entry with several colons is an IPv6
/// address without a port. Never empty on success.
pub fn parse(list: &str, default_port: u16) -> Result<Vec<(String, u16)>, String> {
    list.split(',')
        .map(str::trim)
        .map(|entry| {
            if entry.is_empty() {
                return Err(format!("an empty host name in {list:?}"));
            }
            match entry.split_once(':') {
                Some((host, port)) if !port.contains(':') => {
                    let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("bad port {port:?} in {entry:?} (expected host or host:port)")
                    })?;
                    if host.is_empty() {
                        return Err(format!("no host in {entry:?}"));
                    }
                    Ok((host.to_owned(), port))
                }
                _ => Ok((entry.to_owned(), default_port)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn hosts_take_the_default_port_unless_they_name_one() {
        assert_eq!(
            parse("10.0.0.1, 10.0.0.2:5673,::1", 5672).unwrap(),
            vec![
                ("10.0.0.1".to_owned(), 5672),
                ("10.0.0.2".to_owned(), 5673),
                ("::1".to_owned(), 5672)
            ]
        );
        for bad in ["a,,b", "a:x", "a:0", ":5672", "", "a,"] {
            assert!(parse(bad, 1).is_err(), "{bad}");
        }
    }
}
