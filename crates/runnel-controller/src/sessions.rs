//! Broker sessions: when the active controller last heard from each broker, and which have
//! been silent past `broker.session.timeout.ms` and must be fenced.
//!
//! Kept in the active controller's memory only, as KRaft does: heartbeats are too frequent to
//! replicate, and a newly elected controller starts every registered broker's session
//! afresh, giving each a full timeout to reach it before fencing it.

use std::collections::BTreeMap;

use crate::records::BrokerId;

#[derive(Debug, Clone)]
pub struct BrokerSessions {
    timeout_ms: i64,
    /// The broker epoch each session is for, and when it expires.
    sessions: BTreeMap<BrokerId, (i64, i64)>,
}

impl BrokerSessions {
    pub fn new(timeout_ms: i64) -> BrokerSessions {
        BrokerSessions {
            timeout_ms,
            sessions: BTreeMap::new(),
        }
    }

    /// A registration or heartbeat from `id` in `broker_epoch` at `now_ms`.
    pub fn heard_from(&mut self, id: BrokerId, broker_epoch: i64, now_ms: i64) {
        self.sessions
            .insert(id, (broker_epoch, now_ms.saturating_add(self.timeout_ms)));
    }

    /// Whether `id` has a session that has not expired by `now_ms`.
    pub fn is_alive(&self, id: BrokerId, now_ms: i64) -> bool {
        self.sessions
            .get(&id)
            .is_some_and(|&(_, expires)| now_ms < expires)
    }

    /// When the first of the sessions expires, if there is any: the controller looks again
    /// then, so that a silent broker is fenced when its session ends.
    pub fn next_expiry(&self) -> Option<i64> {
        self.sessions.values().map(|&(_, expires)| expires).min()
    }

    /// The sessions expired by `now_ms`, as `(broker, epoch)`; each is forgotten, so it is
    /// reported once.
    pub fn take_expired(&mut self, now_ms: i64) -> Vec<(BrokerId, i64)> {
        let expired: Vec<(BrokerId, i64)> = self
            .sessions
            .iter()
            .filter(|(_, &(_, expires))| expires <= now_ms)
            .map(|(&id, &(epoch, _))| (id, epoch))
            .collect();
        for (id, _) in &expired {
            self.sessions.remove(id);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_broker_expires_once() {
        let mut sessions = BrokerSessions::new(100);
        sessions.heard_from(1, 7, 0);
        sessions.heard_from(2, 8, 50);
        assert!(sessions.is_alive(1, 99));
        assert_eq!(sessions.take_expired(99), vec![]);
        assert_eq!(sessions.take_expired(100), vec![(1, 7)]);
        assert_eq!(sessions.take_expired(100), vec![]);
        assert!(!sessions.is_alive(1, 100));
        assert!(sessions.is_alive(2, 100));
    }

    #[test]
    fn the_next_expiry_is_the_earliest_session_end() {
        let mut sessions = BrokerSessions::new(100);
        assert_eq!(sessions.next_expiry(), None);
        sessions.heard_from(1, 7, 30);
        sessions.heard_from(2, 8, 10);
        assert_eq!(sessions.next_expiry(), Some(110));
        sessions.heard_from(2, 8, 60);
        assert_eq!(sessions.next_expiry(), Some(130), "a heartbeat moves it");
        sessions.take_expired(130);
        assert_eq!(sessions.next_expiry(), Some(160));
    }
}
