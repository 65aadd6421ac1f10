//! The console's JSON API against a real broker (`runnel server --console`, the binary
//! `cargo build -p runnel-cli` makes): the message browser's modes and limits, the groups'
//! lag, and what a page of many partitions costs the broker, counted in its own
//! `runnel_requests_total`: a request per leader or coordinator, not one per partition or
//! group. (The page itself is driven in a browser by tests/compat/test_console.py.)

use std::time::Duration;

use runnel_client::{Admin, ClientConfig, NewTopic, ProduceRecord, Producer, ProducerConfig};
use runnel_testkit::BrokerProcess;
use serde_json::Value;

const TOPICS: usize = 20;
const PARTITIONS: i32 = 10;

async fn start() -> BrokerProcess {
    tokio::task::spawn_blocking(|| BrokerProcess::start(&["--console"]))
        .await
        .expect("the broker starts")
}

/// `GET` of the console's API: the status and the JSON body, errors included.
async fn get(broker: &BrokerProcess, path: &str) -> (u16, Value) {
    let url = format!(
        "http://127.0.0.1:{}/console/api/{path}",
        broker.admin_port()
    );
    tokio::task::spawn_blocking(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(30))
            .build();
        let response = match agent.get(&url).call() {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("GET {url}: {error}"),
        };
        let status = response.status();
        let text = response.into_string().expect("a body");
        let body: Value = serde_json::from_str(&text).expect("a JSON body");
        (status, body)
    })
    .await
    .expect("the request task")
}

/// How many requests of `api` the broker has answered, from its `/metrics`.
async fn answered(broker: &BrokerProcess, api: &str) -> f64 {
    let url = format!("http://127.0.0.1:{}/metrics", broker.admin_port());
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .expect("a scrape")
            .into_string()
            .expect("text")
    })
    .await
    .expect("the scrape task");
    let label = format!("api=\"{api}\"");
    text.lines()
        .filter(|line| line.starts_with("runnel_requests_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn produce(producer: &Producer, records: Vec<ProduceRecord>) {
    let mut deliveries = Vec::new();
    for record in records {
        deliveries.push(producer.send(record).await.expect("queued"));
    }
    for delivery in deliveries {
        delivery.await.expect("delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_pages_cost_a_request_per_broker_not_per_partition() {
    let broker = start().await;
    let admin = Admin::connect(ClientConfig::new(broker.address()))
        .await
        .expect("admin");
    let topics: Vec<NewTopic> = (0..TOPICS)
        .map(|i| NewTopic::new(format!("many-{i:02}"), PARTITIONS))
        .collect();
    for (name, created) in admin.create_topics(topics, false).await.expect("created") {
        created.unwrap_or_else(|error| panic!("{name}: {error}"));
    }
    let producer = Producer::connect(ProducerConfig::new(broker.address()))
        .await
        .expect("producer");
    let mut records = Vec::new();
    for i in 0..TOPICS {
        for partition in 0..PARTITIONS {
            for n in 0..3 {
                records.push(
                    ProduceRecord::new(format!("many-{i:02}"))
                        .partition(partition)
                        .value(format!("{{\"n\":{n}}}")),
                );
            }
        }
    }
    produce(&producer, records).await;
    // Five groups, each one record behind on every partition of its topic.
    for g in 0..5 {
        let offsets: Vec<((String, i32), i64)> = (0..PARTITIONS)
            .map(|p| ((format!("many-{g:02}"), p), 2))
            .collect();
        admin
            .alter_group_offsets(&format!("lagging-{g}"), &offsets)
            .await
            .expect("committed");
    }

    // The first load connects the console's admin client; the second is the one counted.
    let (status, _) = get(&broker, "topics").await;
    assert_eq!(status, 200);
    let list_offsets = answered(&broker, "ListOffsets").await;
    let log_dirs = answered(&broker, "DescribeLogDirs").await;
    let (status, topics) = get(&broker, "topics").await;
    assert_eq!(status, 200, "{topics}");
    let topics = topics.as_array().expect("a list");
    assert_eq!(topics.len(), TOPICS);
    for topic in topics {
        assert_eq!(topic["partitions"], PARTITIONS, "{topic}");
        assert_eq!(topic["records"], 3 * PARTITIONS, "{topic}");
        assert!(topic["size_bytes"].as_i64().unwrap_or(0) > 0, "{topic}");
    }
    // One broker leads all 200 partitions: log start and end in one request each.
    assert_eq!(answered(&broker, "ListOffsets").await - list_offsets, 2.0);
    assert_eq!(answered(&broker, "DescribeLogDirs").await - log_dirs, 1.0);

    let list_offsets = answered(&broker, "ListOffsets").await;
    let offset_fetch = answered(&broker, "OffsetFetch").await;
    let describe_groups = answered(&broker, "DescribeGroups").await;
    let (status, groups) = get(&broker, "groups").await;
    assert_eq!(status, 200, "{groups}");
    let groups = groups["groups"].as_array().expect("a list");
    assert_eq!(groups.len(), 5, "{groups:?}");
    for group in groups {
        assert_eq!(group["lag"], PARTITIONS, "{group}");
        assert_eq!(group["partitions"], PARTITIONS, "{group}");
    }
    assert_eq!(answered(&broker, "ListOffsets").await - list_offsets, 1.0);
    assert_eq!(answered(&broker, "OffsetFetch").await - offset_fetch, 1.0);
    assert_eq!(
        answered(&broker, "DescribeGroups").await - describe_groups,
        1.0
    );

    let (status, group) = get(&broker, "groups/lagging-3").await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["lag"], PARTITIONS);
    assert_eq!(group["offsets"][4]["committed"], 2);
    assert_eq!(group["offsets"][4]["log_end"], 3);
    assert_eq!(group["history"].as_array().map(Vec::len), Some(1));
    let (status, _) = get(&broker, "groups/no-such-group").await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_reads_by_offset_time_and_key_within_its_limits() {
    let broker = start().await;
    let admin = Admin::connect(ClientConfig::new(broker.address()))
        .await
        .expect("admin");
    admin
        .create_topic(NewTopic::new("browse", 2))
        .await
        .expect("created");
    let producer = Producer::connect(ProducerConfig::new(broker.address()))
        .await
        .expect("producer");
    // 100 records in partition 0, a second apart in time; 300-byte values.
    let start_ms = 1_700_000_000_000i64;
    let records = (0..100)
        .map(|n| {
            ProduceRecord::new("browse")
                .partition(0)
                .key(format!("k{n}"))
                .value(format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(280)))
                .timestamp(start_ms + n * 1000)
        })
        .collect();
    produce(&producer, records).await;

    let (status, page) = get(&broker, "topics/browse/messages?mode=oldest&limit=10").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(10));
    assert_eq!(page["stopped"], "limit");
    assert_eq!(page["messages"][0]["value"]["kind"], "json");
    assert_eq!(page["messages"][9]["offset"], 9);

    let (_, page) = get(
        &broker,
        "topics/browse/messages?mode=offset&offset=95&partition=0",
    )
    .await;
    let offsets: Vec<i64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["offset"].as_i64())
        .collect();
    assert_eq!(offsets, [95, 96, 97, 98, 99]);
    assert_eq!(page["stopped"], "end");

    let at = start_ms + 42 * 1000;
    let (_, page) = get(
        &broker,
        &format!("topics/browse/messages?mode=timestamp&timestamp={at}&limit=1"),
    )
    .await;
    assert_eq!(page["messages"][0]["offset"], 42, "{page}");

    let (_, page) = get(&broker, "topics/browse/messages?mode=oldest&key=k77").await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["messages"][0]["offset"], 77);
    assert_eq!(page["scanned"], 100);

    // A key search looks at no more than its window.
    let (_, page) = get(
        &broker,
        "topics/browse/messages?mode=oldest&key=k77&scan=50",
    )
    .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(0), "{page}");
    assert_eq!(page["stopped"], "scan");

    // The byte limit holds whatever the record limit says.
    let (_, page) = get(
        &broker,
        "topics/browse/messages?mode=oldest&limit=500&max_bytes=1024",
    )
    .await;
    assert_eq!(page["stopped"], "max_bytes", "{page}");
    assert!(page["bytes"].as_i64().unwrap_or(i64::MAX) <= 1024, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(3));

    // Newest across both partitions: partition 1 is empty, so all from partition 0.
    let (_, page) = get(&broker, "topics/browse/messages?limit=4").await;
    let offsets: Vec<i64> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["offset"].as_i64())
        .collect();
    assert_eq!(offsets, [96, 97, 98, 99], "{page}");

    // A key search from the newest end keeps the newest matches, not the first it reads.
    let repeated = (0..6)
        .map(|n| {
            ProduceRecord::new("browse")
                .partition(1)
                .key("again")
                .value(format!("{n}"))
                .timestamp(start_ms + 200_000 + n * 1000)
        })
        .collect();
    produce(&producer, repeated).await;
    let (_, page) = get(&broker, "topics/browse/messages?key=again&limit=2").await;
    let values: Vec<&str> = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["value"]["text"].as_str())
        .collect();
    assert_eq!(values, ["4", "5"], "{page}");

    let (status, page) = get(&broker, "topics/browse/messages?partition=7").await;
    assert_eq!(status, 404, "{page}");
    let (status, page) = get(&broker, "topics/browse/messages?mode=offset").await;
    assert_eq!(status, 400, "{page}");
    assert!(page["error"].as_str().is_some_and(|e| e.contains("offset")));
    let (status, _) = get(&broker, "topics/bad%20name/messages").await;
    assert_eq!(status, 400);
}
