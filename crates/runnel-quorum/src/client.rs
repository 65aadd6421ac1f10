//! [`ControllerClient`]: how a broker or a tool reaches the active controller, whichever
//! voter that is at the moment: it asks the last known leader, follows a "not the
//! controller" answer to the address it names, and otherwise goes round the voters it knows.

use std::time::Duration;

use tokio::time::Instant;

use crate::network::Connection;
use crate::wire::{ControllerRequest, ControllerResponse, Request, Response};

/// How long one voter may take to answer before the next is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after every voter was tried without finding the controller.
const ROUND_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no active controller answered within {0:?} (controllers: {1})")]
    NoController(Duration, String),
}

#[derive(Debug)]
pub struct ControllerClient {
    /// By address: the voters given, and any leader a voter named.
    connections: Vec<Connection>,
    leader: Option<usize>,
    /// The voter the next image fetch starts at.
    image_cursor: usize,
}

impl ControllerClient {
    /// A client of the quorum whose voters (some of them, at least) listen at `addresses`.
    pub fn new<'a>(addresses: impl IntoIterator<Item = &'a String>) -> ControllerClient {
        ControllerClient {
            connections: addresses
                .into_iter()
                .map(|address| Connection::new(address.clone()))
                .collect(),
            leader: None,
            image_cursor: 0,
        }
    }

    fn describe_voters(&self) -> String {
        self.connections
            .iter()
            .map(Connection::address)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The connection to `address`, added if it is new.
    fn connection_to(&mut self, address: &str) -> usize {
        match self
            .connections
            .iter()
            .position(|connection| connection.address() == address)
        {
            Some(at) => at,
            None => {
                self.connections.push(Connection::new(address.to_owned()));
                self.connections.len() - 1
            }
        }
    }

    async fn ask(
        &mut self,
        at: usize,
        request: &Request,
        timeout: Duration,
    ) -> Option<ControllerResponse> {
        let connection = self.connections.get_mut(at)?;
        match connection.call(request, timeout).await {
            Ok(Response::Controller(response)) => Some(response),
            Ok(_) => None,
            Err(error) => {
                tracing::debug!(controller = connection.address(), %error, "controller unreachable");
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
            let at = match self.leader {
                Some(leader) => leader,
                None => {
                    if next_voter >= self.connections.len() {
                        next_voter = 0;
                        tokio::time::sleep(ROUND_PAUSE).await;
                    }
                    next_voter += 1;
                    next_voter - 1
                }
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::NoController(within, self.describe_voters()));
            }
            match self.ask(at, &request, left.min(CALL_TIMEOUT)).await {
                Some(ControllerResponse::NotController { leader_address, .. }) => {
                    // Follow a named leader; without one, go on round the voters.
                    let named = leader_address.map(|address| self.connection_to(&address));
                    self.leader = named.filter(|&named| named != at);
                }
                Some(response) => {
                    self.leader = Some(at);
                    return Ok(response);
                }
                None => self.leader = None,
            }
        }
    }

    /// Asks a voter for the metadata image past `after`, waiting up to `wait` for it to get
    /// there. Voters answer from their own image, and one may lag (cut off from the leader,
    /// slow to apply): after a wait that brought nothing, the next call starts at another
    /// voter, so no lagging voter holds a broker's image back for long.
    pub async fn fetch_image(
        &mut self,
        after: u64,
        wait: Duration,
    ) -> Result<ControllerResponse, ClientError> {
        let request = Request::Controller(ControllerRequest::FetchImage {
            after,
            wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        });
        let count = self.connections.len();
        for step in 0..count {
            let at = (self.image_cursor + step) % count;
            if let Some(response) = self.ask(at, &request, wait + CALL_TIMEOUT).await {
                self.image_cursor = match &response {
                    ControllerResponse::Image(Some(_)) => at,
                    _ => (at + 1) % count,
                };
                return Ok(response);
            }
        }
        Err(ClientError::NoController(wait, self.describe_voters()))
    }
}
