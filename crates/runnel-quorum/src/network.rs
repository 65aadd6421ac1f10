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

    /// Sends one request and reads its response, within `timeout`.
    pub(crate) async fn call(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> io::Result<Response> {
        let result = tokio::time::timeout(timeout, self.exchange(request)).await;
        let result = result.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from {} in {timeout:?}", self.address),
            ))
        });
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    async fn exchange(&mut self, request: &Request) -> io::Result<Response> {
        if self.stream.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))?;
        write_frame(stream, request).await?;
        read_frame(stream).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the controller closed the connection",
            )
        })
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
