//! What keeps other web pages away from the console. The console changes things (topic
//! configs, topics, connectors), and a browser will send a request anywhere a page tells it
//! to, with the user's network position:
//!
//! - a page on another site can POST a form to the console's address (a cross-site request):
//!   a request that changes something must come from the console's own page, which a
//!   browser says with an `Origin` equal to the address it asked (`Host`); a request without
//!   `Origin` comes from a tool (curl, a script), not from another site's page;
//! - a page can make its own domain name resolve to 127.0.0.1 (DNS rebinding) and then read
//!   the console as if same-origin: every request must name, in `Host`, this node by an IP
//!   address, `localhost`, or a host the cluster advertises (the names clients use for it).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The host names the console answers to besides IP addresses and `localhost`.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts(Arc<Vec<String>>);

impl AllowedHosts {
    /// The hosts of the advertised Kafka listeners, `HOST:PORT[,...]`.
    pub(crate) fn from_bootstrap(bootstrap: &str) -> AllowedHosts {
        let hosts = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|address| !address.is_empty())
            .map(|address| host_of(address).to_ascii_lowercase())
            .collect();
        AllowedHosts(Arc::new(hosts))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok()
            || self.0.contains(&host)
    }
}

/// The host of `HOST:PORT`, `[V6]:PORT` or a bare host.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map_or(authority, |(host, _)| host);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// Refuses requests addressed to another host, and changes asked by another site's page.
pub(crate) async fn guard(
    State(allowed): State<AllowedHosts>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !allowed.allows(host_of(&host)) {
        return refused(format!(
            "the console answers requests addressed to this node by its IP address, localhost \
             or an advertised host name, not to {host:?}"
        ));
    }
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes {
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|origin| origin.split_once("://"))
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(&host));
            if !same {
                return refused(
                    "a change must come from the console's own page (the Origin header names \
                     another site)"
                        .to_owned(),
                );
            }
        }
    }
    next.run(request).await
}

fn refused(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_addresses_localhost_or_advertised_names() {
        let allowed = AllowedHosts::from_bootstrap("node1:19092, Broker.example:9092");
        for host in [
            "127.0.0.1",
            "localhost",
            "::1",
            "[::1]",
            "10.0.0.7",
            "node1",
            "broker.example",
        ] {
            assert!(allowed.allows(host), "{host}");
        }
        for host in ["evil.example", "", "node1.evil.example", "localhost.evil"] {
            assert!(!allowed.allows(host), "{host}");
        }
        assert_eq!(host_of("node1:9644"), "node1");
        assert_eq!(host_of("[::1]:9644"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
