//! Runnel Connect: moving data between topics and other systems, in the manner of Kafka
//! Connect.
//!
//! Modules, from the data up:
//! - [`data`]: schemas, values and records, as connectors and transforms see them;
//! - [`converter`]: records to and from the bytes of a topic (JSON, string, bytes);
//! - [`config`] and [`providers`]: connector configurations, their validation, and
//!   `${file:...}` / `${env:...}` secrets;
//! - [`connector`]: the SDK a connector implements (`Connector`, `SourceTask`, `SinkTask`);
//! - [`transforms`]: single message transforms and their predicates;
//! - [`errors`]: error tolerance, retries and the dead letter queue;
//! - [`worker`]: runs tasks: converting, transforming, producing, consuming, offsets;
//! - [`offsets`] and [`status`]: source offsets, and what each connector and task is doing;
//! - [`api`]: what the REST API asks of a worker, in either mode;
//! - [`herder`]: the standalone herder: connectors in memory, applied at once;
//! - [`rest`]: Kafka Connect's REST API over the herder;
//! - [`standalone`]: a worker in one process, as `runnel connect standalone` runs it;
//! - [`cluster_state`], [`topic_log`] and [`distributed`]: workers sharing connectors
//!   through a group and three compacted topics, as `runnel connect distributed` runs them;
//! - [`file`], [`cdc`], [`http`]: the built-in connectors: files, PostgreSQL change data
//!   capture, an HTTP sink.

#![warn(missing_docs)]

pub mod api;
pub mod cdc;
pub mod cluster_state;
pub mod config;
pub mod connector;
pub mod converter;
pub mod data;
pub mod distributed;
pub mod errors;
pub mod file;
pub mod herder;
pub mod http;
pub mod jdbc;
pub mod offsets;
pub mod providers;
pub mod rest;
pub mod standalone;
pub mod status;
pub mod topic_log;
pub mod transforms;
pub mod worker;

/// The connectors every worker has: files (and databases, as they come).
pub fn builtin_plugins() -> connector::Plugins {
    connector::Plugins::new(vec![
        file::FILE_SOURCE,
        file::FILE_SINK,
        cdc::POSTGRES_CDC_SOURCE,
        http::HTTP_SINK,
        jdbc::JDBC_SOURCE,
        jdbc::JDBC_SINK,
    ])
}
