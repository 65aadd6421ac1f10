//! Deterministic simulation of a cluster's replication.
//!
//! A [`World`] is a few brokers replicating one partition under one controller, every step
//! drawn from a seed: produces (some to stale leaders), follower fetches with KIP-320
//! divergence checks, fsyncs, ISR changes through the controller, heartbeats and fencing,
//! consumers reading below the high watermark, and the faults: `kill -9`, power cuts, a
//! broker paused or cut off from everyone, messages lost or overtaken by later ones,
//! metadata that arrives late. The rules are the product's own state machines (`runnel-controller`,
//! `runnel-replication`) and each replica's log is the product's own (`runnel-storage`); only
//! the network, disks and clock are simulated, so a seed replays exactly, and a failing seed
//! is a bug report with its trace.
//!
//! The Raft quorum is not simulated here: the controller is one always-available decider
//! (the quorum's own tests cover its failures).

mod network;
mod replica_log;
mod world;

pub use replica_log::{Entry, ReplicaLog};
pub use world::{Outcome, Violation, World, WorldConfig};
