//! [`ControllerClient`]: how a broker or a tool reaches the active controller, whichever
//! voter that is at the moment: it asks the last known leader, follows a "not the
//! controller" answer to the node it names, and otherwise goes round the voters.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::network::Connection;
use crate::wire::{ControllerRequest, ControllerResponse, Request, Response};
use crate::NodeId;

/// How long one voter may take to answer before the next is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after every voter was tried without finding the controller.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no active controller answered within {0:?} (voters: {1})")]
    NoController(Duration, String),
}

#[derive(Debug)]
pub struct ControllerClient {
    voters: Vec<NodeId>,
    connections: BTreeMap<NodeId, Connection>,
    leader: Option<NodeId>,
}

impl ControllerClient {
    /// A client of the quorum whose voters listen at these addresses.
    pub fn new(voters: &BTreeMap<NodeId, String>) -> ControllerClient {
        ControllerClient {
            voters: voters.keys().copied().collect(),
            connections: voters
                .iter()
                .map(|(&id, address)| (id, Connection::new(address.clone())))
                .collect(),
            leader: None,
        }
    }

    fn describe_voters(&self) -> String {
        self.connections
            .iter()
            .map(|(id, connection)| format!("{id}@{}", connection.address()))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn ask(
        &mut self,
        voter: NodeId,
        request: &Request,
        timeout: Duration,
    ) -> Option<ControllerResponse> {
        let connection = self.connections.get_mut(&voter)?;
        match connection.call(request, timeout).await {
            Ok(Response::Controller(response)) => Some(response),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(voter, %error, "controller unreachable");
                None
            }
        }
    }

    /// Sends `request` to the active controller, trying for up to `within`. Every answer
    /// but "not the controller" is returned, refusals included.
    pub async fn call(
        &mut self,
        request: ControllerRequest,
        within: Duration,
    ) -> Result<ControllerResponse, ClientError> {
        let deadline = Instant::now() + within;
        let request = Request::Controller(request);
        let mut next_voter = 0usize;
        loop {
            let voter = match self.leader {
                Some(leader) => leader,
                None => {
                    if next_voter == self.voters.len() {
                        next_voter = 0;
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                    next_voter += 1;
                    self.voters[next_voter - 1]
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoController(within, self.describe_voters()));
            }
            match self.ask(voter, &request, left.min(CALL_TIMEOUT)).await {
                Some(ControllerResponse::NotController { leader }) => {
                    // Follow a named leader once; without one, go on round the voters.
                    self.leader = leader
                        .filter(|&named| named != voter && self.connections.contains_key(&named));
                }
                Some(response) => {
                    self.leader = Some(voter);
                    return Ok(response);
                }
                None => self.leader = None,
            }
        }
    }

    /// Asks any voter (the last leader first) for the metadata image past `after`, waiting up
    /// to `wait` for it to get there.
    pub async fn fetch_image(
        &mut self,
        after: u64,
        wait: Duration,
    ) -> Result<ControllerResponse, ClientError> {
        let request = Request::Controller(ControllerRequest::FetchImage {
            after,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let mut order = self.voters.clone();
        if let Some(leader) = self.leader {
            order.retain(|&voter| voter != leader);
            order.insert(0, leader);
        }
        for voter in order {
            if let Some(response) = self.ask(voter, &request, wait + CALL_TIMEOUT).await {
                return Ok(response);
            }
        }
        Err(ClientError::NoController(wait, self.describe_voters()))
    }
}
