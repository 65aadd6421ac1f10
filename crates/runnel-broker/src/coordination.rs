//! Which partitions of an internal topic (`__consumer_offsets`, `__transaction_state`) this
//! broker's coordinator serves. A coordinator key (a group id, a transactional id) maps to one
//! partition, and the broker that leads the partition coordinates the key: it loads the
//! partition's records into its coordinator when it becomes leader, and forgets them when it
//! stops being one.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;

/// The partitions a coordinator serves (those this broker leads, each once its records are
/// loaded, with the number of that load: its tenure), and those it is loading.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Coordinated {
    loaded: BTreeMap<i32, u64>,
    loading: BTreeSet<i32>,
    loads: u64,
}

impl Coordinated {
    /// Whether requests for keys of `partition` are served here: NOT_COORDINATOR sends the
    /// client back to FindCoordinator, COORDINATOR_LOAD_IN_PROGRESS asks it to retry here.
    pub(crate) fn check(&self, partition: i32) -> Result<(), ResponseError> {
        self.tenure(partition).map(|_| ())
    }

    /// Like [`Self::check`], and which load of the partition serves its keys. A job begun in
    /// one tenure that ends in another (the leadership went away, and maybe came back) must
    /// leave the coordinator alone: what it holds now was read from the log afresh.
    pub(crate) fn tenure(&self, partition: i32) -> Result<u64, ResponseError> {
        if let Some(&tenure) = self.loaded.get(&partition) {
            Ok(tenure)
        } else if self.loading.contains(&partition) {
            Err(ResponseError::CoordinatorLoadInProgress)
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// This broker became the partition's leader: its records are being read. Returns false
    /// if it is already loaded or loading (the image applier sees each leadership many times).
    pub(crate) fn start_loading(&mut self, partition: i32) -> bool {
        !self.loaded.contains_key(&partition) && self.loading.insert(partition)
    }

    /// The partition's records are loaded: its keys are served from now on, unless the
    /// leadership moved away meanwhile (then `false`, and what was loaded must be dropped).
    pub(crate) fn finish_loading(&mut self, partition: i32) -> bool {
        if !self.loading.remove(&partition) {
            return false;
        }
        self.loads += 1;
        self.loaded.insert(partition, self.loads);
        true
    }

    /// This broker no longer leads the partition. Returns whether anything of it was loaded
    /// or loading, which the coordinator must then forget.
    pub(crate) fn resign(&mut self, partition: i32) -> bool {
        let was_loaded = self.loaded.remove(&partition).is_some();
        let was_loading = self.loading.remove(&partition);
        was_loaded || was_loading
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_served_only_between_its_load_and_its_resignation() {
        let mut coordinated = Coordinated::default();
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
        let mut coordinated = Coordinated::default();
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
        let mut coordinated = Coordinated::default();
        assert!(coordinated.start_loading(1));
        assert!(coordinated.resign(1));
        assert!(!coordinated.finish_loading(1));
        assert_eq!(coordinated.check(1), Err(ResponseError::NotCoordinator));
    }
}
