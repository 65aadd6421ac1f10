//! Tests of the field transforms, each on a struct with a schema and on a schemaless map,
//! configured through [`TransformChain::from_configs`] as a connector would configure them.

use super::*;
use crate::config::Configs;
use crate::transforms::TransformChain;

fn configs(pairs: &[(&str, &str)]) -> Configs {
    let mut configs = Configs::new();
    configs.set("transforms", "x");
    for (k, v) in pairs {
        configs.set(format!("transforms.x.{k}"), *v);
    }
    configs
}

fn chain(pairs: &[(&str, &str)]) -> TransformChain {
    TransformChain::from_configs(&configs(pairs)).unwrap()
}

fn config_error(pairs: &[(&str, &str)]) -> ConfigError {
    TransformChain::from_configs(&configs(pairs)).unwrap_err()
}

fn s(text: &str) -> Value {
    Value::String(text.to_owned())
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(entries.iter().map(|(k, v)| (s(k), v.clone())).collect())
}

/// A row schema: `id` int32, `name` optional string defaulting to "anon", `tags` array.
fn row_schema() -> Schema {
    Schema::structure(
        Some("row"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int32)),
            Field::new(
                "name",
                Schema {
                    default: Some(s("anon")),
                    ..Schema::optional(SchemaType::String)
                },
            ),
            Field::new("tags", Schema::array(Schema::new(SchemaType::String))),
        ],
    )
}

fn row(id: i32, name: Value) -> Value {
    Value::Struct(vec![Value::Int32(id), name, Value::Array(vec![s("a")])])
}

fn record(value: SchemaAndValue) -> ConnectRecord {
    let mut record = ConnectRecord::new("orders", value);
    record.partition = Some(3);
    record.timestamp = Some(1_000);
    record
}

fn apply_value(chain: &TransformChain, value: SchemaAndValue) -> SchemaAndValue {
    chain.apply(record(value)).unwrap().unwrap().value
}

fn field_names(schema: &Schema) -> Vec<&str> {
    schema.fields.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn insert_field_adds_metadata_to_structs() {
    let chain = chain(&[
        (
            "type",
            "org.apache.kafka.connect.transforms.InsertField$Value",
        ),
        ("topic.field", "topic!"),
        ("partition.field", "part"),
        ("timestamp.field", "ts?"),
        ("static.field", "origin"),
        ("static.value", "runnel"),
        ("offset.field", "offset"),
    ]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(row_schema()), row(1, Value::Null)),
    );
    let schema = out.schema.unwrap();
    assert_eq!(schema.name.as_deref(), Some("row"));
    assert_eq!(
        field_names(&schema),
        ["id", "name", "tags", "topic", "part", "ts", "origin"]
    );
    assert_eq!(schema.fields[3].schema, Schema::new(SchemaType::String));
    assert_eq!(schema.fields[4].schema, Schema::optional(SchemaType::Int32));
    assert_eq!(
        schema.fields[5].schema,
        Schema {
            name: Some(TIMESTAMP_LOGICAL.into()),
            version: Some(1),
            ..Schema::optional(SchemaType::Int64)
        }
    );
    assert_eq!(
        out.value,
        Value::Struct(vec![
            Value::Int32(1),
            // The null read as the field's default.
            s("anon"),
            Value::Array(vec![s("a")]),
            s("orders"),
            Value::Int32(3),
            Value::Int64(1_000),
            s("runnel"),
        ])
    );
}

#[test]
fn insert_field_adds_entries_to_maps_and_passes_tombstones() {
    let chain = chain(&[
        ("type", "InsertField$Key"),
        ("topic.field", "topic"),
        ("partition.field", "partition"),
        ("timestamp.field", "ts"),
    ]);
    let mut input = record(SchemaAndValue::null());
    input.key = SchemaAndValue::new(None, map(&[("id", Value::Int32(1)), ("topic", s("old"))]));
    input.timestamp = None;
    let out = chain.apply(input).unwrap().unwrap();
    assert_eq!(
        out.key.value,
        map(&[
            ("id", Value::Int32(1)),
            ("topic", s("orders")),
            ("partition", Value::Int32(3)),
        ])
    );

    // A null key (and, for `$Value`, a tombstone) passes unchanged.
    let out = chain
        .apply(record(SchemaAndValue::null()))
        .unwrap()
        .unwrap();
    assert_eq!(out.key, SchemaAndValue::null());

    let value_chain = self::chain(&[("type", "InsertField$Value"), ("topic.field", "t")]);
    let err = value_chain
        .apply(record(SchemaAndValue::new(None, Value::Int32(1))))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Only Map objects supported in absence of schema for [field insertion], found: int32"
    );
}

#[test]
fn insert_field_checks_its_configuration_and_required_fields() {
    let e = config_error(&[("type", "InsertField$Value")]);
    assert_eq!(e.key, "transforms.x.type");
    assert_eq!(e.message, "No field insertion configured");
    let e = config_error(&[("type", "InsertField$Value"), ("static.field", "s")]);
    assert_eq!(e.key, "transforms.x.static.value");

    let chain = chain(&[("type", "InsertField$Value"), ("timestamp.field", "ts!")]);
    let mut input = record(SchemaAndValue::new(Some(row_schema()), row(1, s("n"))));
    input.timestamp = None;
    assert!(chain.apply(input).is_err());

    let duplicate = self::chain(&[("type", "InsertField$Value"), ("topic.field", "id")]);
    let input = record(SchemaAndValue::new(Some(row_schema()), row(1, s("n"))));
    assert!(duplicate.apply(input).is_err());
}

#[test]
fn replace_field_filters_and_renames() {
    let chain = chain(&[
        ("type", "ReplaceField$Value"),
        ("exclude", "tags"),
        ("renames", "id:key,name:who"),
        ("replace.null.with.default", "false"),
    ]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(row_schema()), row(7, Value::Null)),
    );
    let schema = out.schema.unwrap();
    assert_eq!(field_names(&schema), ["key", "who"]);
    assert_eq!(out.value, Value::Struct(vec![Value::Int32(7), Value::Null]));

    let out = apply_value(
        &chain,
        SchemaAndValue::new(
            None,
            map(&[("id", Value::Int32(7)), ("tags", s("x")), ("z", s("z"))]),
        ),
    );
    assert_eq!(out.value, map(&[("key", Value::Int32(7)), ("z", s("z"))]));

    // `include` (or its deprecated name) keeps only the fields named.
    let include = self::chain(&[("type", "ReplaceField$Value"), ("whitelist", "id,name")]);
    let out = apply_value(
        &include,
        SchemaAndValue::new(Some(row_schema()), row(7, Value::Null)),
    );
    assert_eq!(field_names(out.schema.as_ref().unwrap()), ["id", "name"]);
    assert_eq!(out.value, Value::Struct(vec![Value::Int32(7), s("anon")]));

    let e = config_error(&[("type", "ReplaceField$Key"), ("renames", "a:b,c")]);
    assert_eq!(e.key, "transforms.x.renames");
    assert!(
        e.message.ends_with("Invalid rename mapping: c"),
        "{}",
        e.message
    );
}

#[test]
fn mask_field_zeroes_or_replaces() {
    let schema = Schema::structure(
        None,
        vec![
            Field::new("n", Schema::new(SchemaType::Int64)),
            Field::new("b", Schema::new(SchemaType::Boolean)),
            Field::new("s", Schema::new(SchemaType::String)),
            Field::new("keep", Schema::new(SchemaType::String)),
        ],
    );
    let value = Value::Struct(vec![
        Value::Int64(9),
        Value::Boolean(true),
        s("secret"),
        s("k"),
    ]);
    let chain = chain(&[("type", "MaskField$Value"), ("fields", "n,b,s")]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(schema.clone()), value.clone()),
    );
    assert_eq!(out.schema.as_ref(), Some(&schema));
    assert_eq!(
        out.value,
        Value::Struct(vec![Value::Int64(0), Value::Boolean(false), s(""), s("k")])
    );

    let replacing = self::chain(&[
        ("type", "MaskField$Value"),
        ("fields", "n,s,missing"),
        ("replacement", "42"),
    ]);
    let out = apply_value(
        &replacing,
        SchemaAndValue::new(
            None,
            map(&[
                ("n", Value::Int32(1)),
                ("s", s("x")),
                ("f", Value::Float64(1.5)),
            ]),
        ),
    );
    assert_eq!(
        out.value,
        map(&[
            ("n", Value::Int32(42)),
            ("s", s("42")),
            ("f", Value::Float64(1.5))
        ])
    );

    // A boolean has no custom replacement; bytes no zero.
    let bad = self::chain(&[
        ("type", "MaskField$Value"),
        ("fields", "b"),
        ("replacement", "x"),
    ]);
    assert!(bad
        .apply(record(SchemaAndValue::new(
            Some(schema.clone()),
            value.clone()
        )))
        .is_err());
    let bytes = self::chain(&[("type", "MaskField$Value"), ("fields", "b")]);
    let input = SchemaAndValue::new(None, map(&[("b", Value::Bytes(vec![1]))]));
    assert!(bytes.apply(record(input)).is_err());

    let e = config_error(&[("type", "MaskField$Value"), ("fields", "")]);
    assert_eq!(e.key, "transforms.x.fields");
    let e = config_error(&[
        ("type", "MaskField$Value"),
        ("fields", "a"),
        ("replacement", ""),
    ]);
    assert_eq!(e.key, "transforms.x.replacement");
}

#[test]
fn mask_field_masks_decimals_at_their_scale() {
    let decimal = Schema {
        name: Some(DECIMAL_LOGICAL.into()),
        parameters: [(DECIMAL_SCALE_PARAMETER.to_owned(), "2".to_owned())].into(),
        ..Schema::new(SchemaType::Bytes)
    };
    let schema = Schema::structure(None, vec![Field::new("price", decimal)]);
    let value = Value::Struct(vec![Value::Bytes(decimal_to_bytes(12_345))]);
    let zero = chain(&[("type", "MaskField$Value"), ("fields", "price")]);
    let out = apply_value(
        &zero,
        SchemaAndValue::new(Some(schema.clone()), value.clone()),
    );
    assert_eq!(out.value, Value::Struct(vec![Value::Bytes(vec![0])]));
    let replaced = chain(&[
        ("type", "MaskField$Value"),
        ("fields", "price"),
        ("replacement", "-1.5"),
    ]);
    let out = apply_value(&replaced, SchemaAndValue::new(Some(schema), value));
    assert_eq!(
        out.value,
        Value::Struct(vec![Value::Bytes(decimal_to_bytes(-150))])
    );
}

#[test]
fn extract_field_takes_one_field_out() {
    let chain = chain(&[("type", "ExtractField$Value"), ("field", "name")]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(row_schema()), row(1, Value::Null)),
    );
    assert_eq!(out.schema, Some(row_schema().fields[1].schema.clone()));
    assert_eq!(out.value, s("anon"));

    let out = apply_value(&chain, SchemaAndValue::new(None, map(&[("name", s("x"))])));
    assert_eq!(out, SchemaAndValue::new(None, s("x")));
    let out = apply_value(&chain, SchemaAndValue::new(None, map(&[("other", s("x"))])));
    assert_eq!(out, SchemaAndValue::new(None, Value::Null));
    let out = apply_value(&chain, SchemaAndValue::null());
    assert_eq!(out, SchemaAndValue::null());

    let unknown = self::chain(&[("type", "ExtractField$Value"), ("field", "nope")]);
    let err = unknown
        .apply(record(SchemaAndValue::new(
            Some(row_schema()),
            row(1, Value::Null),
        )))
        .unwrap_err();
    assert_eq!(err.to_string(), "Unknown field: nope");
}

#[test]
fn extract_field_follows_v2_paths() {
    let inner = Schema::structure(None, vec![Field::new("c", Schema::new(SchemaType::Int32))]);
    let schema = Schema::structure(None, vec![Field::new("a.b", inner.clone().into_optional())]);
    let value = Value::Struct(vec![Value::Struct(vec![Value::Int32(5)])]);
    let chain = chain(&[
        ("type", "ExtractField$Key"),
        ("field", "`a.b`.c"),
        ("field.syntax.version", "v2"),
    ]);
    let mut input = record(SchemaAndValue::null());
    input.key = SchemaAndValue::new(Some(schema.clone()), value);
    let out = chain.apply(input).unwrap().unwrap();
    assert_eq!(
        out.key,
        SchemaAndValue::new(Some(inner.fields[0].schema.clone()), Value::Int32(5))
    );

    // A null struct on the way gives null.
    let mut input = record(SchemaAndValue::null());
    input.key = SchemaAndValue::new(Some(schema), Value::Struct(vec![Value::Null]));
    let out = chain.apply(input).unwrap().unwrap();
    assert_eq!(out.key.value, Value::Null);

    let mut input = record(SchemaAndValue::null());
    input.key = SchemaAndValue::new(None, map(&[("a.b", map(&[("c", s("deep"))]))]));
    assert_eq!(chain.apply(input).unwrap().unwrap().key.value, s("deep"));

    assert_eq!(parse_path_v2("a.b.c").unwrap(), ["a", "b", "c"]);
    assert_eq!(parse_path_v2("`a.b`.c").unwrap(), ["a.b", "c"]);
    assert_eq!(parse_path_v2("`a\\`.b`.c").unwrap(), ["a`.b", "c"]);
    assert_eq!(parse_path_v2("`a`b`.c").unwrap(), ["a`b", "c"]);
    assert_eq!(parse_path_v2("a.").unwrap(), ["a", ""]);
    assert!(parse_path_v2("`a.b").is_err());
    let e = config_error(&[
        ("type", "ExtractField$Value"),
        ("field", "`open"),
        ("field.syntax.version", "V2"),
    ]);
    assert_eq!(e.key, "transforms.x.field");
    let e = config_error(&[
        ("type", "ExtractField$Value"),
        ("field", "a"),
        ("field.syntax.version", "V3"),
    ]);
    assert_eq!(e.key, "transforms.x.field.syntax.version");
}

#[test]
fn hoist_field_wraps_data() {
    let chain = chain(&[("type", "HoistField$Value"), ("field", "line")]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(Schema::new(SchemaType::String)), s("hi")),
    );
    assert_eq!(
        out,
        SchemaAndValue::new(
            Some(Schema::structure(
                None,
                vec![Field::new("line", Schema::new(SchemaType::String))]
            )),
            Value::Struct(vec![s("hi")])
        )
    );
    let out = apply_value(&chain, SchemaAndValue::new(None, s("hi")));
    assert_eq!(out, SchemaAndValue::new(None, map(&[("line", s("hi"))])));
}

#[test]
fn value_to_key_builds_the_key_from_value_fields() {
    let chain = chain(&[("type", "ValueToKey"), ("fields", "name,id")]);
    let out = chain
        .apply(record(SchemaAndValue::new(
            Some(row_schema()),
            row(4, Value::Null),
        )))
        .unwrap()
        .unwrap();
    let key_schema = out.key.schema.unwrap();
    assert_eq!(key_schema.name, None);
    assert_eq!(field_names(&key_schema), ["name", "id"]);
    assert_eq!(
        out.key.value,
        Value::Struct(vec![s("anon"), Value::Int32(4)])
    );
    // The value is untouched.
    assert_eq!(out.value.value, row(4, Value::Null));

    let out = chain
        .apply(record(SchemaAndValue::new(
            None,
            map(&[("id", Value::Int32(4))]),
        )))
        .unwrap()
        .unwrap();
    assert_eq!(
        out.key.value,
        map(&[("name", Value::Null), ("id", Value::Int32(4))])
    );

    let missing = self::chain(&[("type", "ValueToKey"), ("fields", "nope")]);
    let err = missing
        .apply(record(SchemaAndValue::new(
            Some(row_schema()),
            row(4, Value::Null),
        )))
        .unwrap_err();
    assert_eq!(err.to_string(), "Field does not exist: nope");
    assert!(chain.apply(record(SchemaAndValue::null())).is_err());
}

#[test]
fn flatten_lifts_nested_fields() {
    let address = Schema::structure(
        Some("address"),
        vec![
            Field::new("city", Schema::new(SchemaType::String)),
            Field::new("zip", Schema::new(SchemaType::Int32)),
        ],
    );
    let schema = Schema::structure(
        Some("person"),
        vec![
            Field::new("id", Schema::new(SchemaType::Int32)),
            Field::new("home", address.clone().into_optional()),
            Field::new("work", address),
        ],
    );
    let value = Value::Struct(vec![
        Value::Int32(1),
        Value::Null,
        Value::Struct(vec![s("Paris"), Value::Int32(75)]),
    ]);
    let chain = chain(&[("type", "Flatten$Value"), ("delimiter", "_")]);
    let out = apply_value(&chain, SchemaAndValue::new(Some(schema), value));
    let flat = out.schema.unwrap();
    assert_eq!(flat.name.as_deref(), Some("person"));
    assert_eq!(
        field_names(&flat),
        ["id", "home_city", "home_zip", "work_city", "work_zip"]
    );
    // Under an optional struct, fields become optional.
    assert!(flat.fields[1].schema.optional);
    assert!(!flat.fields[3].schema.optional);
    assert_eq!(
        out.value,
        Value::Struct(vec![
            Value::Int32(1),
            Value::Null,
            Value::Null,
            s("Paris"),
            Value::Int32(75)
        ])
    );

    let dotted = self::chain(&[("type", "Flatten$Value")]);
    let nested = map(&[
        (
            "a",
            map(&[("b", Value::Int32(1)), ("c", map(&[("d", Value::Null)]))]),
        ),
        ("e", Value::Array(vec![map(&[])])),
    ]);
    let out = apply_value(&dotted, SchemaAndValue::new(None, nested));
    assert_eq!(
        out.value,
        map(&[
            ("a.b", Value::Int32(1)),
            ("a.c.d", Value::Null),
            ("e", Value::Array(vec![map(&[])])),
        ])
    );

    let with_map = Schema::structure(
        None,
        vec![Field::new(
            "m",
            Schema::map(
                Schema::new(SchemaType::String),
                Schema::new(SchemaType::String),
            ),
        )],
    );
    let err = dotted
        .apply(record(SchemaAndValue::new(
            Some(with_map),
            Value::Struct(vec![Value::Map(vec![])]),
        )))
        .unwrap_err();
    assert!(err.to_string().contains("does not support map"), "{err}");
}

#[test]
fn set_schema_metadata_names_the_schema() {
    let chain = chain(&[
        ("type", "SetSchemaMetadata$Value"),
        ("schema.name", "com.example.Row"),
        ("schema.version", "3"),
    ]);
    let out = apply_value(
        &chain,
        SchemaAndValue::new(Some(row_schema()), row(1, Value::Null)),
    );
    let schema = out.schema.unwrap();
    assert_eq!(schema.name.as_deref(), Some("com.example.Row"));
    assert_eq!(schema.version, Some(3));
    assert!(chain
        .apply(record(SchemaAndValue::new(None, s("x"))))
        .is_err());
    assert!(chain.apply(record(SchemaAndValue::null())).is_ok());
    let e = config_error(&[("type", "SetSchemaMetadata$Value")]);
    assert_eq!(e.message, "Neither schema name nor version configured");
    let e = config_error(&[("type", "SetSchemaMetadata$Key"), ("schema.version", "x")]);
    assert_eq!(e.key, "transforms.x.schema.version");
}

#[test]
fn structs_that_do_not_match_their_schema_are_errors_not_panics() {
    let short = Value::Struct(vec![Value::Int32(1)]);
    for pairs in [
        &[("type", "InsertField$Value"), ("topic.field", "t")][..],
        &[("type", "ReplaceField$Value"), ("exclude", "id")][..],
        &[("type", "MaskField$Value"), ("fields", "id")][..],
        &[("type", "ExtractField$Value"), ("field", "tags")][..],
        &[("type", "ValueToKey"), ("fields", "tags")][..],
        &[("type", "Flatten$Value")][..],
        &[("type", "Cast$Value"), ("spec", "id:string")][..],
    ] {
        let chain = chain(pairs);
        let input = record(SchemaAndValue::new(Some(row_schema()), short.clone()));
        assert!(chain.apply(input).is_err(), "{pairs:?}");
    }
}
