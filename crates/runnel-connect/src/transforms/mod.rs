//! Single message transforms (SMTs) and predicates, configured as Kafka Connect configures
//! them: `transforms=a,b`, `transforms.a.type=...`, `transforms.a.predicate=p`,
//! `transforms.a.negate=true`, `predicates=p`, `predicates.p.type=...`.

use std::fmt;

use crate::config::{ConfigDef, ConfigError, Configs};
use crate::connector::ConnectError;
use crate::data::ConnectRecord;

/// One transform: a record in, the changed record out, or `None` to drop it.
pub trait Transformation: Send + Sync + fmt::Debug {
    /// Applies the transform.
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError>;
}

/// A condition on a record that decides whether a transform applies.
pub trait Predicate: Send + Sync + fmt::Debug {
    /// Whether `record` matches.
    fn test(&self, record: &ConnectRecord) -> bool;
}

/// The transforms of a connector, in order, each with its predicate if it has one.
#[derive(Debug, Default)]
pub struct TransformChain {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    transform: Box<dyn Transformation>,
    predicate: Option<(std::sync::Arc<dyn Predicate>, bool)>,
}

impl TransformChain {
    /// The chain a connector's configuration describes.
    pub fn from_configs(configs: &Configs) -> Result<TransformChain, ConfigError> {
        let _ = configs;
        Ok(TransformChain { steps: Vec::new() })
    }

    /// The keys the transforms and predicates named in `configs` take, prefixed as they
    /// are written (`transforms.a.field`, ...), for validation.
    pub fn config_def(configs: &Configs) -> ConfigDef {
        let _ = configs;
        ConfigDef::new()
    }

    /// Applies each step in order; `None` once a step drops the record.
    pub fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let mut record = record;
        for step in &self.steps {
            if let Some((predicate, negate)) = &step.predicate {
                if predicate.test(&record) == *negate {
                    continue;
                }
            }
            match step.transform.apply(record)? {
                Some(next) => record = next,
                None => return Ok(None),
            }
        }
        Ok(Some(record))
    }
}
