//! `runnel demo`: the platform end to end, on this machine, with one command. It starts a
//! local three-node cluster (the nodes of `runnel dev cluster`, node 1 also serving the web
//! console), creates the `clicks` and `pageviews-per-10s` topics, feeds `clicks` made-up
//! click events, runs a Streams application that counts them per page in 10-second windows
//! of event time into `pageviews-per-10s`, and runs a Connect JDBC sink that upserts those
//! counts into a SQLite table; then it prints where to look. Ctrl-C (or SIGTERM) stops it all
//! in order: the producer flushes, the Streams application closes, the Connect worker stops,
//! then the nodes.
//!
//! Everything it writes is under `--data-dir` (default `./runnel-demo`), and the next run
//! reuses it: the nodes keep their topics and records, the Streams application resumes from
//! its committed offsets with its stores, and the table keeps its rows. Deleting the folder
//! starts afresh.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use kafka_protocol::error::ResponseError;
use runnel_client::{Admin, ClientConfig, NewTopic, ProduceRecord, Producer, ProducerConfig};
use runnel_connect::config::Configs;
use runnel_connect::standalone::{run_standalone, StandaloneOptions};
use runnel_streams::{
    Consumed, Grouped, KafkaStreams, Nullable, Produced, StreamsBuilder, StreamsConfig,
    StringSerde, TimeWindows, Windowed,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dev_cmd::{plan_cluster, LocalCluster, StoppedWhileStarting};

const NODES: u16 = 3;
const CLICKS: &str = "clicks";
const PAGEVIEWS: &str = "pageviews-per-10s";
/// The Streams application's id: its consumer group and the prefix of its internal topics.
const APPLICATION_ID: &str = "runnel-demo-pageviews";
const CONNECTOR: &str = "pageviews-sqlite";
const TABLE: &str = "pageviews";
/// The windows: tumbling, 10 seconds of event time.
const WINDOW_MS: i64 = 10_000;
/// How late a click may arrive and still be counted in its window.
const GRACE_MS: i64 = 5_000;
/// The pages clicked, each with its share of the clicks: a few popular pages and a tail, so
/// that the counts differ visibly.
const PAGES: &[(&str, u32)] = &[
    ("/", 30),
    ("/products", 25),
    ("/pricing", 15),
    ("/docs", 12),
    ("/blog", 10),
    ("/about", 5),
    ("/careers", 3),
];
/// Distinct users clicking.
const USERS: u32 = 20;
/// How long each part may take to stop before it is abandoned.
const STOP_WITHIN: Duration = Duration::from_secs(20);

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Folder for everything the demo writes: the nodes' data and logs, the SQLite database,
    /// the connector's config; the next run reuses it (delete it to start afresh).
    #[arg(long, default_value = "./runnel-demo", value_name = "DIR")]
    data_dir: PathBuf,
    /// Node N's broker listens on 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9092)]
    port: u16,
    /// Node N's controller listens on 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9192)]
    controller_port: u16,
    /// Node N's admin listener (/metrics, /health/*; node 1's also /console/) is on
    /// 127.0.0.1:(PORT + N - 1).
    #[arg(long, default_value_t = 9644)]
    admin_port: u16,
    /// The Connect worker's REST API listens on 127.0.0.1:PORT.
    #[arg(long, default_value_t = 8083)]
    connect_port: u16,
    /// Clicks produced per second.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rate: u32,
}

/// Where the demo keeps what it writes, all under the data directory.
struct Layout {
    /// As given, for what is printed.
    data_dir: PathBuf,
    /// Absolute: the connector's `connection.url` must not depend on the working directory.
    database: PathBuf,
    connector_file: PathBuf,
    connect_offsets: PathBuf,
    /// The Streams application's stores.
    streams_state: PathBuf,
}

impl Layout {
    fn new(data_dir: &Path) -> anyhow::Result<Layout> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let absolute = std::fs::canonicalize(data_dir)
            .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
        Ok(Layout {
            data_dir: data_dir.to_path_buf(),
            database: absolute.join("pageviews.db"),
            connector_file: data_dir.join(format!("{CONNECTOR}.json")),
            connect_offsets: data_dir.join("connect.offsets"),
            streams_state: data_dir.join("streams"),
        })
    }
}

/// Runs the demo until `stop` completes (Ctrl-C or SIGTERM).
pub(crate) fn run(
    args: DemoArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Listening before the first node starts: a stop while the nodes start then stops them,
    // where the default action would end this process and leave them running.
    let (request_stop, stop_requested) = watch::channel(false);
    runtime.spawn(async move {
        stop.await;
        let _ = request_stop.send(true);
    });
    let layout = Layout::new(&args.data_dir)?;
    let connect_listen = SocketAddr::from(([127, 0, 0, 1], args.connect_port));
    let mut plan = plan_cluster(
        NODES,
        &args.data_dir,
        args.port,
        args.controller_port,
        args.admin_port,
    )?;
    if let Some(first) = plan.nodes.first_mut() {
        // The console shows the demo's connector too.
        first.extra_args = vec![
            "--console".to_owned(),
            "--console-connect-url".to_owned(),
            format!("http://{connect_listen}"),
        ];
    }
    println!(
        "Starting {NODES} nodes, data in {} (their logs: nodeN.log)...",
        layout.data_dir.display()
    );
    let stopping = stop_requested.clone();
    let cluster = match LocalCluster::start(plan, &|| *stopping.borrow()) {
        Ok(cluster) => cluster,
        Err(error) if error.is::<StoppedWhileStarting>() => {
            println!("Stopped before the cluster was up.");
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let outcome = runtime.block_on(run_on_cluster(
        &args,
        &layout,
        &cluster,
        connect_listen,
        stop_requested,
    ));
    println!("Stopping the nodes...");
    cluster.stop();
    outcome?;
    println!("Stopped.");
    Ok(())
}

/// One part of the demo, running as a task until told to stop; it ends with a line saying
/// what it did.
struct Part {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<String>>,
}

impl Part {
    fn spawn<F>(name: &'static str, run: impl FnOnce(watch::Receiver<bool>) -> F) -> Part
    where
        F: std::future::Future<Output = anyhow::Result<String>> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        Part {
            name,
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    /// Tells it to stop and waits, for [`STOP_WITHIN`] at most; an error if it failed.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut task = self.task;
        match tokio::time::timeout(STOP_WITHIN, &mut task).await {
            Ok(Ok(Ok(summary))) => {
                println!("  {}: {summary}", self.name);
                Ok(())
            }
            Ok(Ok(Err(error))) => Err(error.context(format!("the {} failed", self.name))),
            Ok(Err(panicked)) => Err(anyhow::anyhow!("the {} panicked: {panicked}", self.name)),
            Err(_) => {
                task.abort();
                Err(anyhow::anyhow!(
                    "the {} did not stop within {STOP_WITHIN:?}",
                    self.name
                ))
            }
        }
    }
}

/// Completes once `stop` says so (or its sender is gone, which means the same).
async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Everything but the nodes: the topics, the three parts, the guide; then the stop.
async fn run_on_cluster(
    args: &DemoArgs,
    layout: &Layout,
    cluster: &LocalCluster,
    connect_listen: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let bootstrap = cluster.bootstrap();
    tokio::select! {
        created = create_topics(&bootstrap) => created?,
        () = until_stopped(&mut stop) => return Ok(()),
    }
    write_connector_file(layout)?;
    let options = StandaloneOptions {
        bootstrap: bootstrap.clone(),
        rest_listen: connect_listen,
        offsets_file: layout.connect_offsets.clone(),
        worker_properties: Configs::new(),
        connector_files: vec![layout.connector_file.clone()],
    };
    let rate = args.rate;
    // In the order they stop: the producer first, so that its last clicks are still counted
    // and written; the nodes after every client.
    let parts = vec![
        Part::spawn("click producer", |stop| {
            produce_clicks(bootstrap.clone(), rate, stop)
        }),
        Part::spawn("Streams application", |stop| {
            count_pageviews(bootstrap.clone(), layout.streams_state.clone(), stop)
        }),
        Part::spawn("Connect worker", |stop| run_connect(options, stop)),
    ];
    print_guide(args, layout, cluster, connect_listen);
    // Until the stop, or until a part ends by itself, which only a failure makes it do.
    let mut failed = None;
    loop {
        tokio::select! {
            () = until_stopped(&mut stop) => break,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(part) = parts.iter().find(|part| part.task.is_finished()) {
            failed = Some(part.name);
            break;
        }
    }
    println!("Stopping...");
    let mut first_error = None;
    for part in parts {
        if let Err(error) = part.stop().await {
            // The first is the command's error, which main reports; the others only here.
            match &first_error {
                None => first_error = Some(error),
                Some(_) => eprintln!("runnel: error: {error:#}"),
            }
        }
    }
    match (failed, first_error) {
        (_, Some(error)) => Err(error),
        (Some(name), None) => Err(anyhow::anyhow!("the {name} stopped by itself")),
        (None, None) => Ok(()),
    }
}

/// Creates both topics: three partitions, each on all three nodes. A rerun finds them
/// there already, which is fine.
async fn create_topics(bootstrap: &str) -> anyhow::Result<()> {
    let admin = Admin::connect(ClientConfig::new(bootstrap))
        .await
        .with_context(|| format!("cannot reach the cluster at {bootstrap}"))?;
    let topics = [CLICKS, PAGEVIEWS]
        .iter()
        .map(|name| NewTopic::new(*name, 3).with_replication_factor(3))
        .collect();
    for (name, created) in admin
        .create_topics(topics, false)
        .await
        .context("cannot create the demo's topics")?
    {
        match created {
            Ok(()) => {}
            Err(error) if error.code() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create topic {name}"));
            }
        }
    }
    Ok(())
}

/// Writes the sink's connector config where people can read it (and reuse it with
/// `runnel connect standalone`): the counts of `pageviews-per-10s` upserted into the
/// `pageviews` table by (page, window_start), so that each window's row is updated in place
/// as its count grows.
fn write_connector_file(layout: &Layout) -> anyhow::Result<()> {
    let connector = serde_json::json!({
        "name": CONNECTOR,
        "config": {
            "connector.class": "JdbcSink",
            "topics": PAGEVIEWS,
            "connection.url": format!("jdbc:sqlite:{}", layout.database.display()),
            "table.name.format": TABLE,
            "insert.mode": "upsert",
            "pk.mode": "record_value",
            "pk.fields": "page,window_start",
            "auto.create": "true",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "true",
        }
    });
    let text = serde_json::to_string_pretty(&connector).context("cannot write JSON")?;
    std::fs::write(&layout.connector_file, text + "\n")
        .with_context(|| format!("cannot write {}", layout.connector_file.display()))
}

fn print_guide(
    args: &DemoArgs,
    layout: &Layout,
    cluster: &LocalCluster,
    connect_listen: SocketAddr,
) {
    let bootstrap = cluster.bootstrap();
    let admin: Vec<&str> = cluster.nodes().map(|node| node.admin.as_str()).collect();
    let console = admin.first().copied().unwrap_or_default();
    let data_dir = layout.data_dir.display();
    println!();
    println!(
        "Runnel demo: {NODES} nodes, data in {data_dir} (kept for the next run; delete it to \
         start afresh)"
    );
    println!(
        "  {CLICKS:<18} {} clicks a second, JSON {{user, page, timestamp}} keyed by user",
        args.rate
    );
    println!(
        "  {PAGEVIEWS:<18} a Streams application's count of clicks per page in 10-second \
         windows of event time, as they grow"
    );
    println!(
        "  {TABLE:<18} a SQLite table that a Connect JDBC sink upserts each window's count into"
    );
    println!();
    println!("Console:   http://{console}/console/");
    println!("Bootstrap: {bootstrap}");
    println!("Connect:   http://{connect_listen}/connectors/{CONNECTOR}/status");
    for (node, admin) in cluster.nodes().zip(&admin) {
        println!("Metrics:   http://{admin}/metrics (node {})", node.id);
    }
    println!();
    println!("Try:");
    println!("  runnel consume {PAGEVIEWS} -b {bootstrap}");
    println!(
        "  sqlite3 {} 'select * from {TABLE} order by window_start desc limit 10'",
        layout.data_dir.join("pageviews.db").display()
    );
    println!("  runnel group describe {APPLICATION_ID} -b {bootstrap}");
    println!("  runnel topic describe {CLICKS} -b {bootstrap}");
    println!();
    println!("Ctrl-C stops everything.");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Produces `rate` clicks a second to `clicks` until stopped, then flushes.
async fn produce_clicks(
    bootstrap: String,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let producer = Producer::connect(ProducerConfig::new(bootstrap))
        .await
        .context("cannot connect the click producer")?;
    let mut clicks = Clicks::seeded();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    let failed = Arc::new(AtomicU64::new(0));
    let mut sent = 0u64;
    loop {
        tokio::select! {
            () = until_stopped(&mut stop) => break,
            _ = ticker.tick() => {}
        }
        let timestamp = now_ms();
        let (user, page) = clicks.next_click();
        let value = serde_json::json!({ "user": user, "page": page, "timestamp": timestamp });
        // The click's time is the record's timestamp too: the event time windows go by.
        let record = ProduceRecord::new(CLICKS)
            .key(user)
            .value(value.to_string())
            .timestamp(timestamp);
        let delivery = producer.send(record).await.context("cannot send a click")?;
        let failed = Arc::clone(&failed);
        // Waiting for each answer here would hold the rate to one click per round trip.
        tokio::spawn(async move {
            if let Err(error) = delivery.await {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "a click was not written");
            }
        });
        sent += 1;
    }
    producer
        .flush()
        .await
        .context("cannot flush the click producer")?;
    producer
        .close()
        .await
        .context("cannot close the click producer")?;
    Ok(format!(
        "{sent} clicks sent, {} not written",
        failed.load(Ordering::Relaxed)
    ))
}

/// Made-up clicks: a user and a page, the pages by their share in [`PAGES`]. A xorshift
/// generator: the clicks need to look varied, not be unpredictable.
struct Clicks(u64);

impl Clicks {
    fn seeded() -> Clicks {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        // Never zero, which xorshift would stay at.
        Clicks((nanos ^ (u64::from(std::process::id()) << 32)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn next_click(&mut self) -> (String, &'static str) {
        let user = format!("user-{}", self.next_u64() % u64::from(USERS) + 1);
        let total: u32 = PAGES.iter().map(|(_, share)| share).sum();
        let mut pick = (self.next_u64() % u64::from(total)) as u32;
        for (page, share) in PAGES {
            if pick < *share {
                return (user, page);
            }
            pick -= share;
        }
        (user, PAGES[0].0)
    }
}

/// The schema of a window's count, in the JSON converter's form.
const PAGEVIEW_SCHEMA: &str = r#"{"type":"struct","name":"pageview","optional":false,"fields":[{"field":"page","type":"string","optional":false},{"field":"window_start","type":"int64","optional":false},{"field":"window_end","type":"int64","optional":false},{"field":"count","type":"int64","optional":false}]}"#;

/// A window's count as `pageviews-per-10s` holds it, keyed by the page. The payload is
/// `{"page", "window_start", "window_end", "count"}`; it is wrapped in the JSON converter's
/// envelope (`{"schema", "payload"}`) because the JDBC sink writes only records with a
/// schema, as Kafka Connect's does.
fn pageview_value(page: &str, window_start: i64, count: i64) -> String {
    // Written out rather than through a map, which would sort the fields.
    let payload = format!(
        r#"{{"page":{},"window_start":{window_start},"window_end":{},"count":{count}}}"#,
        serde_json::Value::from(page),
        window_start + WINDOW_MS
    );
    format!(r#"{{"schema":{PAGEVIEW_SCHEMA},"payload":{payload}}}"#)
}

/// The page of a click's JSON value, if it has one.
fn page_of(value: &[u8]) -> Option<String> {
    let click: serde_json::Value = serde_json::from_slice(value).ok()?;
    click.get("page")?.as_str().map(str::to_owned)
}

/// The Streams part: a `KafkaStreams` application (id [`APPLICATION_ID`]) that counts
/// `clicks` per page in tumbling 10-second windows of event time (the records' timestamps),
/// taking clicks up to [`GRACE_MS`] late, and writes each window's count to
/// `pageviews-per-10s`, keyed by page, as it grows; its stores live under `state_dir`, and
/// are backed by changelog topics, so that a rerun carries on with the open windows' counts.
async fn count_pageviews(
    bootstrap: String,
    state_dir: PathBuf,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let builder = StreamsBuilder::new();
    builder
        .stream(CLICKS, Consumed::with(Nullable(StringSerde), StringSerde))
        // A click that is not JSON with a page is dropped here.
        .flat_map_values(|click: String| page_of(click.as_bytes()))
        .group_by(
            |_, page: &String| page.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .windowed_by(TimeWindows::of_size_and_grace(WINDOW_MS, GRACE_MS))
        .count(Some("pageviews"))
        .to_stream()
        .flat_map(|window: Windowed<String>, count: Option<i64>| {
            count.map(|count| {
                let value = pageview_value(&window.key, window.start, count);
                (window.key, value)
            })
        })
        .to(PAGEVIEWS, Produced::with(StringSerde, StringSerde));
    let topology = builder
        .build()
        .context("cannot build the page view topology")?;
    let mut config = StreamsConfig::new(APPLICATION_ID, &bootstrap).state_dir(state_dir);
    // Counts reach the table within a second or two, rather than at Kafka Streams' 30 s.
    config.commit_interval = Duration::from_secs(1);
    let app = KafkaStreams::start(topology, config)
        .await
        .context("cannot start the Streams application")?;
    until_stopped(&mut stop).await;
    let metrics = app.metrics();
    app.close()
        .await
        .context("cannot close the Streams application")?;
    Ok(format!(
        "{} records processed (the clicks, then again once repartitioned by page), {} dropped",
        metrics.processed_records, metrics.dropped_records
    ))
}

/// A standalone Connect worker in this process, running the sink of
/// [`write_connector_file`], until stopped.
async fn run_connect(
    options: StandaloneOptions,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<String> {
    let rest = options.rest_listen;
    run_standalone(options, runnel_connect::builtin_plugins(), async move {
        until_stopped(&mut stop).await
    })
    .await
    .with_context(|| format!("the Connect worker (REST on {rest}) could not run"))?;
    Ok("stopped, offsets committed".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn clicks_visit_every_page_the_popular_ones_most() {
        let mut clicks = Clicks(42);
        let mut seen: HashMap<&str, u32> = HashMap::new();
        for _ in 0..10_000 {
            let (user, page) = clicks.next_click();
            assert!(user.starts_with("user-"), "{user}");
            *seen.entry(page).or_default() += 1;
        }
        assert_eq!(seen.len(), PAGES.len());
        assert!(seen["/"] > seen["/pricing"] && seen["/pricing"] > seen["/careers"]);
    }

    #[test]
    fn a_count_is_a_struct_the_jdbc_sink_takes() {
        let value: serde_json::Value =
            serde_json::from_str(&pageview_value("/docs", 1_700_000_000_000, 7)).expect("JSON");
        assert!(
            pageview_value("/docs", 0, 7).ends_with(
                r#""payload":{"page":"/docs","window_start":0,"window_end":10000,"count":7}}"#
            ),
            "the fields in the order people read them"
        );
        assert_eq!(
            value["payload"],
            serde_json::json!({
                "page": "/docs",
                "window_start": 1_700_000_000_000_i64,
                "window_end": 1_700_000_010_000_i64,
                "count": 7,
            })
        );
        // What the sink's converter makes of it: a struct with a schema, which it writes.
        let converter = runnel_connect::converter::converter_for(
            "org.apache.kafka.connect.json.JsonConverter",
            &Configs::new(),
        )
        .expect("the JSON converter");
        let bytes = pageview_value("/docs", 0, 1);
        let data = converter
            .to_connect(PAGEVIEWS, Some(bytes.as_bytes()))
            .expect("converts");
        let schema = data.schema.expect("a schema");
        assert_eq!(schema.kind, runnel_connect::data::SchemaType::Struct);
        let fields: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(fields, ["page", "window_start", "window_end", "count"]);
        assert_eq!(
            page_of(br#"{"user":"u","page":"/a","timestamp":1}"#).as_deref(),
            Some("/a")
        );
        assert_eq!(page_of(b"not json"), None);
    }
}
