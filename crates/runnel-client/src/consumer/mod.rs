//! The consumer: group membership, assignment, fetch positions, records.

pub mod assignor;
pub mod records;
pub mod subscription;
