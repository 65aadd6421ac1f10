//! The states of connectors and tasks, as `GET /connectors/{name}/status` reports them, and
//! the states users ask for (Kafka's target states).

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::cluster_state::StatusRecord;

use serde::{Deserialize, Serialize};

/// What a connector or task is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Not running anywhere yet.
    Unassigned,
    /// Running.
    Running,
    /// Paused by a user.
    Paused,
    /// Stopped with an error; `trace` says which.
    Failed,
    /// About to be restarted.
    Restarting,
    /// Stopped by a user (connectors only, KIP-875).
    Stopped,
}

/// What a user asked a connector to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetState {
    /// Running (`RUNNING` in a create request's `initial_state`).
    #[serde(rename = "RUNNING", alias = "STARTED")]
    Started,
    /// Paused: tasks exist but move no data.
    Paused,
    /// Stopped: no connector instance, no tasks.
    Stopped,
}

/// A connector's or task's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Its state.
    pub state: State,
    /// The worker it runs on.
    pub worker_id: String,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Statuses by connector and task (`None` for the connector itself).
type Statuses = BTreeMap<(String, Option<usize>), Status>;

/// The statuses of a worker's connectors (`task` `None`) and tasks, and the topics each
/// connector has used (KIP-558).
///
/// In a distributed worker, every change this worker makes is also published (to the
/// status topic), and changes other workers published are applied with
/// [`StatusBoard::apply_remote`].
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    statuses: Arc<Mutex<Statuses>>,
    topics: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    publisher: Arc<OnceLock<tokio::sync::mpsc::UnboundedSender<StatusRecord>>>,
}

impl StatusBoard {
    /// Publishes every later change of this worker's to `sender`.
    pub fn publish_to(&self, sender: tokio::sync::mpsc::UnboundedSender<StatusRecord>) {
        let _ = self.publisher.set(sender);
    }

    fn publish(&self, record: StatusRecord) {
        if let Some(sender) = self.publisher.get() {
            // The receiver goes away only when the worker shuts down.
            let _ = sender.send(record);
        }
    }

    /// Applies what another worker published (or this one, read back), without publishing.
    pub fn apply_remote(&self, record: StatusRecord) {
        match record {
            StatusRecord::Status {
                connector,
                task,
                status,
            } => {
                let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
                match status {
                    Some(status) => statuses.insert((connector, task), status),
                    None => statuses.remove(&(connector, task)),
                };
            }
            StatusRecord::Topic {
                connector,
                topic,
                used,
            } => {
                let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
                if used {
                    topics.entry(connector).or_default().insert(topic);
                } else if let Some(used) = topics.get_mut(&connector) {
                    used.remove(&topic);
                }
            }
        }
    }

    /// Records the state of `connector` (task `None`) or one of its tasks.
    pub fn set(
        &self,
        connector: &str,
        task: Option<usize>,
        state: State,
        worker_id: &str,
        trace: Option<String>,
    ) {
        let status = Status {
            state,
            worker_id: worker_id.to_owned(),
            trace,
        };
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((connector.to_owned(), task), status.clone());
        self.publish(StatusRecord::Status {
            connector: connector.to_owned(),
            task,
            status: Some(status),
        });
    }

    /// The status of `connector` or one of its tasks.
    pub fn get(&self, connector: &str, task: Option<usize>) -> Option<Status> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(connector.to_owned(), task))
            .cloned()
    }

    /// The statuses of `connector`'s tasks, by task number.
    pub fn tasks(&self, connector: &str) -> Vec<(usize, Status)> {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|((c, t), s)| (c == connector).then_some((*t, s)))
            .filter_map(|(t, s)| t.map(|t| (t, s.clone())))
            .collect()
    }

    /// Forgets the statuses of tasks `from` and above (after the task count shrank).
    pub fn remove_tasks_from(&self, connector: &str, from: usize) {
        self.forget(|c, t| c == connector && t.is_some_and(|t| t >= from));
    }

    /// Forgets `connector` and its tasks.
    pub fn remove(&self, connector: &str) {
        self.forget(|c, _| c == connector);
    }

    fn forget(&self, gone: impl Fn(&str, Option<usize>) -> bool) {
        let removed: Vec<(String, Option<usize>)> = {
            let mut statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
            let removed = statuses
                .keys()
                .filter(|(c, t)| gone(c, *t))
                .cloned()
                .collect::<Vec<_>>();
            for key in &removed {
                statuses.remove(key);
            }
            removed
        };
        for (connector, task) in removed {
            self.publish(StatusRecord::Status {
                connector,
                task,
                status: None,
            });
        }
    }

    /// Notes that `connector` used `topic`; called for every record, so that a reset is
    /// followed at once by the topics still in use.
    pub fn topic_used(&self, connector: &str, topic: &str) {
        let newly = {
            let mut topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
            let used = topics.entry(connector.to_owned()).or_default();
            !used.contains(topic) && used.insert(topic.to_owned())
        };
        if newly {
            self.publish(StatusRecord::Topic {
                connector: connector.to_owned(),
                topic: topic.to_owned(),
                used: true,
            });
        }
    }

    /// The topics `connector` used since it was created or its topics were reset.
    pub fn topics(&self, connector: &str) -> Vec<String> {
        self.topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(connector)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets the topics `connector` used.
    pub fn reset_topics(&self, connector: &str) {
        let removed = self
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(connector)
            .unwrap_or_default();
        for topic in removed {
            self.publish(StatusRecord::Topic {
                connector: connector.to_owned(),
                topic,
                used: false,
            });
        }
    }
}
