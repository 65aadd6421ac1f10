//! Which partitions of an internal topic (`__consumer_offsets`, `__transaction_state`) this
//! broker's coordinator serves. A coordinator key (a group id, a transactional id) maps to one
//! partition, and the broker that leads the partition coordinates the key: it loads the
//! partition's records into its coordinator when it becomes leader, and forgets them when it
//! stops being one. On a single node this broker coordinates every partition.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

/// The partitions a coordinator serves, and those it is loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Coordinated {
    /// A single node: every partition, loaded when the broker started.
    All,
    /// A cluster member: the partitions it leads, each once its records are loaded, with the
    /// number of that load (its tenure).
    Led {
        loaded: BTreeMap<i32, u64>,
        loading: BTreeSet<i32>,
        loads: u64,
    },
}

impl Coordinated {
    pub(crate) fn none_yet() -> Coordinated {
        Coordinated::Led {
            loaded: BTreeMap::new(),
            loading: BTreeSet::new(),
            loads: 0,
        }
    }

    /// Whether requests for keys of `partition` are served here: NOT_COORDINATOR sends the
    /// client back to FindCoordinator, COORDINATOR_LOAD_IN_PROGRESS asks it to retry here.
    pub(crate) fn check(&self, partition: i32) -> Result<(), ResponseError> {
        self.tenure(partition).map(|_| ())
    }

    /// Like [`Self::check`], and which load of the partition serves its keys. A job begun in
    /// one tenure that ends in another (the leadership went away, and maybe came back) must
    /// leave the coordinator alone: what it holds now was read from the log afresh.
    pub(crate) fn tenure(&self, partition: i32) -> Result<u64, ResponseError> {
        match self {
            Coordinated::All => Ok(0),
            Coordinated::Led { loaded, .. } if loaded.contains_key(&partition) => {
                Ok(loaded[&partition])
            }
            Coordinated::Led { loading, .. } if loading.contains(&partition) => {
                Err(ResponseError::CoordinatorLoadInProgress)
            }
            Coordinated::Led { .. } => Err(ResponseError::NotCoordinator),
        }
    }

    /// This broker became the partition's leader: its records are being read. Returns false
    /// if it is already loaded or loading (the image applier sees each leadership many times).
    pub(crate) fn start_loading(&mut self, partition: i32) -> bool {
        match self {
            Coordinated::All => false,
            Coordinated::Led {
                loaded, loading, ..
            } => !loaded.contains_key(&partition) && loading.insert(partition),
        }
    }

    /// The partition's records are loaded: its keys are served from now on, unless the
    /// leadership moved away meanwhile (then `false`, and what was loaded must be dropped).
    pub(crate) fn finish_loading(&mut self, partition: i32) -> bool {
        match self {
            Coordinated::All => true,
            Coordinated::Led {
                loaded,
                loading,
                loads,
            } => {
                if !loading.remove(&partition) {
                    return false;
                }
                *loads += 1;
                loaded.insert(partition, *loads);
                true
            }
        }
    }

    /// This broker no longer leads the partition. Returns whether anything of it was loaded
    /// or loading, which the coordinator must then forget.
    pub(crate) fn resign(&mut self, partition: i32) -> bool {
        match self {
            Coordinated::All => false,
            Coordinated::Led {
                loaded, loading, ..
            } => {
                let was_loaded = loaded.remove(&partition).is_some();
                let was_loading = loading.remove(&partition);
                was_loaded || was_loading
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_served_only_between_its_load_and_its_resignation() {
        let mut coordinated = Coordinated::none_yet();
        assert_eq!(coordinated.check(3), Err(ResponseError::NotCoordinator));
        assert!(coordinated.start_loading(3));
        assert!(
            !coordinated.start_loading(3),
            "a second image does not load again"
        );
        assert_eq!(
            coordinated.check(3),
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        assert!(coordinated.finish_loading(3));
        assert_eq!(coordinated.check(3), Ok(()));
        assert!(!coordinated.start_loading(3));
        assert!(coordinated.resign(3));
        assert_eq!(coordinated.check(3), Err(ResponseError::NotCoordinator));
        assert!(!coordinated.resign(3));
    }

    #[test]
    fn each_load_of_a_partition_is_a_new_tenure() {
        let mut coordinated = Coordinated::none_yet();
        assert!(coordinated.start_loading(2));
        assert!(coordinated.finish_loading(2));
        let first = coordinated.tenure(2).unwrap();
        assert!(coordinated.resign(2));
        assert!(coordinated.start_loading(2));
        assert!(coordinated.finish_loading(2));
        assert_ne!(coordinated.tenure(2), Ok(first), "led again, loaded again");
    }

    #[test]
    fn a_load_finished_after_the_leadership_moved_is_not_served() {
        let mut coordinated = Coordinated::none_yet();
        assert!(coordinated.start_loading(1));
        assert!(coordinated.resign(1));
        assert!(!coordinated.finish_loading(1));
        assert_eq!(coordinated.check(1), Err(ResponseError::NotCoordinator));
    }

    #[test]
    fn a_single_node_serves_every_partition() {
        let mut coordinated = Coordinated::All;
        assert_eq!(coordinated.check(49), Ok(()));
        assert!(!coordinated.start_loading(49));
        assert!(!coordinated.resign(49));
        assert_eq!(coordinated.check(49), Ok(()));
    }
}
