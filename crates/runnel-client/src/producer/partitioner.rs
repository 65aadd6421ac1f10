//! Choosing a record's partition.
//!
//! [`DefaultPartitioner`] places keyed records exactly as the Java client and librdkafka's
//! `murmur2_random` do (`murmur2(key) & 0x7fffffff % partitions`), so a key lands on the same
//! partition whichever of those clients wrote it. Records without a key stick to one partition
//! per topic until a batch for it is complete, then move to another (KIP-480): fuller batches,
//! fewer requests, and over time an even spread.
//!
//! Nothing here reads a clock or the operating system's randomness: the sticky choice draws from
//! a xorshift generator seeded by whoever builds the partitioner, so a test (or a simulation)
//! that fixes the seed gets the same partitions every run.
//!
//! ```
//! use runnel_client::producer::partitioner::{
//!     murmur2, DefaultPartitioner, PartitionChoice, Partitioner,
//! };
//!
//! let partitioner = DefaultPartitioner::new(42);
//! // Kafka's own test vector for `Utils.murmur2`.
//! assert_eq!(murmur2(b"foobar"), -790332482);
//! assert_eq!(
//!     partitioner.partition("orders", Some(b"foobar"), 12),
//!     PartitionChoice::Partition((-790332482i32 & 0x7fff_ffff) % 12),
//! );
//! // No key: the topic's sticky partition, the same until a batch completes there.
//! let PartitionChoice::Partition(sticky) = partitioner.partition("orders", None, 12) else {
//!     unreachable!()
//! };
//! assert_eq!(partitioner.partition("orders", None, 12), PartitionChoice::Partition(sticky));
//! partitioner.on_new_batch("orders", 12, sticky);
//! assert_ne!(partitioner.partition("orders", None, 12), PartitionChoice::Partition(sticky));
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Where a partitioner sends a record.
///
/// ```
/// use runnel_client::producer::partitioner::{PartitionChoice, Partitioner, RoundRobinPartitioner};
///
/// let choice = RoundRobinPartitioner::new().partition("orders", None, 4);
/// assert_eq!(choice, PartitionChoice::Partition(0));
/// assert_ne!(choice, PartitionChoice::Sticky);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionChoice {
    /// This partition, in `0..partition_count`.
    Partition(i32),
    /// The producer's sticky partition for the topic (see [`StickyPartitions`]): for
    /// user-defined partitioners that only care where some records go.
    Sticky,
}

/// Picks the partition of each record sent without an explicit partition.
///
/// Contract for implementations:
/// - `partition` is called once per record, from any thread, with `partition_count >= 1` taken
///   from the topic's current metadata; a `Partition(p)` answer must be in `0..partition_count`.
/// - `on_new_batch(topic, partition_count, previous)` is called when the producer's batch for
///   partition `previous` of `topic` became full: a sticky implementation moves away from
///   `previous` if that is where it sticks. It may be called for partitions it never chose.
///
/// A user-defined partitioner that pins one tenant's records to partition 0 and lets the
/// producer's sticky partition take the rest:
///
/// ```
/// use runnel_client::producer::partitioner::{PartitionChoice, Partitioner};
///
/// struct PinTenant;
///
/// impl Partitioner for PinTenant {
///     fn partition(&self, _topic: &str, key: Option<&[u8]>, _count: i32) -> PartitionChoice {
///         match key {
///             Some(key) if key.starts_with(b"tenant-0/") => PartitionChoice::Partition(0),
///             _ => PartitionChoice::Sticky,
///         }
///     }
/// }
///
/// assert_eq!(PinTenant.partition("t", Some(b"tenant-0/a"), 8), PartitionChoice::Partition(0));
/// assert_eq!(PinTenant.partition("t", None, 8), PartitionChoice::Sticky);
/// ```
pub trait Partitioner: Send + Sync {
    /// The partition for one record of `topic` with `key`, given the topic's
    /// `partition_count` (at least 1).
    fn partition(&self, topic: &str, key: Option<&[u8]>, partition_count: i32) -> PartitionChoice;

    /// The producer's batch for partition `previous` of `topic` became full; sticky
    /// partitioners move on. Does nothing by default.
    fn on_new_batch(&self, _topic: &str, _partition_count: i32, _previous: i32) {}
}

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, reading the input as
/// little-endian 4-byte words, bit for bit as the Java client computes it.
///
/// ```
/// use runnel_client::producer::partitioner::murmur2;
///
/// // Test vectors from Kafka's `UtilsTest.testMurmur2`.
/// assert_eq!(murmur2(b"21"), -973932308);
/// assert_eq!(murmur2(b"foobar"), -790332482);
/// ```
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java takes the length as an int; keys over 2 GiB cannot reach a partitioner.
    let mut hash = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition the Java client picks for a key: `toPositive(murmur2(key)) % partition_count`,
/// where `toPositive` clears the sign bit (it is not `abs`).
///
/// ```
/// use runnel_client::producer::partitioner::murmur2_partition;
///
/// // murmur2(b"foobar") is negative; the sign bit is cleared, not negated.
/// assert_eq!(murmur2_partition(b"foobar", 12), (-790332482i32 & 0x7fff_ffff) % 12);
/// assert_eq!(murmur2_partition(b"anything", 1), 0);
/// ```
pub fn murmur2_partition(key: &[u8], partition_count: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partition_count.max(1)
}

/// Kafka's default: murmur2 on keys, sticky per topic for records without a key (KIP-480).
///
/// ```
/// use runnel_client::producer::partitioner::{
///     murmur2_partition, DefaultPartitioner, PartitionChoice, Partitioner,
/// };
///
/// let partitioner = DefaultPartitioner::new(7);
/// // A key always lands where the Java client would put it, whatever the seed.
/// assert_eq!(
///     partitioner.partition("orders", Some(b"customer-7"), 6),
///     PartitionChoice::Partition(murmur2_partition(b"customer-7", 6)),
/// );
/// ```
#[derive(Debug)]
pub struct DefaultPartitioner {
    sticky: StickyPartitions,
}

impl DefaultPartitioner {
    /// `seed` drives the choice of sticky partitions; give each producer its own (from the
    /// clock or the OS), so that many producers do not all stick to the same partitions.
    pub fn new(seed: u64) -> Self {
        DefaultPartitioner {
            sticky: StickyPartitions::new(seed),
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&self, topic: &str, key: Option<&[u8]>, partition_count: i32) -> PartitionChoice {
        match key {
            Some(key) => PartitionChoice::Partition(murmur2_partition(key, partition_count)),
            None => PartitionChoice::Partition(self.sticky.partition(topic, partition_count)),
        }
    }

    fn on_new_batch(&self, topic: &str, partition_count: i32, previous: i32) {
        self.sticky.on_new_batch(topic, partition_count, previous);
    }
}

/// Every record to the next partition in turn, per topic, keys ignored (Java's
/// `RoundRobinPartitioner`).
///
/// ```
/// use runnel_client::producer::partitioner::{PartitionChoice, Partitioner, RoundRobinPartitioner};
///
/// let partitioner = RoundRobinPartitioner::new();
/// let picks: Vec<_> = (0..4).map(|_| partitioner.partition("t", Some(b"same-key"), 3)).collect();
/// assert_eq!(picks, [0, 1, 2, 0].map(PartitionChoice::Partition));
/// // Each topic has its own turn.
/// assert_eq!(partitioner.partition("other", None, 3), PartitionChoice::Partition(0));
/// ```
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    next_by_topic: Mutex<HashMap<String, u32>>,
}

impl RoundRobinPartitioner {
    /// A partitioner whose every topic starts at partition 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&self, topic: &str, _key: Option<&[u8]>, partition_count: i32) -> PartitionChoice {
        let mut next_by_topic = self
            .next_by_topic
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let counter = match next_by_topic.get_mut(topic) {
            Some(counter) => counter,
            None => next_by_topic.entry(topic.to_owned()).or_insert(0),
        };
        let value = *counter;
        *counter = counter.wrapping_add(1);
        PartitionChoice::Partition((value & 0x7fff_ffff) as i32 % partition_count.max(1))
    }
}

/// The sticky partition of each topic, for records without a key: one partition until
/// [`on_new_batch`](Self::on_new_batch) reports its batch full, then a different one drawn
/// from a seeded xorshift generator (as Java's `StickyPartitionCache`, with the randomness
/// injected). Shared by threads through a mutex held for a map lookup.
///
/// ```
/// use runnel_client::producer::partitioner::StickyPartitions;
///
/// let sticky = StickyPartitions::new(1);
/// let first = sticky.partition("clicks", 8);
/// assert_eq!(sticky.partition("clicks", 8), first);
/// // A full batch elsewhere changes nothing; a full batch on the sticky partition moves it.
/// sticky.on_new_batch("clicks", 8, (first + 1) % 8);
/// assert_eq!(sticky.partition("clicks", 8), first);
/// sticky.on_new_batch("clicks", 8, first);
/// assert_ne!(sticky.partition("clicks", 8), first);
/// ```
#[derive(Debug)]
pub struct StickyPartitions {
    state: Mutex<StickyState>,
}

#[derive(Debug)]
struct StickyState {
    random: XorShift64,
    partition_by_topic: HashMap<String, i32>,
}

impl StickyPartitions {
    /// No topic stuck yet; `seed` drives every later choice, so equal seeds give equal choices.
    pub fn new(seed: u64) -> Self {
        StickyPartitions {
            state: Mutex::new(StickyState {
                random: XorShift64::new(seed),
                partition_by_topic: HashMap::new(),
            }),
        }
    }

    /// The topic's sticky partition, choosing one on first use (or if the topic now has fewer
    /// partitions than the stuck one, as stale metadata can make it look).
    pub fn partition(&self, topic: &str, partition_count: i32) -> i32 {
        let partition_count = partition_count.max(1);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let StickyState {
            random,
            partition_by_topic,
        } = &mut *state;
        match partition_by_topic.get_mut(topic) {
            Some(partition) if *partition < partition_count => *partition,
            Some(partition) => {
                *partition = random.below(partition_count);
                *partition
            }
            None => {
                let partition = random.below(partition_count);
                partition_by_topic.insert(topic.to_owned(), partition);
                partition
            }
        }
    }

    /// The batch for `previous` is full: if the topic sticks to `previous`, move to a different
    /// partition (when there is more than one). Otherwise someone already moved; nothing to do.
    pub fn on_new_batch(&self, topic: &str, partition_count: i32, previous: i32) {
        let partition_count = partition_count.max(1);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let StickyState {
            random,
            partition_by_topic,
        } = &mut *state;
        let Some(current) = partition_by_topic.get_mut(topic) else {
            return;
        };
        if *current != previous {
            return;
        }
        *current = if partition_count == 1 {
            0
        } else {
            // Uniform over the other partitions: skip over `previous`.
            let pick = random.below(partition_count - 1);
            if pick >= previous && previous >= 0 {
                pick + 1
            } else {
                pick
            }
        };
        debug_assert!((0..partition_count).contains(current));
    }
}

/// Marsaglia's xorshift64*: small, fast, and plenty for spreading partitions. Not for secrets.
#[derive(Debug, Clone)]
struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    fn new(seed: u64) -> Self {
        // The state must never be zero; mix the seed so that nearby seeds diverge at once.
        let state = (seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        XorShift64 {
            state: if state == 0 {
                0x2545_f491_4f6c_dd1d
            } else {
                state
            },
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound >= 1`); the modulo bias over 32 high bits is negligible
    /// for partition counts.
    fn below(&mut self, bound: i32) -> i32 {
        debug_assert!(bound >= 1);
        ((self.next() >> 32) % bound as u64) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Kafka's `UtilsTest.testMurmur2` vectors (clients/src/test/java/org/apache/kafka/common/
    /// utils/UtilsTest.java), then values computed from the Java algorithm for the tail lengths
    /// and bytes above 0x7f (Java's signed bytes are masked with `& 0xff`).
    const MURMUR2_VECTORS: &[(&[u8], i32)] = &[
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (
            b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        (b"abc", 479470107),
        (b"1", -1993445489),
        (b"12", 126087238),
        (b"123", -267702483),
        (b"1234", -1614185708),
        (b"12345", -1188365604),
        (b"", 275646681),
        (b"\xff\xfe\x80", -160726397),
        (b"kafka", -798503068),
        (b"runnel", -1500294524),
    ];

    #[test]
    fn murmur2_matches_kafka() {
        for (input, expected) in MURMUR2_VECTORS {
            assert_eq!(
                murmur2(input),
                *expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_records_land_where_the_java_client_puts_them() {
        // toPositive(murmur2("key-i")) % n, computed from the Java algorithm.
        let partitioner = DefaultPartitioner::new(1);
        let on_ten: Vec<i32> = (0..10)
            .map(
                |i| match partitioner.partition("t", Some(format!("key-{i}").as_bytes()), 10) {
                    PartitionChoice::Partition(p) => p,
                    PartitionChoice::Sticky => unreachable!(),
                },
            )
            .collect();
        assert_eq!(on_ten, [1, 0, 2, 7, 3, 8, 0, 5, 5, 7]);
        let on_three: Vec<i32> = (0..10)
            .map(|i| murmur2_partition(format!("key-{i}").as_bytes(), 3))
            .collect();
        assert_eq!(on_three, [1, 0, 2, 2, 0, 2, 2, 1, 1, 0]);
    }

    #[test]
    fn to_positive_clears_the_sign_bit_rather_than_negating() {
        // murmur2("21") = -973932308 = 0xc5f3_a6ec; & 0x7fffffff = 1173551340, while
        // abs() would give 973932308: the two differ modulo 7.
        assert_eq!(murmur2_partition(b"21", 7), 1173551340 % 7);
        assert_ne!(1173551340 % 7, 973932308 % 7);
    }

    #[test]
    fn null_keys_stick_until_the_batch_is_full() {
        let partitioner = DefaultPartitioner::new(7);
        let first = partitioner.partition("t", None, 6);
        for _ in 0..100 {
            assert_eq!(partitioner.partition("t", None, 6), first);
        }
        let PartitionChoice::Partition(first) = first else {
            unreachable!()
        };
        // A full batch elsewhere changes nothing.
        partitioner.on_new_batch("t", 6, (first + 1) % 6);
        assert_eq!(
            partitioner.partition("t", None, 6),
            PartitionChoice::Partition(first)
        );
        partitioner.on_new_batch("t", 6, first);
        let PartitionChoice::Partition(second) = partitioner.partition("t", None, 6) else {
            unreachable!()
        };
        assert_ne!(second, first);
        assert!((0..6).contains(&second));
        // Another topic has its own sticky partition, untouched.
        let other = partitioner.partition("u", None, 6);
        partitioner.on_new_batch("t", 6, second);
        assert_eq!(partitioner.partition("u", None, 6), other);
    }

    #[test]
    fn sticky_partition_with_one_partition_stays_zero() {
        let sticky = StickyPartitions::new(3);
        assert_eq!(sticky.partition("t", 1), 0);
        sticky.on_new_batch("t", 1, 0);
        assert_eq!(sticky.partition("t", 1), 0);
    }

    #[test]
    fn sticky_partition_is_rechosen_when_the_topic_looks_smaller() {
        let sticky = StickyPartitions::new(11);
        let mut seen = Vec::new();
        for _ in 0..50 {
            let p = sticky.partition("t", 100);
            seen.push(p);
            sticky.on_new_batch("t", 100, p);
        }
        let big = seen.iter().copied().find(|&p| p >= 2);
        assert!(
            big.is_some(),
            "50 draws from 100 partitions all below 2: {seen:?}"
        );
        while sticky.partition("t", 100) < 2 {
            let p = sticky.partition("t", 100);
            sticky.on_new_batch("t", 100, p);
        }
        assert!(sticky.partition("t", 2) < 2);
    }

    #[test]
    fn same_seed_same_partitions() {
        let run = |seed| {
            let partitioner = DefaultPartitioner::new(seed);
            (0..20)
                .map(|_| {
                    let PartitionChoice::Partition(p) = partitioner.partition("t", None, 16) else {
                        unreachable!()
                    };
                    partitioner.on_new_batch("t", 16, p);
                    p
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn sticky_switches_spread_over_all_partitions() {
        let sticky = StickyPartitions::new(99);
        let mut counts = [0u32; 8];
        for _ in 0..8_000 {
            let p = sticky.partition("t", 8);
            counts[p as usize] += 1;
            sticky.on_new_batch("t", 8, p);
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn round_robin_cycles_per_topic_ignoring_keys() {
        let partitioner = RoundRobinPartitioner::new();
        let picks: Vec<_> = (0..7)
            .map(|i| partitioner.partition("a", Some(&[i]), 3))
            .collect();
        use PartitionChoice::Partition as P;
        assert_eq!(picks, [P(0), P(1), P(2), P(0), P(1), P(2), P(0)]);
        assert_eq!(partitioner.partition("b", None, 3), P(0));
        assert_eq!(partitioner.partition("a", None, 3), P(1));
    }

    #[test]
    fn partitioners_are_usable_as_trait_objects() {
        let partitioners: Vec<Box<dyn Partitioner>> = vec![
            Box::new(DefaultPartitioner::new(0)),
            Box::new(RoundRobinPartitioner::new()),
        ];
        for partitioner in &partitioners {
            assert!(matches!(
                partitioner.partition("t", Some(b"k"), 4),
                PartitionChoice::Partition(0..=3)
            ));
        }
    }

    proptest! {
        #[test]
        fn every_choice_is_in_range(
            seed: u64,
            partition_count in 1i32..1000,
            keys in proptest::collection::vec(
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 1..50),
        ) {
            let default = DefaultPartitioner::new(seed);
            let round_robin = RoundRobinPartitioner::new();
            for key in &keys {
                for partitioner in [&default as &dyn Partitioner, &round_robin] {
                    match partitioner.partition("t", key.as_deref(), partition_count) {
                        PartitionChoice::Partition(p) => {
                            prop_assert!((0..partition_count).contains(&p));
                            partitioner.on_new_batch("t", partition_count, p);
                        }
                        PartitionChoice::Sticky => prop_assert!(false, "no built-in answers Sticky"),
                    }
                }
            }
        }

        #[test]
        fn same_key_same_partition(key: Vec<u8>, partition_count in 1i32..10_000, seed: u64) {
            let partitioner = DefaultPartitioner::new(seed);
            let first = partitioner.partition("t", Some(&key), partition_count);
            partitioner.on_new_batch("t", partition_count, 0);
            prop_assert_eq!(partitioner.partition("other", Some(&key), partition_count), first);
        }
    }
}
