//! The kit's PostgreSQL server starts, answers queries, and has logical decoding on.

#[test]
fn a_postgres_server_starts_with_logical_decoding() {
    let server = runnel_testkit::PostgresServer::start();
    assert_eq!(server.psql("runnel", "SHOW wal_level").trim(), "logical");
    server.psql(
        "runnel",
        "CREATE TABLE t (id int primary key); INSERT INTO t VALUES (1), (2)",
    );
    assert_eq!(server.psql("runnel", "SELECT count(*) FROM t").trim(), "2");
}
