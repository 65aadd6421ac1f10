//! The REST API, with Kafka Connect's paths, bodies and status codes, so that the scripts and
//! tools users have for Kafka Connect work unchanged. Every handler is a thin translation to
//! one [`ConnectApi`] call, run on a blocking thread because herder calls may wait for tasks to
//! stop. Errors are `{"error_code": HTTP status, "message": ...}` as Kafka writes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{json, Value as JsonValue};

use crate::api::{ConnectApi, HerderError};
use crate::config::Configs;
use crate::offsets::PartitionOffset;
use crate::status::TargetState;

/// What `GET /` tells about the worker.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// Runnel's version.
    pub version: String,
    /// The commit it was built from, when the build knew it.
    pub commit: String,
    /// The id of the cluster the worker uses.
    pub kafka_cluster_id: String,
}

impl ServerInfo {
    /// This build's version and commit, on the cluster `kafka_cluster_id`.
    pub fn of(kafka_cluster_id: Option<String>) -> ServerInfo {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: option_env!("RUNNEL_GIT_COMMIT")
                .unwrap_or("unknown")
                .to_owned(),
            kafka_cluster_id: kafka_cluster_id.unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
struct Api {
    herder: Arc<dyn ConnectApi>,
    info: Arc<ServerInfo>,
}

/// The REST API's routes over `herder`.
pub fn router(herder: Arc<dyn ConnectApi>, info: ServerInfo) -> Router {
    let api = Api {
        herder,
        info: Arc::new(info),
    };
    Router::new()
        .route("/", get(root))
        .route("/connectors", get(list_connectors).post(create_connector))
        .route(
            "/connectors/{name}",
            get(connector_info).delete(delete_connector),
        )
        .route(
            "/connectors/{name}/config",
            get(connector_config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{name}/status", get(connector_status))
        .route("/connectors/{name}/pause", put(pause))
        .route("/connectors/{name}/resume", put(resume))
        .route("/connectors/{name}/stop", put(stop))
        .route("/connectors/{name}/restart", post(restart))
        .route("/connectors/{name}/tasks", get(tasks))
        .route("/connectors/{name}/tasks/{task}/status", get(task_status))
        .route(
            "/connectors/{name}/tasks/{task}/restart",
            post(restart_task),
        )
        .route("/connectors/{name}/topics", get(topics))
        .route("/connectors/{name}/topics/reset", put(reset_topics))
        .route(
            "/connectors/{name}/offsets",
            get(offsets).patch(alter_offsets).delete(reset_offsets),
        )
        .route("/metrics", get(metrics))
        .route("/connector-plugins", get(plugins))
        .route("/connector-plugins/{plugin}/config", get(plugin_config))
        .route("/connector-plugins/{plugin}/config/validate", put(validate))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "HTTP 404 Not Found".to_owned()) })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "HTTP 405 Method Not Allowed".to_owned(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(api.clone(), forward))
        .with_state(api)
}

/// The header marking a request one worker forwarded to the leader, so that it is never
/// forwarded again (a leader that changed meanwhile answers 409 instead).
const FORWARDED: &str = "x-runnel-forwarded";
/// The largest request body forwarded.
const FORWARD_BODY_MAX: usize = 16 * 1024 * 1024;

/// Sends writes to the connectors (POST, PUT, PATCH, DELETE under `/connectors`) to the
/// leader when this worker is not it, as Kafka Connect's workers do.
async fn forward(
    State(api): State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let writes = method != axum::http::Method::GET && method != axum::http::Method::HEAD;
    if !writes || !request.uri().path().starts_with("/connectors") {
        return next.run(request).await;
    }
    let leader = match api.herder.forward_to() {
        Ok(None) => return next.run(request).await,
        Ok(Some(leader)) => leader,
        Err(e) => return e.into_response(),
    };
    if request.headers().contains_key(FORWARDED) {
        return HerderError {
            status: 409,
            message: "Cannot complete request: this worker is no longer the leader".to_owned(),
        }
        .into_response();
    }
    let target = format!(
        "{}{}",
        leader.trim_end_matches('/'),
        request.uri().path_and_query().map_or("", |p| p.as_str())
    );
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match axum::body::to_bytes(request.into_body(), FORWARD_BODY_MAX).await {
        Ok(body) => body,
        Err(e) => return bad_request(format!("cannot read the request body: {e}")).into_response(),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(std::time::Duration::from_secs(90))
            .build();
        let mut call = agent.request(method.as_str(), &target).set(FORWARDED, "1");
        if let Some(kind) = &content_type {
            call = call.set("Content-Type", kind);
        }
        let response = match call.send_bytes(&body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => {
                return Err(HerderError {
                    status: 409,
                    message: format!(
                        "Cannot complete request: the leader at {target} is unreachable: {e}"
                    ),
                })
            }
        };
        let status = response.status();
        let location = response.header("Location").map(str::to_owned);
        let mut text = Vec::new();
        use std::io::Read;
        response
            .into_reader()
            .take(FORWARD_BODY_MAX as u64)
            .read_to_end(&mut text)
            .map_err(|e| HerderError {
                status: 500,
                message: format!("cannot read the leader's answer: {e}"),
            })?;
        Ok((status, location, text))
    })
    .await;
    match answer {
        Ok(Ok((status, location, text))) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let empty = text.is_empty();
            let mut response = (status, text).into_response();
            if !empty {
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
            }
            if let Some(location) = location.and_then(|l| header::HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("forwarding failed: {e}"),
        ),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (
        status,
        Json(json!({"error_code": status.as_u16(), "message": message})),
    )
        .into_response()
}

impl IntoResponse for HerderError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error(status, self.message)
    }
}

type Answer = Result<Response, HerderError>;

/// Runs a herder call on a blocking thread.
async fn call<T: Send + 'static>(
    api: &Api,
    f: impl FnOnce(&dyn ConnectApi) -> Result<T, HerderError> + Send + 'static,
) -> Result<T, HerderError> {
    let herder = api.herder.clone();
    tokio::task::spawn_blocking(move || f(&*herder))
        .await
        .map_err(|e| HerderError {
            status: 500,
            message: format!("the request failed: {e}"),
        })?
}

fn ok<T: Serialize>(status: StatusCode, body: T) -> Answer {
    Ok((status, Json(body)).into_response())
}

/// The JSON of a request body: 415 for another content type, 400 for bad JSON.
fn body_json(headers: &HeaderMap, body: &Bytes) -> Result<JsonValue, HerderError> {
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or("");
        if !kind
            .trim()
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return Err(HerderError {
                status: 415,
                message: format!("HTTP 415 Unsupported Media Type: the body must be application/json, not {kind}"),
            });
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad_request("The request needs a JSON body"));
    }
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("The body is not valid JSON: {e}")))
}

fn bad_request(message: impl Into<String>) -> HerderError {
    HerderError {
        status: 400,
        message: message.into(),
    }
}

/// A config object: scalar values become strings, as Kafka's JSON binding coerces them;
/// `null`s are returned apart (PATCH removes those keys).
fn config_object(value: &JsonValue) -> Result<BTreeMap<String, Option<String>>, HerderError> {
    let object = value
        .as_object()
        .ok_or_else(|| bad_request("A connector config must be a JSON object of strings"))?;
    object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                JsonValue::Null => None,
                JsonValue::String(s) => Some(s.clone()),
                JsonValue::Bool(b) => Some(b.to_string()),
                JsonValue::Number(n) => Some(n.to_string()),
                _ => {
                    return Err(bad_request(format!(
                        "The value of {key} must be a string, not {value}"
                    )))
                }
            };
            Ok((key.clone(), text))
        })
        .collect()
}

fn configs_of(value: &JsonValue) -> Result<Configs, HerderError> {
    Ok(Configs(
        config_object(value)?
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect(),
    ))
}

/// The values of a repeated query parameter, e.g. `expand=status&expand=info`.
fn query_values(query: &Option<String>, name: &str) -> Vec<String> {
    let Some(query) = query else {
        return Vec::new();
    };
    query
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| value.to_owned())
        })
        .collect()
}

fn query_flag(query: &Option<String>, name: &str) -> Result<bool, HerderError> {
    match query_values(query, name).last().map(String::as_str) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v.is_empty() => Ok(false),
        Some(v) => Err(bad_request(format!(
            "Query parameter {name} must be true or false, not {v}"
        ))),
    }
}

/// `GET /metrics`: the worker's metrics for Prometheus (not part of Kafka Connect's API,
/// which exposes them over JMX).
async fn metrics(State(api): State<Api>) -> Response {
    let herder = Arc::clone(&api.herder);
    let text =
        tokio::task::spawn_blocking(move || herder.worker().openmetrics(&herder.connector_names()))
            .await;
    match text {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                runnel_metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(join) => error(StatusCode::INTERNAL_SERVER_ERROR, join.to_string()),
    }
}

async fn root(State(api): State<Api>) -> Json<ServerInfo> {
    Json((*api.info).clone())
}

async fn list_connectors(State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let expand = query_values(&query, "expand");
    if expand.is_empty() {
        return ok(
            StatusCode::OK,
            call(&api, |h| Ok(h.connector_names())).await?,
        );
    }
    let expanded = call(&api, move |h| {
        let mut all = serde_json::Map::new();
        for name in h.connector_names() {
            let mut views = serde_json::Map::new();
            for view in &expand {
                // A connector deleted meanwhile is left out rather than failing the list.
                let value = match view.as_str() {
                    "status" => h
                        .status(&name)
                        .ok()
                        .map(|s| serde_json::to_value(s).unwrap_or_default()),
                    "info" => h
                        .info(&name)
                        .ok()
                        .map(|i| serde_json::to_value(i).unwrap_or_default()),
                    _ => None,
                };
                if let Some(value) = value {
                    views.insert(view.clone(), value);
                }
            }
            all.insert(name, JsonValue::Object(views));
        }
        Ok(all)
    })
    .await?;
    ok(StatusCode::OK, expanded)
}

async fn create_connector(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Answer {
    let request = body_json(&headers, &body)?;
    let name = request
        .get("name")
        .and_then(JsonValue::as_str)
        .map(|n| n.trim().to_owned())
        .ok_or_else(|| bad_request("The request needs a connector \"name\""))?;
    let configs = configs_of(
        request
            .get("config")
            .ok_or_else(|| bad_request("The request needs a connector \"config\""))?,
    )?;
    let initial = match request.get("initial_state") {
        None | Some(JsonValue::Null) => TargetState::Started,
        Some(JsonValue::String(state)) => match state.to_ascii_uppercase().as_str() {
            "RUNNING" => TargetState::Started,
            "PAUSED" => TargetState::Paused,
            "STOPPED" => TargetState::Stopped,
            other => {
                return Err(bad_request(format!(
                    "initial_state must be RUNNING, PAUSED or STOPPED, not {other}"
                )))
            }
        },
        Some(other) => {
            return Err(bad_request(format!(
                "initial_state must be a string, not {other}"
            )))
        }
    };
    let created_name = name.clone();
    let info = call(&api, move |h| h.create(&name, configs, initial)).await?;
    Ok(created(&created_name, info))
}

fn created<T: Serialize>(name: &str, body: T) -> Response {
    let location = format!("/connectors/{}", percent_encode(name));
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn connector_info(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, call(&api, move |h| h.info(&name)).await?)
}

async fn delete_connector(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    call(&api, move |h| h.delete(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn connector_config(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    ok(
        StatusCode::OK,
        call(&api, move |h| h.config(&name)).await?.0,
    )
}

async fn put_config(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let configs = configs_of(&body_json(&headers, &body)?)?;
    let created_name = name.clone();
    let (was_created, info) = call(&api, move |h| h.put_config(&name, configs)).await?;
    if was_created {
        Ok(created(&created_name, info))
    } else {
        ok(StatusCode::OK, info)
    }
}

async fn patch_config(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let patch = config_object(&body_json(&headers, &body)?)?;
    ok(
        StatusCode::OK,
        call(&api, move |h| h.patch_config(&name, patch)).await?,
    )
}

async fn connector_status(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    ok(StatusCode::OK, call(&api, move |h| h.status(&name)).await?)
}

async fn pause(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    call(&api, move |h| h.set_target(&name, TargetState::Paused)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn resume(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    call(&api, move |h| h.set_target(&name, TargetState::Started)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn stop(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    call(&api, move |h| h.set_target(&name, TargetState::Stopped)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn restart(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Answer {
    let include_tasks = query_flag(&query, "includeTasks")?;
    let only_failed = query_flag(&query, "onlyFailed")?;
    let plan = call(&api, move |h| h.restart(&name, include_tasks, only_failed)).await?;
    if !include_tasks && !only_failed {
        // The restart of the connector alone keeps the pre-KIP-745 answer.
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    ok(StatusCode::ACCEPTED, plan)
}

async fn tasks(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    ok(
        StatusCode::OK,
        call(&api, move |h| h.task_configs(&name)).await?,
    )
}

fn task_number(name: &str, task: &str) -> Result<usize, HerderError> {
    task.parse().map_err(|_| HerderError {
        status: 404,
        message: format!("Task {name}-{task} not found"),
    })
}

async fn task_status(State(api): State<Api>, Path((name, task)): Path<(String, String)>) -> Answer {
    let task = task_number(&name, &task)?;
    ok(
        StatusCode::OK,
        call(&api, move |h| h.task_status(&name, task)).await?,
    )
}

async fn restart_task(
    State(api): State<Api>,
    Path((name, task)): Path<(String, String)>,
) -> Answer {
    let task = task_number(&name, &task)?;
    call(&api, move |h| h.restart_task(&name, task)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn topics(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let key = name.clone();
    let topics = call(&api, move |h| h.topics(&name)).await?;
    ok(StatusCode::OK, json!({ key: {"topics": topics} }))
}

async fn reset_topics(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    call(&api, move |h| h.reset_topics(&name)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn offsets(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let offsets = call(&api, move |h| h.offsets(&name)).await?;
    ok(StatusCode::OK, json!({ "offsets": offsets }))
}

async fn alter_offsets(
    State(api): State<Api>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let request = body_json(&headers, &body)?;
    let listed = request
        .get("offsets")
        .and_then(JsonValue::as_array)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| {
            bad_request("Partitions / offsets need to be provided for an alter offsets request")
        })?;
    let offsets = listed
        .iter()
        .map(|entry| serde_json::from_value::<PartitionOffset>(entry.clone()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            bad_request(format!(
                "Each offset needs a \"partition\" object and an \"offset\" object or null: {e}"
            ))
        })?;
    let message = call(&api, move |h| h.alter_offsets(&name, offsets)).await?;
    ok(StatusCode::OK, json!({ "message": message }))
}

async fn reset_offsets(State(api): State<Api>, Path(name): Path<String>) -> Answer {
    let message = call(&api, move |h| h.reset_offsets(&name)).await?;
    ok(StatusCode::OK, json!({ "message": message }))
}

async fn plugins(State(api): State<Api>, RawQuery(query): RawQuery) -> Answer {
    let connectors_only = match query_values(&query, "connectorsOnly")
        .last()
        .map(String::as_str)
    {
        None => true,
        Some(v) => !v.eq_ignore_ascii_case("false"),
    };
    ok(StatusCode::OK, api.herder.plugin_list(connectors_only))
}

async fn plugin_config(State(api): State<Api>, Path(plugin): Path<String>) -> Answer {
    ok(
        StatusCode::OK,
        call(&api, move |h| h.plugin_config(&plugin)).await?,
    )
}

/// The class a validate request's path names, compared as Kafka does: a trailing
/// `Connector` does not matter, and the body's class may be fully qualified.
fn same_plugin(path: &str, body: &str) -> bool {
    let normalize = |name: &str| name.strip_suffix("Connector").unwrap_or(name).to_owned();
    normalize(body).ends_with(&normalize(path))
}

async fn validate(
    State(api): State<Api>,
    Path(plugin): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let configs = configs_of(&body_json(&headers, &body)?)?;
    let class = configs
        .get("connector.class")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad_request("Connector config contains no connector type"))?;
    if !same_plugin(&plugin, class) {
        return Err(bad_request(format!(
            "Included connector type {class} does not match request type {plugin}"
        )));
    }
    ok(
        StatusCode::OK,
        call(&api, move |h| h.validate(&configs)).await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_compare_as_kafka_compares_them() {
        assert!(same_plugin("FileStreamSourceConnector", "FileStreamSource"));
        assert!(same_plugin(
            "FileStreamSource",
            "org.apache.kafka.connect.file.FileStreamSourceConnector"
        ));
        assert!(!same_plugin("FileStreamSink", "FileStreamSource"));
    }

    #[test]
    fn repeated_query_parameters_are_all_read() {
        let query = Some("expand=status&expand=info&x=1".to_owned());
        assert_eq!(query_values(&query, "expand"), ["status", "info"]);
        assert_eq!(
            query_flag(&Some("includeTasks=TRUE".into()), "includeTasks"),
            Ok(true)
        );
        assert!(query_flag(&Some("includeTasks=maybe".into()), "includeTasks").is_err());
    }

    #[test]
    fn config_values_are_coerced_to_strings_and_nested_values_refused() {
        let parsed = config_object(&json!({"tasks.max": 2, "a": true, "b": null})).unwrap();
        assert_eq!(parsed["tasks.max"].as_deref(), Some("2"));
        assert_eq!(parsed["a"].as_deref(), Some("true"));
        assert_eq!(parsed["b"], None);
        assert!(config_object(&json!({"a": {"b": 1}})).is_err());
        assert!(config_object(&json!([1])).is_err());
    }
}
