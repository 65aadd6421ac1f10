//! Fetch against the real binary, over a raw socket: a waiting fetch is answered by the
//! record that arrives, and incremental fetch sessions (KIP-227): a full fetch opens a
//! session, later fetches send only changes and hear only news, and wrong epochs or unknown
//! sessions get the errors the protocol defines.

mod support;

use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use support::{batch, code, create_topic, name, produce_to, BrokerProcess, Connect, Connection};

const FETCH_VERSION: i16 = 12;

fn fetch_request(session_id: i32, epoch: i32, partitions: &[(i32, i64)]) -> FetchRequest {
    let topics = if partitions.is_empty() {
        Vec::new()
    } else {
        vec![fetch_request::FetchTopic::default()
            .with_topic(name("sessions"))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(partition, offset)| {
                        fetch_request::FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

fn fetch(connection: &mut Connection, request: &FetchRequest) -> FetchResponse {
    connection.request(ApiKey::Fetch, FETCH_VERSION, request)
}

/// (partition, high watermark, record bytes) of every partition in a response.
fn answered(response: &FetchResponse) -> Vec<(i32, i64, usize)> {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|p| {
            (
                p.partition_index,
                p.high_watermark,
                p.records.as_ref().map_or(0, |r| r.len()),
            )
        })
        .collect()
}

#[test]
fn an_incremental_fetch_session_answers_only_what_changed() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "sessions", 3, &[]);
    let mut connection = broker.connect();

    let full = fetch(
        &mut connection,
        &fetch_request(0, 0, &[(0, 0), (1, 0), (2, 0)]),
    );
    assert_eq!(full.error_code, 0);
    let session = full.session_id;
    assert_ne!(session, 0, "a full fetch with epoch 0 opens a session");
    assert_eq!(answered(&full), vec![(0, 0, 0), (1, 0, 0), (2, 0, 0)]);

    let quiet = fetch(&mut connection, &fetch_request(session, 1, &[]));
    assert_eq!((quiet.error_code, quiet.session_id), (0, session));
    assert!(answered(&quiet).is_empty(), "nothing changed, nothing sent");

    produce_to(&broker, 9, "sessions", vec![(1, batch(&[b"news"]))]);
    let news = fetch(&mut connection, &fetch_request(session, 2, &[]));
    let news = answered(&news);
    assert_eq!(news.len(), 1, "only the partition that grew: {news:?}");
    assert_eq!((news[0].0, news[0].1), (1, 1));
    assert!(news[0].2 > 0, "with its records");

    // The client moves partition 1 past the record: no records, and a high watermark it
    // already knows, so nothing to say.
    let moved = fetch(&mut connection, &fetch_request(session, 3, &[(1, 1)]));
    assert!(answered(&moved).is_empty());

    let stale = fetch(&mut connection, &fetch_request(session, 3, &[]));
    assert_eq!(
        stale.error_code,
        code(ResponseError::InvalidFetchSessionEpoch)
    );
    let unknown = fetch(&mut connection, &fetch_request(session ^ 1, 1, &[]));
    assert_eq!(
        unknown.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );

    // Epoch -1 closes the session and answers in full, without one.
    let closing = fetch(&mut connection, &fetch_request(session, -1, &[(0, 0)]));
    assert_eq!((closing.error_code, closing.session_id), (0, 0));
    assert_eq!(answered(&closing), vec![(0, 0, 0)]);
    let closed = fetch(&mut connection, &fetch_request(session, 4, &[]));
    assert_eq!(
        closed.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );
}

#[test]
fn sessions_can_be_turned_off() {
    let broker = BrokerProcess::start(&["--max-incremental-fetch-session-cache-slots", "0"]);
    create_topic(&broker, "sessions", 1, &[]);
    let response = fetch(&mut broker.connect(), &fetch_request(0, 0, &[(0, 0)]));
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(answered(&response), vec![(0, 0, 0)]);
}

/// A fetch that waits for `min_bytes` (a consumer's long poll) is answered with the record
/// that arrives in any partition it waits on, at once, not with nothing at `max_wait_ms`.
/// The wait once missed the partition that woke it, and consumers saw each record only on
/// their next fetch.
#[test]
fn a_waiting_fetch_is_answered_by_the_record_that_arrives() {
    let broker = BrokerProcess::start(&[]);
    create_topic(&broker, "sessions", 2, &[]);
    let mut connection = broker.connect();
    let request = fetch_request(0, -1, &[(0, 0), (1, 0)])
        .with_max_wait_ms(30_000)
        .with_min_bytes(1);
    let started = Instant::now();
    let answer = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| fetch(&mut connection, &request));
        std::thread::sleep(Duration::from_millis(300));
        produce_to(&broker, 9, "sessions", vec![(1, batch(&[b"wake"]))]);
        waiting.join().expect("the fetch thread panicked")
    });
    let answer = answered(&answer);
    assert_eq!(answer[0], (0, 0, 0));
    assert_eq!(answer[1].0, 1);
    assert!(
        answer[1].2 > 0,
        "the record that woke the fetch is in its answer"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered when the record arrived, not at max_wait_ms"
    );
}
