//! The PostgreSQL change data capture task: it owns the database session, the publication
//! and the replication slot, the initial snapshot, reading the slot, and where it is.
//!
//! The task runs on the worker's task thread with a current-thread tokio runtime of its
//! own; every call blocks on it. One connection does everything, in turn: creating the
//! slot, the snapshot's transaction, then peeking at the slot.
//!
//! # Positions
//!
//! Every streamed record's offset names its place: the commit LSN of its transaction
//! (`lsn`, `lsn_commit`), the change's index in the transaction (`event`) and the
//! record's index among those of the change (`part`: a delete is followed by its
//! tombstone; a primary key update is a delete, a tombstone and a create), and whether it
//! is the transaction's last record (`last_event`). pgoutput (protocol 1) sends only
//! committed transactions, whole, in commit order, so these positions only grow along the
//! stream. That is what makes resuming by position lose nothing: a transaction that
//! commits after another always comes after it, with a greater commit LSN, however early
//! it began or wrote its first change. (Had the stream been in the order changes were
//! written, a long transaction that began first and committed last would sit before
//! positions already confirmed, and skipping "everything up to the committed position"
//! would skip it.)
//!
//! The slot is advanced in [`SourceTask::commit`] to the committed offset: to the commit
//! LSN of its transaction when records of that transaction may still be uncommitted (the
//! slot then still returns that transaction, whose committed records are skipped by
//! position), past it when its last record was committed. Peeking always starts at the
//! slot's confirmed position, so what was peeked and emitted but not yet committed is
//! returned again by the next peek and skipped by position: the peek limit grows while a
//! peek returns nothing new, and falls back once the slot advances.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::envelope::{Column, Op, SourceInfo, TableSchema};
use super::pgoutput::{self, Begin, ColumnValue, Lsn, Message, Relation, POSTGRES_EPOCH_MICROS};
use super::types;
use super::{Autocreate, Settings, SnapshotMode};
use crate::config::Configs;
use crate::connector::{ConnectError, SourceTask, TaskContext};
use crate::data::{ConnectRecord, SourceOffset, SourcePartition, SourceRecord, Value};

/// How far the peek limit may grow, as a multiple of `max.batch.size`.
const PEEK_LIMIT_GROWTH: i32 = 64;
/// How often the slot may be advanced past changes that produced no record (other
/// tables' changes), when everything emitted is committed.
const IDLE_ADVANCE_EVERY: Duration = Duration::from_secs(10);
/// The snapshot's cursor.
const SNAPSHOT_CURSOR: &str = "runnel_cdc_snapshot";
/// How long a sleep lasts before looking whether the task is stopping.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

/// A record's place in the stream; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    commit_lsn: u64,
    event: u64,
    part: u64,
}

impl Position {
    /// The streaming position in a committed offset, with whether it is its transaction's
    /// last record; `None` for a snapshot's offset.
    fn from_offset(offset: &SourceOffset) -> Option<(Position, bool)> {
        if offset.get("snapshot").and_then(serde_json::Value::as_bool) == Some(true) {
            return None;
        }
        let commit_lsn = offset
            .get("lsn_commit")
            .or_else(|| offset.get("lsn"))
            .and_then(serde_json::Value::as_u64)?;
        // An offset without an event index covers its whole transaction.
        let Some(event) = offset.get("event").and_then(serde_json::Value::as_u64) else {
            return Some((
                Position {
                    commit_lsn,
                    event: u64::MAX,
                    part: u64::MAX,
                },
                true,
            ));
        };
        let part = offset
            .get("part")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let last = offset
            .get("last_event")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Some((
            Position {
                commit_lsn,
                event,
                part,
            },
            last,
        ))
    }
}

/// Milliseconds since the epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An identifier, quoted for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A failed database call: retriable when the connection was lost or the slot is held by
/// another session (an old task not yet gone), failed otherwise.
fn db_error(what: &str) -> impl Fn(tokio_postgres::Error) -> ConnectError + '_ {
    move |e| {
        let message = match e.as_db_error() {
            Some(db) => format!("{what}: {}", db.message()),
            None => format!("{what}: {e}"),
        };
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        let retriable = e.is_closed() || io || e.code() == Some(&SqlState::OBJECT_IN_USE);
        if retriable {
            ConnectError::Retriable(message)
        } else {
            ConnectError::Failed(message)
        }
    }
}

/// What the catalog says of a column.
#[derive(Debug, Clone)]
struct CatalogColumn {
    name: String,
    /// `atttypid`: the column's type, a domain's own OID for a domain.
    declared_oid: u32,
    /// The built-in type under any domain.
    base_oid: u32,
    /// The modifier of the base type.
    typmod: i32,
    not_null: bool,
    /// The column's place in the primary key, from 1.
    key_position: Option<i64>,
}

/// The columns of table `relid`, in order, without dropped or generated columns (which
/// pgoutput does not send either).
async fn catalog_columns(
    client: &Client,
    relid: u32,
    server_version: i32,
) -> Result<Vec<CatalogColumn>, ConnectError> {
    let generated = if server_version >= 120_000 {
        "AND a.attgenerated = ''"
    } else {
        ""
    };
    let sql = format!(
        "SELECT a.attname::text, a.atttypid, \
                CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, \
                CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END, \
                a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), \
                (SELECT k.ord FROM pg_index x, unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                  WHERE x.indrelid = a.attrelid AND x.indisprimary AND k.attnum = a.attnum) \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped {generated} \
         ORDER BY a.attnum"
    );
    let rows = client
        .query(&sql, &[&relid])
        .await
        .map_err(db_error("cannot read a table's columns"))?;
    let read = |e: tokio_postgres::Error| {
        ConnectError::Failed(format!("cannot read a table's columns: {e}"))
    };
    rows.iter()
        .map(|row| {
            Ok(CatalogColumn {
                name: row.try_get(0).map_err(read)?,
                declared_oid: row.try_get(1).map_err(read)?,
                base_oid: row.try_get(2).map_err(read)?,
                typmod: row.try_get(3).map_err(read)?,
                not_null: row.try_get(4).map_err(read)?,
                key_position: row.try_get(5).map_err(read)?,
            })
        })
        .collect()
}

/// The key columns of `catalog` as positions in `names`, in the primary key's order;
/// empty without a primary key, or if a key column is not among `names`.
fn key_positions(catalog: &[CatalogColumn], names: &[&str]) -> Vec<usize> {
    let mut keyed: Vec<(i64, &str)> = catalog
        .iter()
        .filter_map(|c| c.key_position.map(|p| (p, c.name.as_str())))
        .collect();
    keyed.sort_unstable();
    let positions: Option<Vec<usize>> = keyed
        .iter()
        .map(|(_, name)| names.iter().position(|n| n == name))
        .collect();
    positions.unwrap_or_default()
}

/// A table's schemas from the catalog alone (the snapshot's).
fn schema_from_catalog(
    settings: &Settings,
    schema: &str,
    table: &str,
    catalog: &[CatalogColumn],
) -> TableSchema {
    let columns = catalog
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            kind: types::kind_of(c.base_oid, c.typmod),
            optional: !c.not_null,
        })
        .collect();
    let names: Vec<&str> = catalog.iter().map(|c| c.name.as_str()).collect();
    TableSchema::new(
        &settings.prefix,
        schema,
        table,
        columns,
        key_positions(catalog, &names),
        settings.decimal_mode,
    )
}

/// A table's schemas from a Relation message, which says what the tuples hold, completed
/// by the catalog (nullability, domains, the primary key). A column the catalog no longer
/// has, or has with another type, is taken as the message says, nullable.
fn schema_from_relation(
    settings: &Settings,
    relation: &Relation,
    catalog: &[CatalogColumn],
) -> TableSchema {
    let columns = relation
        .columns
        .iter()
        .map(|rc| {
            match catalog
                .iter()
                .find(|c| c.name == rc.name && c.declared_oid == rc.type_oid)
            {
                Some(c) => Column {
                    name: rc.name.clone(),
                    kind: types::kind_of(c.base_oid, c.typmod),
                    optional: !c.not_null,
                },
                None => Column {
                    name: rc.name.clone(),
                    kind: types::kind_of(rc.type_oid, rc.type_modifier),
                    optional: true,
                },
            }
        })
        .collect();
    let names: Vec<&str> = relation.columns.iter().map(|c| c.name.as_str()).collect();
    TableSchema::new(
        &settings.prefix,
        &relation.namespace,
        &relation.name,
        columns,
        key_positions(catalog, &names),
        settings.decimal_mode,
    )
}

/// A table the decoding session described, and its schemas if it is captured.
#[derive(Debug)]
struct Cached {
    relation: Relation,
    table: Option<TableSchema>,
}

/// What the snapshot's source blocks and offsets say.
#[derive(Debug, Clone, Copy)]
struct SnapshotInfo {
    lsn: Lsn,
    tx_id: i64,
    ts_ms: i64,
}

/// A snapshot under way, inside its `REPEATABLE READ` transaction.
#[derive(Debug)]
struct Snapshot {
    info: SnapshotInfo,
    /// The tables still to read: OID, schema, name.
    tables: VecDeque<(u32, String, String)>,
    /// The table whose cursor is open.
    current: Option<Arc<TableSchema>>,
    /// The last row read, held back until the next one comes, so that the snapshot's last
    /// record can say it is the last.
    pending: Option<(Arc<TableSchema>, Value)>,
}

#[derive(Debug)]
enum Phase {
    /// The snapshot, not yet begun (`None`) or under way.
    Snapshot(Option<Snapshot>),
    /// Reading the slot.
    Streaming,
    /// `initial_only` after its snapshot: nothing more to do.
    Done,
}

/// The task's state once started.
struct Running {
    settings: Settings,
    context: TaskContext,
    partition: SourcePartition,
    client: Option<Arc<Client>>,
    server_version: i32,
    phase: Phase,
    /// Records at or before this place are not emitted: they were emitted already, or
    /// committed before a restart.
    position: Option<Position>,
    /// The place of the last record emitted since the start.
    last_emitted: Option<Position>,
    /// The slot's confirmed position, as last read or advanced.
    confirmed: Lsn,
    /// A position everything before which was read (a peek that was not cut short).
    scanned_upto: Lsn,
    peek_limit: i32,
    /// Whether the last peek was cut short and the next one reads further: poll again
    /// at once rather than wait.
    more_to_read: bool,
    relations: HashMap<u32, Cached>,
    last_idle_advance: Instant,
}

/// The source task of the PostgreSQL connector.
#[derive(Default)]
pub(crate) struct PostgresCdcTask {
    runtime: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
}

/// Opens a session set up so that every type's text form is the one `types` reads.
async fn connect(settings: &Settings) -> Result<Client, ConnectError> {
    let address = format!(
        "{}:{}/{}",
        settings.hostname, settings.port, settings.dbname
    );
    let (client, connection) = settings.pg_config().connect(NoTls).await.map_err(|e| {
        ConnectError::Retriable(format!("cannot connect to PostgreSQL at {address}: {e}"))
    })?;
    let server = address.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(server = %server, error = %e, "the PostgreSQL connection ended");
        }
    });
    client
        .batch_execute(
            "SET DateStyle = 'ISO, YMD'; SET TimeZone = 'UTC'; SET IntervalStyle = 'iso_8601'; \
             SET bytea_output = 'hex'; SET extra_float_digits = 3; SET lc_monetary = 'C'",
        )
        .await
        .map_err(db_error("cannot set up the session"))?;
    Ok(client)
}

impl Running {
    fn client(&self) -> Result<Arc<Client>, ConnectError> {
        self.client
            .clone()
            .ok_or_else(|| ConnectError::Retriable("not connected to PostgreSQL".to_owned()))
    }

    /// Connects again if the connection was lost. A snapshot under way is lost with its
    /// transaction and starts over (its rows may then be emitted twice).
    async fn ensure_connected(&mut self) -> Result<Arc<Client>, ConnectError> {
        if let Some(client) = self.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        if let Phase::Snapshot(snapshot @ Some(_)) = &mut self.phase {
            tracing::warn!(connector = %self.context.connector, "the connection was lost during the snapshot; it starts over");
            *snapshot = None;
        }
        self.client = None;
        let client = Arc::new(connect(&self.settings).await?);
        self.client = Some(client.clone());
        Ok(client)
    }

    fn committed(&self) -> Option<SourceOffset> {
        self.context.offset(&self.partition)
    }

    async fn start(&mut self) -> Result<(), ConnectError> {
        let client = Arc::new(
            connect(&self.settings)
                .await
                .map_err(|e| ConnectError::Failed(e.to_string()))?,
        );
        self.client = Some(client.clone());
        let version = client
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await
            .map_err(db_error("cannot read the server version"))?;
        let version: String = version
            .try_get(0)
            .map_err(|e| ConnectError::Failed(format!("cannot read the server version: {e}")))?;
        self.server_version = version.trim().parse().unwrap_or(0);
        if self.server_version < 110_000 {
            return Err(ConnectError::Failed(format!(
                "PostgreSQL {version} is too old: change data capture needs PostgreSQL 11 or later"
            )));
        }
        let committed = self.committed();
        self.position = committed
            .as_ref()
            .and_then(Position::from_offset)
            .map(|(p, _)| p);
        let snapshot_done = committed
            .as_ref()
            .and_then(|o| o.get("snapshot_completed"))
            .and_then(serde_json::Value::as_bool)
            == Some(true);
        let mode = self.settings.snapshot_mode;
        if mode == SnapshotMode::InitialOnly {
            // Only a snapshot: no publication or slot, which would keep WAL for nobody.
            self.phase = if snapshot_done {
                Phase::Done
            } else {
                Phase::Snapshot(None)
            };
            return Ok(());
        }
        // The publication first: pgoutput reads it as of each change, so it must exist
        // before the first change the slot will return.
        self.ensure_publication(&client).await?;
        let created = self.ensure_slot(&client).await?;
        if created && committed.is_some() {
            tracing::warn!(
                connector = %self.context.connector,
                slot = %self.settings.slot,
                "the replication slot was missing and has been created again: changes made \
                 since the last committed offset and before now were not captured"
            );
        }
        self.phase = match mode {
            SnapshotMode::Always => Phase::Snapshot(None),
            SnapshotMode::Initial if !snapshot_done => Phase::Snapshot(None),
            _ => Phase::Streaming,
        };
        Ok(())
    }

    /// The captured tables, in schema then name order: OID, schema, name.
    async fn captured_tables(
        &self,
        client: &Client,
    ) -> Result<Vec<(u32, String, String)>, ConnectError> {
        let rows = client
            .query(
                "SELECT c.oid, n.nspname::text, c.relname::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind = 'r' \
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                 ORDER BY 2, 3",
                &[],
            )
            .await
            .map_err(db_error("cannot list the tables"))?;
        let mut tables = Vec::with_capacity(rows.len());
        for row in rows {
            let read = |e: tokio_postgres::Error| {
                ConnectError::Failed(format!("cannot list the tables: {e}"))
            };
            let oid: u32 = row.try_get(0).map_err(read)?;
            let schema: String = row.try_get(1).map_err(read)?;
            let name: String = row.try_get(2).map_err(read)?;
            if self.settings.includes(&schema, &name) {
                tables.push((oid, schema, name));
            }
        }
        Ok(tables)
    }

    async fn ensure_publication(&self, client: &Client) -> Result<(), ConnectError> {
        let name = &self.settings.publication;
        let existing = client
            .query_opt(
                "SELECT puballtables FROM pg_publication WHERE pubname = $1",
                &[name],
            )
            .await
            .map_err(db_error("cannot look up the publication"))?;
        let all_tables: Option<bool> = match existing {
            Some(row) => Some(row.try_get(0).map_err(|e| {
                ConnectError::Failed(format!("cannot look up the publication: {e}"))
            })?),
            None => None,
        };
        let quoted = quote_ident(name);
        let sql = match (self.settings.autocreate, all_tables) {
            (Autocreate::Disabled, None) => {
                return Err(ConnectError::Failed(format!(
                    "publication {name} does not exist and publication.autocreate.mode is \
                     disabled: create it (CREATE PUBLICATION {quoted} FOR ...)"
                )))
            }
            (Autocreate::AllTables, None) => format!("CREATE PUBLICATION {quoted} FOR ALL TABLES"),
            (Autocreate::Filtered, existing) => {
                let tables: Vec<String> = self
                    .captured_tables(client)
                    .await?
                    .iter()
                    .map(|(_, schema, table)| {
                        format!("{}.{}", quote_ident(schema), quote_ident(table))
                    })
                    .collect();
                match (existing, tables.is_empty()) {
                    (None, true) => format!("CREATE PUBLICATION {quoted}"),
                    (None, false) => {
                        format!(
                            "CREATE PUBLICATION {quoted} FOR TABLE {}",
                            tables.join(", ")
                        )
                    }
                    (Some(false), false) => {
                        format!("ALTER PUBLICATION {quoted} SET TABLE {}", tables.join(", "))
                    }
                    // FOR ALL TABLES already publishes every table; an empty list keeps
                    // what the publication has.
                    (Some(_), _) => return Ok(()),
                }
            }
            _ => return Ok(()),
        };
        client
            .batch_execute(&sql)
            .await
            .map_err(db_error("cannot create the publication"))
    }

    /// Makes sure the slot exists, reading its confirmed position; true if it was created.
    async fn ensure_slot(&mut self, client: &Client) -> Result<bool, ConnectError> {
        let slot = &self.settings.slot;
        let existing = client
            .query_opt(
                "SELECT plugin::text, database::text, confirmed_flush_lsn::text \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[slot],
            )
            .await
            .map_err(db_error("cannot look up the replication slot"))?;
        let read = |e: tokio_postgres::Error| {
            ConnectError::Failed(format!("cannot read the replication slot: {e}"))
        };
        if let Some(row) = existing {
            let plugin: Option<String> = row.try_get(0).map_err(read)?;
            let database: Option<String> = row.try_get(1).map_err(read)?;
            let confirmed: Option<String> = row.try_get(2).map_err(read)?;
            if plugin.as_deref() != Some("pgoutput") {
                return Err(ConnectError::Failed(format!(
                    "replication slot {slot} exists but is not a logical slot of pgoutput \
                     (plugin {plugin:?}): drop it or name another in slot.name"
                )));
            }
            if database.as_deref() != Some(self.settings.dbname.as_str()) {
                return Err(ConnectError::Failed(format!(
                    "replication slot {slot} belongs to database {database:?}, not {}",
                    self.settings.dbname
                )));
            }
            self.confirmed = confirmed
                .as_deref()
                .and_then(Lsn::parse)
                .unwrap_or_default();
            return Ok(false);
        }
        // Creating a logical slot waits until every transaction running now has ended.
        let row = client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[slot],
            )
            .await
            .map_err(db_error("cannot create the replication slot"))?;
        let lsn: String = row.try_get(0).map_err(read)?;
        self.confirmed = Lsn::parse(&lsn).unwrap_or_default();
        tracing::info!(connector = %self.context.connector, slot = %slot, lsn = %lsn, "created the replication slot");
        Ok(true)
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        let client = self.ensure_connected().await?;
        match &self.phase {
            Phase::Snapshot(_) => {
                let outcome = self.snapshot(&client).await;
                if outcome.is_err() {
                    // The transaction is gone or unusable: start the snapshot over.
                    let _ = client.batch_execute("ROLLBACK").await;
                    self.phase = Phase::Snapshot(None);
                }
                outcome
            }
            Phase::Streaming => self.stream(&client).await,
            Phase::Done => Ok(Vec::new()),
        }
    }

    // -----------------------------------------------------------------------------------
    // The snapshot

    async fn begin_snapshot(&self, client: &Client) -> Result<Snapshot, ConnectError> {
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db_error("cannot begin the snapshot"))?;
        // The first statement takes the transaction's snapshot.
        let row = client
            .query_one(
                "SELECT pg_current_wal_lsn()::text, txid_snapshot_xmin(txid_current_snapshot())::text",
                &[],
            )
            .await
            .map_err(db_error("cannot begin the snapshot"))?;
        let read = |e: tokio_postgres::Error| {
            ConnectError::Failed(format!("cannot begin the snapshot: {e}"))
        };
        let lsn: String = row.try_get(0).map_err(read)?;
        let xmin: String = row.try_get(1).map_err(read)?;
        let tables = self.captured_tables(client).await?;
        tracing::info!(connector = %self.context.connector, tables = tables.len(), lsn = %lsn, "snapshot started");
        Ok(Snapshot {
            info: SnapshotInfo {
                lsn: Lsn::parse(&lsn).unwrap_or_default(),
                tx_id: xmin.trim().parse().unwrap_or(0),
                ts_ms: now_ms(),
            },
            tables: tables.into(),
            current: None,
            pending: None,
        })
    }

    fn snapshot_record(
        &self,
        info: SnapshotInfo,
        table: &TableSchema,
        row: Value,
        last: bool,
    ) -> SourceRecord {
        let lsn = i64::try_from(info.lsn.0).ok();
        let source = SourceInfo {
            server: self.settings.prefix.clone(),
            database: self.settings.dbname.clone(),
            ts_ms: info.ts_ms,
            snapshot: if last { "last" } else { "true" },
            tx_id: Some(info.tx_id),
            lsn,
        };
        let key = table.key(&row);
        let record = table.event(Op::Read, key, Value::Null, row, &source, now_ms());
        let mut offset = SourceOffset::new();
        offset.insert("lsn".into(), info.lsn.0.into());
        offset.insert("txId".into(), info.tx_id.into());
        offset.insert("ts_usec".into(), info.ts_ms.saturating_mul(1000).into());
        offset.insert("snapshot".into(), true.into());
        offset.insert("last_snapshot_record".into(), last.into());
        offset.insert("snapshot_completed".into(), last.into());
        SourceRecord {
            record,
            source_partition: self.partition.clone(),
            source_offset: offset,
        }
    }

    async fn snapshot(&mut self, client: &Client) -> Result<Vec<SourceRecord>, ConnectError> {
        let mut snapshot = match std::mem::replace(&mut self.phase, Phase::Snapshot(None)) {
            Phase::Snapshot(Some(snapshot)) => snapshot,
            _ => self.begin_snapshot(client).await?,
        };
        let batch = self.settings.max_batch_size;
        let mut out = Vec::new();
        let mut finished = false;
        while out.len() < batch {
            let table =
                match &snapshot.current {
                    Some(table) => table.clone(),
                    None => {
                        let Some((oid, schema, name)) = snapshot.tables.pop_front() else {
                            finished = true;
                            break;
                        };
                        let catalog = catalog_columns(client, oid, self.server_version).await?;
                        let table = Arc::new(schema_from_catalog(
                            &self.settings,
                            &schema,
                            &name,
                            &catalog,
                        ));
                        let columns: Vec<String> =
                            table.columns.iter().map(|c| quote_ident(&c.name)).collect();
                        let sql =
                            format!(
                        "DECLARE {SNAPSHOT_CURSOR} NO SCROLL CURSOR FOR SELECT {} FROM {}.{}",
                        if columns.is_empty() { "1".to_owned() } else { columns.join(", ") },
                        quote_ident(&schema),
                        quote_ident(&name)
                    );
                        client
                            .batch_execute(&sql)
                            .await
                            .map_err(db_error("cannot read a table for the snapshot"))?;
                        snapshot.current = Some(table.clone());
                        table
                    }
                };
            let fetch = format!("FETCH FORWARD {} FROM {SNAPSHOT_CURSOR}", batch - out.len());
            let messages = client
                .simple_query(&fetch)
                .await
                .map_err(db_error("cannot read a table for the snapshot"))?;
            let mut rows = 0;
            for message in messages {
                let SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                rows += 1;
                let mut values = Vec::with_capacity(table.columns.len());
                for i in 0..table.columns.len() {
                    let value = row.try_get(i).map_err(|e| {
                        ConnectError::Failed(format!("cannot read a snapshot row: {e}"))
                    })?;
                    values.push(match value {
                        Some(text) => ColumnValue::Text(text.as_bytes().to_vec()),
                        None => ColumnValue::Null,
                    });
                }
                let row = table.row(&values).map_err(ConnectError::Failed)?;
                if let Some((previous_table, previous)) =
                    snapshot.pending.replace((table.clone(), row))
                {
                    out.push(self.snapshot_record(snapshot.info, &previous_table, previous, false));
                }
            }
            if rows == 0 {
                client
                    .batch_execute(&format!("CLOSE {SNAPSHOT_CURSOR}"))
                    .await
                    .map_err(db_error("cannot read a table for the snapshot"))?;
                snapshot.current = None;
            }
        }
        if !finished {
            self.phase = Phase::Snapshot(Some(snapshot));
            return Ok(out);
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(db_error("cannot end the snapshot"))?;
        if let Some((table, row)) = snapshot.pending.take() {
            out.push(self.snapshot_record(snapshot.info, &table, row, true));
        }
        tracing::info!(connector = %self.context.connector, "snapshot completed");
        self.phase = if self.settings.snapshot_mode == SnapshotMode::InitialOnly {
            Phase::Done
        } else {
            Phase::Streaming
        };
        Ok(out)
    }

    // -----------------------------------------------------------------------------------
    // Streaming

    async fn on_relation(
        &mut self,
        client: &Client,
        relation: Relation,
    ) -> Result<(), ConnectError> {
        if self
            .relations
            .get(&relation.id)
            .is_some_and(|cached| cached.relation == relation)
        {
            return Ok(());
        }
        let table = if self.settings.includes(&relation.namespace, &relation.name) {
            let catalog = catalog_columns(client, relation.id, self.server_version).await?;
            Some(schema_from_relation(&self.settings, &relation, &catalog))
        } else {
            None
        };
        self.relations
            .insert(relation.id, Cached { relation, table });
        Ok(())
    }

    /// The captured table `relation`, `None` if it is not captured.
    fn table(&self, relation: u32) -> Result<Option<&TableSchema>, ConnectError> {
        match self.relations.get(&relation) {
            Some(cached) => Ok(cached.table.as_ref()),
            None => Err(ConnectError::Failed(format!(
                "a change of table {relation} came before its Relation message"
            ))),
        }
    }

    /// The records of one change, in order.
    fn change_records(
        &self,
        change: &Message,
        source: &SourceInfo,
    ) -> Result<Vec<ConnectRecord>, ConnectError> {
        let skipped = self.settings.skipped;
        let now = now_ms();
        let mut records = Vec::new();
        let failed = ConnectError::Failed;
        match change {
            Message::Insert { relation, new } => {
                if let Some(t) = self.table(*relation)? {
                    if !skipped.creates {
                        let after = t.row(new).map_err(failed)?;
                        records.push(t.event(
                            Op::Create,
                            t.key(&after),
                            Value::Null,
                            after,
                            source,
                            now,
                        ));
                    }
                }
            }
            Message::Update { relation, old, new } => {
                if let Some(t) = self.table(*relation)? {
                    let after = t.row(new).map_err(failed)?;
                    let key = t.key(&after);
                    let before = match old {
                        Some(old) => Some(t.row(&old.values).map_err(failed)?),
                        None => None,
                    };
                    match before {
                        Some(before) if t.key_schema.is_some() && t.key(&before) != key => {
                            // The primary key changed: as Debezium, a delete of the old key
                            // (with its tombstone), then a create under the new one.
                            let old_key = t.key(&before);
                            if !skipped.deletes {
                                records.push(t.event(
                                    Op::Delete,
                                    old_key.clone(),
                                    before,
                                    Value::Null,
                                    source,
                                    now,
                                ));
                                if self.settings.tombstones_on_delete {
                                    records.extend(t.tombstone(old_key));
                                }
                            }
                            if !skipped.creates {
                                records.push(t.event(
                                    Op::Create,
                                    key,
                                    Value::Null,
                                    after,
                                    source,
                                    now,
                                ));
                            }
                        }
                        before => {
                            if !skipped.updates {
                                records.push(t.event(
                                    Op::Update,
                                    key,
                                    before.unwrap_or(Value::Null),
                                    after,
                                    source,
                                    now,
                                ));
                            }
                        }
                    }
                }
            }
            Message::Delete { relation, old } => {
                if let Some(t) = self.table(*relation)? {
                    if !skipped.deletes {
                        let before = t.row(&old.values).map_err(failed)?;
                        let key = t.key(&before);
                        records.push(t.event(
                            Op::Delete,
                            key.clone(),
                            before,
                            Value::Null,
                            source,
                            now,
                        ));
                        if self.settings.tombstones_on_delete {
                            records.extend(t.tombstone(key));
                        }
                    }
                }
            }
            Message::Truncate { relations, .. } => {
                for relation in relations {
                    if let Some(t) = self.table(*relation)? {
                        if !skipped.truncates {
                            records.push(t.event(
                                Op::Truncate,
                                Value::Null,
                                Value::Null,
                                Value::Null,
                                source,
                                now,
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(records)
    }

    fn stream_offset(
        begin: &Begin,
        change_lsn: Lsn,
        position: Position,
        last: bool,
    ) -> SourceOffset {
        let mut offset = SourceOffset::new();
        offset.insert("lsn".into(), begin.final_lsn.0.into());
        offset.insert("lsn_commit".into(), begin.final_lsn.0.into());
        offset.insert("lsn_proc".into(), change_lsn.0.into());
        offset.insert("txId".into(), begin.xid.into());
        offset.insert(
            "ts_usec".into(),
            begin
                .commit_time
                .saturating_add(POSTGRES_EPOCH_MICROS)
                .into(),
        );
        offset.insert("event".into(), position.event.into());
        offset.insert("part".into(), position.part.into());
        offset.insert("last_event".into(), last.into());
        offset.insert("snapshot_completed".into(), true.into());
        offset
    }

    async fn stream(&mut self, client: &Client) -> Result<Vec<SourceRecord>, ConnectError> {
        // Read before peeking. Decoding reads every WAL record that starts before the
        // server's flush position at the time of the peek (waiting for the end of one
        // still being flushed), so when the peek is not cut short by its limit, every
        // transaction whose commit record starts before `flushed` is in its result.
        let flushed = client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
            .await
            .map_err(db_error("cannot read the WAL position"))?;
        let flushed: String = flushed
            .try_get(0)
            .map_err(|e| ConnectError::Failed(format!("cannot read the WAL position: {e}")))?;
        let flushed = Lsn::parse(&flushed).unwrap_or_default();
        // pgoutput reads the names as a list of SQL identifiers: quoted, a name keeps its
        // case and may hold a comma.
        let publication = quote_ident(&self.settings.publication);
        let rows = client
            .query(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes(\
                   $1, NULL, $2, 'proto_version', '1', 'publication_names', $3)",
                &[&self.settings.slot, &self.peek_limit, &publication],
            )
            .await
            .map_err(db_error("cannot read the replication slot"))?;
        let truncated = rows.len() >= usize::try_from(self.peek_limit).unwrap_or(0);
        let mut out: Vec<SourceRecord> = Vec::new();
        // The transaction being read: its Begin and its records so far.
        let mut open: Option<(Begin, u64, Vec<SourceRecord>)> = None;
        for row in rows {
            let read = |e: tokio_postgres::Error| {
                ConnectError::Failed(format!("cannot read a change of the replication slot: {e}"))
            };
            let lsn: String = row.try_get(0).map_err(read)?;
            let data: Vec<u8> = row.try_get(1).map_err(read)?;
            let change_lsn = Lsn::parse(&lsn).ok_or_else(|| {
                ConnectError::Failed(format!(
                    "the replication slot gave an unreadable LSN {lsn:?}"
                ))
            })?;
            let message = pgoutput::decode(&data)
                .map_err(|e| ConnectError::Failed(format!("{e} at {change_lsn}")))?;
            match message {
                Message::Begin(begin) => {
                    if open.is_some() {
                        return Err(ConnectError::Failed(format!(
                            "a transaction began at {change_lsn} inside another"
                        )));
                    }
                    open = Some((begin, 0, Vec::new()));
                }
                Message::Commit(commit) => {
                    let Some((begin, _, mut records)) = open.take() else {
                        return Err(ConnectError::Failed(format!(
                            "a commit at {change_lsn} without a transaction"
                        )));
                    };
                    if commit.commit_lsn != begin.final_lsn {
                        return Err(ConnectError::Failed(format!(
                            "transaction {} began for commit {} but committed at {}",
                            begin.xid, begin.final_lsn, commit.commit_lsn
                        )));
                    }
                    if let Some(last) = records.last_mut() {
                        last.source_offset.insert("last_event".into(), true.into());
                    }
                    if let Some(last) = records
                        .last()
                        .and_then(|r| Position::from_offset(&r.source_offset))
                    {
                        self.position = Some(last.0);
                        self.last_emitted = Some(last.0);
                    }
                    out.extend(records);
                }
                Message::Relation(relation) => self.on_relation(client, relation).await?,
                // Type names are for display; the catalog resolves types. Origins and
                // logical messages carry no row.
                Message::Type(_) | Message::Origin { .. } | Message::Logical { .. } => {}
                change @ (Message::Insert { .. }
                | Message::Update { .. }
                | Message::Delete { .. }
                | Message::Truncate { .. }) => {
                    let Some((begin, event, records)) = open.as_mut() else {
                        return Err(ConnectError::Failed(format!(
                            "a change at {change_lsn} outside a transaction"
                        )));
                    };
                    let index = *event;
                    *event += 1;
                    let commit_lsn = begin.final_lsn.0;
                    // Transactions wholly before the position were emitted already.
                    // Transactions come in commit order, so no transaction not yet
                    // emitted can sit before the position (see the module documentation).
                    if self.position.is_some_and(|p| p.commit_lsn > commit_lsn) {
                        continue;
                    }
                    let source = SourceInfo {
                        server: self.settings.prefix.clone(),
                        database: self.settings.dbname.clone(),
                        ts_ms: begin.commit_time.saturating_add(POSTGRES_EPOCH_MICROS) / 1000,
                        snapshot: "false",
                        tx_id: Some(i64::from(begin.xid)),
                        lsn: i64::try_from(change_lsn.0).ok(),
                    };
                    let built = self.change_records(&change, &source)?;
                    for (part, record) in built.into_iter().enumerate() {
                        let position = Position {
                            commit_lsn,
                            event: index,
                            part: part as u64,
                        };
                        if self.position.is_some_and(|p| position <= p) {
                            continue;
                        }
                        records.push(SourceRecord {
                            record,
                            source_partition: self.partition.clone(),
                            source_offset: Self::stream_offset(begin, change_lsn, position, false),
                        });
                    }
                }
            }
        }
        // Decoding stops only after a whole transaction, so nothing is left open; were
        // something left, it is read again, whole, by the next peek.
        self.more_to_read = false;
        if truncated {
            let grown = self
                .peek_limit
                .saturating_mul(2)
                .min(self.base_peek_limit().saturating_mul(PEEK_LIMIT_GROWTH));
            // At the cap, reading further waits for the slot to advance.
            self.more_to_read = grown > self.peek_limit;
            self.peek_limit = grown;
        } else if flushed > self.scanned_upto {
            self.scanned_upto = flushed;
        }
        Ok(out)
    }

    fn base_peek_limit(&self) -> i32 {
        i32::try_from(self.settings.max_batch_size).unwrap_or(i32::MAX)
    }

    /// Moves the slot's confirmed position to `target`, if that is forward.
    async fn advance(&mut self, client: &Client, target: Lsn) -> Result<(), ConnectError> {
        if target <= self.confirmed {
            return Ok(());
        }
        let row = client
            .query_one(
                "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.settings.slot, &target.to_string()],
            )
            .await
            .map_err(db_error("cannot advance the replication slot"))?;
        let end: Option<String> = row.try_get(0).map_err(|e| {
            ConnectError::Failed(format!("cannot advance the replication slot: {e}"))
        })?;
        // The server does not move past what it flushed; it says where it got to.
        self.confirmed = end
            .as_deref()
            .and_then(Lsn::parse)
            .unwrap_or(target)
            .max(self.confirmed);
        self.peek_limit = self.base_peek_limit();
        tracing::debug!(connector = %self.context.connector, lsn = %self.confirmed, "advanced the replication slot");
        Ok(())
    }

    /// Whether every record emitted since the start is committed.
    fn all_emitted_committed(&self) -> bool {
        match self.last_emitted {
            None => true,
            Some(last) => {
                self.committed()
                    .as_ref()
                    .and_then(Position::from_offset)
                    .map(|(p, _)| p)
                    == Some(last)
            }
        }
    }

    /// Advances the slot as far as the committed offset allows.
    async fn commit(&mut self) -> Result<(), ConnectError> {
        let Some((position, last)) = self.committed().as_ref().and_then(Position::from_offset)
        else {
            return Ok(());
        };
        let client = self.client()?;
        // The transaction's own commit LSN keeps it in the slot (its later records may be
        // uncommitted); one past it lets it go.
        let mut target = if last {
            Lsn(position.commit_lsn.saturating_add(1))
        } else {
            Lsn(position.commit_lsn)
        };
        if self.last_emitted == Some(position) && self.scanned_upto > target {
            // Everything emitted is committed, and nothing else was read before
            // `scanned_upto` but transactions without records.
            target = self.scanned_upto;
        }
        self.advance(&client, target).await
    }

    /// When a poll found nothing: advance past other tables' changes now and then, so
    /// that the slot does not keep WAL for changes this connector has no record of.
    async fn idle(&mut self) -> Result<(), ConnectError> {
        if !matches!(self.phase, Phase::Streaming)
            || self.last_idle_advance.elapsed() < IDLE_ADVANCE_EVERY
            || self.scanned_upto <= self.confirmed
            || !self.all_emitted_committed()
        {
            return Ok(());
        }
        self.last_idle_advance = Instant::now();
        let client = self.client()?;
        let target = self.scanned_upto;
        self.advance(&client, target).await
    }
}

impl PostgresCdcTask {
    fn parts(&mut self) -> Result<(&tokio::runtime::Runtime, &mut Running), ConnectError> {
        match (&self.runtime, &mut self.running) {
            (Some(runtime), Some(running)) => Ok((runtime, running)),
            _ => Err(ConnectError::failed("the task is not started")),
        }
    }

    /// Sleeps `total`, waking early when the task is stopping.
    fn sleep(&self, total: Duration) {
        let deadline = Instant::now() + total;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero()
                || self
                    .running
                    .as_ref()
                    .is_none_or(|r| r.context.is_stopping())
            {
                return;
            }
            std::thread::sleep(left.min(SLEEP_SLICE));
        }
    }
}

impl SourceTask for PostgresCdcTask {
    fn start(&mut self, configs: &Configs, context: &TaskContext) -> Result<(), ConnectError> {
        let settings = Settings::from_configs(configs)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConnectError::Failed(format!("cannot start a runtime: {e}")))?;
        let mut partition = SourcePartition::new();
        partition.insert("server".into(), settings.prefix.clone().into());
        let base = i32::try_from(settings.max_batch_size).unwrap_or(i32::MAX);
        let mut running = Running {
            settings,
            context: context.clone(),
            partition,
            client: None,
            server_version: 0,
            phase: Phase::Streaming,
            position: None,
            last_emitted: None,
            confirmed: Lsn::default(),
            scanned_upto: Lsn::default(),
            peek_limit: base,
            more_to_read: false,
            relations: HashMap::new(),
            last_idle_advance: Instant::now(),
        };
        runtime.block_on(running.start())?;
        self.runtime = Some(runtime);
        self.running = Some(running);
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<SourceRecord>, ConnectError> {
        let (runtime, running) = self.parts()?;
        let records = runtime.block_on(running.poll())?;
        if records.is_empty() {
            if let Err(e) = runtime.block_on(running.idle()) {
                tracing::warn!(connector = %running.context.connector, error = %e, "cannot advance the replication slot");
            }
            let more_to_read = matches!(running.phase, Phase::Streaming) && running.more_to_read;
            let interval = running.settings.poll_interval;
            // A peek cut short has more to read at once; otherwise wait for changes.
            if !more_to_read {
                self.sleep(interval);
            }
        }
        Ok(records)
    }

    fn commit(&mut self) -> Result<(), ConnectError> {
        let (runtime, running) = self.parts()?;
        // Not advancing now only keeps WAL a little longer: the next commit advances.
        if let Err(e) = runtime.block_on(running.commit()) {
            tracing::warn!(connector = %running.context.connector, error = %e, "cannot advance the replication slot");
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Ok((runtime, running)) = self.parts() {
            if running.settings.slot_drop_on_stop {
                if let Some(client) = running.client.clone() {
                    let slot = running.settings.slot.clone();
                    let dropped = runtime.block_on(async move {
                        client
                            .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                            .await
                    });
                    if let Err(e) = dropped {
                        tracing::warn!(connector = %running.context.connector, error = %e, "cannot drop the replication slot");
                    }
                }
            }
        }
        // The session goes first (rolling back a snapshot under way), then its runtime.
        self.running = None;
        self.runtime = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(pairs: &[(&str, serde_json::Value)]) -> SourceOffset {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn positions_order_by_commit_then_event_then_part() {
        let a = Position {
            commit_lsn: 10,
            event: 5,
            part: 1,
        };
        let b = Position {
            commit_lsn: 11,
            event: 0,
            part: 0,
        };
        let c = Position {
            commit_lsn: 11,
            event: 0,
            part: 1,
        };
        assert!(a < b && b < c);
    }

    #[test]
    fn positions_read_from_offsets() {
        let streamed = offset(&[
            ("lsn", 100.into()),
            ("lsn_commit", 100.into()),
            ("event", 2.into()),
            ("part", 1.into()),
            ("last_event", true.into()),
        ]);
        assert_eq!(
            Position::from_offset(&streamed),
            Some((
                Position {
                    commit_lsn: 100,
                    event: 2,
                    part: 1
                },
                true
            ))
        );
        let snapshot = offset(&[("lsn", 100.into()), ("snapshot", true.into())]);
        assert_eq!(Position::from_offset(&snapshot), None);
        // Debezium's own offsets name no event: the whole transaction is done.
        let debezium = offset(&[("lsn", 7.into()), ("txId", 1.into())]);
        assert_eq!(
            Position::from_offset(&debezium),
            Some((
                Position {
                    commit_lsn: 7,
                    event: u64::MAX,
                    part: u64::MAX
                },
                true
            ))
        );
    }

    #[test]
    fn key_positions_follow_the_primary_key_order() {
        let column = |name: &str, key: Option<i64>| CatalogColumn {
            name: name.into(),
            declared_oid: 23,
            base_oid: 23,
            typmod: -1,
            not_null: key.is_some(),
            key_position: key,
        };
        let catalog = [
            column("a", Some(2)),
            column("b", None),
            column("c", Some(1)),
        ];
        assert_eq!(key_positions(&catalog, &["a", "b", "c"]), [2, 0]);
        assert_eq!(key_positions(&catalog, &["a", "b"]), Vec::<usize>::new());
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
