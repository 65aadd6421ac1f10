//! Tests of the chain: configuration from `transforms` and `predicates`, predicates with
//! negation, the errors on each key, the validation definitions; and a property test that
//! no configuration of the transforms panics on any record.

use super::*;
use crate::data::Header;

fn configs(pairs: &[(&str, &str)]) -> Configs {
    let mut configs = Configs::new();
    for (k, v) in pairs {
        configs.set(*k, *v);
    }
    configs
}

fn record(topic: &str, value: Value) -> ConnectRecord {
    ConnectRecord::new(topic, SchemaAndValue::new(None, value))
}

fn entry(key: &str, value: Value) -> (Value, Value) {
    (Value::String(key.to_owned()), value)
}

#[test]
fn an_empty_configuration_is_an_empty_chain() {
    let chain = TransformChain::from_configs(&Configs::new()).unwrap();
    assert!(chain.is_empty());
    let r = record("t", Value::Int32(1));
    assert_eq!(chain.apply(r.clone()).unwrap(), Some(r));
    assert!(TransformChain::config_def(&Configs::new())
        .keys()
        .is_empty());
}

#[test]
fn transforms_apply_in_order() {
    let chain = TransformChain::from_configs(&configs(&[
        ("transforms", "hoist, route"),
        (
            "transforms.hoist.type",
            "org.apache.kafka.connect.transforms.HoistField$Value",
        ),
        ("transforms.hoist.field", "line"),
        ("transforms.route.type", "RegexRouter"),
        ("transforms.route.regex", "raw-(.*)"),
        ("transforms.route.replacement", "clean-$1"),
    ]))
    .unwrap();
    assert_eq!(chain.len(), 2);
    let out = chain
        .apply(record("raw-logs", Value::String("x".into())))
        .unwrap()
        .unwrap();
    assert_eq!(out.topic, "clean-logs");
    assert_eq!(
        out.value.value,
        Value::Map(vec![entry("line", Value::String("x".into()))])
    );
}

#[test]
fn predicates_decide_where_transforms_apply_and_negate_inverts_them() {
    let base = [
        ("transforms", "drop"),
        (
            "transforms.drop.type",
            "org.apache.kafka.connect.transforms.Filter",
        ),
        ("transforms.drop.predicate", "isFoo"),
        ("predicates", "isFoo"),
        (
            "predicates.isFoo.type",
            "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        ),
        ("predicates.isFoo.pattern", "foo.*"),
    ];
    let chain = TransformChain::from_configs(&configs(&base)).unwrap();
    assert_eq!(chain.apply(record("foo-1", Value::Null)).unwrap(), None);
    assert!(chain.apply(record("bar", Value::Null)).unwrap().is_some());

    let mut negated = configs(&base);
    negated.set("transforms.drop.negate", "true");
    let chain = TransformChain::from_configs(&negated).unwrap();
    assert!(chain.apply(record("foo-1", Value::Null)).unwrap().is_some());
    assert_eq!(chain.apply(record("bar", Value::Null)).unwrap(), None);
}

#[test]
fn tombstones_and_headers_as_predicates() {
    // Drop tombstones, and tag records that have a trace header.
    let chain = TransformChain::from_configs(&configs(&[
        ("transforms", "noTombstones,tag"),
        ("transforms.noTombstones.type", "Filter"),
        ("transforms.noTombstones.predicate", "tombstone"),
        ("transforms.tag.type", "InsertField$Value"),
        ("transforms.tag.static.field", "traced"),
        ("transforms.tag.static.value", "yes"),
        ("transforms.tag.predicate", "traced"),
        ("predicates", "tombstone,traced"),
        ("predicates.tombstone.type", "RecordIsTombstone"),
        (
            "predicates.traced.type",
            "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
        ),
        ("predicates.traced.name", "trace"),
    ]))
    .unwrap();
    assert_eq!(chain.apply(record("t", Value::Null)).unwrap(), None);
    let plain = record("t", Value::Map(vec![]));
    assert_eq!(chain.apply(plain.clone()).unwrap(), Some(plain.clone()));
    let mut traced = plain;
    traced.headers.push(Header {
        key: "trace".into(),
        value: None,
    });
    let out = chain.apply(traced).unwrap().unwrap();
    assert_eq!(
        out.value.value,
        Value::Map(vec![entry("traced", Value::String("yes".into()))])
    );
}

#[test]
fn configuration_errors_name_their_keys() {
    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "com.example.Nope"),
    ]))
    .unwrap_err();
    assert_eq!(e.key, "transforms.a.type");
    assert_eq!(
        e.message,
        "Invalid value com.example.Nope for configuration transforms.a.type: \
         Class com.example.Nope could not be found."
    );

    let e = TransformChain::from_configs(&configs(&[("transforms", "a")])).unwrap_err();
    assert_eq!(e, ConfigError::missing("transforms.a.type"));

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "Filter"),
        ("transforms.a.predicate", "p"),
    ]))
    .unwrap_err();
    assert_eq!(e.key, "transforms.a.predicate");

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "Filter"),
        ("transforms.a.negate", "true"),
    ]))
    .unwrap_err();
    assert_eq!(e.key, "transforms.a.type");
    assert!(
        e.message.contains("no config 'transforms.a.predicate'"),
        "{}",
        e.message
    );

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a,a"),
        ("transforms.a.type", "Filter"),
    ]))
    .unwrap_err();
    assert_eq!(e.key, "transforms");
    assert!(e.message.ends_with("Duplicate alias provided."));

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "HoistField$Value"),
    ]))
    .unwrap_err();
    assert_eq!(e, ConfigError::missing("transforms.a.field"));

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "TopicNameMatches"),
    ]))
    .unwrap_err();
    assert!(e
        .message
        .ends_with("Class TopicNameMatches is not a transformation."));

    let e = TransformChain::from_configs(&configs(&[
        ("transforms", "a"),
        ("transforms.a.type", "Filter"),
        ("transforms.a.predicate", "p"),
        ("transforms.a.negate", "maybe"),
        ("predicates", "p"),
        ("predicates.p.type", "RecordIsTombstone"),
    ]))
    .unwrap_err();
    assert_eq!(e.key, "transforms.a.negate");
    assert_eq!(
        e.message,
        "Invalid value maybe for configuration transforms.a.negate: \
         Expected value to be either true or false"
    );
}

#[test]
fn validate_reports_every_error_and_unused_predicates_are_checked() {
    let errors = TransformChain::validate(&configs(&[
        ("transforms", "a,b,c"),
        ("transforms.a.type", "Nope"),
        ("transforms.b.type", "Cast$Value"),
        ("transforms.b.spec", "x:uuid"),
        ("transforms.c.type", "Filter"),
        ("transforms.c.predicate", "p"),
        ("predicates", "p,q"),
        ("predicates.p.type", "TopicNameMatches"),
        ("predicates.q.type", "HasHeaderKey"),
    ]));
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    // `p` lacks its pattern: reported once, on its key, and not again on `c`.
    assert_eq!(
        keys,
        [
            "predicates.p.pattern",
            "predicates.q.name",
            "transforms.a.type",
            "transforms.b.spec"
        ]
    );
}

#[test]
fn config_def_describes_each_alias_in_its_group() {
    let configs = configs(&[
        ("transforms", "insert,unknown"),
        ("transforms.insert.type", "InsertField$Value"),
        ("transforms.insert.predicate", "p"),
        ("transforms.unknown.type", "com.example.Nope"),
        ("predicates", "p"),
        ("predicates.p.type", "TopicNameMatches"),
        ("predicates.p.pattern", "(unclosed"),
    ]);
    let def = TransformChain::config_def(&configs);
    let keys: Vec<(&str, &str)> = def
        .keys()
        .iter()
        .map(|k| (k.name.as_str(), k.group.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("transforms.insert.type", "Transforms: insert"),
            ("transforms.insert.predicate", "Transforms: insert"),
            ("transforms.insert.negate", "Transforms: insert"),
            ("transforms.insert.topic.field", "Transforms: insert"),
            ("transforms.insert.partition.field", "Transforms: insert"),
            ("transforms.insert.offset.field", "Transforms: insert"),
            ("transforms.insert.timestamp.field", "Transforms: insert"),
            ("transforms.insert.static.field", "Transforms: insert"),
            ("transforms.insert.static.value", "Transforms: insert"),
            (
                "transforms.insert.replace.null.with.default",
                "Transforms: insert"
            ),
            ("transforms.unknown.type", "Transforms: unknown"),
            ("transforms.unknown.predicate", "Transforms: unknown"),
            ("transforms.unknown.negate", "Transforms: unknown"),
            ("predicates.p.type", "Predicates: p"),
            ("predicates.p.pattern", "Predicates: p"),
        ]
    );
    assert!(def.keys()[0].default.is_none());

    // Validation puts the bad pattern's error on its key, and only there.
    let values = def.validate(&configs);
    let with_errors: Vec<&str> = values
        .iter()
        .filter(|v| !v.errors.is_empty())
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(with_errors, ["predicates.p.pattern"]);
}

#[test]
fn config_def_reports_a_missing_required_transform_key() {
    let configs = configs(&[
        ("transforms", "extract"),
        ("transforms.extract.type", "ExtractField$Key"),
        ("transforms.extract.field.syntax.version", "V9"),
    ]);
    let values = TransformChain::config_def(&configs).validate(&configs);
    let errors: BTreeMap<&str, &[String]> = values
        .iter()
        .map(|v| (v.name.as_str(), &v.errors[..]))
        .collect();
    assert_eq!(
        errors["transforms.extract.field"],
        ["Missing required configuration \"transforms.extract.field\" which has no default value."]
    );
    assert_eq!(errors["transforms.extract.field.syntax.version"].len(), 1);
    assert!(errors["transforms.extract.type"].is_empty());
}

#[test]
fn definition_and_configuration_word_shared_errors_alike() {
    // The worker's validation reports both; an error both see must read the same, so
    // that it shows once.
    let configs = configs(&[
        ("transforms", "r,m,c,e"),
        ("transforms.r.type", "RegexRouter"),
        ("transforms.r.regex", "(open"),
        ("transforms.r.replacement", "x"),
        ("transforms.m.type", "MaskField$Value"),
        ("transforms.m.fields", " "),
        ("transforms.c.type", "Cast$Value"),
        ("transforms.c.spec", ""),
        ("transforms.e.type", "ExtractField$Value"),
        ("transforms.e.field", "f"),
        ("transforms.e.field.syntax.version", "V9"),
        ("predicates", "p"),
        ("predicates.p.type", "HasHeaderKey"),
        ("predicates.p.name", ""),
    ]);
    let from_def = TransformChain::config_def(&configs).validate(&configs);
    let errors = TransformChain::validate(&configs);
    assert_eq!(errors.len(), 5);
    for error in errors {
        let seen = from_def
            .iter()
            .find(|v| v.name == error.key)
            .map(|v| v.errors.clone())
            .unwrap_or_default();
        assert_eq!(seen, vec![error.message], "{}", error.key);
    }
}

#[test]
fn every_class_loads_by_full_and_short_name_and_defines_its_keys() {
    for class in transformation_classes().chain(predicate_classes()) {
        let short = class.rsplit('.').next().unwrap_or(class);
        assert!(find(TRANSFORMS, short).is_some() || find(PREDICATES, short).is_some());
        assert!(
            class.starts_with("org.apache.kafka.connect.transforms.")
                || class.starts_with("io.debezium.transforms.")
        );
    }
    assert_eq!(transformation_classes().count(), 23);
    assert_eq!(predicate_classes().count(), 3);
}

mod properties {
    //! Whatever the record, a transform answers with a record, a drop or an error: never a
    //! panic. Schemas and values are generated independently, so most pairs do not match.

    use proptest::prelude::*;

    use super::super::*;

    fn primitive_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            any::<i8>().prop_map(Value::Int8),
            any::<i16>().prop_map(Value::Int16),
            any::<i32>().prop_map(Value::Int32),
            any::<i64>().prop_map(Value::Int64),
            any::<f32>().prop_map(Value::Float32),
            any::<f64>().prop_map(Value::Float64),
            "[a-c0-9.\\-]{0,6}".prop_map(Value::String),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        primitive_value().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(
                    ("[a-c]{1,2}".prop_map(Value::String), inner.clone()),
                    0..4
                )
                .prop_map(Value::Map),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..2)
                    .prop_map(Value::Map),
                proptest::collection::vec(inner, 0..4).prop_map(Value::Struct),
            ]
        })
    }

    fn kind() -> impl Strategy<Value = SchemaType> {
        prop_oneof![
            Just(SchemaType::Int8),
            Just(SchemaType::Int16),
            Just(SchemaType::Int32),
            Just(SchemaType::Int64),
            Just(SchemaType::Float32),
            Just(SchemaType::Float64),
            Just(SchemaType::Boolean),
            Just(SchemaType::String),
            Just(SchemaType::Bytes),
        ]
    }

    fn schema() -> impl Strategy<Value = Schema> {
        let logical = prop_oneof![
            Just(None),
            Just(Some(crate::data::DECIMAL_LOGICAL)),
            Just(Some(crate::data::TIMESTAMP_LOGICAL)),
            Just(Some(crate::data::DATE_LOGICAL)),
        ];
        let leaf = (
            kind(),
            any::<bool>(),
            logical,
            proptest::option::of(primitive_value()),
            0..50i32,
        )
            .prop_map(|(kind, optional, logical, default, scale)| Schema {
                optional,
                default,
                name: logical.map(str::to_owned),
                parameters: [("scale".to_owned(), scale.to_string())].into(),
                ..Schema::new(kind)
            });
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(("[a-c]{1,2}", inner.clone()), 0..4).prop_map(|fields| {
                    Schema::structure(
                        None,
                        fields.into_iter().map(|(n, s)| Field::new(n, s)).collect(),
                    )
                }),
                inner.clone().prop_map(Schema::array),
                (inner.clone(), inner).prop_map(|(k, v)| Schema::map(k, v)),
            ]
        })
    }

    /// Values that conform to `schema` (nulls where it is optional), so that the transforms'
    /// paths past the type checks are exercised too.
    fn value_for(schema: &Schema) -> BoxedStrategy<Value> {
        let strategy = match schema.kind {
            SchemaType::Struct => {
                let fields: Vec<BoxedStrategy<Value>> =
                    schema.fields.iter().map(|f| value_for(&f.schema)).collect();
                fields.prop_map(Value::Struct).boxed()
            }
            SchemaType::Array => match &schema.value {
                Some(element) => proptest::collection::vec(value_for(element), 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
                None => Just(Value::Array(Vec::new())).boxed(),
            },
            SchemaType::Map => match (&schema.key, &schema.value) {
                (Some(k), Some(v)) => proptest::collection::vec((value_for(k), value_for(v)), 0..3)
                    .prop_map(Value::Map)
                    .boxed(),
                _ => Just(Value::Map(Vec::new())).boxed(),
            },
            kind => {
                let kind = Some(kind);
                primitive_value()
                    .prop_filter("of the schema's type", move |v| v.inferred_type() == kind)
                    .boxed()
            }
        };
        if schema.optional {
            prop_oneof![1 => Just(Value::Null), 4 => strategy].boxed()
        } else {
            strategy
        }
    }

    fn data() -> impl Strategy<Value = SchemaAndValue> {
        let unrelated =
            (proptest::option::of(schema()), value()).prop_map(|(s, v)| SchemaAndValue::new(s, v));
        let conforming = schema().prop_flat_map(|s| {
            value_for(&s).prop_map(move |v| SchemaAndValue::new(Some(s.clone()), v))
        });
        prop_oneof![unrelated, conforming]
    }

    /// One configuration of each transform, touching the field names the generators use.
    fn chains() -> Vec<TransformChain> {
        let all: &[&[(&str, &str)]] = &[
            &[
                ("InsertField$Value", ""),
                ("topic.field", "a"),
                ("partition.field", "b!"),
                ("timestamp.field", "c"),
            ],
            &[
                ("InsertField$Key", ""),
                ("static.field", "a"),
                ("static.value", "v"),
            ],
            &[
                ("ReplaceField$Value", ""),
                ("exclude", "a"),
                ("renames", "b:a,c:d"),
            ],
            &[
                ("ReplaceField$Key", ""),
                ("include", "a,b"),
                ("replace.null.with.default", "false"),
            ],
            &[("MaskField$Value", ""), ("fields", "a,b,c")],
            &[
                ("MaskField$Value", ""),
                ("fields", "a,b,c"),
                ("replacement", "1.5"),
            ],
            &[
                ("Cast$Value", ""),
                ("spec", "a:int8,b:string,c:boolean,ab:float32"),
            ],
            &[("Cast$Value", ""), ("spec", "float64")],
            &[("Cast$Key", ""), ("spec", "string")],
            &[("Cast$Value", ""), ("spec", "int16")],
            &[("ExtractField$Value", ""), ("field", "a")],
            &[
                ("ExtractField$Value", ""),
                ("field", "a.b"),
                ("field.syntax.version", "V2"),
            ],
            &[("HoistField$Value", ""), ("field", "a")],
            &[("ValueToKey", ""), ("fields", "a,b")],
            &[("Flatten$Value", "")],
            &[("Flatten$Key", ""), ("delimiter", "")],
            &[("SetSchemaMetadata$Value", ""), ("schema.name", "n")],
            &[
                ("RegexRouter", ""),
                ("regex", "(a|b)(.*)"),
                ("replacement", "$2$1"),
            ],
            &[
                ("TimestampRouter", ""),
                ("timestamp.format", "GGGG YYYY-ww-W u EEEE hh:mm:ss.SSS a z"),
            ],
            &[
                ("InsertHeader", ""),
                ("header", "h"),
                ("value.literal", "v"),
            ],
            &[("DropHeaders", ""), ("headers", "h")],
            &[("Filter", "")],
        ];
        all.iter()
            .map(|pairs| {
                let mut configs = Configs::new();
                configs.set("transforms", "t");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i == 0 {
                        configs.set("transforms.t.type", *k);
                    } else {
                        configs.set(format!("transforms.t.{k}"), *v);
                    }
                }
                TransformChain::from_configs(&configs).unwrap()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_transform_panics(
            key in data(),
            value in data(),
            topic in "[a-c]{0,4}",
            partition in proptest::option::of(any::<i32>()),
            timestamp in proptest::option::of(any::<i64>()),
        ) {
            let record = ConnectRecord {
                topic,
                partition,
                key,
                value,
                timestamp,
                headers: Vec::new(),
            };
            for chain in chains() {
                let _ = chain.apply(record.clone());
            }
        }

        #[test]
        fn no_configuration_panics(
            kind in "[A-Za-z$]{0,20}",
            keys in proptest::collection::vec(("[a-z.]{1,12}", "[ -~]{0,12}"), 0..6),
        ) {
            let mut configs = Configs::new();
            configs.set("transforms", "t");
            for (class, _) in TRANSFORMS.iter().map(|p| (p.class, ())).chain([(kind.as_str(), ())]) {
                configs.set("transforms.t.type", class);
                for (k, v) in &keys {
                    configs.set(format!("transforms.t.{k}"), v.clone());
                }
                let _ = TransformChain::from_configs(&configs);
                let _ = TransformChain::config_def(&configs);
            }
        }

        #[test]
        fn java_replacements_and_date_patterns_never_panic(text in "[ -~]{0,16}") {
            if let Ok(pattern) = regex::Regex::new("(a)(?<n>b)?") {
                let _ = routers::parse_replacement(&text, &pattern);
            }
            if let Ok(format) = datetime::DateFormat::parse(&text) {
                let _ = format.format(0);
            }
            let _ = fields_path_v2(&text);
        }
    }

    fn fields_path_v2(text: &str) -> Result<Vec<String>, String> {
        let mut configs = Configs::new();
        configs.set("transforms", "t");
        configs.set("transforms.t.type", "ExtractField$Value");
        configs.set("transforms.t.field", text);
        configs.set("transforms.t.field.syntax.version", "V2");
        TransformChain::from_configs(&configs)
            .map(|_| Vec::new())
            .map_err(|e| e.message)
    }
}
