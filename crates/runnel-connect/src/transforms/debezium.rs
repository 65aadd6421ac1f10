//! Debezium's `ExtractNewRecordState` (`io.debezium.transforms.ExtractNewRecordState`):
//! flattens a change event's envelope into the row it leaves, so that a sink sees rows.
//!
//! A record whose value schema is named `*.Envelope` becomes its `after` row (the value
//! schema becomes the row schema). A delete (no `after`) is dropped, rewritten as its
//! `before` row with `__deleted` = `"true"`, or turned into a record with a null value,
//! as `delete.handling.mode` says (`drop`, `rewrite`, `none`); Debezium's newer
//! `delete.tombstone.handling.mode` (`drop`, `tombstone`, `rewrite`,
//! `rewrite-with-tombstone`) takes precedence when set. Tombstones are dropped unless
//! `drop.tombstones=false`, so that a sink that deletes on tombstones (a JDBC sink with
//! `delete.enabled`) can see them. Truncate events are dropped, as Debezium drops them.
//! `add.fields` copies envelope fields into the row: `op`, `ts_ms` from the envelope,
//! anything else from `source` (`table`, `lsn`...), `struct.field` to name the struct,
//! `field:name` to rename; each lands as `<add.fields.prefix><field>` (`__op`,
//! `__source_ts_ms`), optional. Records that are not envelopes pass unchanged.

use super::{copy_schema_basics, push_field, require_struct_ref, Defs, Props, Transformation};
use crate::config::{ConfigError, ConfigType, Importance, Validator};
use crate::connector::ConnectError;
use crate::data::{ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, Value};

/// What becomes of deletes and tombstones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletes {
    /// Deletes are dropped.
    Drop,
    /// Deletes become a record with a null value (the row schema kept).
    Null,
    /// Deletes become a tombstone (null value, no schema).
    Tombstone,
    /// Deletes become their `before` row with `__deleted` = `"true"`; other rows get
    /// `__deleted` = `"false"`.
    Rewrite,
}

/// An envelope field to copy into the row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AddedField {
    /// The struct of the envelope holding it (`source`, `transaction`), or `None` for the
    /// envelope's own fields (`op`, `ts_ms`).
    parent: Option<String>,
    field: String,
    /// Its name in the row.
    name: String,
}

impl AddedField {
    /// Reads one `add.fields` item as Debezium does: `field`, `struct.field`, with an
    /// optional `:new_name`.
    fn parse(prefix: &str, item: &str) -> Option<AddedField> {
        let (path, rename) = match item.split_once(':') {
            Some((path, rename)) if !rename.contains(':') => (path, Some(rename)),
            Some(_) => return None,
            None => (item, None),
        };
        let (parent, field) = match path.split_once('.') {
            Some((parent, field)) => (Some(parent.to_owned()), field.to_owned()),
            None => {
                let parent = match path {
                    "op" | "ts_ms" | "ts_us" | "ts_ns" => None,
                    "id" | "total_order" | "data_collection_order" => {
                        Some("transaction".to_owned())
                    }
                    _ => Some("source".to_owned()),
                };
                (parent, path.to_owned())
            }
        };
        if field.is_empty() {
            return None;
        }
        let name = match (rename, &parent, path.contains('.')) {
            (Some(rename), _, _) => format!("{prefix}{rename}"),
            (None, Some(parent), true) => format!("{prefix}{parent}_{field}"),
            _ => format!("{prefix}{field}"),
        };
        Some(AddedField {
            parent,
            field,
            name,
        })
    }

    /// The field's schema (made optional) and value in `envelope`, if the envelope has it.
    fn find(&self, schema: &Schema, values: &[Value]) -> Option<(Schema, Value)> {
        let (schema, values) = match &self.parent {
            None => (schema, values),
            Some(parent) => {
                let (i, field) = schema.field(parent)?;
                match values.get(i)? {
                    Value::Struct(inner) if inner.len() == field.schema.fields.len() => {
                        (&field.schema, inner.as_slice())
                    }
                    // A null struct (a snapshot's transaction): the field is null.
                    _ => {
                        let (_, inner) = field.schema.field(&self.field)?;
                        return Some((inner.schema.clone().into_optional(), Value::Null));
                    }
                }
            }
        };
        let (i, field) = schema.field(&self.field)?;
        let mut copied = copy_schema_basics(&field.schema, field.schema.kind);
        copied.fields = field.schema.fields.clone();
        copied.key = field.schema.key.clone();
        copied.value = field.schema.value.clone();
        Some((
            copied.into_optional(),
            values.get(i).cloned().unwrap_or(Value::Null),
        ))
    }
}

/// `ExtractNewRecordState`.
#[derive(Debug)]
pub(crate) struct ExtractNewRecordState {
    deletes: Deletes,
    drop_tombstones: bool,
    added: Vec<AddedField>,
}

/// The field a rewrite adds.
const DELETED_FIELD: &str = "__deleted";

impl ExtractNewRecordState {
    pub(crate) fn define(defs: Defs) -> Defs {
        defs.key(
            "drop.tombstones",
            ConfigType::Boolean,
            Some("true"),
            Importance::Low,
            "Whether the tombstones that follow deletes are dropped (false keeps them, for sinks \
             that delete on tombstones).",
        )
        .key(
            "delete.handling.mode",
            ConfigType::String,
            Some("drop"),
            Importance::Medium,
            "What becomes of deletes: drop them, rewrite them as their old row with \
             __deleted=true, or none (a record with a null value).",
        )
        .validated(Validator::OneOf(&["drop", "rewrite", "none"]))
        .key(
            "delete.tombstone.handling.mode",
            ConfigType::String,
            Some(""),
            Importance::Medium,
            "Debezium's newer setting, which replaces the two above when set: drop, \
             tombstone, rewrite, or rewrite-with-tombstone.",
        )
        .key(
            "add.fields",
            ConfigType::List,
            Some(""),
            Importance::Low,
            "Envelope fields to copy into the row (op, ts_ms, or source fields such as table \
             and lsn; struct.field; field:new_name).",
        )
        .key(
            "add.fields.prefix",
            ConfigType::String,
            Some("__"),
            Importance::Low,
            "The prefix of the added fields' names.",
        )
    }

    pub(crate) fn build(props: &Props) -> Result<Box<dyn Transformation>, ConfigError> {
        let mut drop_tombstones = props.bool_or("drop.tombstones", true)?;
        let legacy = props.optional("delete.handling.mode").unwrap_or("drop");
        let mut deletes = match legacy.trim().to_ascii_lowercase().as_str() {
            "drop" => Deletes::Drop,
            "rewrite" => Deletes::Rewrite,
            "none" => Deletes::Null,
            _ => {
                return Err(props.invalid(
                    "delete.handling.mode",
                    legacy,
                    "String must be one of: drop, rewrite, none",
                ))
            }
        };
        if let Some(mode) = props.optional("delete.tombstone.handling.mode") {
            (deletes, drop_tombstones) =
                match mode.trim().to_ascii_lowercase().as_str() {
                    "drop" => (Deletes::Drop, true),
                    "tombstone" => (Deletes::Tombstone, true),
                    "rewrite" => (Deletes::Rewrite, true),
                    "rewrite-with-tombstone" => (Deletes::Rewrite, false),
                    _ => return Err(props.invalid(
                        "delete.tombstone.handling.mode",
                        mode,
                        "String must be one of: drop, tombstone, rewrite, rewrite-with-tombstone",
                    )),
                };
        }
        let prefix = props.get("add.fields.prefix").unwrap_or("__");
        let added = props
            .list("add.fields")
            .iter()
            .map(|item| {
                AddedField::parse(prefix, item).ok_or_else(|| {
                    props.invalid(
                        "add.fields",
                        props.get("add.fields").unwrap_or_default(),
                        &format!("Unexpected field name: {item}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(ExtractNewRecordState {
            deletes,
            drop_tombstones,
            added,
        }))
    }

    /// `row` (a struct of `row_schema`, or null) with the added fields and, when
    /// rewriting, `__deleted`.
    fn flatten(
        &self,
        row_schema: &Schema,
        row: Value,
        envelope_schema: &Schema,
        envelope: &[Value],
        deleted: bool,
    ) -> Result<SchemaAndValue, ConnectError> {
        let rewrite = self.deletes == Deletes::Rewrite;
        if (!rewrite && self.added.is_empty()) || row.is_null() {
            return Ok(SchemaAndValue::new(Some(row_schema.clone()), row));
        }
        let mut values = require_struct_ref(row_schema, &row, "flattening")?.to_vec();
        let mut schema = copy_schema_basics(row_schema, SchemaType::Struct);
        schema.optional = row_schema.optional;
        schema.fields = row_schema.fields.clone();
        if rewrite {
            push_field(
                &mut schema,
                Field::new(DELETED_FIELD, Schema::optional(SchemaType::String)),
            )?;
            values.push(Value::String(deleted.to_string()));
        }
        for added in &self.added {
            // A field the envelope lacks is left out, as Debezium leaves it out.
            if let Some((field_schema, value)) = added.find(envelope_schema, envelope) {
                push_field(&mut schema, Field::new(added.name.clone(), field_schema))?;
                values.push(value);
            }
        }
        Ok(SchemaAndValue::new(Some(schema), Value::Struct(values)))
    }
}

impl Transformation for ExtractNewRecordState {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        if record.value.value.is_null() {
            return Ok((!self.drop_tombstones).then_some(record));
        }
        let Some(schema) = record
            .value
            .schema
            .as_ref()
            .filter(|s| s.kind == SchemaType::Struct)
            .filter(|s| s.name.as_deref().is_some_and(|n| n.ends_with(".Envelope")))
        else {
            return Ok(Some(record));
        };
        let (Some((before_at, before)), Some((after_at, after))) =
            (schema.field("before"), schema.field("after"))
        else {
            return Ok(Some(record));
        };
        let envelope = require_struct_ref(
            schema,
            &record.value.value,
            "extracting the new record state",
        )?;
        let op = schema
            .field("op")
            .and_then(|(i, _)| envelope.get(i))
            .and_then(Value::as_str);
        if op == Some("t") {
            return Ok(None);
        }
        let after_value = envelope.get(after_at).cloned().unwrap_or(Value::Null);
        let flattened = if !after_value.is_null() {
            self.flatten(&after.schema, after_value, schema, envelope, false)?
        } else {
            match self.deletes {
                Deletes::Drop => return Ok(None),
                Deletes::Tombstone => SchemaAndValue::null(),
                // Kept whatever `drop.tombstones` says, as Debezium keeps it: a delete with
                // its row schema, which a JDBC sink reads as a delete.
                Deletes::Null => SchemaAndValue::new(Some(after.schema.clone()), Value::Null),
                Deletes::Rewrite => {
                    let before_value = envelope.get(before_at).cloned().unwrap_or(Value::Null);
                    self.flatten(&before.schema, before_value, schema, envelope, true)?
                }
            }
        };
        record.value = flattened;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::super::TransformChain;
    use super::*;
    use crate::cdc::envelope::{Column, Op, SourceInfo, TableSchema};
    use crate::cdc::types::{DecimalMode, Kind};
    use crate::config::Configs;

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
                    optional: true,
                },
            ],
            vec![0],
            DecimalMode::Precise,
        )
    }

    fn row(id: i32, name: &str) -> Value {
        Value::Struct(vec![Value::Int32(id), Value::String(name.into())])
    }

    fn event(op: Op, before: Value, after: Value) -> ConnectRecord {
        let t = table();
        let key = if after.is_null() {
            t.key(&before)
        } else {
            t.key(&after)
        };
        t.event(
            op,
            key,
            before,
            after,
            &SourceInfo {
                server: "shop".into(),
                database: "db".into(),
                ts_ms: 1,
                snapshot: "false",
                tx_id: Some(3),
                lsn: Some(42),
            },
            2,
        )
    }

    fn chain(pairs: &[(&str, &str)]) -> TransformChain {
        let mut configs = Configs::new();
        configs.set("transforms", "unwrap");
        configs.set(
            "transforms.unwrap.type",
            "io.debezium.transforms.ExtractNewRecordState",
        );
        for (k, v) in pairs {
            configs.set(format!("transforms.unwrap.{k}"), *v);
        }
        TransformChain::from_configs(&configs).unwrap()
    }

    #[test]
    fn creates_and_updates_become_their_after_row() {
        let out = chain(&[])
            .apply(event(Op::Update, row(1, "a"), row(1, "b")))
            .unwrap()
            .unwrap();
        assert_eq!(out.value.value, row(1, "b"));
        assert_eq!(
            out.value.schema.as_ref().unwrap().name.as_deref(),
            Some("shop.public.items.Value")
        );
        assert_eq!(out.key.value, Value::Struct(vec![Value::Int32(1)]));
        assert_eq!(out.topic, "shop.public.items");
    }

    #[test]
    fn deletes_follow_the_delete_handling_mode() {
        let delete = || event(Op::Delete, row(2, "x"), Value::Null);
        assert_eq!(chain(&[]).apply(delete()).unwrap(), None);
        let none = chain(&[("delete.handling.mode", "none")])
            .apply(delete())
            .unwrap()
            .unwrap();
        assert_eq!(none.value.value, Value::Null);
        assert_eq!(none.key.value, Value::Struct(vec![Value::Int32(2)]));
        let rewrite = chain(&[("delete.handling.mode", "rewrite")]);
        let out = rewrite.apply(delete()).unwrap().unwrap();
        assert_eq!(
            out.value.value,
            Value::Struct(vec![
                Value::Int32(2),
                Value::String("x".into()),
                Value::String("true".into())
            ])
        );
        assert!(out
            .value
            .value
            .conforms_to(out.value.schema.as_ref().unwrap()));
        let created = rewrite
            .apply(event(Op::Create, Value::Null, row(3, "y")))
            .unwrap()
            .unwrap();
        assert_eq!(
            created.value.value,
            Value::Struct(vec![
                Value::Int32(3),
                Value::String("y".into()),
                Value::String("false".into())
            ])
        );
        let tombstone_mode = chain(&[("delete.tombstone.handling.mode", "tombstone")]);
        let out = tombstone_mode.apply(delete()).unwrap().unwrap();
        assert_eq!(out.value, SchemaAndValue::null());
    }

    #[test]
    fn tombstones_are_dropped_unless_asked_to_keep_them() {
        let tombstone = table()
            .tombstone(Value::Struct(vec![Value::Int32(2)]))
            .unwrap();
        assert_eq!(chain(&[]).apply(tombstone.clone()).unwrap(), None);
        let kept = chain(&[("drop.tombstones", "false")])
            .apply(tombstone.clone())
            .unwrap();
        assert_eq!(kept, Some(tombstone));
    }

    #[test]
    fn added_fields_come_from_the_envelope_and_its_source() {
        let out = chain(&[("add.fields", "op,table,lsn,source.ts_ms,txId:tx")])
            .apply(event(Op::Create, Value::Null, row(1, "a")))
            .unwrap()
            .unwrap();
        let schema = out.value.schema.as_ref().unwrap();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "id",
                "name",
                "__op",
                "__table",
                "__lsn",
                "__source_ts_ms",
                "__tx"
            ]
        );
        assert!(schema.fields[2..].iter().all(|f| f.schema.optional));
        assert_eq!(
            out.value.value,
            Value::Struct(vec![
                Value::Int32(1),
                Value::String("a".into()),
                Value::String("c".into()),
                Value::String("items".into()),
                Value::Int64(42),
                Value::Int64(1),
                Value::Int64(3)
            ])
        );
        assert!(out.value.value.conforms_to(schema));
    }

    #[test]
    fn truncates_are_dropped_and_other_records_pass() {
        assert_eq!(
            chain(&[])
                .apply(event(Op::Truncate, Value::Null, Value::Null))
                .unwrap(),
            None
        );
        let plain = ConnectRecord::new(
            "t",
            SchemaAndValue::new(
                Some(Schema::new(SchemaType::String)),
                Value::String("x".into()),
            ),
        );
        assert_eq!(chain(&[]).apply(plain.clone()).unwrap(), Some(plain));
    }

    #[test]
    fn bad_configurations_are_errors_on_their_keys() {
        let mut configs = Configs::new();
        configs.set("transforms", "u");
        configs.set("transforms.u.type", "ExtractNewRecordState");
        configs.set("transforms.u.delete.handling.mode", "keep");
        configs.set("transforms.u.add.fields", "a:b:c");
        let errors = TransformChain::validate(&configs);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "transforms.u.delete.handling.mode");
        configs.set("transforms.u.delete.handling.mode", "rewrite");
        let errors = TransformChain::validate(&configs);
        assert_eq!(errors[0].key, "transforms.u.add.fields");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn no_envelope_panics(
                values in proptest::collection::vec(proptest::option::of(0i32..3), 0..8),
                mode in proptest::sample::select(vec!["drop", "rewrite", "none"]),
            ) {
                // Envelopes whose values do not match their schema are errors, not panics.
                let mut record = event(Op::Create, Value::Null, row(1, "a"));
                record.value.value = Value::Struct(values.iter().map(|v| match v {
                    None => Value::Null,
                    Some(0) => row(1, "a"),
                    Some(1) => Value::String("d".into()),
                    Some(_) => Value::Int32(5),
                }).collect());
                let unwrap = chain(&[("delete.handling.mode", mode), ("add.fields", "op,lsn,id")]);
                let _ = unwrap.apply(record);
            }
        }
    }
}
