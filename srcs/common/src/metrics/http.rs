//! RED metrics of an HTTP service, one middleware for all three: requests,
//! their status class (so errors) and latency, labelled by the route
//! *pattern* (`/api/movies/{id}`), never the raw path, so neither 1,000 movie
//! ids nor a scanner's random paths make new series: every path no route
//! matches shares the label `unmatched`, and an unusual method shares `OTHER`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The label of every path that matches no route.
pub const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    /// `2xx`, `4xx`, `5xx`...
    status: &'static str,
}

/// The RED families of one service; app data of type `web::Data<HttpMetrics>`
/// for [`middleware`].
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// Tells this service's families from another's in [`SEEN`] (a test
    /// process runs many).
    id: u64,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

/// One label set's series in both families: a clone of a `Counter` or a
/// `Histogram` shares its storage with the family's.
#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
}

/// How many label sets a thread keeps the series of; more (a scanner's odd
/// methods times every status class) are looked up in the families.
const SEEN_MAX: usize = 32;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The series each worker thread has counted, by families and labels.
    /// A family lookup hashes the labels with SipHash, twice a request
    /// (~1,500 instructions, BENCHMARKS.md "What metrics and trace ids
    /// cost"); a scan of the few label sets a service answers with costs a
    /// fraction of that.
    static SEEN: RefCell<Vec<(u64, RequestLabels, Series)>> = const { RefCell::new(Vec::new()) };
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> web::Data<Self> {
        let me = Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requests: Family::default(),
            duration: Family::new_with_constructor(super::latency_histogram),
        };
        // One line a family: the table is the list of what this registers.
        #[rustfmt::skip]
        super::register_all(registry, [
            ("http_requests", "HTTP requests answered, by route pattern, method and status class", Box::new(me.requests.clone())),
            ("http_request_duration_seconds", "Time from a request's arrival to its response head, by route pattern, method and status class", Box::new(me.duration.clone())),
        ]);
        web::Data::new(me)
    }

    fn observe(&self, route: String, method: &Method, status: StatusCode, started: Instant) {
        let labels = RequestLabels {
            route,
            method: method_label(method),
            status: status_class(status),
        };
        let elapsed = started.elapsed().as_secs_f64();
        SEEN.with_borrow_mut(|seen| {
            if let Some((.., series)) = seen
                .iter()
                .find(|(id, seen, _)| *id == self.id && *seen == labels)
            {
                series.requests.inc();
                series.duration.observe(elapsed);
                return;
            }
            let series = Series {
                requests: self.requests.get_or_create(&labels).clone(),
                duration: self.duration.get_or_create(&labels).clone(),
            };
            series.requests.inc();
            series.duration.observe(elapsed);
            if seen.len() < SEEN_MAX {
                seen.push((self.id, labels, series));
            }
        });
    }
}

/// `.wrap(from_fn(metrics::http::middleware))`, outside every middleware that
/// may refuse a request (so refusals count too). A no-op when the app has no
/// `web::Data<HttpMetrics>`.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(metrics) = req.app_data::<web::Data<HttpMetrics>>().cloned() else {
        return next.call(req).await;
    };
    let started = Instant::now();
    let method = req.method().clone();
    let result = next.call(req).await;
    // The label is read after routing: actix then looks the matched
    // resource up by its place in the resource map, where before routing it
    // had to run every pattern against the path (regexes, for `{tail:.*}` and
    // multi-path resources) a second time. A request no route took (a
    // refusal, the default service) is matched by its path as before.
    let (route, status) = match &result {
        Ok(res) => (res.request().match_pattern(), res.status()),
        // No middleware or handler of ours returns an error (they answer
        // with responses), and an error carries no request to label.
        Err(err) => (None, err.as_response_error().status_code()),
    };
    let mut route = route.unwrap_or_else(|| UNMATCHED.to_owned());
    // `/api/billing/` is `/api/billing` (the gateway routes both, inventory
    // trims the slash before routing): one series per route.
    if route.len() > 1 && route.ends_with('/') {
        route.pop();
    }
    metrics.observe(route, &method, status, started);
    result
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn page(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
    }

    #[test]
    fn every_request_counts_in_its_own_families_whether_its_series_is_kept_or_not() {
        let (mut reg_a, mut reg_b) = (Registry::default(), Registry::default());
        let (a, b) = (
            HttpMetrics::register(&mut reg_a),
            HttpMetrics::register(&mut reg_b),
        );
        let t = Instant::now();
        for _ in 0..3 {
            a.observe("/x".into(), &Method::GET, StatusCode::OK, t);
        }
        b.observe("/x".into(), &Method::GET, StatusCode::OK, t);
        // More label sets than a thread keeps: the rest count all the same.
        for i in 0..SEEN_MAX + 5 {
            for _ in 0..2 {
                a.observe(format!("/r{i}"), &Method::POST, StatusCode::NOT_FOUND, t);
            }
        }
        let (a, b) = (page(&reg_a), page(&reg_b));
        for (text, route, n) in [
            (&a, "/x", 3),
            (&b, "/x", 1),
            (&a, "/r0", 0),
            (&a, &format!("/r{}", SEEN_MAX + 4), 0),
        ] {
            let (method, status, n) = if n == 0 {
                ("POST", "4xx", 2)
            } else {
                ("GET", "2xx", n)
            };
            let labels = format!(r#"{{route="{route}",method="{method}",status="{status}"}}"#);
            assert!(
                text.contains(&format!("http_requests_total{labels} {n}\n")),
                "{route}: {text}"
            );
            assert!(
                text.contains(&format!(
                    "http_request_duration_seconds_count{labels} {n}\n"
                )),
                "{route}: {text}"
            );
        }
    }

    #[test]
    fn odd_methods_and_statuses_share_labels() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::BAD_GATEWAY), "5xx");
    }
}
