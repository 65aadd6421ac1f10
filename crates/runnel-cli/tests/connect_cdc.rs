//! A PostgreSQL table mirrored into SQLite through Runnel, end to end with real processes: a
//! broker, a PostgreSQL server, and `runnel connect standalone` running the change data
//! capture source (Debezium's envelope) and the JDBC sink (upserts and deletes by key, after
//! Debezium's `ExtractNewRecordState`). The two tables must end equal after inserts, updates
//! and deletes, also across a `kill -9` of the worker between changes.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runnel_testkit::PostgresServer;
use support::BrokerProcess;

const QUERY: &str = "SELECT id, name, coalesce(email, 'NULL'), visits FROM customers ORDER BY id";

fn postgres_rows(pg: &PostgresServer) -> Vec<String> {
    pg.psql("runnel", QUERY)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The mirror's rows in psql's unaligned form; none while the table does not exist yet.
fn sqlite_rows(path: &Path) -> Vec<String> {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) = db.prepare(QUERY) else {
        return Vec::new();
    };
    let rows = statement.query_map([], |row| {
        Ok(format!(
            "{}|{}|{}|{}",
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, i64>(3)?
        ))
    });
    match rows {
        Ok(rows) => rows.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

fn wait_until_mirrored(pg: &PostgresServer, mirror: &Path, log: &Path) {
    let expected = postgres_rows(pg);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mirrored = sqlite_rows(mirror);
        if mirrored == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror did not catch up:\npostgres: {expected:?}\nsqlite:   {mirrored:?}\nworker log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_worker(broker: &BrokerProcess, dir: &Path, connectors: &[&Path]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("worker.log"))
        .expect("the worker's log");
    Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["connect", "standalone", "--bootstrap", &broker.address()])
        .args([
            "--rest-listen",
            &format!("127.0.0.1:{}", runnel_testkit::free_port()),
        ])
        .arg("--offsets-file")
        .arg(dir.join("connect.offsets"))
        .args([
            "-X",
            "offset.flush.interval.ms=500",
            "-X",
            "consumer.session.timeout.ms=6000",
        ])
        .args(connectors)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("the log again"))
        .stderr(log)
        .spawn()
        .expect("start runnel connect standalone")
}

#[test]
fn a_postgres_table_is_mirrored_into_sqlite_across_a_worker_kill() {
    let pg = PostgresServer::start();
    pg.psql(
        "runnel",
        "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text, visits bigint NOT NULL);
         INSERT INTO customers VALUES (1, 'ada', 'ada@example.com', 1), (2, 'bob', NULL, 2), (3, 'cy', 'cy@example.com', 3);",
    );
    let broker = BrokerProcess::start(&[]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mirror = dir.path().join("mirror.db");
    let source = dir.path().join("cdc.json");
    std::fs::write(
        &source,
        serde_json::json!({"name": "pg-cdc", "config": {
            "connector.class": "PostgresCdcSource",
            "database.hostname": "127.0.0.1",
            "database.port": pg.port().to_string(),
            "database.user": "postgres",
            "database.dbname": "runnel",
            "topic.prefix": "pg",
            "table.include.list": "public.customers",
        }})
        .to_string(),
    )
    .expect("write the source config");
    let sink = dir.path().join("sqlite.json");
    std::fs::write(
        &sink,
        serde_json::json!({"name": "sqlite-mirror", "config": {
            "connector.class": "JdbcSink",
            "connection.url": format!("jdbc:sqlite:{}", mirror.display()),
            "topics": "pg.public.customers",
            "table.name.format": "customers",
            "insert.mode": "upsert",
            "pk.mode": "record_key",
            "delete.enabled": "true",
            "auto.create": "true",
            "auto.evolve": "true",
            "transforms": "unwrap",
            "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.drop.tombstones": "false",
        }})
        .to_string(),
    )
    .expect("write the sink config");
    let log = dir.path().join("worker.log");
    let mut worker = start_worker(&broker, dir.path(), &[&source, &sink]);

    // The snapshot, then changes in several transactions.
    wait_until_mirrored(&pg, &mirror, &log);
    pg.psql(
        "runnel",
        "BEGIN; INSERT INTO customers VALUES (4, 'dee', NULL, 0); UPDATE customers SET visits = visits + 10 WHERE id = 1; COMMIT;
         UPDATE customers SET email = 'bob@example.com' WHERE id = 2;
         DELETE FROM customers WHERE id = 3;",
    );
    wait_until_mirrored(&pg, &mirror, &log);

    // Killed, then changes while it is down, then restarted: it resumes where it committed.
    worker.kill().expect("kill -9 the worker");
    worker.wait().expect("reap the worker");
    pg.psql(
        "runnel",
        "INSERT INTO customers SELECT g, 'user' || g, NULL, g FROM generate_series(5, 200) g;
         UPDATE customers SET name = 'ada lovelace' WHERE id = 1;
         DELETE FROM customers WHERE id BETWEEN 100 AND 150;",
    );
    let mut worker = start_worker(&broker, dir.path(), &[&source, &sink]);
    wait_until_mirrored(&pg, &mirror, &log);
    worker.kill().expect("stop the worker");
    worker.wait().expect("reap the worker");
}
