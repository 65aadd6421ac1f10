//! Server-side partition assignors of the consumer group protocol (KIP-848).
//!
//! In a `consumer` group the coordinator, not a client, decides which member should own which
//! partition: each time the group epoch moves, [`Assignor::assign`] turns the members'
//! subscriptions and the subscribed topics' partition counts into a *target assignment*. The
//! members then converge on it incrementally (see [`crate::consumer`]).
//!
//! Two assignors, named as Kafka names them, so `group.remote.assignor` works unchanged:
//!
//! - `uniform` (the default): spreads every partition of every subscribed topic across the members
//!   subscribed to that topic so that member loads differ by at most one partition whenever the
//!   subscriptions allow it (always, when every member subscribes to the same topics). It is
//!   sticky: a member keeps the partitions of its previous target assignment unless balance needs
//!   one of them elsewhere, so a join or a leave moves as few partitions as possible.
//! - `range`: for each topic, the members subscribed to it, sorted by member id, get contiguous
//!   ranges of its partitions; the first `partitions % members` members get one extra. Members
//!   subscribed to the same co-partitioned topics thus get the same partition numbers of each.
//!
//! The assignors are pure functions: no I/O, no clock, no randomness, and the same input always
//! gives the same output (ties are broken by member id and topic id).
//!
//! ```
//! use std::collections::{BTreeMap, BTreeSet};
//! use runnel_group::assignor::{Assignor, MemberSpec};
//!
//! let topic = uuid::Uuid::from_u128(1);
//! let spec = MemberSpec { subscribed_topic_ids: BTreeSet::from([topic]), ..MemberSpec::default() };
//! let members = BTreeMap::from([("a".to_string(), spec.clone()), ("b".to_string(), spec)]);
//! let target = Assignor::Range.assign(&members, &BTreeMap::from([(topic, 3)]));
//! assert_eq!(target["a"][&topic], BTreeSet::from([0, 1]));
//! assert_eq!(target["b"][&topic], BTreeSet::from([2]));
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use uuid::Uuid;

/// Partition numbers by topic id: an assignment, owned partitions, a subscription's partitions.
pub type TopicPartitionSet = BTreeMap<Uuid, BTreeSet<i32>>;

/// What an assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// The topics the member subscribes to (names and regular expressions already resolved).
    pub subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment; the uniform assignor keeps what it can of it.
    pub current: TopicPartitionSet,
}

/// A server-side assignor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Assignor {
    /// Even spread over all subscribed partitions, sticky.
    Uniform,
    /// Contiguous ranges per topic, by member id.
    Range,
}

impl Assignor {
    /// Every assignor this broker serves.
    pub const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    /// The name clients use in `group.remote.assignor` and describe shows.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// The assignor called `name`, if this broker serves one.
    pub fn from_name(name: &str) -> Option<Assignor> {
        Assignor::ALL
            .into_iter()
            .find(|assignor| assignor.name() == name)
    }

    /// The target assignment: every member of `members` gets an entry (possibly empty), and
    /// every partition of a topic in `partition_counts` that at least one member subscribes to
    /// goes to exactly one member subscribed to it. Subscribed topics absent from
    /// `partition_counts` (unknown or deleted) are ignored.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSpec>,
        partition_counts: &BTreeMap<Uuid, i32>,
    ) -> BTreeMap<String, TopicPartitionSet> {
        match self {
            Assignor::Uniform => uniform(members, partition_counts),
            Assignor::Range => range(members, partition_counts),
        }
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn range(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitionSet> {
    let mut target: BTreeMap<String, TopicPartitionSet> = members
        .keys()
        .map(|id| (id.clone(), TopicPartitionSet::new()))
        .collect();
    for (&topic, &count) in partition_counts {
        // BTreeMap iteration order is the member-id order the ranges follow.
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.subscribed_topic_ids.contains(&topic))
            .map(|(id, _)| id)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let member_count = subscribers.len() as i32;
        let (base, extra) = (count / member_count, count % member_count);
        let mut start = 0;
        for (index, member_id) in subscribers.into_iter().enumerate() {
            let length = base + i32::from((index as i32) < extra);
            if length > 0 {
                if let Some(assignment) = target.get_mut(member_id) {
                    assignment.insert(topic, (start..start + length).collect());
                }
            }
            start += length;
        }
        debug_assert_eq!(start, count);
    }
    target
}

fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partition_counts: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitionSet> {
    let specs: Vec<&MemberSpec> = members.values().collect();
    let mut held: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); specs.len()];
    let mut taken: HashSet<(Uuid, i32)> = HashSet::new();

    // Stickiness: each member first keeps what it still may hold of its previous assignment.
    for (index, spec) in specs.iter().enumerate() {
        for (topic, partitions) in &spec.current {
            let Some(&count) = partition_counts.get(topic) else {
                continue;
            };
            if !spec.subscribed_topic_ids.contains(topic) {
                continue;
            }
            for &partition in partitions.range(0..count.max(0)) {
                if taken.insert((*topic, partition)) {
                    held[index].insert((*topic, partition));
                }
            }
        }
    }

    // The rest go to the least loaded subscriber, most constrained topics first, which keeps
    // the spread even when subscriptions differ.
    let mut subscribers: Vec<(Vec<usize>, Uuid, i32)> = partition_counts
        .iter()
        .filter(|(_, &count)| count > 0)
        .map(|(&topic, &count)| {
            let indexes = (0..specs.len())
                .filter(|&index| specs[index].subscribed_topic_ids.contains(&topic))
                .collect();
            (indexes, topic, count)
        })
        .filter(|(indexes, _, _)| !Vec::is_empty(indexes))
        .collect();
    subscribers.sort_by_key(|(indexes, topic, _)| (indexes.len(), *topic));
    for (indexes, topic, count) in &subscribers {
        for partition in 0..*count {
            if taken.contains(&(*topic, partition)) {
                continue;
            }
            let least_loaded = indexes
                .iter()
                .copied()
                .min_by_key(|&index| (held[index].len(), index));
            if let Some(index) = least_loaded {
                taken.insert((*topic, partition));
                held[index].insert((*topic, partition));
            }
        }
    }

    // Balance: move one partition at a time from the most to the least loaded member that may
    // take it, while their loads differ by two or more. Each move lowers the sum of squared
    // loads, so the loop ends; every move is one a balanced assignment needs.
    loop {
        let mut by_load: Vec<usize> = (0..specs.len()).collect();
        by_load.sort_by_key(|&index| (held[index].len(), index));
        let mut transfer = None;
        'search: for &receiver in &by_load {
            for &donor in by_load.iter().rev() {
                if held[donor].len() <= held[receiver].len() + 1 {
                    break;
                }
                let movable = held[donor]
                    .iter()
                    .rev()
                    .find(|(topic, _)| specs[receiver].subscribed_topic_ids.contains(topic));
                if let Some(&partition) = movable {
                    transfer = Some((donor, receiver, partition));
                    break 'search;
                }
            }
        }
        let Some((donor, receiver, partition)) = transfer else {
            break;
        };
        held[donor].remove(&partition);
        held[receiver].insert(partition);
    }

    members
        .keys()
        .zip(held)
        .map(|(id, partitions)| {
            let mut assignment = TopicPartitionSet::new();
            for (topic, partition) in partitions {
                assignment.entry(topic).or_default().insert(partition);
            }
            (id.clone(), assignment)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec(topics: &[Uuid]) -> MemberSpec {
        MemberSpec {
            subscribed_topic_ids: topics.iter().copied().collect(),
            current: TopicPartitionSet::new(),
        }
    }

    fn loads(target: &BTreeMap<String, TopicPartitionSet>) -> Vec<usize> {
        target
            .values()
            .map(|a| a.values().map(BTreeSet::len).sum())
            .collect()
    }

    /// Every subscribed partition is assigned exactly once, to a member subscribed to its topic.
    fn check_complete_and_disjoint(
        members: &BTreeMap<String, MemberSpec>,
        counts: &BTreeMap<Uuid, i32>,
        target: &BTreeMap<String, TopicPartitionSet>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            target.keys().collect::<Vec<_>>(),
            members.keys().collect::<Vec<_>>()
        );
        let mut seen = BTreeSet::new();
        for (member, assignment) in target {
            for (topic, partitions) in assignment {
                prop_assert!(members[member].subscribed_topic_ids.contains(topic));
                for &partition in partitions {
                    prop_assert!(partition >= 0 && partition < counts[topic]);
                    prop_assert!(
                        seen.insert((*topic, partition)),
                        "{topic}/{partition} twice"
                    );
                }
            }
        }
        for (topic, &count) in counts {
            let subscribed = members
                .values()
                .any(|m| m.subscribed_topic_ids.contains(topic));
            for partition in 0..count {
                prop_assert_eq!(seen.contains(&(*topic, partition)), subscribed);
            }
        }
        Ok(())
    }

    #[test]
    fn names_round_trip() {
        for assignor in Assignor::ALL {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::from_name("cooperative-sticky"), None);
        assert_eq!(Assignor::Uniform.to_string(), "uniform");
    }

    #[test]
    fn range_gives_contiguous_ranges_in_member_id_order() {
        let (t1, t2) = (topic(1), topic(2));
        let members = BTreeMap::from([
            ("c".to_string(), spec(&[t1, t2])),
            ("a".to_string(), spec(&[t1])),
            ("b".to_string(), spec(&[t1, t2])),
        ]);
        let target = Assignor::Range.assign(&members, &BTreeMap::from([(t1, 7), (t2, 3)]));
        assert_eq!(
            target["a"],
            TopicPartitionSet::from([(t1, BTreeSet::from([0, 1, 2]))])
        );
        assert_eq!(
            target["b"],
            TopicPartitionSet::from([(t1, BTreeSet::from([3, 4])), (t2, BTreeSet::from([0, 1]))])
        );
        assert_eq!(
            target["c"],
            TopicPartitionSet::from([(t1, BTreeSet::from([5, 6])), (t2, BTreeSet::from([2]))])
        );
    }

    #[test]
    fn uniform_spreads_across_topics_and_ignores_unknown_topics() {
        let (t1, t2, missing) = (topic(1), topic(2), topic(9));
        let members: BTreeMap<String, MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|id| (id.to_string(), spec(&[t1, t2, missing])))
            .collect();
        let counts = BTreeMap::from([(t1, 4), (t2, 5)]);
        let target = Assignor::Uniform.assign(&members, &counts);
        assert_eq!(loads(&target), vec![3, 3, 3]);
        assert!(target.values().all(|a| !a.contains_key(&missing)));
    }

    #[test]
    fn uniform_keeps_previous_partitions_when_balanced() {
        let t1 = topic(1);
        let mut a = spec(&[t1]);
        a.current = TopicPartitionSet::from([(t1, BTreeSet::from([3, 4, 5]))]);
        let mut b = spec(&[t1]);
        b.current = TopicPartitionSet::from([(t1, BTreeSet::from([0, 1, 2]))]);
        let members = BTreeMap::from([("a".to_string(), a.clone()), ("b".to_string(), b.clone())]);
        let target = Assignor::Uniform.assign(&members, &BTreeMap::from([(t1, 6)]));
        assert_eq!(target["a"], a.current);
        assert_eq!(target["b"], b.current);
    }

    #[test]
    fn uniform_drops_partitions_of_unsubscribed_topics_and_out_of_range_partitions() {
        let (t1, t2) = (topic(1), topic(2));
        let mut a = spec(&[t1]);
        a.current =
            TopicPartitionSet::from([(t1, BTreeSet::from([0, 7])), (t2, BTreeSet::from([0]))]);
        let members = BTreeMap::from([("a".to_string(), a)]);
        let target = Assignor::Uniform.assign(&members, &BTreeMap::from([(t1, 2), (t2, 1)]));
        assert_eq!(
            target["a"],
            TopicPartitionSet::from([(t1, BTreeSet::from([0, 1]))])
        );
    }

    #[test]
    fn no_members_or_no_partitions() {
        let t1 = topic(1);
        for assignor in Assignor::ALL {
            assert!(assignor
                .assign(&BTreeMap::new(), &BTreeMap::from([(t1, 3)]))
                .is_empty());
            let members = BTreeMap::from([("a".to_string(), spec(&[t1]))]);
            let target = assignor.assign(&members, &BTreeMap::from([(t1, 0)]));
            assert_eq!(target["a"], TopicPartitionSet::new());
        }
    }

    /// Up to 8 members, up to 4 topics of up to 24 partitions, each member subscribed to a
    /// random non-empty subset of the topics.
    fn scenario() -> impl Strategy<Value = (BTreeMap<String, MemberSpec>, BTreeMap<Uuid, i32>)> {
        (1usize..=4, 1usize..=8).prop_flat_map(|(topics, members)| {
            (
                proptest::collection::vec(0i32..24, topics),
                proptest::collection::vec(
                    proptest::collection::vec(any::<bool>(), topics),
                    members,
                ),
            )
                .prop_map(|(counts, subscriptions)| {
                    let counts: BTreeMap<Uuid, i32> = counts
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| (topic(i as u128 + 1), c))
                        .collect();
                    let members = subscriptions
                        .into_iter()
                        .enumerate()
                        .map(|(m, flags)| {
                            let mut topics: Vec<Uuid> = flags
                                .iter()
                                .enumerate()
                                .filter(|(_, &on)| on)
                                .map(|(i, _)| topic(i as u128 + 1))
                                .collect();
                            if topics.is_empty() {
                                topics.push(topic(1));
                            }
                            (format!("member-{m}"), spec(&topics))
                        })
                        .collect();
                    (members, counts)
                })
        })
    }

    fn homogeneous(
        members: usize,
        counts: &[i32],
    ) -> (BTreeMap<String, MemberSpec>, BTreeMap<Uuid, i32>) {
        let counts: BTreeMap<Uuid, i32> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (topic(i as u128 + 1), c))
            .collect();
        let topics: Vec<Uuid> = counts.keys().copied().collect();
        let members = (0..members)
            .map(|m| (format!("member-{m:02}"), spec(&topics)))
            .collect();
        (members, counts)
    }

    proptest! {
        #[test]
        fn every_subscribed_partition_goes_to_exactly_one_subscriber((members, counts) in scenario()) {
            for assignor in Assignor::ALL {
                let target = assignor.assign(&members, &counts);
                check_complete_and_disjoint(&members, &counts, &target)?;
            }
        }

        #[test]
        fn uniform_is_balanced_within_one_partition(
            members in 1usize..12,
            counts in proptest::collection::vec(0i32..40, 1..4),
        ) {
            let (members, counts) = homogeneous(members, &counts);
            let target = Assignor::Uniform.assign(&members, &counts);
            check_complete_and_disjoint(&members, &counts, &target)?;
            let loads = loads(&target);
            let (min, max) = (loads.iter().min().copied().unwrap_or(0), loads.iter().max().copied().unwrap_or(0));
            prop_assert!(max - min <= 1, "loads {:?}", loads);
        }

        #[test]
        fn uniform_stays_balanced_from_any_previous_assignment(
            members in 1usize..8,
            counts in proptest::collection::vec(0i32..30, 1..3),
            seed in proptest::collection::vec(0usize..8, 0..60),
        ) {
            // Previous assignments that are lopsided (one member held everything, say) still
            // end balanced and complete.
            let (mut members, counts) = homogeneous(members, &counts);
            let ids: Vec<String> = members.keys().cloned().collect();
            let mut seeds = seed.into_iter();
            for (&topic, &count) in &counts {
                for partition in 0..count {
                    let owner = &ids[seeds.next().unwrap_or(0) % ids.len()];
                    if let Some(member) = members.get_mut(owner) {
                        member.current.entry(topic).or_default().insert(partition);
                    }
                }
            }
            let target = Assignor::Uniform.assign(&members, &counts);
            check_complete_and_disjoint(&members, &counts, &target)?;
            let loads = loads(&target);
            prop_assert!(loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0) <= 1);
        }

        #[test]
        fn uniform_moves_at_most_its_share_when_a_member_joins(
            members in 1usize..10,
            counts in proptest::collection::vec(0i32..40, 1..4),
        ) {
            let (mut specs, counts) = homogeneous(members, &counts);
            let before = Assignor::Uniform.assign(&specs, &counts);
            for (id, assignment) in &before {
                if let Some(spec) = specs.get_mut(id) {
                    spec.current = assignment.clone();
                }
            }
            let topics: Vec<Uuid> = counts.keys().copied().collect();
            specs.insert("member-zz-new".to_string(), spec(&topics));
            let after = Assignor::Uniform.assign(&specs, &counts);

            let partitions: usize = counts.values().map(|&c| c as usize).sum();
            let share = partitions.div_ceil(specs.len());
            let moved: usize = before
                .iter()
                .map(|(id, old)| {
                    old.iter()
                        .map(|(topic, ps)| {
                            let new = after[id].get(topic);
                            ps.iter().filter(|p| !new.is_some_and(|n| n.contains(p))).count()
                        })
                        .sum::<usize>()
                })
                .sum();
            prop_assert!(moved <= share, "moved {moved} of {partitions} to {} members", specs.len());
        }

        #[test]
        fn range_is_balanced_within_one_partition_per_topic(
            members in 1usize..10,
            counts in proptest::collection::vec(0i32..40, 1..4),
        ) {
            let (members, counts) = homogeneous(members, &counts);
            let target = Assignor::Range.assign(&members, &counts);
            check_complete_and_disjoint(&members, &counts, &target)?;
            for topic in counts.keys() {
                let per_member: Vec<usize> =
                    target.values().map(|a| a.get(topic).map_or(0, BTreeSet::len)).collect();
                let (min, max) = (per_member.iter().min().copied().unwrap_or(0), per_member.iter().max().copied().unwrap_or(0));
                prop_assert!(max - min <= 1);
                for assignment in target.values() {
                    if let Some(ps) = assignment.get(topic) {
                        let (first, last) = (ps.first().copied().unwrap_or(0), ps.last().copied().unwrap_or(0));
                        prop_assert_eq!((last - first + 1) as usize, ps.len(), "contiguous");
                    }
                }
            }
        }

        #[test]
        fn assignors_are_deterministic((members, counts) in scenario()) {
            for assignor in Assignor::ALL {
                prop_assert_eq!(assignor.assign(&members, &counts), assignor.assign(&members, &counts));
            }
        }
    }
}
