//! Single message transforms (SMTs) and predicates, configured as Kafka Connect configures
//! them: `transforms=a,b`, `transforms.a.type=...`, `transforms.a.predicate=p`,
//! `transforms.a.negate=true`, `predicates=p`, `predicates.p.type=...`.
//!
//! This module owns the [`TransformChain`] (building it from a connector's configuration,
//! describing the keys it takes for validation, applying it), the registry of the bundled
//! transforms and predicates under Kafka's class names, and the helpers they share. The
//! transforms themselves live in submodules:
//! - `fields`: the transforms that reshape a key or value (`InsertField`, `ReplaceField`,
//!   `MaskField`, `ExtractField`, `HoistField`, `ValueToKey`, `Flatten`, `SetSchemaMetadata`);
//! - `cast`: `Cast` and the Java renderings of numbers it needs;
//! - `routers`: what changes a record's topic or headers, or drops it (`RegexRouter`,
//!   `TimestampRouter`, `Filter`, `InsertHeader`, `DropHeaders`);
//! - `predicates`: `TopicNameMatches`, `HasHeaderKey`, `RecordIsTombstone`;
//! - `datetime`: the subset of Java's `SimpleDateFormat` that `TimestampRouter` and `Cast`
//!   format with, always in UTC;
//! - `debezium`: Debezium's `ExtractNewRecordState`, under Debezium's class name.
//!
//! Every transform and predicate is selected by its fully qualified Java name
//! (`org.apache.kafka.connect.transforms.InsertField$Value`) or by its short name, the part
//! after the last dot (`InsertField$Value`), as Kafka's plugin aliases allow.

mod cast;
mod datetime;
mod debezium;
mod fields;
mod predicates;
mod routers;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use crate::config::{ConfigDef, ConfigError, ConfigType, Configs, Importance, Validator};
use crate::connector::ConnectError;
use crate::data::{ConnectRecord, Field, Schema, SchemaAndValue, SchemaType, Value};

/// One transform: a record in, the changed record out, or `None` to drop it.
pub trait Transformation: Send + Sync + fmt::Debug {
    /// Applies the transform.
    fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError>;
}

/// A condition on a record that decides whether a transform applies.
pub trait Predicate: Send + Sync + fmt::Debug {
    /// Whether `record` matches.
    fn test(&self, record: &ConnectRecord) -> bool;
}

/// The transforms of a connector, in order, each with its predicate if it has one.
#[derive(Debug, Default)]
pub struct TransformChain {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    transform: Box<dyn Transformation>,
    predicate: Option<(Arc<dyn Predicate>, bool)>,
}

/// The key listing the transform aliases, in order.
const TRANSFORMS_KEY: &str = "transforms";
/// The key listing the predicate aliases.
const PREDICATES_KEY: &str = "predicates";

impl TransformChain {
    /// The chain a connector's configuration describes.
    ///
    /// Fails with the first configuration error found; [`TransformChain::validate`] gives
    /// them all.
    pub fn from_configs(configs: &Configs) -> Result<TransformChain, ConfigError> {
        let mut errors = Vec::new();
        let chain = build_chain(configs, &mut errors);
        match errors.into_iter().next() {
            Some(error) => Err(error),
            None => Ok(chain),
        }
    }

    /// Every configuration error of the transforms and predicates of `configs`, each on its
    /// key: unknown classes, duplicate aliases, undefined predicates, and the values each
    /// transform rejects when it is configured (a bad cast spec, a rename mapping without
    /// a colon...). Validating with [`TransformChain::config_def`] sees only what a key's
    /// type and validator can; these need the transform itself. An error both see is
    /// worded alike, so that a validation merging the two can show it once.
    pub fn validate(configs: &Configs) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        build_chain(configs, &mut errors);
        errors
    }

    /// The keys the transforms and predicates named in `configs` take, prefixed as they
    /// are written (`transforms.a.field`, ...), for validation.
    ///
    /// Each alias has its group, as Kafka's validation answer shows them: `Transforms: a`
    /// with `transforms.a.type`, `.predicate`, `.negate` and the keys of the transform
    /// `transforms.a.type` names; `Predicates: p` with `predicates.p.type` and the keys of
    /// its predicate. A type that names no known class contributes only its `type` key.
    /// Keys Kafka defines with a null default have the empty string as theirs here, the
    /// only way [`ConfigDef`] has to say "optional, unset".
    pub fn config_def(configs: &Configs) -> ConfigDef {
        let mut def = ConfigDef::new();
        for alias in dedup(configs.list(TRANSFORMS_KEY)) {
            let prefix = format!("{TRANSFORMS_KEY}.{alias}.");
            let mut defs = Defs {
                def,
                group: format!("Transforms: {alias}"),
                prefix,
            };
            defs = defs
                .key(
                    "type",
                    ConfigType::Class,
                    None,
                    Importance::High,
                    &format!("The class of the '{alias}' transformation."),
                )
                .key(
                    "predicate",
                    ConfigType::String,
                    Some(""),
                    Importance::Medium,
                    "The alias of the predicate deciding which records this transformation applies to.",
                )
                .key(
                    "negate",
                    ConfigType::Boolean,
                    Some("false"),
                    Importance::Medium,
                    "Whether to apply this transformation to the records the predicate does not match.",
                );
            let class = configs.get(&format!("{}type", defs.prefix));
            if let Some(plugin) = class.and_then(|c| find(TRANSFORMS, c)) {
                defs = (plugin.define)(defs);
            }
            def = defs.def;
        }
        for alias in dedup(configs.list(PREDICATES_KEY)) {
            let prefix = format!("{PREDICATES_KEY}.{alias}.");
            let mut defs = Defs {
                def,
                group: format!("Predicates: {alias}"),
                prefix,
            };
            defs = defs.key(
                "type",
                ConfigType::Class,
                None,
                Importance::High,
                &format!("The class of the '{alias}' predicate."),
            );
            let class = configs.get(&format!("{}type", defs.prefix));
            if let Some(plugin) = class.and_then(|c| find(PREDICATES, c)) {
                defs = (plugin.define)(defs);
            }
            def = defs.def;
        }
        def
    }

    /// Applies each step in order; `None` once a step drops the record.
    pub fn apply(&self, record: ConnectRecord) -> Result<Option<ConnectRecord>, ConnectError> {
        let mut record = record;
        for step in &self.steps {
            if let Some((predicate, negate)) = &step.predicate {
                if predicate.test(&record) == *negate {
                    continue;
                }
            }
            match step.transform.apply(record)? {
                Some(next) => record = next,
                None => return Ok(None),
            }
        }
        Ok(Some(record))
    }

    /// The number of transforms in the chain.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the chain has no transform (and so passes records through unchanged).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// Builds the chain `configs` describes, pushing each error onto `errors` and leaving the
/// step at fault out, so that one pass reports every wrong key.
fn build_chain(configs: &Configs, errors: &mut Vec<ConfigError>) -> TransformChain {
    // Predicates first: transforms refer to them by alias. Every listed predicate is
    // configured, used or not, so that its mistakes surface as Kafka's would.
    let predicate_aliases = aliases(configs, PREDICATES_KEY, errors);
    let mut predicates: BTreeMap<&str, Arc<dyn Predicate>> = BTreeMap::new();
    for alias in &predicate_aliases {
        let props = Props::new(configs, &format!("{PREDICATES_KEY}.{alias}."));
        let built = plugin_for(&props, PREDICATES, "predicate").and_then(|p| (p.build)(&props));
        match built {
            Ok(predicate) => {
                predicates.insert(alias, Arc::from(predicate));
            }
            Err(error) => errors.push(error),
        }
    }
    let listed: BTreeSet<&str> = predicate_aliases.iter().map(String::as_str).collect();

    let mut steps = Vec::new();
    for alias in aliases(configs, TRANSFORMS_KEY, errors) {
        let props = Props::new(configs, &format!("{TRANSFORMS_KEY}.{alias}."));
        match build_step(&props, &listed, &predicates) {
            Ok(Some(step)) => steps.push(step),
            // The predicate failed to build; its error is already reported.
            Ok(None) => {}
            Err(error) => errors.push(error),
        }
    }
    TransformChain { steps }
}

/// The step of one transform alias, or `None` if its predicate is listed but could not be
/// built.
fn build_step(
    props: &Props,
    listed: &BTreeSet<&str>,
    predicates: &BTreeMap<&str, Arc<dyn Predicate>>,
) -> Result<Option<Step>, ConfigError> {
    let plugin = plugin_for(props, TRANSFORMS, "transformation")?;
    let predicate_alias = props.optional("predicate");
    if predicate_alias.is_none() && props.get("negate").is_some() {
        // Kafka reports this from the type's validator, so on the type key.
        return Err(props.error(
            "type",
            format!(
                "Config '{}' was provided but there is no config '{}' defining a predicate to be negated.",
                props.key("negate"),
                props.key("predicate")
            ),
        ));
    }
    let negate = props.bool_or("negate", false)?;
    let transform = (plugin.build)(props)?;
    let predicate = match predicate_alias {
        None => None,
        Some(alias) => match predicates.get(alias) {
            Some(predicate) => Some((Arc::clone(predicate), negate)),
            None if listed.contains(alias) => return Ok(None),
            None => {
                return Err(props.invalid(
                    "predicate",
                    alias,
                    &format!(
                        "no predicate '{alias}' is defined: list it in '{PREDICATES_KEY}' and set \
                         '{PREDICATES_KEY}.{alias}.type'"
                    ),
                ))
            }
        },
    };
    Ok(Some(Step {
        transform,
        predicate,
    }))
}

/// The aliases listed under `key`, each once; a repeated alias is an error as in Kafka.
fn aliases(configs: &Configs, key: &str, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let listed = configs.list(key);
    let unique = dedup(listed.clone());
    if unique.len() != listed.len() {
        let value = configs.get(key).unwrap_or_default();
        errors.push(ConfigError::invalid(
            key,
            value,
            "Duplicate alias provided.",
        ));
    }
    unique
}

/// `items` without repeats, first occurrences kept in order.
fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(item.clone()))
        .collect()
}

/// The plugin the `type` key of `props` names, or the error Kafka gives for a class it
/// cannot load.
fn plugin_for<T: ?Sized>(
    props: &Props,
    registry: &'static [Plugin<T>],
    kind: &str,
) -> Result<&'static Plugin<T>, ConfigError> {
    let class = props.required("type")?.trim();
    find(registry, class).ok_or_else(|| {
        // A transform named as a predicate (or the reverse) loads in Kafka but is not of
        // the right kind; say so rather than claim the class is unknown.
        let other_kind = if kind == "predicate" {
            find(TRANSFORMS, class).is_some()
        } else {
            find(PREDICATES, class).is_some()
        };
        let why = if other_kind {
            format!("Class {class} is not a {kind}.")
        } else {
            format!("Class {class} could not be found.")
        };
        props.invalid("type", class, &why)
    })
}

/// The plugin of `registry` whose Java class name, or its part after the last dot, is
/// `name`.
fn find<T: ?Sized>(registry: &'static [Plugin<T>], name: &str) -> Option<&'static Plugin<T>> {
    let name = name.trim();
    registry
        .iter()
        .find(|p| p.class == name || p.class.rsplit('.').next() == Some(name))
}

/// A bundled transform or predicate: its Java class name, the keys it takes, and how to
/// build it from them.
struct Plugin<T: ?Sized> {
    class: &'static str,
    define: fn(Defs) -> Defs,
    build: fn(&Props) -> Result<Box<T>, ConfigError>,
}

/// Kafka's bundled transforms, by class name. `$Key` variants work on the record key,
/// `$Value` ones on the value.
static TRANSFORMS: &[Plugin<dyn Transformation>] = &[
    Plugin {
        class: "org.apache.kafka.connect.transforms.InsertField$Key",
        define: fields::InsertField::define,
        build: |p| fields::InsertField::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.InsertField$Value",
        define: fields::InsertField::define,
        build: |p| fields::InsertField::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.ReplaceField$Key",
        define: fields::ReplaceField::define,
        build: |p| fields::ReplaceField::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.ReplaceField$Value",
        define: fields::ReplaceField::define,
        build: |p| fields::ReplaceField::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.MaskField$Key",
        define: fields::MaskField::define,
        build: |p| fields::MaskField::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.MaskField$Value",
        define: fields::MaskField::define,
        build: |p| fields::MaskField::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.Cast$Key",
        define: cast::Cast::define,
        build: |p| cast::Cast::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.Cast$Value",
        define: cast::Cast::define,
        build: |p| cast::Cast::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.ExtractField$Key",
        define: fields::ExtractField::define,
        build: |p| fields::ExtractField::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.ExtractField$Value",
        define: fields::ExtractField::define,
        build: |p| fields::ExtractField::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.HoistField$Key",
        define: fields::HoistField::define,
        build: |p| fields::HoistField::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.HoistField$Value",
        define: fields::HoistField::define,
        build: |p| fields::HoistField::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.Flatten$Key",
        define: fields::Flatten::define,
        build: |p| fields::Flatten::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.Flatten$Value",
        define: fields::Flatten::define,
        build: |p| fields::Flatten::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.SetSchemaMetadata$Key",
        define: fields::SetSchemaMetadata::define,
        build: |p| fields::SetSchemaMetadata::build(p, Side::Key),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.SetSchemaMetadata$Value",
        define: fields::SetSchemaMetadata::define,
        build: |p| fields::SetSchemaMetadata::build(p, Side::Value),
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.ValueToKey",
        define: fields::ValueToKey::define,
        build: fields::ValueToKey::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.RegexRouter",
        define: routers::RegexRouter::define,
        build: routers::RegexRouter::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.TimestampRouter",
        define: routers::TimestampRouter::define,
        build: routers::TimestampRouter::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.Filter",
        define: routers::Filter::define,
        build: routers::Filter::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.InsertHeader",
        define: routers::InsertHeader::define,
        build: routers::InsertHeader::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.DropHeaders",
        define: routers::DropHeaders::define,
        build: routers::DropHeaders::build,
    },
    // Debezium's, for the change events of the CDC connectors.
    Plugin {
        class: "io.debezium.transforms.ExtractNewRecordState",
        define: debezium::ExtractNewRecordState::define,
        build: debezium::ExtractNewRecordState::build,
    },
];

/// Kafka's bundled predicates, by class name.
static PREDICATES: &[Plugin<dyn Predicate>] = &[
    Plugin {
        class: "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
        define: predicates::TopicNameMatches::define,
        build: predicates::TopicNameMatches::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
        define: predicates::HasHeaderKey::define,
        build: predicates::HasHeaderKey::build,
    },
    Plugin {
        class: "org.apache.kafka.connect.transforms.predicates.RecordIsTombstone",
        define: predicates::RecordIsTombstone::define,
        build: predicates::RecordIsTombstone::build,
    },
];

/// The class names of the bundled transforms, fully qualified, as the worker lists them
/// among its plugins (`GET /connector-plugins?connectorsOnly=false`).
pub fn transformation_classes() -> impl Iterator<Item = &'static str> {
    TRANSFORMS.iter().map(|p| p.class)
}

/// The class names of the bundled predicates, fully qualified.
pub fn predicate_classes() -> impl Iterator<Item = &'static str> {
    PREDICATES.iter().map(|p| p.class)
}

// ---------------------------------------------------------------------------------------
// What the transforms share: reading their keys, defining them, and working on one side of
// a record.

/// One transform's or predicate's keys, with the alias prefix (`transforms.a.`) removed,
/// and that prefix kept to name keys in full in errors.
#[derive(Debug)]
pub(crate) struct Props {
    prefix: String,
    configs: Configs,
}

impl Props {
    /// The keys of `configs` under `prefix`.
    pub(crate) fn new(configs: &Configs, prefix: &str) -> Props {
        Props {
            prefix: prefix.to_owned(),
            configs: configs.with_prefix(prefix),
        }
    }

    /// `name` as written in the connector's configuration.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The value of `name`, if set (even to the empty string).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.configs.get(name)
    }

    /// The value of `name`, if set and not blank: the keys Kafka defaults to null, where
    /// an empty value means "unset" here.
    pub(crate) fn optional(&self, name: &str) -> Option<&str> {
        self.configs.get(name).filter(|v| !v.trim().is_empty())
    }

    /// The value of `name`, or the error Kafka gives for a required key left out.
    pub(crate) fn required(&self, name: &str) -> Result<&str, ConfigError> {
        self.configs
            .get(name)
            .ok_or_else(|| ConfigError::missing(&self.key(name)))
    }

    /// `name` as a boolean, or `default`.
    pub(crate) fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        self.configs
            .bool_or(name, default)
            .map_err(|e| self.rekeyed(name, e))
    }

    /// `name` as a 32-bit integer, if set.
    pub(crate) fn int(&self, name: &str) -> Result<Option<i32>, ConfigError> {
        match self.optional(name).map(str::trim) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(name, text, "Not a number of type INT")),
        }
    }

    /// `name` as a comma-separated list; empty when unset.
    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.configs.list(name)
    }

    /// `name` as a list that must be set and have an item. An empty one is refused in the
    /// words of [`Validator::NonEmpty`], which these keys have in their definitions, so
    /// that a validation that runs both reports the error once.
    pub(crate) fn required_list(&self, name: &str) -> Result<Vec<String>, ConfigError> {
        let text = self.required(name)?;
        let items = self.configs.list(name);
        if items.is_empty() {
            return Err(self.invalid(name, text, "String must be non-empty"));
        }
        Ok(items)
    }

    /// `value` is wrong for `name`: `why`.
    pub(crate) fn invalid(&self, name: &str, value: &str, why: &str) -> ConfigError {
        ConfigError::invalid(&self.key(name), value, why)
    }

    /// An error on `name` with exactly `message`.
    pub(crate) fn error(&self, name: &str, message: String) -> ConfigError {
        ConfigError {
            key: self.key(name),
            message,
        }
    }

    /// `error`, which names the unprefixed key `name`, told again with the full key.
    fn rekeyed(&self, name: &str, error: ConfigError) -> ConfigError {
        let full = self.key(name);
        ConfigError {
            message: error.message.replace(
                &format!("configuration {name}:"),
                &format!("configuration {full}:"),
            ),
            key: full,
        }
    }
}

/// A [`ConfigDef`] under construction for one alias: keys are defined by their short
/// names and land prefixed, in the alias's group.
#[derive(Debug)]
pub(crate) struct Defs {
    def: ConfigDef,
    prefix: String,
    group: String,
}

impl Defs {
    /// Defines `name` (prefixed); `default` `None` makes it required.
    pub(crate) fn key(
        mut self,
        name: &str,
        kind: ConfigType,
        default: Option<&str>,
        importance: Importance,
        documentation: &str,
    ) -> Defs {
        self.def = self.def.define(
            &format!("{}{name}", self.prefix),
            kind,
            default,
            importance,
            &self.group,
            documentation,
        );
        self
    }

    /// Gives the key defined last a validator.
    pub(crate) fn validated(mut self, validator: Validator) -> Defs {
        self.def = self.def.validated(validator);
        self
    }

    /// Defines `replace.null.with.default`, which several transforms share.
    pub(crate) fn replace_null_with_default(self) -> Defs {
        self.key(
            REPLACE_NULL_WITH_DEFAULT,
            ConfigType::Boolean,
            Some("true"),
            Importance::Medium,
            "Whether a null struct field that has a default value is read as that default \
             (true) or kept null (false).",
        )
    }
}

/// The key, shared by several transforms, that decides whether a null struct field reads
/// as its schema's default.
pub(crate) const REPLACE_NULL_WITH_DEFAULT: &str = "replace.null.with.default";

/// Which part of a record a `$Key` or `$Value` transform works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl Side {
    /// The part of `record` this side names.
    pub(crate) fn of(self, record: &ConnectRecord) -> &SchemaAndValue {
        match self {
            Side::Key => &record.key,
            Side::Value => &record.value,
        }
    }

    /// The part of `record` this side names, taken out (a schemaless null left in its
    /// place).
    pub(crate) fn take(self, record: &mut ConnectRecord) -> SchemaAndValue {
        let slot = match self {
            Side::Key => &mut record.key,
            Side::Value => &mut record.value,
        };
        std::mem::replace(slot, SchemaAndValue::null())
    }

    /// Puts `data` in the part of `record` this side names.
    pub(crate) fn put(self, record: &mut ConnectRecord, data: SchemaAndValue) {
        match self {
            Side::Key => record.key = data,
            Side::Value => record.value = data,
        }
    }
}

/// The name of `value`'s type, for error messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    value.inferred_type().map_or("null", SchemaType::name)
}

/// The entries of a schemaless structure, or Kafka's error for anything else.
pub(crate) fn require_map(
    value: Value,
    purpose: &str,
) -> Result<Vec<(Value, Value)>, ConnectError> {
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(not_a_map(&other, purpose)),
    }
}

/// [`require_map`], borrowing.
pub(crate) fn require_map_ref<'a>(
    value: &'a Value,
    purpose: &str,
) -> Result<&'a [(Value, Value)], ConnectError> {
    match value {
        Value::Map(entries) => Ok(entries),
        other => Err(not_a_map(other, purpose)),
    }
}

fn not_a_map(value: &Value, purpose: &str) -> ConnectError {
    ConnectError::failed(format!(
        "Only Map objects supported in absence of schema for [{purpose}], found: {}",
        type_name(value)
    ))
}

/// The values of a struct whose schema is `schema`, or Kafka's error for anything else. A
/// struct whose values do not match its schema's fields in number is refused here, so that
/// no transform reads past either.
pub(crate) fn require_struct(
    schema: &Schema,
    value: Value,
    purpose: &str,
) -> Result<Vec<Value>, ConnectError> {
    require_struct_ref(schema, &value, purpose)?;
    match value {
        Value::Struct(values) => Ok(values),
        // `require_struct_ref` has just refused anything else.
        other => Err(not_a_struct(schema, &other, purpose)),
    }
}

/// [`require_struct`], borrowing.
pub(crate) fn require_struct_ref<'a>(
    schema: &Schema,
    value: &'a Value,
    purpose: &str,
) -> Result<&'a [Value], ConnectError> {
    match value {
        Value::Struct(values) if schema.kind == SchemaType::Struct => {
            if values.len() == schema.fields.len() {
                Ok(values)
            } else {
                Err(ConnectError::failed(format!(
                    "Struct for [{purpose}] has {} values but its schema has {} fields",
                    values.len(),
                    schema.fields.len()
                )))
            }
        }
        other => Err(not_a_struct(schema, other, purpose)),
    }
}

fn not_a_struct(schema: &Schema, value: &Value, purpose: &str) -> ConnectError {
    let found = match value {
        // A struct value under a schema of another type.
        Value::Struct(_) => schema.kind.name(),
        other => type_name(other),
    };
    ConnectError::failed(format!(
        "Only Struct objects supported for [{purpose}], found: {found}"
    ))
}

/// The value of a schemaless structure's entry `key`.
pub(crate) fn map_get<'a>(entries: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// Sets entry `key` of a schemaless structure: in place when it exists, as Java's
/// `Map.put` replaces, else appended, so that entries keep their order.
pub(crate) fn map_put(entries: &mut Vec<(Value, Value)>, key: &str, value: Value) {
    match entries.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some(entry) => entry.1 = value,
        None => entries.push((Value::String(key.to_owned()), value)),
    }
}

/// A struct field's value as Kafka's `Struct.get` reads it: a null becomes the field's
/// default when `replace_null_with_default` (Kafka's `getWithoutDefault` otherwise).
pub(crate) fn field_value(field: &Field, value: Value, replace_null_with_default: bool) -> Value {
    match (&value, &field.schema.default) {
        (Value::Null, Some(default)) if replace_null_with_default => default.clone(),
        _ => value,
    }
}

/// A schema of type `kind` with the name, version, doc and parameters of `source`, and
/// nothing else (neither optionality nor default), as Kafka's `SchemaUtil.copySchemaBasics`
/// makes the struct schemas transforms rebuild.
pub(crate) fn copy_schema_basics(source: &Schema, kind: SchemaType) -> Schema {
    Schema {
        name: source.name.clone(),
        version: source.version,
        doc: source.doc.clone(),
        parameters: source.parameters.clone(),
        ..Schema::new(kind)
    }
}

/// Adds `field` to the struct schema `schema`, refusing a name already there as Kafka's
/// `SchemaBuilder` does.
pub(crate) fn push_field(schema: &mut Schema, field: Field) -> Result<(), ConnectError> {
    if schema.field(&field.name).is_some() {
        return Err(ConnectError::failed(format!(
            "Cannot create field because of field name duplication {}",
            field.name
        )));
    }
    schema.fields.push(field);
    Ok(())
}

#[cfg(test)]
mod tests;
