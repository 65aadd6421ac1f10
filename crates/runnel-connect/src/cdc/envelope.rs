//! Debezium's change event layout: per table, the key schema (`<prefix>.<schema>.<table>.Key`,
//! the primary key's columns), the row schema (`...Value`), and the envelope
//! (`...Envelope`: `before`, `after`, `source`, `op`, `ts_ms`, `transaction`), with the
//! `source` block of Debezium's PostgreSQL connector (`io.debezium.connector.postgresql.Source`).
//!
//! This module owns turning a row's column values (text forms, as pgoutput and a text
//! `SELECT` give them) into Connect values of those schemas, and building the records of
//! one change: its event, and after a delete the tombstone. It does no I/O.

use crate::cdc::pgoutput::ColumnValue;
use crate::cdc::types::{self, DecimalMode, Kind};
use crate::data::{ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, Value};

/// The `connector` of the source block.
pub const CONNECTOR_NAME: &str = "postgresql";
/// The name of the source block's schema.
pub const SOURCE_SCHEMA_NAME: &str = "io.debezium.connector.postgresql.Source";
/// The `version` of the source block: this connector's, not a Debezium release.
pub const VERSION: &str = concat!("runnel-", env!("CARGO_PKG_VERSION"));

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type, resolved through domains.
    pub kind: Kind,
    /// Whether it may be null.
    pub optional: bool,
}

/// A captured table's schemas and how its rows read.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// Its schema (namespace).
    pub schema_name: String,
    /// Its name.
    pub table_name: String,
    /// `<prefix>.<schema>.<table>`: its records' topic, and its schemas' name prefix.
    pub topic: String,
    /// Its columns, in the order rows give them.
    pub columns: Vec<Column>,
    /// The positions in `columns` of the primary key's columns, in the key's order; empty
    /// without a primary key (the records then have a null key).
    pub key_columns: Vec<usize>,
    /// The key's schema, if there is a key.
    pub key_schema: Option<Schema>,
    /// The row's schema (optional: `before` and `after` may be null).
    pub row_schema: Schema,
    /// The envelope's schema.
    pub envelope_schema: Schema,
    mode: DecimalMode,
}

/// What the `source` block of one event says.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    /// `name`: the topic prefix.
    pub server: String,
    /// `db`: the database.
    pub database: String,
    /// `ts_ms`: when the change was committed (or the snapshot started).
    pub ts_ms: i64,
    /// `snapshot`: `true`, `last` or `false`.
    pub snapshot: &'static str,
    /// `txId`
    pub tx_id: Option<i64>,
    /// `lsn`: the change's position (the snapshot's, for snapshot reads).
    pub lsn: Option<i64>,
}

/// What happened to a row, with the `op` Debezium gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `r`: read by the snapshot.
    Read,
    /// `c`: inserted.
    Create,
    /// `u`: updated.
    Update,
    /// `d`: deleted.
    Delete,
    /// `t`: the table was truncated.
    Truncate,
}

impl Op {
    /// Debezium's code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// The schema of the `source` block.
pub fn source_schema() -> Schema {
    let mut snapshot = Schema {
        name: Some("io.debezium.data.Enum".to_owned()),
        version: Some(1),
        default: Some(Value::String("false".to_owned())),
        ..Schema::optional(SchemaType::String)
    };
    snapshot.parameters.insert(
        "allowed".to_owned(),
        "true,last,false,incremental".to_owned(),
    );
    Schema::structure(
        Some(SOURCE_SCHEMA_NAME),
        vec![
            Field::new("version", Schema::new(SchemaType::String)),
            Field::new("connector", Schema::new(SchemaType::String)),
            Field::new("name", Schema::new(SchemaType::String)),
            Field::new("ts_ms", Schema::new(SchemaType::Int64)),
            Field::new("snapshot", snapshot),
            Field::new("db", Schema::new(SchemaType::String)),
            Field::new("sequence", Schema::optional(SchemaType::String)),
            Field::new("schema", Schema::new(SchemaType::String)),
            Field::new("table", Schema::new(SchemaType::String)),
            Field::new("txId", Schema::optional(SchemaType::Int64)),
            Field::new("lsn", Schema::optional(SchemaType::Int64)),
            Field::new("xmin", Schema::optional(SchemaType::Int64)),
        ],
    )
}

/// The schema of the envelope's `transaction` block (always null here: transaction
/// metadata is not provided).
fn transaction_schema() -> Schema {
    Schema::structure(
        Some("event.block"),
        vec![
            Field::new("id", Schema::new(SchemaType::String)),
            Field::new("total_order", Schema::new(SchemaType::Int64)),
            Field::new("data_collection_order", Schema::new(SchemaType::Int64)),
        ],
    )
    .into_optional()
}

impl TableSchema {
    /// The schemas of table `schema_name.table_name` with `columns`, keyed by the columns at
    /// `key_columns`, its records going to `<prefix>.<schema>.<table>`.
    pub fn new(
        prefix: &str,
        schema_name: &str,
        table_name: &str,
        columns: Vec<Column>,
        key_columns: Vec<usize>,
        mode: DecimalMode,
    ) -> TableSchema {
        let topic = format!("{prefix}.{schema_name}.{table_name}");
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| Field::new(c.name.clone(), types::schema(c.kind, c.optional, mode)))
            .collect();
        let key_columns: Vec<usize> = key_columns
            .into_iter()
            .filter(|&i| i < columns.len())
            .collect();
        let key_schema = (!key_columns.is_empty()).then(|| {
            Schema::structure(
                Some(&format!("{topic}.Key")),
                key_columns
                    .iter()
                    .map(|&i| {
                        let field = &fields[i];
                        // Key columns are never null; a key field is required whatever the
                        // catalog said.
                        Field::new(
                            field.name.clone(),
                            Schema {
                                optional: false,
                                ..field.schema.clone()
                            },
                        )
                    })
                    .collect(),
            )
        });
        let row_schema = Schema::structure(Some(&format!("{topic}.Value")), fields).into_optional();
        let envelope_schema = Schema::structure(
            Some(&format!("{topic}.Envelope")),
            vec![
                Field::new("before", row_schema.clone()),
                Field::new("after", row_schema.clone()),
                Field::new("source", source_schema()),
                Field::new("op", Schema::new(SchemaType::String)),
                Field::new("ts_ms", Schema::optional(SchemaType::Int64)),
                Field::new("transaction", transaction_schema()),
            ],
        );
        TableSchema {
            schema_name: schema_name.to_owned(),
            table_name: table_name.to_owned(),
            topic,
            columns,
            key_columns,
            key_schema,
            row_schema,
            envelope_schema,
            mode,
        }
    }

    /// The row struct of `values` (one per column, in order).
    pub fn row(&self, values: &[ColumnValue]) -> Result<Value, String> {
        if values.len() != self.columns.len() {
            return Err(format!(
                "a row of {}.{} has {} values for {} columns",
                self.schema_name,
                self.table_name,
                values.len(),
                self.columns.len()
            ));
        }
        let mut out = Vec::with_capacity(values.len());
        for ((column, value), field) in self.columns.iter().zip(values).zip(&self.row_schema.fields)
        {
            let schema = &field.schema;
            let converted = match value {
                ColumnValue::Null => Value::Null,
                ColumnValue::Unchanged => match (schema.kind, schema.name.as_deref()) {
                    (SchemaType::String, _) => Value::String(types::UNAVAILABLE_VALUE.to_owned()),
                    (SchemaType::Bytes, None) => {
                        Value::Bytes(types::UNAVAILABLE_VALUE.as_bytes().to_vec())
                    }
                    _ => Value::Null,
                },
                ColumnValue::Text(bytes) => {
                    let text = String::from_utf8_lossy(bytes);
                    types::parse(column.kind, &text, self.mode).map_err(|why| {
                        format!(
                            "column {} of {}.{}: {why}",
                            column.name, self.schema_name, self.table_name
                        )
                    })?
                }
                ColumnValue::Binary(_) => {
                    return Err(format!(
                    "column {} of {}.{} came in binary form, which this connector does not ask for",
                    column.name, self.schema_name, self.table_name
                ))
                }
            };
            // A required column without a value (a key-only old row's other columns, a
            // NaN numeric) gets its type's zero, as Debezium's converters do, so that the
            // row still conforms to its schema.
            out.push(if converted.is_null() && !schema.optional {
                types::fallback(schema)
            } else {
                converted
            });
        }
        Ok(Value::Struct(out))
    }

    /// The key struct of a row built by [`TableSchema::row`]; null without a key.
    pub fn key(&self, row: &Value) -> Value {
        match (row, &self.key_schema) {
            (Value::Struct(values), Some(_)) => Value::Struct(
                self.key_columns
                    .iter()
                    .map(|&i| values.get(i).cloned().unwrap_or(Value::Null))
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    fn key_data(&self, key: Value) -> SchemaAndValue {
        match &self.key_schema {
            Some(schema) if !key.is_null() => SchemaAndValue::new(Some(schema.clone()), key),
            _ => SchemaAndValue::null(),
        }
    }

    fn source(&self, info: &SourceInfo) -> Value {
        Value::Struct(vec![
            Value::String(VERSION.to_owned()),
            Value::String(CONNECTOR_NAME.to_owned()),
            Value::String(info.server.clone()),
            Value::Int64(info.ts_ms),
            Value::String(info.snapshot.to_owned()),
            Value::String(info.database.clone()),
            Value::Null,
            Value::String(self.schema_name.clone()),
            Value::String(self.table_name.clone()),
            info.tx_id.map_or(Value::Null, Value::Int64),
            info.lsn.map_or(Value::Null, Value::Int64),
            Value::Null,
        ])
    }

    /// The event of `op` on a row, `before` and `after` being row structs (or null), keyed
    /// by `key`, processed at `now_ms`.
    pub fn event(
        &self,
        op: Op,
        key: Value,
        before: Value,
        after: Value,
        info: &SourceInfo,
        now_ms: i64,
    ) -> ConnectRecord {
        let envelope = Value::Struct(vec![
            before,
            after,
            self.source(info),
            Value::String(op.code().to_owned()),
            Value::Int64(now_ms),
            Value::Null,
        ]);
        let mut record = ConnectRecord::new(
            self.topic.clone(),
            SchemaAndValue::new(Some(self.envelope_schema.clone()), envelope),
        );
        // A truncate concerns no row: Debezium gives it no key.
        record.key = if op == Op::Truncate {
            SchemaAndValue::null()
        } else {
            self.key_data(key)
        };
        record
    }

    /// The tombstone that follows a delete of the row keyed `key`: same key, null value,
    /// so that a compacted topic forgets the row. `None` without a key (nothing to forget).
    pub fn tombstone(&self, key: Value) -> Option<ConnectRecord> {
        let key = self.key_data(key);
        if key.value.is_null() {
            return None;
        }
        let mut record = ConnectRecord::new(self.topic.clone(), SchemaAndValue::null());
        record.key = key;
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableSchema {
        TableSchema::new(
            "shop",
            "public",
            "items",
            vec![
                Column {
                    name: "id".into(),
                    kind: Kind::Int32,
                    optional: false,
                },
                Column {
                    name: "name".into(),
                    kind: Kind::String,
                    optional: false,
                },
                Column {
                    name: "note".into(),
                    kind: Kind::String,
                    optional: true,
                },
                Column {
                    name: "price".into(),
                    kind: Kind::Numeric {
                        precision: 8,
                        scale: 2,
                    },
                    optional: true,
                },
            ],
            vec![0],
            DecimalMode::Precise,
        )
    }

    fn text(s: &str) -> ColumnValue {
        ColumnValue::Text(s.as_bytes().to_vec())
    }

    fn info() -> SourceInfo {
        SourceInfo {
            server: "shop".into(),
            database: "db".into(),
            ts_ms: 1000,
            snapshot: "false",
            tx_id: Some(7),
            lsn: Some(99),
        }
    }

    #[test]
    fn schemas_are_named_as_debezium_names_them() {
        let t = table();
        assert_eq!(t.topic, "shop.public.items");
        assert_eq!(
            t.row_schema.name.as_deref(),
            Some("shop.public.items.Value")
        );
        assert!(t.row_schema.optional);
        let key = t.key_schema.as_ref().unwrap();
        assert_eq!(key.name.as_deref(), Some("shop.public.items.Key"));
        assert_eq!(key.fields.len(), 1);
        assert_eq!(key.fields[0].name, "id");
        let names: Vec<&str> = t
            .envelope_schema
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["before", "after", "source", "op", "ts_ms", "transaction"]
        );
        assert_eq!(
            t.envelope_schema.name.as_deref(),
            Some("shop.public.items.Envelope")
        );
        let source = source_schema();
        assert_eq!(source.name.as_deref(), Some(SOURCE_SCHEMA_NAME));
        for field in [
            "version",
            "connector",
            "name",
            "ts_ms",
            "snapshot",
            "db",
            "schema",
            "table",
            "txId",
            "lsn",
        ] {
            assert!(source.field(field).is_some(), "{field}");
        }
    }

    #[test]
    fn events_conform_to_their_envelope() {
        let t = table();
        let row = t
            .row(&[text("1"), text("pen"), ColumnValue::Null, text("2.50")])
            .unwrap();
        assert_eq!(
            row,
            Value::Struct(vec![
                Value::Int32(1),
                Value::String("pen".into()),
                Value::Null,
                Value::Bytes(vec![0, 250])
            ])
        );
        let key = t.key(&row);
        assert_eq!(key, Value::Struct(vec![Value::Int32(1)]));
        let record = t.event(
            Op::Create,
            key.clone(),
            Value::Null,
            row.clone(),
            &info(),
            5,
        );
        assert_eq!(record.topic, "shop.public.items");
        let value = &record.value;
        assert!(value.value.conforms_to(value.schema.as_ref().unwrap()));
        assert!(record
            .key
            .value
            .conforms_to(record.key.schema.as_ref().unwrap()));
        let Value::Struct(fields) = &value.value else {
            panic!("not a struct")
        };
        assert_eq!(fields[3], Value::String("c".into()));
        let Value::Struct(source) = &fields[2] else {
            panic!("no source")
        };
        assert_eq!(source[1], Value::String("postgresql".into()));
        assert_eq!(source[2], Value::String("shop".into()));
        assert_eq!(source[9], Value::Int64(7));
        assert_eq!(source[10], Value::Int64(99));

        let tombstone = t.tombstone(key).unwrap();
        assert_eq!(tombstone.value, SchemaAndValue::null());
        assert_eq!(tombstone.key.value, Value::Struct(vec![Value::Int32(1)]));
    }

    #[test]
    fn key_only_old_rows_fill_required_columns_with_zeros() {
        let t = table();
        // A delete under REPLICA IDENTITY DEFAULT: only the key is sent.
        let before = t
            .row(&[
                text("3"),
                ColumnValue::Null,
                ColumnValue::Null,
                ColumnValue::Null,
            ])
            .unwrap();
        assert_eq!(
            before,
            Value::Struct(vec![
                Value::Int32(3),
                Value::String(String::new()),
                Value::Null,
                Value::Null
            ])
        );
        let record = t.event(Op::Delete, t.key(&before), before, Value::Null, &info(), 5);
        assert!(record
            .value
            .value
            .conforms_to(record.value.schema.as_ref().unwrap()));
    }

    #[test]
    fn unchanged_toasted_values_are_placeholders() {
        let t = table();
        let row = t
            .row(&[
                text("1"),
                ColumnValue::Unchanged,
                ColumnValue::Unchanged,
                ColumnValue::Unchanged,
            ])
            .unwrap();
        let Value::Struct(values) = row else {
            panic!("not a struct")
        };
        assert_eq!(values[1], Value::String(types::UNAVAILABLE_VALUE.into()));
        assert_eq!(values[3], Value::Null);
    }

    #[test]
    fn bad_rows_are_errors() {
        let t = table();
        assert!(t.row(&[text("1")]).is_err());
        assert!(t
            .row(&[text("x"), text("a"), ColumnValue::Null, ColumnValue::Null])
            .is_err());
        assert!(t
            .row(&[
                ColumnValue::Binary(vec![1]),
                text("a"),
                ColumnValue::Null,
                ColumnValue::Null
            ])
            .is_err());
    }

    #[test]
    fn tables_without_a_primary_key_have_null_keys_and_no_tombstones() {
        let t = TableSchema::new(
            "p",
            "s",
            "log",
            vec![Column {
                name: "line".into(),
                kind: Kind::String,
                optional: true,
            }],
            Vec::new(),
            DecimalMode::Precise,
        );
        let row = t.row(&[text("x")]).unwrap();
        let record = t.event(Op::Create, t.key(&row), Value::Null, row, &info(), 1);
        assert_eq!(record.key, SchemaAndValue::null());
        assert!(t.tombstone(Value::Null).is_none());
    }

    #[test]
    fn truncates_have_no_key() {
        let t = table();
        let record = t.event(
            Op::Truncate,
            Value::Null,
            Value::Null,
            Value::Null,
            &info(),
            1,
        );
        assert_eq!(record.key, SchemaAndValue::null());
        assert!(record
            .value
            .value
            .conforms_to(record.value.schema.as_ref().unwrap()));
    }
}
