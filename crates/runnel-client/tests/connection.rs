//! Connections and the cluster view: pipelining against the real broker, timeouts and broken
//! peers against a scripted fake, bootstrap failures, and reconnecting after a broker restart.

mod support;

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use runnel_client::{Admin, ClientConfig, ClientError, Cluster, Connection, NewTopic};
use support::fake::{answer, answer_api_versions, fake_broker, read_request};
use support::BrokerProcess;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::test]
async fn a_hundred_concurrent_requests_on_one_connection_are_all_answered() {
    let broker = BrokerProcess::start(&[]).await;
    for max_in_flight in [5, 100] {
        let mut config = broker.config();
        config.max_in_flight = max_in_flight;
        let connection = Connection::connect(&broker.address(), &config)
            .await
            .expect("connect");
        let version = connection.version_for(ApiKey::Metadata).expect("Metadata");
        let requests = (0..100).map(|_| connection.send(MetadataRequest::default(), version));
        let responses = futures::future::join_all(requests).await;
        assert_eq!(responses.len(), 100);
        for response in responses {
            assert_eq!(response.expect("answered").brokers.len(), 1);
        }
        assert!(!connection.is_closed());
    }
}

#[tokio::test]
async fn versions_are_negotiated_on_connect() {
    let broker = BrokerProcess::start(&[]).await;
    let connection = Connection::connect(&broker.address(), &broker.config())
        .await
        .expect("connect");
    // The broker serves every version kafka-protocol has for these; the codecs cap them.
    assert_eq!(connection.version_for(ApiKey::Metadata), Some(13));
    assert_eq!(connection.version_for(ApiKey::OffsetFetch), Some(9));
    assert_eq!(connection.version_for(ApiKey::ApiVersions), Some(4));
    assert_eq!(connection.version_for(ApiKey::SaslHandshake), None);
}

/// What the fake brokers here serve.
const SERVED: &[(ApiKey, i16)] = &[(ApiKey::ApiVersions, 0), (ApiKey::Metadata, 9)];

fn quick_config(address: &str) -> ClientConfig {
    let mut config = ClientConfig::new(address);
    config.request_timeout = Duration::from_millis(300);
    config.connect_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn api_versions_falls_back_to_v0_and_caps_each_api_at_the_broker() {
    let address = fake_broker(|mut stream| async move {
        answer_api_versions(&mut stream, SERVED).await;
        // Hold the connection open until the client is done.
        let _ = read_request(&mut stream).await;
    })
    .await;
    let connection = Connection::connect(&address, &quick_config(&address))
        .await
        .expect("connect");
    assert_eq!(connection.version_for(ApiKey::Metadata), Some(9));
    assert_eq!(connection.version_for(ApiKey::ApiVersions), Some(0));
    assert_eq!(connection.version_for(ApiKey::Produce), None);
}

#[tokio::test]
async fn a_request_timeout_fails_that_request_alone_and_its_late_answer_is_dropped() {
    let address = fake_broker(|mut stream| async move {
        answer_api_versions(&mut stream, SERVED).await;
        let first = read_request(&mut stream)
            .await
            .expect("first")
            .correlation_id;
        let second = read_request(&mut stream)
            .await
            .expect("second")
            .correlation_id;
        // The first answer comes after its request timed out; the client must drop it.
        answer(&mut stream, first, 9, &MetadataResponse::default()).await;
        answer(&mut stream, second, 9, &MetadataResponse::default()).await;
        let _ = read_request(&mut stream).await;
    })
    .await;
    let connection = Connection::connect(&address, &quick_config(&address))
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let error = connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect_err("no answer");
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    assert!(error.is_retriable());
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        !connection.is_closed(),
        "a timeout fails one request, not the connection"
    );
    connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect("the next request is answered");
    assert!(!connection.is_closed());
}

#[tokio::test]
async fn a_silent_listener_times_out_the_connect() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let accepted = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(stream);
    });
    let error = Connection::connect(&address, &quick_config(&address))
        .await
        .expect_err("never answered");
    assert!(matches!(error, ClientError::Timeout { .. }), "{error:?}");
    accepted.abort();
}

#[tokio::test]
async fn an_oversized_response_is_a_protocol_error_and_closes_the_connection() {
    let address = fake_broker(|mut stream| async move {
        answer_api_versions(&mut stream, SERVED).await;
        let _ = read_request(&mut stream).await.expect("request");
        // Claims 200 MiB; the client must not allocate it.
        stream.write_i32(200 * 1024 * 1024).await.expect("write");
        stream.write_all(&[0; 64]).await.expect("write");
        let _ = read_request(&mut stream).await;
    })
    .await;
    let mut config = quick_config(&address);
    config.request_timeout = Duration::from_secs(5);
    let connection = Connection::connect(&address, &config)
        .await
        .expect("connect");
    let error = connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect_err("oversized");
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    assert!(connection.is_closed());
    let error = connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect_err("closed");
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
}

#[tokio::test]
async fn an_answer_to_nothing_asked_closes_the_connection() {
    let address = fake_broker(|mut stream| async move {
        answer_api_versions(&mut stream, SERVED).await;
        let correlation_id = read_request(&mut stream)
            .await
            .expect("request")
            .correlation_id;
        answer(
            &mut stream,
            correlation_id + 1000,
            9,
            &MetadataResponse::default(),
        )
        .await;
        let _ = read_request(&mut stream).await;
    })
    .await;
    let mut config = quick_config(&address);
    config.request_timeout = Duration::from_secs(5);
    let connection = Connection::connect(&address, &config)
        .await
        .expect("connect");
    let error = connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect_err("unexpected id");
    assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
    assert!(connection.is_closed());
}

#[tokio::test]
async fn a_broker_closing_the_socket_fails_requests_in_flight_with_io() {
    let address = fake_broker(|mut stream| async move {
        answer_api_versions(&mut stream, SERVED).await;
        let _ = read_request(&mut stream).await.expect("request");
        drop(stream);
    })
    .await;
    let mut config = quick_config(&address);
    config.request_timeout = Duration::from_secs(5);
    let connection = Connection::connect(&address, &config)
        .await
        .expect("connect");
    let error = connection
        .send(MetadataRequest::default(), 9)
        .await
        .expect_err("closed");
    assert!(matches!(error, ClientError::Io { .. }), "{error:?}");
    assert!(error.is_retriable());
    assert!(connection.is_closed());
}

#[tokio::test]
async fn bootstrap_fails_with_no_brokers_when_none_answers() {
    let port = support::free_port();
    let error = Cluster::connect(quick_config(&format!("127.0.0.1:{port}")))
        .await
        .expect_err("nobody listens");
    match error {
        ClientError::NoBrokers(reason) => assert!(reason.contains(&port.to_string()), "{reason}"),
        other => panic!("{other:?}"),
    }
    let error = Cluster::connect(ClientConfig::new(" , "))
        .await
        .expect_err("no address");
    assert!(
        matches!(error, ClientError::InvalidArgument(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn bootstrap_skips_unreachable_addresses() {
    let broker = BrokerProcess::start(&[]).await;
    let dead = format!("127.0.0.1:{}", support::free_port());
    let mut config = broker.config();
    config.bootstrap = vec![dead, broker.address()];
    let cluster = Cluster::connect(config)
        .await
        .expect("second address works");
    assert_eq!(cluster.brokers().await.len(), 1);
}

#[tokio::test]
async fn the_same_cluster_works_again_after_the_broker_restarts() {
    let mut broker = BrokerProcess::start(&[]).await;
    let cluster = Cluster::connect(broker.config()).await.expect("connect");
    let admin = Admin::from_cluster(cluster.clone());
    admin
        .create_topic(NewTopic::new("survivor", 2))
        .await
        .expect("create");
    let (leader, before) = cluster
        .leader_connection("survivor", 1)
        .await
        .expect("leader");

    broker.kill();
    let error = admin.list_topics(false).await.expect_err("broker down");
    assert!(error.is_retriable(), "{error:?}");
    assert!(before.is_closed());

    broker.restart().await;
    let topics = admin.list_topics(false).await.expect("works again");
    assert_eq!(topics[0].name, "survivor");
    let after = cluster.connection(leader).await.expect("reconnected");
    assert!(!after.is_closed());
    assert!(!std::sync::Arc::ptr_eq(&before, &after));
    let version = after.version_for(ApiKey::Metadata).expect("Metadata");
    after
        .send(MetadataRequest::default(), version)
        .await
        .expect("answered");
}
