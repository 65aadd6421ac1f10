//! The producer: partitioning, batching, compression, delivery with retries.

pub mod accumulator;
pub mod partitioner;
