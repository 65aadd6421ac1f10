//! [`Network`]: messages on their way between the simulated brokers and clients. Each is
//! delivered at the time its sender drew for it, so messages sent one after another may
//! arrive in the other order; the world decides at sending which are lost, and at delivery
//! which no longer have a connection to arrive on.

/// Messages in flight, in the order they are due.
#[derive(Debug, Clone)]
pub(crate) struct Network<M> {
    in_flight: Vec<InFlight<M>>,
    sent: u64,
}

#[derive(Debug, Clone)]
struct InFlight<M> {
    deliver_at_ms: i64,
    /// Breaks ties between messages due at the same moment, in sending order.
    sequence: u64,
    message: M,
}

impl<M> Default for Network<M> {
    fn default() -> Self {
        Network {
            in_flight: Vec::new(),
            sent: 0,
        }
    }
}

impl<M> Network<M> {
    pub(crate) fn send(&mut self, message: M, deliver_at_ms: i64) {
        self.sent += 1;
        self.in_flight.push(InFlight {
            deliver_at_ms,
            sequence: self.sent,
            message,
        });
    }

    /// The messages due by `now_ms`, earliest first, except those `held` keeps in flight (a
    /// paused recipient's, which TCP buffers until it runs again).
    pub(crate) fn take_due(&mut self, now_ms: i64, held: impl Fn(&M) -> bool) -> Vec<M> {
        self.in_flight
            .sort_by_key(|flight| (flight.deliver_at_ms, flight.sequence));
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
            .into_iter()
            .partition(|flight| flight.deliver_at_ms <= now_ms && !held(&flight.message));
        self.in_flight = later;
        due.into_iter().map(|flight| flight.message).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_by_their_delivery_time_and_held_ones_wait() {
        let mut network = Network::default();
        network.send("slow", 30);
        network.send("fast", 10);
        network.send("held", 5);
        network.send("also fast", 10);
        assert_eq!(network.take_due(9, |_| false), vec!["held"]);
        network.send("held", 5);
        assert_eq!(
            network.take_due(40, |message| *message == "held"),
            vec!["fast", "also fast", "slow"]
        );
        assert_eq!(network.take_due(40, |_| false), vec!["held"]);
        assert!(network.take_due(i64::MAX, |_| false).is_empty());
    }
}
