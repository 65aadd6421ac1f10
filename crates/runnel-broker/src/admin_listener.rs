//! The admin listener: HTTP for operators and orchestrators, apart from the Kafka listener.
//!
//! - `GET /metrics`: every metric of `metrics`, in the OpenMetrics text format Prometheus
//!   scrapes;
//! - `GET /health/live`: 200 while the process serves HTTP at all (a liveness probe);
//! - `GET /health/ready`: 200 once the node serves (a broker: it caught up with the
//!   metadata and listens for clients; a controller-only node: its voter has started), 503 with the
//!   reason before that and while it shuts down (a readiness probe, which takes the node out
//!   of a load balancer before it stops).
//!
//! With `--console`, it also serves the web console (`runnel-console`) at `/console/`.
//!
//! It starts before the broker recovers its logs, so that a liveness probe passes during a
//! long recovery, and stops after the broker has closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use runnel_quorum::RaftProgressWatch;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::metrics::{render, ScrapeExtras};

/// What the node is doing, as `/health/ready` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Starting,
    Serving,
    Stopping,
    /// The node has stopped: the listener closes.
    Stopped,
}

/// What the listener reads: the node's parts as they come up.
#[derive(Debug)]
struct Shared {
    broker: OnceLock<Arc<Broker>>,
    raft: Mutex<Option<RaftProgressWatch>>,
    phase: watch::Sender<Phase>,
    /// The last scrape and when it started. Held while a scrape runs, so that scrapes never
    /// run side by side (each takes every partition's locks in turn): a scrape that arrived
    /// while another ran is answered with that one's text, which is as fresh as it asked.
    last_scrape: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
}

/// The node's side of the admin listener: tells it what has started.
#[derive(Debug, Clone)]
pub(crate) struct AdminListener {
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
}

impl AdminListener {
    /// Binds `address` and serves it, with the `extra` routes (the console), until
    /// [`Self::stop`]; with `None`, a listener that serves nothing (`--admin-listen none`).
    pub(crate) async fn start(
        address: Option<&str>,
        extra: Option<Router>,
    ) -> Result<AdminListener, crate::RunError> {
        let shared = Arc::new(Shared {
            broker: OnceLock::new(),
            raft: Mutex::new(None),
            phase: watch::channel(Phase::Starting).0,
            last_scrape: tokio::sync::Mutex::new(None),
        });
        let Some(address) = address else {
            return Ok(AdminListener {
                shared,
                local_addr: None,
            });
        };
        let listener = crate::bind(address).await?;
        let local_addr = listener.local_addr().ok();
        tracing::info!(
            admin = %local_addr.map_or_else(|| address.to_owned(), |a| a.to_string()),
            "admin listener ready: /metrics, /health/live, /health/ready"
        );
        tokio::spawn(serve(listener, Arc::clone(&shared), extra));
        Ok(AdminListener { shared, local_addr })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    pub(crate) fn set_broker(&self, broker: &Arc<Broker>) {
        let _ = self.shared.broker.set(Arc::clone(broker));
    }

    pub(crate) fn set_raft(&self, raft: RaftProgressWatch) {
        *self
            .shared
            .raft
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(raft);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.shared.phase.send_replace(phase);
    }

    /// Stops serving: requests in flight are answered first.
    pub(crate) fn stop(&self) {
        self.set_phase(Phase::Stopped);
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, extra: Option<Router>) {
    let mut phase = shared.phase.subscribe();
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .with_state(Arc::clone(&shared));
    if let Some(extra) = extra {
        router = router.merge(extra);
    }
    let stopped = async move {
        let _ = phase.wait_for(|phase| *phase == Phase::Stopped).await;
    };
    if let Err(error) = axum::serve(listener, router)
        .with_graceful_shutdown(stopped)
        .await
    {
        tracing::warn!(%error, "admin listener stopped");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let arrived = std::time::Instant::now();
    let mut last = shared.last_scrape.lock().await;
    if let Some((started, text)) = &*last {
        if *started >= arrived {
            return openmetrics(text.clone());
        }
    }
    let started = std::time::Instant::now();
    let extras = ScrapeExtras {
        raft: shared
            .raft
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(RaftProgressWatch::read),
    };
    let broker = shared.broker.get().cloned();
    // The scrape takes every partition's lock in turn, which disk work may hold.
    match tokio::task::spawn_blocking(move || render(broker.as_ref(), extras)).await {
        Ok(text) => {
            *last = Some((started, text.clone()));
            openmetrics(text)
        }
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the scrape failed: {error}\n"),
        )
            .into_response(),
    }
}

fn openmetrics(text: String) -> Response {
    ([(header::CONTENT_TYPE, runnel_metrics::CONTENT_TYPE)], text).into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let phase = *shared.phase.borrow();
    match phase {
        Phase::Serving => (StatusCode::OK, "ready\n").into_response(),
        Phase::Starting if shared.broker.get().is_none() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: recovering the logs\n",
        )
            .into_response(),
        Phase::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: catching up with the cluster's metadata\n",
        )
            .into_response(),
        Phase::Stopping | Phase::Stopped => {
            (StatusCode::SERVICE_UNAVAILABLE, "stopping\n").into_response()
        }
    }
}
