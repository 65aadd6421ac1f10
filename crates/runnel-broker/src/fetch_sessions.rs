//! Incremental fetch sessions (KIP-227): a consumer or follower of many partitions sends the
//! whole list once, then only what changed, and hears back only about partitions with news.
//!
//! A plain data structure, tested without sockets: the fetch handler asks [`FetchSessions::begin`]
//! which partitions a request means, reads them as for any fetch, then asks
//! [`FetchSessions::finish`] which answers to send and which session id to return.
//!
//! The rules, as Kafka's `FetchSession` applies them:
//! - session id 0, epoch -1: a full fetch with no session (clients before KIP-227, librdkafka);
//! - epoch 0: a full fetch that creates a session (closing the one named, if any); its id goes
//!   back in the response, or 0 when the cache is full, and the client stays sessionless;
//! - epoch -1 with a session id: closes that session, then a full sessionless fetch;
//! - epoch N > 0: an incremental fetch of session `id`, whose next epoch must be N
//!   (INVALID_FETCH_SESSION_EPOCH otherwise; FETCH_SESSION_ID_NOT_FOUND for an unknown id).
//!   Its partitions update or join the session, `forgotten_topics_data` leave it; the response
//!   carries only the partitions with records, an error, or a high watermark or log start
//!   offset the client has not been told yet.
//!
//! Bounded: at most `max.incremental.fetch.session.cache.slots` sessions; when full, a new
//! session replaces the least recently used one if that has been idle for two minutes
//! (`min.incremental.fetch.session.eviction.ms`), else the smallest one if the new session
//! holds more partitions, and is otherwise not created. A session
//! holds at most `partitions-max` partitions: an incremental request that would take it past
//! that closes it with INVALID_REQUEST (the client starts over with a full fetch).

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// `min.incremental.fetch.session.eviction.ms`: an idle session may be replaced after this.
const EVICTION_IDLE_MS: i64 = 120_000;
const INITIAL_EPOCH: i32 = 0;
const FINAL_EPOCH: i32 = -1;
const NO_SESSION: i32 = 0;

/// A partition a fetch asks for, from the request or from the session it continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WantedPartition {
    pub topic: TopicName,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    pub current_leader_epoch: i32,
}

impl WantedPartition {
    /// Requests v13+ name topics by id, older ones by name; a session keys on both.
    fn key(&self) -> (TopicName, Uuid, i32) {
        (self.topic.clone(), self.topic_id, self.partition)
    }
}

/// What a request asks for.
#[derive(Debug)]
pub(crate) struct Begun {
    /// The partitions to answer, in order.
    pub wanted: Vec<WantedPartition>,
    pub session: SessionUse,
}

/// What happens to the session once the request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionUse {
    /// No session: every wanted partition is answered, session id 0.
    None,
    /// Full fetch that opens a session.
    Create,
    /// Incremental fetch of this session; `epoch` is the one the request used.
    Incremental { id: i32, epoch: i32 },
}

/// What the fetch found for one wanted partition, as far as the session cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answered {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// It carries records or an error: always sent.
    pub newsworthy: bool,
    /// It carries records: it goes to the back of its session's order.
    pub has_records: bool,
}

/// How to answer: the session id to return and which wanted partitions to include.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub session_id: i32,
    pub include: Vec<bool>,
}

#[derive(Debug)]
struct SessionPartition {
    wanted: WantedPartition,
    /// What the client was last told; `None` before the first answer.
    told: Option<(i64, i64)>,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    partitions: Vec<SessionPartition>,
    last_used_ms: i64,
}

/// Every open session of this broker.
#[derive(Debug)]
pub(crate) struct FetchSessions {
    max_sessions: usize,
    /// No session holds more partitions than the broker may have (`partitions-max`), so
    /// incremental requests naming ever new partitions cannot grow one without bound.
    max_partitions: usize,
    state: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    sessions: HashMap<i32, Session>,
    /// Feeds session ids: a SplitMix64 sequence from a random seed.
    id_state: u64,
}

fn next_epoch(epoch: i32) -> i32 {
    // After i32::MAX, epochs wrap to 1: 0 and -1 mean full fetches.
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

impl FetchSessions {
    pub(crate) fn new(max_sessions: usize, max_partitions: usize) -> Self {
        FetchSessions {
            max_sessions,
            max_partitions,
            state: Mutex::new(Cache {
                sessions: HashMap::new(),
                id_state: Uuid::new_v4().as_u64_pair().0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Nothing here panics midway through an update that matters.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Which partitions `request` asks for, and how it uses sessions. An error is the
    /// response's top-level error code.
    pub(crate) fn begin(
        &self,
        request: &FetchRequest,
        now_ms: i64,
    ) -> Result<Begun, ResponseError> {
        let listed = listed_partitions(request);
        let mut cache = self.lock();
        let (id, epoch) = (request.session_id, request.session_epoch);
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            if id != NO_SESSION {
                cache.sessions.remove(&id);
            }
            let session = if epoch == INITIAL_EPOCH {
                SessionUse::Create
            } else {
                SessionUse::None
            };
            return Ok(Begun {
                wanted: listed,
                session,
            });
        }
        let Some(session) = cache.sessions.get_mut(&id) else {
            return Err(ResponseError::FetchSessionIdNotFound);
        };
        if session.next_epoch != epoch {
            return Err(ResponseError::InvalidFetchSessionEpoch);
        }
        session.next_epoch = next_epoch(epoch);
        session.last_used_ms = now_ms;
        for forgotten in &request.forgotten_topics_data {
            session.partitions.retain(|held| {
                let same_topic = if forgotten.topic_id.is_nil() {
                    held.wanted.topic == forgotten.topic
                } else {
                    held.wanted.topic_id == forgotten.topic_id
                };
                !(same_topic && forgotten.partitions.contains(&held.wanted.partition))
            });
        }
        let mut held_at: HashMap<(TopicName, Uuid, i32), usize> = session
            .partitions
            .iter()
            .enumerate()
            .map(|(position, held)| (held.wanted.key(), position))
            .collect();
        for wanted in listed {
            match held_at.get(&wanted.key()) {
                Some(&position) => session.partitions[position].wanted = wanted,
                None => {
                    held_at.insert(wanted.key(), session.partitions.len());
                    session
                        .partitions
                        .push(SessionPartition { wanted, told: None });
                }
            }
        }
        if session.partitions.len() > self.max_partitions {
            cache.sessions.remove(&id);
            return Err(ResponseError::InvalidRequest);
        }
        Ok(Begun {
            wanted: session
                .partitions
                .iter()
                .map(|held| held.wanted.clone())
                .collect(),
            session: SessionUse::Incremental { id, epoch },
        })
    }

    /// After the fetch: records what each partition's client now knows and says what to send.
    /// `answered` is in the order of `wanted`.
    pub(crate) fn finish(
        &self,
        session: SessionUse,
        wanted: &[WantedPartition],
        answered: &[Answered],
        now_ms: i64,
    ) -> Result<Finished, ResponseError> {
        let everything = || vec![true; answered.len()];
        match session {
            SessionUse::None => Ok(Finished {
                session_id: NO_SESSION,
                include: everything(),
            }),
            SessionUse::Create => {
                let partitions = wanted
                    .iter()
                    .zip(answered)
                    .map(|(wanted, answered)| SessionPartition {
                        wanted: wanted.clone(),
                        told: Some((answered.high_watermark, answered.log_start_offset)),
                    })
                    .collect();
                let session_id = self.create(partitions, now_ms);
                Ok(Finished {
                    session_id,
                    include: everything(),
                })
            }
            SessionUse::Incremental { id, epoch } => {
                let mut cache = self.lock();
                let Some(session) = cache
                    .sessions
                    .get_mut(&id)
                    .filter(|session| session.next_epoch == next_epoch(epoch))
                else {
                    // Closed, or moved on by a later request meanwhile: as Kafka does.
                    return Err(ResponseError::InvalidFetchSessionEpoch);
                };
                let include: Vec<bool> = session
                    .partitions
                    .iter_mut()
                    .zip(answered)
                    .map(|(held, answered)| {
                        let now = (answered.high_watermark, answered.log_start_offset);
                        let send = answered.newsworthy || held.told != Some(now);
                        held.told = Some(now);
                        send
                    })
                    .collect();
                // Partitions that returned records go to the back, so that the next fetch's
                // byte budget goes first to the others (Kafka's fairness rule).
                let (served, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut session.partitions)
                    .into_iter()
                    .zip(answered)
                    .partition(|(_, answered)| answered.has_records);
                session.partitions = rest
                    .into_iter()
                    .chain(served)
                    .map(|(held, _)| held)
                    .collect();
                Ok(Finished {
                    session_id: id,
                    include,
                })
            }
        }
    }

    /// A new session, or 0 when the cache is full of sessions in use.
    fn create(&self, partitions: Vec<SessionPartition>, now_ms: i64) -> i32 {
        let mut cache = self.lock();
        if partitions.len() > self.max_partitions {
            return NO_SESSION;
        }
        if cache.sessions.len() >= self.max_sessions {
            // As Kafka's cache: first a session idle for the eviction time, else the smallest
            // (then least recently used) one if the new session is larger, so that a client
            // opening many small sessions cannot keep a consumer of many partitions out.
            let idlest = cache
                .sessions
                .iter()
                .min_by_key(|(_, session)| session.last_used_ms)
                .map(|(&id, session)| (id, session.last_used_ms));
            let smallest = cache
                .sessions
                .iter()
                .min_by_key(|(_, session)| (session.partitions.len(), session.last_used_ms))
                .map(|(&id, session)| (id, session.partitions.len()));
            let evicted = match (idlest, smallest) {
                (Some((id, last_used)), _) if now_ms - last_used >= EVICTION_IDLE_MS => Some(id),
                (_, Some((id, size))) if partitions.len() > size => Some(id),
                _ => None,
            };
            match evicted {
                Some(id) => {
                    cache.sessions.remove(&id);
                }
                None => return NO_SESSION,
            }
        }
        let id = loop {
            let candidate = cache.next_id();
            if candidate > 0 && !cache.sessions.contains_key(&candidate) {
                break candidate;
            }
        };
        cache.sessions.insert(
            id,
            Session {
                next_epoch: next_epoch(INITIAL_EPOCH),
                partitions,
                last_used_ms: now_ms,
            },
        );
        id
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().sessions.len()
    }
}

impl Cache {
    fn next_id(&mut self) -> i32 {
        self.id_state = self.id_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.id_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Positive ids only: 0 means "no session".
        ((z ^ (z >> 31)) >> 33) as i32
    }
}

/// The partitions a request lists, in order.
fn listed_partitions(request: &FetchRequest) -> Vec<WantedPartition> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            // A copy: the decoded name shares the request frame's buffer, which a session
            // would otherwise keep alive.
            let name = TopicName(StrBytes::from_string(topic.topic.to_string()));
            topic
                .partitions
                .iter()
                .map(move |partition| WantedPartition {
                    topic: name.clone(),
                    topic_id: topic.topic_id,
                    partition: partition.partition,
                    fetch_offset: partition.fetch_offset,
                    partition_max_bytes: partition.partition_max_bytes,
                    current_leader_epoch: partition.current_leader_epoch,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::protocol::StrBytes;

    use super::*;

    fn topic(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    fn request(id: i32, epoch: i32, partitions: &[(&'static str, i32, i64)]) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for &(name, partition, offset) in partitions {
            let entry = FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20);
            match topics.last_mut() {
                Some(last) if last.topic == topic(name) => last.partitions.push(entry),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(topic(name))
                        .with_partitions(vec![entry]),
                ),
            }
        }
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    fn quiet(high_watermark: i64) -> Answered {
        Answered {
            high_watermark,
            log_start_offset: 0,
            newsworthy: false,
            has_records: false,
        }
    }

    /// (topic, partition, fetch offset) of the partitions a response includes.
    type Included = Vec<(String, i32, i64)>;

    /// Runs begin and finish; the session id and the (topic, partition, offset) of what the
    /// response includes.
    fn fetch(
        sessions: &FetchSessions,
        request: &FetchRequest,
        high_watermarks: &HashMap<(&str, i32), i64>,
        now_ms: i64,
    ) -> Result<(i32, Included), ResponseError> {
        let begun = sessions.begin(request, now_ms)?;
        let answered: Vec<Answered> = begun
            .wanted
            .iter()
            .map(|wanted| {
                let key = (&*wanted.topic.0, wanted.partition);
                quiet(high_watermarks.get(&key).copied().unwrap_or(0))
            })
            .collect();
        let finished = sessions.finish(begun.session, &begun.wanted, &answered, now_ms)?;
        let included = begun
            .wanted
            .iter()
            .zip(&finished.include)
            .filter(|(_, include)| **include)
            .map(|(wanted, _)| {
                (
                    wanted.topic.0.to_string(),
                    wanted.partition,
                    wanted.fetch_offset,
                )
            })
            .collect();
        Ok((finished.session_id, included))
    }

    /// A session over partition a-0, opened by a full fetch.
    fn open_session(sessions: &FetchSessions) -> i32 {
        let full = request(0, 0, &[("a", 0, 0)]);
        let (id, _) = fetch(sessions, &full, &HashMap::new(), 0).unwrap();
        assert!(id > 0);
        id
    }

    #[test]
    fn sessionless_fetches_create_nothing() {
        let sessions = FetchSessions::new(10, 100);
        let (id, included) = fetch(
            &sessions,
            &request(0, -1, &[("a", 0, 5)]),
            &HashMap::new(),
            0,
        )
        .unwrap();
        assert_eq!((id, included.len()), (0, 1));
        assert_eq!(sessions.len(), 0);
    }

    #[test]
    fn an_incremental_fetch_sends_only_changes_and_answers_only_news() {
        let sessions = FetchSessions::new(10, 100);
        let mut high_watermarks = HashMap::from([(("a", 0), 10), (("a", 1), 10), (("b", 0), 10)]);
        let full = request(0, 0, &[("a", 0, 10), ("a", 1, 10), ("b", 0, 10)]);
        let (id, included) = fetch(&sessions, &full, &high_watermarks, 0).unwrap();
        assert!(id > 0);
        assert_eq!(included.len(), 3, "a full fetch answers everything");

        // Nothing changed: nothing to send, nothing to hear.
        let (same, included) = fetch(&sessions, &request(id, 1, &[]), &high_watermarks, 1).unwrap();
        assert_eq!((same, included), (id, vec![]));

        // b-0 grew: only it comes back, at the offset the session remembers.
        high_watermarks.insert(("b", 0), 12);
        let (_, included) = fetch(&sessions, &request(id, 2, &[]), &high_watermarks, 2).unwrap();
        assert_eq!(included, vec![("b".to_string(), 0, 10)]);

        // The client moves a-1 on and adds c-0; the new partition is news.
        let (_, included) = fetch(
            &sessions,
            &request(id, 3, &[("a", 1, 11), ("c", 0, 0)]),
            &high_watermarks,
            3,
        )
        .unwrap();
        assert_eq!(included, vec![("c".to_string(), 0, 0)]);
        let begun = sessions.begin(&request(id, 4, &[]), 4).unwrap();
        let offsets: Included = begun
            .wanted
            .iter()
            .map(|w| (w.topic.0.to_string(), w.partition, w.fetch_offset))
            .collect();
        assert_eq!(
            offsets,
            vec![
                ("a".to_string(), 0, 10),
                ("a".to_string(), 1, 11),
                ("b".to_string(), 0, 10),
                ("c".to_string(), 0, 0),
            ]
        );
    }

    #[test]
    fn forgotten_partitions_leave_the_session() {
        let sessions = FetchSessions::new(10, 100);
        let high_watermarks = HashMap::new();
        let (id, _) = fetch(
            &sessions,
            &request(0, 0, &[("a", 0, 0), ("a", 1, 0)]),
            &high_watermarks,
            0,
        )
        .unwrap();
        let forget = request(id, 1, &[])
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(topic("a"))
                .with_partitions(vec![0])]);
        sessions.begin(&forget, 1).unwrap();
        let begun = sessions.begin(&request(id, 2, &[]), 2).unwrap();
        assert_eq!(begun.wanted.len(), 1);
        assert_eq!(begun.wanted[0].partition, 1);
    }

    #[test]
    fn news_is_always_sent() {
        let sessions = FetchSessions::new(10, 100);
        let id = open_session(&sessions);
        let begun = sessions.begin(&request(id, 1, &[]), 1).unwrap();
        let answered = [Answered {
            newsworthy: true,
            ..quiet(0)
        }];
        let finished = sessions
            .finish(begun.session, &begun.wanted, &answered, 1)
            .unwrap();
        assert_eq!(finished.include, vec![true]);
    }

    #[test]
    fn partitions_that_returned_records_go_to_the_back() {
        let sessions = FetchSessions::new(10, 100);
        let full = request(0, 0, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]);
        let (id, _) = fetch(&sessions, &full, &HashMap::new(), 0).unwrap();
        let begun = sessions.begin(&request(id, 1, &[]), 1).unwrap();
        let answered: Vec<Answered> = [true, false, false]
            .into_iter()
            .map(|has_records| Answered {
                newsworthy: has_records,
                has_records,
                ..quiet(0)
            })
            .collect();
        sessions
            .finish(begun.session, &begun.wanted, &answered, 1)
            .unwrap();
        let order: Vec<i32> = sessions
            .begin(&request(id, 2, &[]), 2)
            .unwrap()
            .wanted
            .iter()
            .map(|wanted| wanted.partition)
            .collect();
        assert_eq!(order, vec![1, 2, 0]);
    }

    #[test]
    fn a_session_moved_on_during_a_fetch_is_an_epoch_error() {
        let sessions = FetchSessions::new(10, 100);
        let id = open_session(&sessions);
        let slow = sessions.begin(&request(id, 1, &[]), 1).unwrap();
        // A second request of the session overtakes the first.
        sessions.begin(&request(id, 2, &[]), 2).unwrap();
        assert_eq!(
            sessions.finish(slow.session, &slow.wanted, &[quiet(0)], 3),
            Err(ResponseError::InvalidFetchSessionEpoch)
        );
    }

    #[test]
    fn wrong_epochs_and_unknown_sessions_are_refused() {
        let sessions = FetchSessions::new(10, 100);
        let id = open_session(&sessions);
        assert_eq!(
            sessions.begin(&request(id, 2, &[]), 1).unwrap_err(),
            ResponseError::InvalidFetchSessionEpoch
        );
        assert_eq!(
            sessions
                .begin(&request(id.wrapping_add(1), 1, &[]), 1)
                .unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        assert_eq!(
            sessions.begin(&request(0, 5, &[]), 1).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
        // A refused request does not move the epoch on.
        assert!(sessions.begin(&request(id, 1, &[]), 1).is_ok());
        // Epoch -1 closes the session.
        sessions.begin(&request(id, -1, &[]), 2).unwrap();
        assert_eq!(
            sessions.begin(&request(id, 2, &[]), 3).unwrap_err(),
            ResponseError::FetchSessionIdNotFound
        );
    }

    #[test]
    fn a_full_cache_evicts_only_idle_sessions() {
        let sessions = FetchSessions::new(2, 100);
        let none = HashMap::new();
        let full = request(0, 0, &[("a", 0, 0)]);
        let (first, _) = fetch(&sessions, &full, &none, 0).unwrap();
        let (second, _) = fetch(&sessions, &full, &none, 10).unwrap();
        assert!(first > 0 && second > 0 && first != second);
        let (refused, _) = fetch(&sessions, &full, &none, 20).unwrap();
        assert_eq!(refused, 0, "no session is idle long enough to be replaced");
        let (third, _) = fetch(&sessions, &full, &none, EVICTION_IDLE_MS).unwrap();
        assert!(third > 0);
        assert_eq!(sessions.len(), 2);
        assert_eq!(
            sessions
                .begin(&request(first, 1, &[]), EVICTION_IDLE_MS)
                .unwrap_err(),
            ResponseError::FetchSessionIdNotFound,
            "the idlest session made room"
        );
    }

    #[test]
    fn a_full_cache_makes_room_for_a_larger_session() {
        let sessions = FetchSessions::new(2, 100);
        let none = HashMap::new();
        let small = request(0, 0, &[("a", 0, 0)]);
        let (first, _) = fetch(&sessions, &small, &none, 0).unwrap();
        let (second, _) = fetch(&sessions, &small, &none, 10).unwrap();
        let (refused, _) = fetch(&sessions, &small, &none, 20).unwrap();
        assert_eq!(refused, 0, "no larger than those it would replace");
        let larger = request(0, 0, &[("a", 0, 0), ("a", 1, 0)]);
        let (third, _) = fetch(&sessions, &larger, &none, 30).unwrap();
        assert!(third > 0);
        assert_eq!(
            sessions.begin(&request(first, 1, &[]), 40).unwrap_err(),
            ResponseError::FetchSessionIdNotFound,
            "the smallest, least recently used session made room"
        );
        assert!(sessions.begin(&request(second, 1, &[]), 40).is_ok());
    }

    #[test]
    fn a_session_cannot_grow_past_the_partition_limit() {
        let sessions = FetchSessions::new(10, 2);
        let none = HashMap::new();
        let (too_many, _) = fetch(
            &sessions,
            &request(0, 0, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]),
            &none,
            0,
        )
        .unwrap();
        assert_eq!(too_many, 0, "no session for more partitions than the limit");
        let (id, _) = fetch(&sessions, &request(0, 0, &[("a", 0, 0)]), &none, 0).unwrap();
        fetch(&sessions, &request(id, 1, &[("b", 0, 0)]), &none, 1).unwrap();
        assert_eq!(
            sessions
                .begin(&request(id, 2, &[("c", 0, 0)]), 2)
                .unwrap_err(),
            ResponseError::InvalidRequest
        );
        assert_eq!(
            sessions.begin(&request(id, 3, &[]), 3).unwrap_err(),
            ResponseError::FetchSessionIdNotFound,
            "the session was closed"
        );
    }

    #[test]
    fn epochs_wrap_past_the_maximum_to_one() {
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(41), 42);
    }
}
