//! The inventory replicas the gateway balances over.
//!
//! `GATEWAY_INVENTORY_URL` names one or more base URLs; each URL's host is
//! resolved to *every* address it has (`tokio::net::lookup_host`), again
//! every [`REFRESH`], so the tasks of a Swarm service in `endpoint_mode:
//! dnsrr` (one DNS name, one address per task, no virtual IP) are all used
//! and a replaced task is seen within seconds. awc alone would resolve the
//! name once per connection and pool connections per name, sending nearly
//! everything to one replica.
//!
//! Requests go round-robin over the endpoints not marked down. An endpoint
//! is marked down for [`DOWN_FOR`] when a connect to it fails or it drops a
//! request before answering (passive), or when its `/health` stops answering
//! (active probe, every [`REFRESH`]); the probe also brings it back. When
//! every endpoint is down one is still tried: the gateway never refuses a
//! request without trying.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderValue, HOST};
use actix_web::http::Uri;
use futures_util::future::join_all;

/// How often names are re-resolved and endpoints probed.
pub const REFRESH: Duration = Duration::from_secs(2);
/// How long a failed endpoint is skipped. Longer than [`REFRESH`], so an
/// endpoint whose probe keeps failing stays down between probes.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// Longest wait for a probe's answer or for a name's addresses.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One entry of `GATEWAY_INVENTORY_URL`.
#[derive(Debug)]
struct Base {
    /// The URL as configured, without a trailing slash.
    url: String,
    host: String,
    port: u16,
    /// The path prefix (empty or `/prefix`).
    path: String,
    /// What awc would send as `Host` for `url`: inventory sees the same
    /// `Host` whichever address the request goes to.
    authority: Option<HeaderValue>,
}

/// Which endpoint: the base it comes from and the address, `None` while the
/// name has not resolved yet (the request then goes to the URL as
/// configured, and awc resolves it, as it did before balancing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    base: usize,
    addr: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    key: Key,
    down_until: Option<Instant>,
}

impl Endpoint {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until.is_some_and(|until| until > now)
    }
}

/// Where one attempt goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: Key,
    /// `http://ip:port/prefix` (or the configured URL): the request path is
    /// appended.
    pub prefix: String,
    /// The `Host` to send, when the URL carries an address instead of the
    /// configured name.
    pub host: Option<HeaderValue>,
}

impl Target {
    /// Sets `Host` on the headers of a request to this target.
    pub fn set_host(&self, headers: &mut actix_web::http::header::HeaderMap) {
        if let Some(host) = &self.host {
            headers.insert(HOST, host.clone());
        }
    }
}

/// The endpoints and their health, shared by every worker thread.
#[derive(Debug)]
pub struct Upstreams {
    bases: Vec<Base>,
    endpoints: RwLock<Vec<Endpoint>>,
    next: AtomicUsize,
}

impl Upstreams {
    /// From the configured base URLs (checked by the configuration). Hosts
    /// that are IP addresses are endpoints at once; names until
    /// [`refresh`](Self::refresh) resolves them.
    pub fn new(urls: &[Uri]) -> Self {
        let bases: Vec<Base> = urls.iter().map(base).collect();
        let endpoints = bases
            .iter()
            .enumerate()
            .map(|(i, b)| Endpoint {
                key: Key {
                    base: i,
                    addr: b
                        .host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, b.port)),
                },
                down_until: None,
            })
            .collect();
        Self {
            bases,
            endpoints: RwLock::new(endpoints),
            next: AtomicUsize::new(0),
        }
    }

    /// The next endpoint, round-robin, among those not in `tried`: one not
    /// marked down if there is any, else a down one (tried anyway). `None`
    /// once every endpoint has been tried.
    pub fn pick(&self, tried: &[Key]) -> Option<Target> {
        let now = Instant::now();
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let untried: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| !tried.contains(&e.key))
            .collect();
        let up: Vec<&Endpoint> = untried
            .iter()
            .copied()
            .filter(|e| !e.is_down(now))
            .collect();
        let pool = if up.is_empty() { &untried } else { &up };
        if pool.is_empty() {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.target(pool[turn % pool.len()].key))
    }

    fn target(&self, key: Key) -> Target {
        let base = &self.bases[key.base];
        match key.addr {
            Some(addr) => Target {
                key,
                prefix: format!("http://{addr}{}", base.path),
                host: base.authority.clone(),
            },
            None => Target {
                key,
                prefix: base.url.clone(),
                host: None,
            },
        }
    }

    /// Every endpoint, for probes.
    fn targets(&self) -> Vec<Target> {
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        endpoints.iter().map(|e| self.target(e.key)).collect()
    }

    /// Skips `key` for [`DOWN_FOR`] (unless it is gone already).
    pub fn mark_down(&self, key: Key, why: &str) {
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(e) = endpoints.iter_mut().find(|e| e.key == key) {
            if !e.is_down(now) {
                log::warn!(
                    "inventory endpoint {} marked down for {} s: {why}",
                    self.describe(key),
                    DOWN_FOR.as_secs()
                );
            }
            e.down_until = Some(now + DOWN_FOR);
        }
    }

    fn mark_up(&self, key: Key) {
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = endpoints.iter_mut().find(|e| e.key == key) {
            if e.is_down(Instant::now()) {
                log::info!("inventory endpoint {} is back", self.describe(key));
            }
            e.down_until = None;
        }
    }

    /// Endpoints known, and those not marked down.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let endpoints = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let up = endpoints.iter().filter(|e| !e.is_down(now)).count();
        (endpoints.len(), up)
    }

    fn describe(&self, key: Key) -> String {
        let base = &self.bases[key.base];
        match key.addr {
            Some(addr) if addr.ip().to_string() != base.host.trim_matches(['[', ']']) => {
                format!("{addr} ({})", base.url)
            }
            _ => base.url.clone(),
        }
    }

    /// Replaces the endpoints of each base by the addresses its name
    /// resolved to now; a base whose resolution failed (`None`) or gave
    /// nothing keeps what it had. Endpoints that stay keep their state.
    fn apply(&self, resolved: &[Option<Vec<SocketAddr>>]) {
        let mut endpoints = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Vec::with_capacity(endpoints.len());
        for (i, addrs) in resolved.iter().enumerate() {
            match addrs {
                Some(addrs) if !addrs.is_empty() => {
                    for addr in addrs {
                        let key = Key {
                            base: i,
                            addr: Some(*addr),
                        };
                        if next.iter().any(|e: &Endpoint| e.key == key) {
                            continue;
                        }
                        let known = endpoints.iter().find(|e| e.key == key);
                        if known.is_none() {
                            log::info!("inventory endpoint {} added", self.describe(key));
                        }
                        next.push(known.cloned().unwrap_or(Endpoint {
                            key,
                            down_until: None,
                        }));
                    }
                }
                _ => next.extend(endpoints.iter().filter(|e| e.key.base == i).cloned()),
            }
        }
        for gone in endpoints
            .iter()
            .filter(|e| !next.iter().any(|n| n.key == e.key))
        {
            log::info!("inventory endpoint {} removed", self.describe(gone.key));
        }
        *endpoints = next;
    }

    /// Resolves every base's name again (an IP address resolves to itself).
    async fn resolve(&self) -> Vec<Option<Vec<SocketAddr>>> {
        join_all(self.bases.iter().map(|base| async move {
            let lookup = tokio::net::lookup_host((base.host.trim_matches(['[', ']']), base.port));
            match tokio::time::timeout(PROBE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => Some(addrs.collect()),
                Ok(Err(e)) => {
                    log::warn!("cannot resolve inventory host {:?}: {e}", base.host);
                    None
                }
                Err(_) => {
                    log::warn!("resolving inventory host {:?} timed out", base.host);
                    None
                }
            }
        }))
        .await
    }

    /// Whether `/health` of one endpoint answers with a 2xx within
    /// `timeout`.
    pub async fn probe(
        client: &awc::Client,
        target: &Target,
        request_id: &str,
        timeout: Duration,
    ) -> bool {
        // A connection of its own, closed after the answer: the probe tests
        // connecting too, and keeps no idle connection to every replica.
        let mut probe = client
            .get(format!("{}/health", target.prefix))
            .force_close()
            .insert_header((common::request_id::header_name(), request_id));
        if let Some(host) = &target.host {
            probe = probe.insert_header((HOST, host.clone()));
        }
        match tokio::time::timeout(timeout.min(PROBE_TIMEOUT), probe.send()).await {
            Ok(Ok(resp)) => resp.status().is_success(),
            _ => false,
        }
    }

    /// Whether at least one endpoint answers its `/health`, asked of all at
    /// once (for `/ready`).
    pub async fn any_up(&self, client: &awc::Client, request_id: &str, timeout: Duration) -> bool {
        let targets = self.targets();
        let probes = targets
            .iter()
            .map(|t| Box::pin(Self::probe(client, t, request_id, timeout)));
        let mut pending: Vec<_> = probes.collect();
        while !pending.is_empty() {
            let (up, _, rest) = futures_util::future::select_all(pending).await;
            if up {
                return true;
            }
            pending = rest;
        }
        false
    }

    /// One round of the background task: resolve, then probe every endpoint.
    async fn refresh(&self, client: &awc::Client) {
        let resolved = self.resolve().await;
        self.apply(&resolved);
        let targets = self.targets();
        let results = join_all(
            targets
                .iter()
                .map(|t| Self::probe(client, t, "gateway-probe", PROBE_TIMEOUT)),
        )
        .await;
        for (target, up) in targets.iter().zip(results) {
            if up {
                self.mark_up(target.key);
            } else {
                self.mark_down(target.key, "its /health does not answer 2xx");
            }
        }
    }
}

/// Re-resolves and probes every [`REFRESH`] until `upstreams` is dropped
/// (the server stopped). Runs on the actix runtime: awc is not `Send`.
pub fn spawn_refresh(upstreams: &Arc<Upstreams>) -> actix_web::rt::task::JoinHandle<()> {
    let weak: Weak<Upstreams> = Arc::downgrade(upstreams);
    actix_web::rt::spawn(async move {
        let client = awc::Client::builder()
            .disable_timeout()
            .disable_redirects()
            .finish();
        loop {
            let Some(upstreams) = weak.upgrade() else {
                return;
            };
            upstreams.refresh(&client).await;
            drop(upstreams);
            tokio::time::sleep(REFRESH).await;
        }
    })
}

fn base(uri: &Uri) -> Base {
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(80);
    // As awc writes it (h1proto): the port only when it is not the default.
    let authority = match uri.port_u16() {
        None | Some(80) => host.clone(),
        Some(port) => format!("{host}:{port}"),
    };
    let path = uri.path().trim_end_matches('/').to_owned();
    let url = format!(
        "{}://{}{path}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    );
    Base {
        url,
        host,
        port,
        path,
        authority: HeaderValue::from_str(&authority).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(urls: &[&str]) -> Upstreams {
        let uris: Vec<Uri> = urls.iter().map(|u| u.parse().unwrap()).collect();
        Upstreams::new(&uris)
    }

    fn picks(u: &Upstreams, n: usize) -> Vec<String> {
        (0..n).map(|_| u.pick(&[]).unwrap().prefix).collect()
    }

    #[test]
    fn ip_urls_are_endpoints_at_once_and_names_go_as_configured() {
        let u = upstreams(&["http://10.0.0.1:8080/", "http://inventory-app:8080/api"]);
        let a = u.pick(&[]).unwrap();
        assert_eq!(a.prefix, "http://10.0.0.1:8080");
        assert_eq!(a.host.unwrap(), "10.0.0.1:8080");
        let b = u.pick(&[]).unwrap();
        assert_eq!(b.prefix, "http://inventory-app:8080/api");
        assert!(b.host.is_none(), "awc sets Host from the URL");
        assert_eq!(u.counts(), (2, 2));
    }

    #[test]
    fn resolved_addresses_replace_the_name_and_keep_the_host() {
        let u = upstreams(&["http://inventory-app:8080"]);
        let a: SocketAddr = "10.0.1.5:8080".parse().unwrap();
        let b: SocketAddr = "10.0.1.6:8080".parse().unwrap();
        u.apply(&[Some(vec![a, b, a])]);
        let mut seen = picks(&u, 4);
        assert_eq!(seen[0..2], seen[2..4], "round-robin: {seen:?}");
        seen.sort();
        assert_eq!(
            seen,
            [
                "http://10.0.1.5:8080",
                "http://10.0.1.5:8080",
                "http://10.0.1.6:8080",
                "http://10.0.1.6:8080"
            ]
        );
        assert_eq!(u.pick(&[]).unwrap().host.unwrap(), "inventory-app:8080");
        // A failed resolution keeps the known endpoints.
        u.apply(&[None]);
        assert_eq!(u.counts(), (2, 2));
        // A task replaced: the new address comes, the old one goes.
        let c: SocketAddr = "10.0.1.7:8080".parse().unwrap();
        u.apply(&[Some(vec![b, c])]);
        let mut seen = picks(&u, 2);
        seen.sort();
        assert_eq!(seen, ["http://10.0.1.6:8080", "http://10.0.1.7:8080"]);
    }

    #[test]
    fn down_endpoints_are_skipped_until_back_but_never_all_refused() {
        let u = upstreams(&["http://10.0.0.1:1", "http://10.0.0.2:2"]);
        let first = u.pick(&[]).unwrap().key;
        u.mark_down(first, "test");
        assert_eq!(u.counts(), (2, 1));
        let others = picks(&u, 5);
        assert!(
            others.iter().all(|p| p == "http://10.0.0.2:2"),
            "{others:?}"
        );
        let second = u.pick(&[]).unwrap().key;
        u.mark_down(second, "test");
        // Every endpoint down: still one to try, round-robin.
        assert_eq!(u.counts(), (2, 0));
        let mut seen = picks(&u, 2);
        seen.sort();
        assert_eq!(seen, ["http://10.0.0.1:1", "http://10.0.0.2:2"]);
        u.mark_up(first);
        assert_eq!(picks(&u, 3), ["http://10.0.0.1:1"; 3]);
    }

    #[test]
    fn a_retry_goes_to_an_endpoint_not_tried_yet() {
        let u = upstreams(&[
            "http://10.0.0.1:1",
            "http://10.0.0.2:2",
            "http://10.0.0.3:3",
        ]);
        let mut tried = Vec::new();
        while let Some(t) = u.pick(&tried) {
            assert!(!tried.contains(&t.key));
            tried.push(t.key);
        }
        assert_eq!(tried.len(), 3);
    }

    #[test]
    fn default_port_is_left_out_of_host_as_awc_does() {
        let u = upstreams(&["http://inventory"]);
        u.apply(&[Some(vec!["10.0.0.9:80".parse().unwrap()])]);
        let t = u.pick(&[]).unwrap();
        assert_eq!(t.prefix, "http://10.0.0.9:80");
        assert_eq!(t.host.unwrap(), "inventory");
        let v6 = upstreams(&["http://[::1]:8081"]);
        let t = v6.pick(&[]).unwrap();
        assert_eq!(t.prefix, "http://[::1]:8081");
        assert_eq!(t.host.unwrap(), "[::1]:8081");
    }
}
