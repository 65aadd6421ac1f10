//! Runnel Connect: moving data between topics and other systems, in the manner of Kafka
//! Connect.
//!
//! Modules, from the data up:
//! - [`data`]: schemas, values and records, as connectors and transforms see them;
//! - [`converter`]: records to and from the bytes of a topic (JSON, string, bytes);
//! - [`config`] and [`providers`]: connector configurations, their validation, and
//!   `${file:...}` / `${env:...}` secrets;
//! - [`connector`]: the SDK a connector implements (`Connector`, `SourceTask`, `SinkTask`);
//! - [`transforms`]: single message transforms and their predicates.

#![warn(missing_docs)]

pub mod config;
pub mod connector;
pub mod converter;
pub mod data;
pub mod providers;
pub mod transforms;
