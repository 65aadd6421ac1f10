//! Raft's transport between voters: one TCP connection per peer, opened on demand and
//! dropped on any error (the next call reconnects), one request in flight at a time.

use std::io;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use tokio::net::TcpStream;

use crate::wire::{read_frame, write_frame, Request, Response};
use crate::{MetadataRaft, NodeId};

/// How long a connection attempt may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A connection to one controller listener, reopened after any failure.
#[derive(Debug)]
pub(crate) struct Connection {
    address: String,
    stream: Option<TcpStream>,
}

impl Connection {
    pub(crate) fn new(address: String) -> Connection {
        Connection {
            address,
            stream: None,
        }
    }

    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Sends one request and reads its response, within `timeout`. Cancellation-safe: the
    /// stream is out of `self` while the exchange is under way and comes back only with its
    /// answer read, so a call dropped halfway (its caller gave up) closes the connection
    /// instead of leaving its answer to be read as the next call's.
    pub(crate) async fn call(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        let stream = self.stream.take();
        let exchanged = tokio::time::timeout(timeout, self.exchange(stream, request)).await;
        let (stream, response) = exchanged.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} in {timeout:?}", self.address),
            ))
        })?;
        self.stream = Some(stream);
        Ok(response)
    }

    async fn exchange(
        &self,
        stream: Option<TcpStream>,
        request: &Request,
    ) -> io::Result<(TcpStream, Response)> {
        let mut stream = match stream {
            Some(stream) => stream,
            None => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                        .await
                        .map_err(|_| {
                            io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                        })??;
                stream.set_nodelay(true)?;
                stream
            }
        };
        write_frame(&mut stream, request).await?;
        let response = read_frame(&mut stream).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the controller closed the connection",
            )
        })?;
        Ok((stream, response))
    }
}

/// Makes a [`PeerClient`] per voter.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerNetwork;

impl RaftNetworkFactory<MetadataRaft> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            connection: Connection::new(node.addr.clone()),
        }
    }
}

#[derive(Debug)]
pub(crate) struct PeerClient {
    target: NodeId,
    connection: Connection,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn send<E: std::error::Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
        kind: RPCTypes,
    ) -> Result<Response, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let timeout = option.hard_ttl();
        self.connection
            .call(&request, timeout)
            .await
            .map_err(|error| match error.kind() {
                io::ErrorKind::TimedOut => RPCError::Timeout(Timeout {
                    action: kind,
                    id: 0,
                    target: self.target,
                    timeout,
                }),
                io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::NotFound => RPCError::Unreachable(Unreachable::new(&error)),
                _ => RPCError::Network(NetworkError::new(&error)),
            })
    }

    #[expect(
        clippy::result_large_err,
        reason = "openraft's error type, as its trait returns it"
    )]
    fn unexpected<T, E: std::error::Error>(
        &self,
    ) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>> {
        let error = io::Error::new(io::ErrorKind::InvalidData, "a response of the wrong kind");
        Err(RPCError::Network(NetworkError::new(&error)))
    }
}

impl RaftNetwork<MetadataRaft> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .send(
                Request::AppendEntries(rpc),
                &option,
                RPCTypes::AppendEntries,
            )
            .await?
        {
            Response::AppendEntries(answer) => {
                answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            _ => self.unexpected(),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .send(
                Request::InstallSnapshot(rpc),
                &option,
                RPCTypes::InstallSnapshot,
            )
            .await?
        {
            Response::InstallSnapshot(answer) => {
                answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            _ => self.unexpected(),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self
            .send(Request::Vote(rpc), &option, RPCTypes::Vote)
            .await?
        {
            Response::Vote(answer) => {
                answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
            }
            _ => self.unexpected(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ControllerRequest, ControllerResponse};

    fn delete(name: &str) -> Request {
        Request::Controller(ControllerRequest::DeleteTopic { name: name.into() })
    }

    /// A controller that answers each request with the topic name it carries, the first on
    /// each connection only after a pause.
    async fn echo_controller() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut first = true;
                    while let Ok(Some(request)) = read_frame::<_, Request>(&mut stream).await {
                        if std::mem::take(&mut first) {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let Request::Controller(ControllerRequest::DeleteTopic { name }) = request
                        else {
                            return;
                        };
                        let answer = Response::Controller(ControllerResponse::Refused {
                            code: 0,
                            message: name,
                        });
                        if write_frame(&mut stream, &answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn a_call_given_up_halfway_never_hands_its_answer_to_the_next_call() {
        let mut connection = Connection::new(echo_controller().await);
        let given_up = tokio::time::timeout(
            Duration::from_millis(50),
            connection.call(&delete("first"), Duration::from_secs(5)),
        )
        .await;
        assert!(given_up.is_err(), "the first call was given up");
        let answer = connection
            .call(&delete("second"), Duration::from_secs(5))
            .await
            .expect("an answer");
        let Response::Controller(ControllerResponse::Refused { message, .. }) = answer else {
            panic!("unexpected answer {answer:?}");
        };
        assert_eq!(message, "second", "the answer is the second call's own");
    }
}
