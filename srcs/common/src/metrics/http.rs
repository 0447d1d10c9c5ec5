//! RED metrics of an HTTP service, one middleware for all three: requests,
//! their status class (so errors) and latency, labelled by the route
//! *pattern* (`/api/movies/{id}`), never the raw path, so neither 1,000 movie
//! ids nor a scanner's random paths make new series: every path no route
//! matches shares the label `unmatched`, and an unusual method shares `OTHER`.

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
    requests: Family<RequestLabels, Counter>,
    duration: Family<RequestLabels, Histogram>,
}

impl HttpMetrics {
    pub fn register(registry: &mut Registry) -> web::Data<Self> {
        let me = Self {
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
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
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
    let route = route.unwrap_or_else(|| UNMATCHED.to_owned());
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

    #[test]
    fn odd_methods_and_statuses_share_labels() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        assert_eq!(status_class(StatusCode::NOT_FOUND), "4xx");
        assert_eq!(status_class(StatusCode::BAD_GATEWAY), "5xx");
    }
}
