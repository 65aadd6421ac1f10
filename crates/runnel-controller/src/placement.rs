//! Where a new partition's replicas go: spread over racks, leaders spread over brokers.
//!
//! The usable brokers are lined up alternating racks (the first broker of each rack, then
//! the second of each, ...). Partition `k`'s leader is the broker at `start + k` in that
//! line, so leaders go round the cluster; its followers come from further along the line
//! at a distance that grows with each round of brokers (as Kafka's placement does), so the
//! followers of one broker's partitions are not always the same brokers. A follower from a
//! rack that holds no replica of the partition yet is always preferred.
//!
//! `start` is the caller's choice (random in the controller, fixed in tests and
//! simulations), so that topics created one after another do not all lead on broker 0.

use std::collections::BTreeMap;

use crate::records::BrokerId;

/// A broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BrokerId,
    pub rack: Option<String>,
}

/// The replica lists of partitions `first..first + count`, each `replication_factor` long.
/// The caller checks `replication_factor <= brokers.len()` and that it is positive.
pub fn place(
    brokers: &[Candidate],
    first: i32,
    count: i32,
    replication_factor: usize,
    start: usize,
) -> Vec<Vec<BrokerId>> {
    let line = rack_alternating(brokers);
    let n = line.len();
    assert!(
        (1..=n).contains(&replication_factor),
        "replication factor {replication_factor} over {n} brokers"
    );
    (first..first.saturating_add(count))
        .map(|partition| {
            let k = usize::try_from(partition).unwrap_or(0);
            let leader_at = (start + k) % n;
            let shift = if n > 1 {
                1 + (start / n + k / n) % (n - 1)
            } else {
                0
            };
            // Everyone but the leader, starting `shift` along the line from it.
            let followers = (0..n)
                .map(|j| (leader_at + shift + j) % n)
                .filter(|&at| at != leader_at);
            let mut chosen = vec![leader_at];
            let mut racks_used = vec![line[leader_at].rack.clone()];
            let mut others = Vec::new();
            for at in followers {
                if chosen.len() == replication_factor {
                    break;
                }
                if racks_used.contains(&line[at].rack) {
                    others.push(at);
                } else {
                    racks_used.push(line[at].rack.clone());
                    chosen.push(at);
                }
            }
            let missing = replication_factor - chosen.len();
            chosen.extend(others.into_iter().take(missing));
            chosen.into_iter().map(|at| line[at].id).collect()
        })
        .collect()
}

fn rack_alternating(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<&Candidate>> = BTreeMap::new();
    for broker in brokers {
        by_rack
            .entry(broker.rack.as_deref())
            .or_default()
            .push(broker);
    }
    for members in by_rack.values_mut() {
        members.sort_by_key(|broker| broker.id);
    }
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    (0..deepest)
        .flat_map(|round| {
            by_rack
                .values()
                .filter_map(move |members| members.get(round))
        })
        .map(|&broker| broker.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brokers(racks: &[Option<&str>]) -> Vec<Candidate> {
        racks
            .iter()
            .enumerate()
            .map(|(i, rack)| Candidate {
                id: i as i32 + 1,
                rack: rack.map(str::to_owned),
            })
            .collect()
    }

    #[test]
    fn leaders_go_round_the_brokers() {
        let placed = place(&brokers(&[None, None, None]), 0, 6, 2, 0);
        let leaders: Vec<_> = placed.iter().map(|replicas| replicas[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn replicas_of_a_partition_span_racks_when_they_can() {
        let cluster = brokers(&[Some("a"), Some("a"), Some("b"), Some("b"), Some("c")]);
        for replicas in place(&cluster, 0, 20, 3, 7) {
            let mut racks: Vec<_> = replicas
                .iter()
                .map(|&id| cluster[(id - 1) as usize].rack.clone())
                .collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    proptest! {
        #[test]
        fn every_partition_gets_distinct_replicas_and_leaders_are_balanced(
            racks in proptest::collection::vec(proptest::option::of(0u8..3), 1..8),
            replication_factor in 1usize..8,
            partitions in 1i32..40,
            start in 0usize..100,
        ) {
            let names = ["r0", "r1", "r2"];
            let racks: Vec<Option<&str>> =
                racks.iter().map(|rack| rack.map(|r| names[r as usize])).collect();
            let cluster = brokers(&racks);
            let replication_factor = replication_factor.min(cluster.len());
            let placed = place(&cluster, 0, partitions, replication_factor, start);
            prop_assert_eq!(placed.len(), partitions as usize);
            let mut leads = vec![0usize; cluster.len()];
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), replication_factor);
                let mut distinct = replicas.clone();
                distinct.sort();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), replication_factor);
                leads[(replicas[0] - 1) as usize] += 1;
            }
            let most = leads.iter().max().copied().unwrap_or(0);
            let least = leads.iter().min().copied().unwrap_or(0);
            prop_assert!(most - least <= 1, "leaders {:?}", leads);
        }
    }
}
