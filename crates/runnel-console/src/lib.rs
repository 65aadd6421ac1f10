//! The web console: what a cluster holds, in a browser. It is a client of the cluster like
//! any other: every page is answered through the Kafka protocol (the Admin API and a
//! consumer with manual assignment, `runnel-client`), never from the broker's internals, so
//! it shows what any client would see and works against any Kafka-compatible cluster.
//!
//! [`router`] gives the routes the broker's admin listener mounts when it runs with
//! `--console`:
//!
//! - `/console/`: the page (`assets/index.html`, `app.js`, `app.css`, compiled into the
//!   binary: plain HTML, JavaScript and CSS, no build step, nothing fetched from elsewhere,
//!   so it works offline). It routes on the URL's fragment: `#/` the cluster, `#/topics`,
//!   `#/topics/NAME`, `#/topics/NAME/messages`, `#/groups`, `#/groups/NAME`, `#/connect`;
//! - `/console/api/...`: the JSON the page reads (`api`): errors are `{"error": "..."}` with a
//!   non-200 status (`error`).
//!
//! The parts: `api` (the handlers), `batch` (ListOffsets, DescribeLogDirs, ListGroups,
//! DescribeGroups and OffsetFetch over many partitions and groups at once, so that a cluster
//! of thousands of partitions is one request per broker, not one per partition), `browse`
//! (the message browser's consumer), `render` (bytes as JSON, text or hex), `health` (the
//! overview's verdict), `lag` (the lag chart's history, kept in memory), `connect` (the
//! Kafka Connect REST proxy), `validate` (limits on everything a request names), `guard`
//! (other sites' pages kept away: DNS rebinding and cross-site changes).
//!
//! One `Admin` serves every page: made on first use (the admin listener starts before the
//! broker listens for clients) and made again after the cluster could not be reached.

mod api;
mod batch;
mod browse;
mod connect;
mod error;
mod guard;
mod health;
mod lag;
mod render;
mod validate;

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use runnel_client::{Admin, ClientConfig};
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// Where the console finds the cluster it shows.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The cluster's Kafka listener(s), `HOST:PORT[,...]`.
    pub bootstrap: String,
    /// A Connect worker's REST API (`http://HOST:PORT`), whose connectors the console shows.
    pub connect_url: Option<String>,
}

/// Browses at once: each holds a consumer and up to `max_bytes` of records.
const BROWSES_MAX: usize = 4;
/// How long a browse waits for its turn before the page is told to try again.
const BROWSE_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// Request bodies (the create-topic and config forms) are small.
const BODY_MAX: usize = 256 * 1024;

/// What every request shares.
#[derive(Debug)]
pub(crate) struct Console {
    config: ConsoleConfig,
    /// The one admin client, once made.
    admin: tokio::sync::Mutex<Option<Admin>>,
    lag: Mutex<lag::LagHistory>,
    browses: Semaphore,
    /// The Connect proxy's HTTP agent, when there is a worker to show.
    connect: Option<ureq::Agent>,
}

impl Console {
    fn new(config: ConsoleConfig) -> Console {
        let connect = config.connect_url.as_ref().map(|_| connect::agent());
        Console {
            config,
            admin: tokio::sync::Mutex::new(None),
            lag: Mutex::new(lag::LagHistory::default()),
            browses: Semaphore::new(BROWSES_MAX),
            connect,
        }
    }

    /// The shared admin client, connected on first use. Requests that come while it
    /// connects wait for that one connection rather than each making their own.
    pub(crate) async fn admin(&self) -> Result<Admin, ApiError> {
        let mut slot = self.admin.lock().await;
        if let Some(admin) = &*slot {
            return Ok(admin.clone());
        }
        let admin = Admin::connect(client_config(&self.config.bootstrap)).await?;
        *slot = Some(admin.clone());
        Ok(admin)
    }

    /// Drops the admin client after the cluster could not be reached: the next request
    /// bootstraps afresh (the brokers it knew may be gone, or not yet up).
    pub(crate) async fn forget_admin(&self) {
        *self.admin.lock().await = None;
    }

    pub(crate) fn lag(&self) -> std::sync::MutexGuard<'_, lag::LagHistory> {
        // Every critical section leaves the history consistent.
        self.lag.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The console's client settings: shorter timeouts than a tool's, since a person waits.
fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new(bootstrap);
    config.client_id = "runnel-console".to_owned();
    config.request_timeout = Duration::from_secs(10);
    config.connect_timeout = Duration::from_secs(5);
    // Pages are loaded again and again: metadata a minute old is refreshed.
    config.metadata_max_age = Duration::from_secs(60);
    config
}

/// The console's routes: the page and its JSON API.
pub fn router(config: ConsoleConfig) -> Router {
    let allowed = guard::AllowedHosts::from_bootstrap(&config.bootstrap);
    let console = std::sync::Arc::new(Console::new(config));
    let api = Router::new()
        .route("/info", get(api::info))
        .route("/overview", get(api::overview))
        .route("/topics", get(api::topics).post(api::create_topic))
        .route("/topics/{name}", get(api::topic))
        .route(
            "/topics/{name}/configs",
            get(api::topic_configs).post(api::alter_topic_configs),
        )
        .route("/topics/{name}/messages", get(api::messages))
        .route("/groups", get(api::groups))
        .route("/groups/{id}", get(api::group))
        .route("/connect/connectors", get(api::connectors))
        .route(
            "/connect/connectors/{name}/{action}",
            post(api::connector_action),
        )
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(BODY_MAX));
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
        .nest("/console/api", api)
        .with_state(console)
        .layer(axum::middleware::from_fn_with_state(allowed, guard::guard))
}

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The page runs only its own script and style: what a record holds can never run as code
/// (the script also writes every value as text, never as HTML).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change only with the binary; `no-cache` still lets the browser revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
