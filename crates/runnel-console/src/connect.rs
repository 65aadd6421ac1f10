//! The Connect page's backend: a thin proxy to a Kafka Connect worker's REST API (Runnel's own
//! or Apache Kafka's), used only when the console was given its URL.
//!
//! - `GET /connectors?expand=status`: every connector with its state and its tasks' states,
//!   reshaped here into a list the page renders as it comes;
//! - `PUT /connectors/NAME/pause`, `PUT /connectors/NAME/resume`,
//!   `POST /connectors/NAME/restart`: the page's buttons.
//!
//! `ureq` blocks, so each call runs on tokio's blocking pool; answers are read up to
//! [`BODY_MAX`] bytes, and the worker gets [`TIMEOUT`] to answer. Errors from the worker keep
//! its status for the 4xx ones (a 409 while its group rebalances, a 404 for a connector that
//! went away) with its message, and become 502 otherwise.

use std::io::Read;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

/// The most bytes of a worker's answer read.
pub(crate) const BODY_MAX: u64 = 4 * 1024 * 1024;
/// How long one call to the worker may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// What the page's buttons do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pause,
    Resume,
    Restart,
}

impl Action {
    pub(crate) fn parse(action: &str) -> Result<Action, ApiError> {
        match action {
            "pause" => Ok(Action::Pause),
            "resume" => Ok(Action::Resume),
            "restart" => Ok(Action::Restart),
            other => Err(ApiError::bad_request(format!(
                "a connector can be paused, resumed or restarted, not {other:?}"
            ))),
        }
    }

    fn method_and_path(self) -> (&'static str, &'static str) {
        match self {
            Action::Pause => ("PUT", "pause"),
            Action::Resume => ("PUT", "resume"),
            Action::Restart => ("POST", "restart"),
        }
    }
}

/// A connector as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Connector {
    pub(crate) name: String,
    /// `source` or `sink`, when the worker says.
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    pub(crate) state: String,
    pub(crate) worker_id: Option<String>,
    pub(crate) trace: Option<String>,
    pub(crate) tasks: Vec<Task>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Task {
    pub(crate) id: i64,
    pub(crate) state: String,
    pub(crate) worker_id: Option<String>,
    pub(crate) trace: Option<String>,
}

/// `GET /connectors?expand=status`'s answer (an object by connector name, each with a
/// `status`) as a list sorted by name. Parts the worker left out read as unknown rather than
/// failing the page.
pub(crate) fn connectors_from_expanded(answer: &Value) -> Result<Vec<Connector>, ApiError> {
    let Some(by_name) = answer.as_object() else {
        return Err(ApiError::bad_gateway(
            "Connect's GET /connectors?expand=status did not answer with an object",
        ));
    };
    let text =
        |value: &Value, field: &str| value.get(field).and_then(Value::as_str).map(str::to_owned);
    let mut connectors: Vec<Connector> = by_name
        .iter()
        .map(|(name, expanded)| {
            let status = expanded.get("status").unwrap_or(&Value::Null);
            let connector = status.get("connector").unwrap_or(&Value::Null);
            let tasks = status
                .get("tasks")
                .and_then(Value::as_array)
                .map(|tasks| {
                    tasks
                        .iter()
                        .map(|task| Task {
                            id: task.get("id").and_then(Value::as_i64).unwrap_or(-1),
                            state: text(task, "state").unwrap_or_else(|| "UNKNOWN".to_owned()),
                            worker_id: text(task, "worker_id"),
                            trace: text(task, "trace"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Connector {
                name: name.clone(),
                kind: text(status, "type"),
                state: text(connector, "state").unwrap_or_else(|| "UNKNOWN".to_owned()),
                worker_id: text(connector, "worker_id"),
                trace: text(connector, "trace"),
                tasks,
            }
        })
        .collect();
    connectors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(connectors)
}

/// `name` as one URL path segment: letters, digits, `-`, `_` and `~` as they are, every other
/// byte percent-encoded (a connector may be called `a/b` or `ümlaut`). Dots are encoded too,
/// so that a connector named `..` cannot make the path climb.
pub(crate) fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The worker's base URL without a trailing slash.
fn base(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// Every connector with its status.
pub(crate) async fn list(agent: ureq::Agent, url: String) -> Result<Vec<Connector>, ApiError> {
    let target = format!("{}/connectors?expand=status", base(&url));
    let answer = blocking(move || call(&agent, "GET", &target)).await?;
    connectors_from_expanded(&answer)
}

/// Pauses, resumes or restarts one connector.
pub(crate) async fn act(
    agent: ureq::Agent,
    url: String,
    name: &str,
    action: Action,
) -> Result<(), ApiError> {
    let (method, verb) = action.method_and_path();
    let target = format!("{}/connectors/{}/{verb}", base(&url), path_segment(name));
    blocking(move || call(&agent, method, &target)).await?;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the call to Connect failed: {error}"),
        )
    })?
}

/// One call; the answer's JSON (`null` for an empty body, as pause's 202 has).
fn call(agent: &ureq::Agent, method: &str, target: &str) -> Result<Value, ApiError> {
    match agent.request(method, target).call() {
        Ok(response) => read_json(response, target),
        Err(ureq::Error::Status(status, response)) => {
            let message = read_json(response, target)
                .ok()
                .and_then(|body| {
                    body.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "no message".to_owned());
            let message = format!("Connect answered {method} {target} with {status}: {message}");
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_GATEWAY);
            Err(ApiError::new(status, message))
        }
        Err(error) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot reach Connect for {method} {target}: {error}"),
        )),
    }
}

fn read_json(response: ureq::Response, target: &str) -> Result<Value, ApiError> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(BODY_MAX + 1)
        .read_to_end(&mut body)
        .map_err(|error| {
            ApiError::bad_gateway(format!("reading Connect's answer to {target}: {error}"))
        })?;
    if body.len() as u64 > BODY_MAX {
        return Err(ApiError::bad_gateway(format!(
            "Connect's answer to {target} is larger than {BODY_MAX} bytes"
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_gateway(format!("Connect's answer to {target} is not JSON: {error}"))
    })
}

/// The agent every call shares (its connection pool).
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(3))
        .timeout(TIMEOUT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expanded_listing_becomes_a_sorted_list() {
        let answer = serde_json::json!({
            "sink-b": {"status": {
                "name": "sink-b",
                "connector": {"state": "PAUSED", "worker_id": "w1:8083"},
                "tasks": [
                    {"id": 0, "state": "PAUSED", "worker_id": "w1:8083"},
                    {"id": 1, "state": "FAILED", "worker_id": "w2:8083", "trace": "boom"}
                ],
                "type": "sink"
            }},
            "a-source": {"status": {
                "name": "a-source",
                "connector": {"state": "RUNNING", "worker_id": "w1:8083"},
                "tasks": [],
                "type": "source"
            }}
        });
        let connectors = connectors_from_expanded(&answer).expect("an object");
        assert_eq!(connectors.len(), 2);
        assert_eq!(connectors[0].name, "a-source");
        assert_eq!(connectors[0].kind.as_deref(), Some("source"));
        assert_eq!(connectors[1].state, "PAUSED");
        assert_eq!(connectors[1].tasks[1].trace.as_deref(), Some("boom"));
        assert_eq!(connectors[1].tasks[1].id, 1);
    }

    #[test]
    fn missing_parts_read_as_unknown() {
        let answer = serde_json::json!({"odd": {}});
        let connectors = connectors_from_expanded(&answer).expect("an object");
        assert_eq!(connectors[0].state, "UNKNOWN");
        assert!(connectors[0].tasks.is_empty());
        assert!(connectors_from_expanded(&serde_json::json!([1, 2])).is_err());
    }

    #[test]
    fn names_are_one_path_segment() {
        assert_eq!(path_segment("jdbc-sink_1~x"), "jdbc-sink_1~x");
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(path_segment("ü"), "%C3%BC");
        assert_eq!(path_segment(".."), "%2E%2E");
    }

    #[test]
    fn actions_are_the_three_buttons() {
        assert_eq!(Action::parse("pause"), Ok(Action::Pause));
        assert_eq!(Action::Restart.method_and_path(), ("POST", "restart"));
        assert!(Action::parse("delete").is_err());
    }
}
