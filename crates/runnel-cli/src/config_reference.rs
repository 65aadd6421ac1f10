//! `runnel docs config-reference`: every setting of the broker, topics, the Rust client,
//! Streams and Connect as one Markdown document, published as `docs/configuration.md`.
//!
//! Nothing here restates a setting: each table is read from where the setting is defined, so
//! that the reference cannot say something the code does not do.
//! - Broker: the `runnel server` flags as clap knows them (name, environment variable, help,
//!   type), each key's default from `BrokerConfig::default()` as JSON, and its Kafka name and
//!   valid values from `runnel_broker::BROKER_SETTINGS`; whether it changes at runtime from
//!   `runnel_broker::is_dynamic_broker_config`, the rule the broker itself applies.
//! - Topics: `runnel_broker::TOPIC_CONFIGS`, the table the broker validates with.
//! - Client and Streams: the `SETTINGS` tables next to `ClientConfig`, `ProducerConfig`,
//!   `ConsumerConfig` and `StreamsConfig`, whose tests hold them to the structs.
//! - Connect: the `ConfigDef`s the worker validates with (every connector's keys, each
//!   built-in connector's, each transform's and predicate's), the worker properties'
//!   definition, and the `runnel connect` flags from clap.
//!
//! The output is deterministic (definition order everywhere), so that
//! `tests/config_reference.rs` can compare it with the committed file byte for byte.

use std::any::TypeId;
use std::fmt::Write as _;

use runnel_broker::{
    is_dynamic_broker_config, BrokerConfig, ConfigType, BROKER_SETTINGS, TOPIC_CONFIGS,
};
use runnel_client::{ClientConfig, ConsumerConfig, ProducerConfig, SettingDoc};
use runnel_connect::api::connector_def;
use runnel_connect::config::{ConfigDef, ConfigKey, Configs, Validator};
use runnel_connect::connector::ConnectorType;
use runnel_connect::transforms::{predicate_classes, transformation_classes, TransformChain};

/// The command that regenerates the published file, as the header and the test tell it.
pub(crate) const REGENERATE: &str =
    "cargo run -p runnel-cli -- docs config-reference > docs/configuration.md";

/// `runnel server` flags that are not `BrokerConfig` keys: where the keys come from, and a
/// Connect worker run alongside. Any other flag must be a key, with a `BROKER_SETTINGS` entry.
const SERVER_ONLY_FLAGS: &[&str] = &["config", "connect"];

/// What a `BrokerConfig` key that has no `runnel server` flag does: it can only be set in
/// the TOML file, so no flag's help describes it.
const TOML_ONLY_KEYS: &[(&str, &str)] = &[(
    "flush-check-interval-ms",
    "How often the broker looks for partitions due an fsync by flush-ms or a new segment by \
     segment.ms.",
)];

/// Kafka's names for the `runnel connect` worker flags. Every visible flag of `standalone`
/// and `distributed` must be listed (`None` where Kafka has no such setting), so that a new
/// flag is a decision rather than a gap.
const CONNECT_FLAGS: &[(&str, Option<&str>)] = &[
    ("bootstrap", Some("bootstrap.servers")),
    ("config-file", None),
    ("profile", None),
    ("group-id", Some("group.id")),
    ("rest-listen", Some("listeners")),
    (
        "rest-advertised-url",
        Some("rest.advertised.host.name, rest.advertised.port"),
    ),
    ("config-topic", Some("config.storage.topic")),
    ("offsets-topic", Some("offset.storage.topic")),
    ("status-topic", Some("status.storage.topic")),
    (
        "replication-factor",
        Some(
            "config.storage.replication.factor, offset.storage.replication.factor, \
             status.storage.replication.factor",
        ),
    ),
    ("session-timeout-ms", Some("session.timeout.ms")),
    ("offsets-file", Some("offset.storage.file.filename")),
    ("worker-config", None),
    ("worker_property", None),
];

/// The whole reference, from `cli`, the `runnel` command tree.
pub(crate) fn render(cli: &clap::Command) -> String {
    let mut out = String::new();
    header(&mut out);
    broker(&mut out, subcommand(cli, &["server"]));
    topic_configs(&mut out);
    client(&mut out);
    streams(&mut out);
    connect(&mut out, cli);
    out
}

fn header(out: &mut String) {
    out.push_str("# Configuration reference\n\n");
    let _ = writeln!(
        out,
        "Every setting of the broker, topics, the Rust client, Streams and Connect: its name as \
         Runnel spells it, Kafka's name where Kafka has the same setting, its type, default and \
         valid values, whether it can change while running, and what it does. This file is \
         generated from the definitions in the code by `runnel docs config-reference`; do not \
         edit it by hand. Regenerate it with `{REGENERATE}`. `cargo test -p runnel-cli --test \
         config_reference` (part of `scripts/test.sh`) fails when it and the code disagree.\n"
    );
    for (title, anchor) in [
        ("Broker", "broker"),
        ("Broker-level topic defaults", "broker-level-topic-defaults"),
        ("Topic configs", "topic-configs"),
        ("Client", "client"),
        ("Streams", "streams"),
        ("Connect", "connect"),
    ] {
        let _ = writeln!(out, "- [{title}](#{anchor})");
    }
    out.push('\n');
}

// ---------------------------------------------------------------------------------------
// The broker.

fn broker(out: &mut String, server: &clap::Command) {
    out.push_str("## Broker\n\n");
    out.push_str(
        "`runnel server` reads each setting from its flag, else its environment variable, \
         else the TOML file named by `--config` (whose keys are the flags' names: \
         `num-partitions = 3`), else the default. Settings marked dynamic can also be changed \
         while the cluster runs, for every broker or one, with IncrementalAlterConfigs under \
         their Kafka name (`runnel cluster config set`); the others are read at start only. \
         The dynamic ones are the broker-level defaults of topic configs, listed with the rest \
         under [Broker-level topic defaults](#broker-level-topic-defaults).\n\n",
    );
    let defaults = serde_json::to_value(BrokerConfig::default()).unwrap_or_default();
    let mut rows = Vec::new();
    for arg in server.get_arguments().filter(|arg| visible(arg)) {
        let Some(long) = arg.get_long() else { continue };
        let Some(setting) = BROKER_SETTINGS.iter().find(|s| s.key == long) else {
            continue;
        };
        rows.push(broker_row(
            setting,
            &flag_cell(arg),
            &arg_type(arg),
            &help(arg),
            &defaults,
        ));
    }
    for (key, doc) in TOML_ONLY_KEYS {
        if let Some(setting) = BROKER_SETTINGS.iter().find(|s| s.key == *key) {
            let kind = json_type(&defaults[*key]);
            rows.push(broker_row(setting, "TOML only", kind, doc, &defaults));
        }
    }
    table(
        out,
        &[
            "Key",
            "Flag / environment",
            "Kafka name",
            "Type",
            "Default",
            "Valid values",
            "Dynamic",
            "Description",
        ],
        rows,
    );
    out.push_str("Other `runnel server` flags:\n\n");
    let rows = SERVER_ONLY_FLAGS
        .iter()
        .filter_map(|flag| {
            let arg = server
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))?;
            Some(vec![flag_cell(arg), help(arg)])
        })
        .collect();
    table(out, &["Flag / environment", "Description"], rows);

    out.push_str("### Broker-level topic defaults\n\n");
    out.push_str(
        "Each topic config takes its default from a broker setting, as in Kafka: a topic \
         without an override of its own follows it. All are dynamic: \
         `runnel cluster config set` changes them for every broker or one at runtime; a few \
         also have a `runnel server` flag for their value at start.\n\n",
    );
    let rows = TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let flag = BROKER_SETTINGS
                .iter()
                .find(|s| s.kafka == Some(def.broker_synonym))
                .map_or_else(|| "—".to_owned(), |s| code(&format!("--{}", s.key)));
            vec![
                code(def.broker_synonym),
                code(def.name),
                flag,
                code(def.default),
                yes_no(is_dynamic_broker_config(def.broker_synonym)),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Broker config",
            "Topic config it defaults",
            "Flag",
            "Default",
            "Dynamic",
        ],
        rows,
    );
}

fn broker_row(
    setting: &runnel_broker::BrokerSetting,
    flag: &str,
    kind: &str,
    doc: &str,
    defaults: &serde_json::Value,
) -> Vec<String> {
    let default = match &defaults[setting.key] {
        serde_json::Value::Null => {
            // An unset topic default means the topic config's own default applies.
            let topic = TOPIC_CONFIGS
                .iter()
                .find(|def| Some(def.broker_synonym) == setting.kafka);
            match topic {
                Some(def) => format!("{} (`{}`'s default)", code(def.default), def.name),
                None => "unset".to_owned(),
            }
        }
        value => code(&json_text(value)),
    };
    vec![
        code(setting.key),
        flag.to_owned(),
        setting.kafka.map_or_else(String::new, code),
        kind.to_owned(),
        default,
        setting.valid.to_owned(),
        yes_no(setting.kafka.is_some_and(is_dynamic_broker_config)),
        doc.to_owned(),
    ]
}

fn topic_configs(out: &mut String) {
    out.push_str("## Topic configs\n\n");
    out.push_str(
        "Set when a topic is created (`runnel topic create --config KEY=VALUE`) and changed at \
         any time with AlterConfigs or IncrementalAlterConfigs (`runnel topic alter-config \
         --set KEY=VALUE`): every topic config is dynamic. A topic stores only its overrides; \
         the rest follow the broker-level default named here, else the default shown. The \
         names are Kafka's.\n\n",
    );
    let rows = TOPIC_CONFIGS
        .iter()
        .map(|def| {
            vec![
                code(def.name),
                topic_type(def.kind).to_owned(),
                code(def.default),
                def.valid.to_owned(),
                code(def.broker_synonym),
                yes_no(true),
                def.doc.to_owned(),
            ]
        })
        .collect();
    table(
        out,
        &[
            "Name",
            "Type",
            "Default",
            "Valid values",
            "Broker default",
            "Dynamic",
            "Description",
        ],
        rows,
    );
}

fn topic_type(kind: ConfigType) -> &'static str {
    match kind {
        ConfigType::Boolean => "boolean",
        ConfigType::String => "string",
        ConfigType::Int => "int",
        ConfigType::Long => "long",
        ConfigType::Double => "double",
        ConfigType::List => "list",
    }
}

// ---------------------------------------------------------------------------------------
// The Rust client and Streams.

fn client(out: &mut String) {
    out.push_str("## Client\n\n");
    out.push_str(
        "The Rust client (`runnel-client`) is configured by struct fields, set before the \
         client is built and fixed for its life. Durations are given in milliseconds, as \
         Kafka's `.ms` properties. The `runnel` tools take the client properties marked \
         under -X as `-X KEY=VALUE` or in a profile of their config file (see the README's \
         command-line tools).\n\n",
    );
    out.push_str(
        "### ClientConfig\n\nConnections, shared by the producer, consumer and admin client.\n\n",
    );
    settings_table(out, ClientConfig::SETTINGS, true);
    out.push_str("### ProducerConfig\n\n");
    settings_table(out, ProducerConfig::SETTINGS, false);
    out.push_str("### ConsumerConfig\n\n");
    settings_table(out, ConsumerConfig::SETTINGS, false);
}

fn streams(out: &mut String) {
    out.push_str("## Streams\n\n");
    out.push_str(
        "A Streams application (`runnel-streams`) is configured by `StreamsConfig`'s fields, \
         fixed once `KafkaStreams::start` runs; its consumer and producers take the client \
         settings above from its `client`.\n\n",
    );
    settings_table(out, runnel_streams::StreamsConfig::SETTINGS, false);
}

/// A table of `settings`; `cli_column` adds whether the `runnel` tools take each one as
/// `-X` (the properties `profile` applies).
fn settings_table(out: &mut String, settings: &[SettingDoc], cli_column: bool) {
    let mut headers = vec!["Field", "Kafka name"];
    if cli_column {
        headers.push("-X");
    }
    headers.extend(["Type", "Default", "Valid values", "Description"]);
    let rows = settings
        .iter()
        .map(|setting| {
            let mut row = vec![
                code(setting.field),
                setting.kafka.map_or_else(String::new, code),
            ];
            if cli_column {
                let taken = setting
                    .kafka
                    .is_some_and(|name| crate::profile::PROPERTIES.contains(&name));
                row.push(yes_no(taken));
            }
            row.extend([
                setting.kind.to_owned(),
                if setting.default.is_empty() {
                    "unset".to_owned()
                } else {
                    code(setting.default)
                },
                setting.valid.to_owned(),
                setting.doc.to_owned(),
            ]);
            row
        })
        .collect();
    table(out, &headers, rows);
}

// ---------------------------------------------------------------------------------------
// Connect.

fn connect(out: &mut String, cli: &clap::Command) {
    out.push_str("## Connect\n\n");
    out.push_str(
        "A worker's settings are its `runnel connect` flags and its worker properties, read at \
         start. A connector's are the JSON or properties it is created with; `PUT \
         /connectors/NAME/config` changes them while the worker runs, restarting the \
         connector and its tasks. Keys are Kafka Connect's.\n\n",
    );
    for mode in ["standalone", "distributed"] {
        let _ = writeln!(out, "### Worker: `runnel connect {mode}`\n");
        let command = subcommand(cli, &["connect", mode]);
        let rows = command
            .get_arguments()
            .filter(|arg| visible(arg) && !arg.is_positional())
            .map(|arg| {
                let id = arg.get_long().unwrap_or(arg.get_id().as_str());
                let kafka = CONNECT_FLAGS
                    .iter()
                    .find(|(flag, _)| *flag == id)
                    .and_then(|(_, kafka)| *kafka);
                let defaults: Vec<String> = arg
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                vec![
                    flag_cell(arg),
                    kafka.map_or_else(String::new, code),
                    if defaults.is_empty() {
                        "unset".to_owned()
                    } else {
                        code(&defaults.join(","))
                    },
                    help(arg),
                ]
            })
            .collect();
        table(
            out,
            &["Flag / environment", "Kafka name", "Default", "Description"],
            rows,
        );
    }
    out.push_str("### Worker properties\n\n");
    out.push_str(
        "Given in the file of `--worker-config` (Java properties) or one by one with `-X \
         KEY=VALUE`, in both modes. Other keys are kept, and those under `key.converter.` and \
         `value.converter.` configure the converters.\n\n",
    );
    config_def_table(out, &runnel_connect::standalone::worker_def(), "");
    out.push_str("### JsonConverter\n\n");
    out.push_str(
        "Settings of `org.apache.kafka.connect.json.JsonConverter` (the default converter), \
         under `key.converter.` or `value.converter.` in the worker properties or a \
         connector's config. `StringConverter` and `ByteArrayConverter` take none.\n\n",
    );
    config_def_table(out, &runnel_connect::converter::json_converter_def(), "");

    out.push_str("### Every connector\n\n");
    out.push_str("Keys every connector takes, sources and sinks alike:\n\n");
    let source = connector_def(ConnectorType::Source);
    let sink = connector_def(ConnectorType::Sink);
    config_def_table(out, &source, "");
    out.push_str("Sinks take these as well:\n\n");
    config_def_rows(out, &keys_except(&sink, &source), "");
    // Sources' keys that sinks lack would need a table of their own; there are none today,
    // and the test `every_source_key_is_a_sink_key_too` says so if that changes.

    for plugin in runnel_connect::builtin_plugins().all() {
        let _ = writeln!(out, "### {}\n", plugin.class);
        let mut names = vec![code(plugin.class)];
        names.extend(plugin.aliases.iter().map(|alias| code(alias)));
        let _ = writeln!(
            out,
            "A {} connector: `connector.class` is one of {}.\n",
            plugin.kind().name(),
            names.join(", ")
        );
        let common = connector_def(plugin.kind());
        let own = (plugin.connector)().config_def();
        config_def_rows(out, &keys_except(&own, &common), "");
    }

    out.push_str("### Transforms\n\n");
    out.push_str(
        "A connector's `transforms` lists aliases; each alias `a` is configured under \
         `transforms.a.`. Every transform takes these, then its own:\n\n",
    );
    let every = TransformChain::config_def(&alias_configs("transforms", "a", None));
    config_def_table(out, &every, "transforms.a.");
    for (name, classes) in grouped_classes(transformation_classes()) {
        let _ = writeln!(out, "#### {name}\n");
        let class_list: Vec<String> = classes.iter().map(|c| code(c)).collect();
        let _ = writeln!(out, "`transforms.a.type`: {}.\n", class_list.join(", "));
        let def = TransformChain::config_def(&alias_configs("transforms", "a", Some(classes[0])));
        config_def_rows(out, &keys_except(&def, &every), "transforms.a.");
    }
    out.push_str("### Predicates\n\n");
    out.push_str(
        "A connector's `predicates` lists aliases; each alias `p` is configured under \
         `predicates.p.` and named by a transform's `predicate`. Every predicate takes these, \
         then its own:\n\n",
    );
    let every = TransformChain::config_def(&alias_configs("predicates", "p", None));
    config_def_table(out, &every, "predicates.p.");
    for (name, classes) in grouped_classes(predicate_classes()) {
        let _ = writeln!(out, "#### {name}\n");
        let _ = writeln!(out, "`predicates.p.type`: {}.\n", code(classes[0]));
        let def = TransformChain::config_def(&alias_configs("predicates", "p", Some(classes[0])));
        config_def_rows(out, &keys_except(&def, &every), "predicates.p.");
    }
}

/// A connector config naming one transform or predicate alias, of `class` if given.
fn alias_configs(list: &str, alias: &str, class: Option<&str>) -> Configs {
    let mut configs = Configs::new();
    configs.set(list, alias);
    if let Some(class) = class {
        configs.set(format!("{list}.{alias}.type"), class);
    }
    configs
}

/// Classes by their short name with `$Key` / `$Value` dropped: the two sides of a transform
/// take the same keys, so they share a table. In order of first appearance.
fn grouped_classes(
    classes: impl Iterator<Item = &'static str>,
) -> Vec<(String, Vec<&'static str>)> {
    let mut groups: Vec<(String, Vec<&'static str>)> = Vec::new();
    for class in classes {
        let short = class.rsplit('.').next().unwrap_or(class);
        let name = short.split('$').next().unwrap_or(short).to_owned();
        match groups.iter_mut().find(|(group, _)| *group == name) {
            Some((_, members)) => members.push(class),
            None => groups.push((name, vec![class])),
        }
    }
    groups
}

/// The keys of `def` that `other` does not define.
fn keys_except(def: &ConfigDef, other: &ConfigDef) -> Vec<ConfigKey> {
    def.keys()
        .iter()
        .filter(|key| !other.keys().iter().any(|k| k.name == key.name))
        .cloned()
        .collect()
}

fn config_def_table(out: &mut String, def: &ConfigDef, prefix: &str) {
    config_def_rows(out, def.keys(), prefix);
}

/// A table of connect keys, named without `prefix` (`transforms.a.`), or a line saying there
/// are none.
fn config_def_rows(out: &mut String, keys: &[ConfigKey], prefix: &str) {
    if keys.is_empty() {
        out.push_str("No settings of its own.\n\n");
        return;
    }
    let rows = keys
        .iter()
        .map(|key| {
            let name = key.name.strip_prefix(prefix).unwrap_or(&key.name);
            let default = match (&key.default, key.required) {
                (_, true) => "required".to_owned(),
                (None, false) => "unset".to_owned(),
                (Some(value), _) if value.is_empty() => "empty".to_owned(),
                (Some(value), _) => code(value),
            };
            vec![
                code(&format!("{prefix}{name}")),
                key.kind.name().to_ascii_lowercase(),
                default,
                connect_valid(key),
                key.documentation.clone(),
            ]
        })
        .collect();
    table(
        out,
        &["Key", "Type", "Default", "Valid values", "Description"],
        rows,
    );
}

fn connect_valid(key: &ConfigKey) -> String {
    use runnel_connect::config::ConfigType as Kind;
    match (&key.validator, key.kind) {
        (Some(Validator::Range { min, max: None }), _) => format!("[{min},...]"),
        (
            Some(Validator::Range {
                min,
                max: Some(max),
            }),
            _,
        ) => format!("[{min},...,{max}]"),
        (Some(Validator::OneOf(choices)), _) => choices.join(", "),
        (Some(Validator::NonEmpty), _) => "non-empty".to_owned(),
        (Some(Validator::Regex), _) => "a regular expression".to_owned(),
        (None, Kind::Boolean) => "true, false".to_owned(),
        (None, Kind::Class) => "a class name or alias".to_owned(),
        (None, Kind::List) => "comma-separated list".to_owned(),
        (None, _) => "any".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------
// Reading clap, and writing Markdown.

fn subcommand<'a>(cli: &'a clap::Command, path: &[&str]) -> &'a clap::Command {
    path.iter().fold(cli, |command, name| {
        command
            .find_subcommand(name)
            .unwrap_or_else(|| panic!("runnel has no `{name}` command"))
    })
}

/// Whether the reference shows `arg`: hidden flags are for tests, and help is not a setting.
fn visible(arg: &clap::Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// `--name VALUE` (or `-X VALUE`), then its environment variable on a line of its own. The
/// value's name is shown only where it says more than the flag's name (`HOST:PORT`).
fn flag_cell(arg: &clap::Arg) -> String {
    let mut flag = match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => arg.get_id().to_string(),
    };
    if arg.get_action().takes_values() {
        if let Some(names) = arg.get_value_names() {
            let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
            if names != [arg.get_id().as_str().to_uppercase()] {
                let _ = write!(flag, " {}", names.join(" "));
            }
        }
    }
    let mut cell = code(&flag);
    if let Some(env) = arg.get_env() {
        let _ = write!(cell, "\n{}", code(&env.to_string_lossy()));
    }
    cell
}

/// The flag's help as one paragraph, a sentence (clap drops the summary's full stop).
fn help(arg: &clap::Arg) -> String {
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|help| help.to_string())
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if !help.is_empty() && !help.ends_with('.') {
        help.push('.');
    }
    help
}

/// The type of a flag's value, from the type its value parser makes.
fn arg_type(arg: &clap::Arg) -> String {
    if !arg.get_action().takes_values() {
        return "boolean".to_owned();
    }
    let id = arg.get_value_parser().type_id();
    let kind = [
        (TypeId::of::<bool>(), "boolean"),
        (TypeId::of::<i16>(), "short"),
        (TypeId::of::<i32>(), "int"),
        (TypeId::of::<i64>(), "long"),
        (TypeId::of::<u64>(), "long"),
        (TypeId::of::<usize>(), "long"),
        (TypeId::of::<String>(), "string"),
        (TypeId::of::<std::path::PathBuf>(), "path"),
        (TypeId::of::<std::net::SocketAddr>(), "HOST:PORT"),
        (TypeId::of::<runnel_broker::ProcessRole>(), "role"),
    ]
    .into_iter()
    .find(|(type_id, _)| id == *type_id)
    .map_or("string", |(_, kind)| kind);
    match arg.get_value_delimiter() {
        Some(_) => format!("list of {kind}"),
        None => kind.to_owned(),
    }
}

/// The type of a TOML-only key, from its default's JSON (all such keys are numbers today).
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "long",
        serde_json::Value::Array(_) => "list",
        _ => "string",
    }
}

/// A default as the TOML file would take it, without JSON's quotes and brackets.
fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(json_text).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

fn yes_no(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_owned()
}

/// `text` as inline code.
fn code(text: &str) -> String {
    format!("`{text}`")
}

/// A Markdown table of `rows`, each cell escaped by [`cell`].
fn table(out: &mut String, headers: &[&str], rows: Vec<Vec<String>>) {
    let line = |cells: Vec<String>| format!("| {} |\n", cells.join(" | "));
    out.push_str(&line(headers.iter().map(|h| (*h).to_owned()).collect()));
    out.push_str(&line(headers.iter().map(|_| "---".to_owned()).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(|text| cell(text)).collect()));
    }
    out.push('\n');
}

/// `text` as one table cell: its lines joined by `<br>` (a line break would end the row),
/// `|` escaped (it would end the cell), and outside code spans what Markdown would read as
/// markup escaped too: `<` and `>` (an HTML tag would swallow `<schema>`), `*`, and `_`
/// that is not inside a word (`__consumer_offsets` is not bold).
fn cell(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            let mut escaped = String::new();
            for (index, part) in line.split('`').enumerate() {
                if index > 0 {
                    escaped.push('`');
                }
                if index % 2 == 1 {
                    escaped.push_str(&part.replace('|', "\\|"));
                    continue;
                }
                let chars: Vec<char> = part.chars().collect();
                for (i, &c) in chars.iter().enumerate() {
                    let in_word = |j: Option<usize>| {
                        j.and_then(|j| chars.get(j))
                            .is_some_and(|c| c.is_alphanumeric())
                    };
                    match c {
                        '|' => escaped.push_str("\\|"),
                        '<' => escaped.push_str("&lt;"),
                        '>' => escaped.push_str("&gt;"),
                        '*' => escaped.push_str("\\*"),
                        '_' if !(in_word(i.checked_sub(1)) && in_word(Some(i + 1))) => {
                            escaped.push_str("\\_")
                        }
                        c => escaped.push(c),
                    }
                }
            }
            escaped
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        crate::cli_command(None)
    }

    #[test]
    fn every_server_flag_is_a_broker_setting_or_listed_apart() {
        let cli = cli();
        let server = subcommand(&cli, &["server"]);
        for arg in server.get_arguments().filter(|arg| visible(arg)) {
            let long = arg.get_long().unwrap_or_default();
            let known =
                BROKER_SETTINGS.iter().any(|s| s.key == long) || SERVER_ONLY_FLAGS.contains(&long);
            assert!(
                known,
                "runnel server --{long} is neither a BrokerConfig key with an entry in \
                 runnel_broker::BROKER_SETTINGS nor in SERVER_ONLY_FLAGS"
            );
        }
    }

    #[test]
    fn every_broker_setting_is_described_once() {
        let cli = cli();
        let server = subcommand(&cli, &["server"]);
        for setting in BROKER_SETTINGS {
            let flag = server
                .get_arguments()
                .find(|arg| arg.get_long() == Some(setting.key));
            let toml_only = TOML_ONLY_KEYS.iter().any(|(key, _)| *key == setting.key);
            match flag {
                Some(arg) => {
                    assert!(
                        !toml_only,
                        "{} has a flag; its help describes it",
                        setting.key
                    );
                    assert!(
                        !help(arg).is_empty() || arg.is_hide_set(),
                        "--{} has no help",
                        setting.key
                    );
                }
                None => assert!(
                    toml_only,
                    "{} has no runnel server flag: describe it in TOML_ONLY_KEYS",
                    setting.key
                ),
            }
        }
    }

    #[test]
    fn every_connect_flag_has_a_kafka_name_decision() {
        let cli = cli();
        for mode in ["standalone", "distributed"] {
            let command = subcommand(&cli, &["connect", mode]);
            for arg in command
                .get_arguments()
                .filter(|arg| visible(arg) && !arg.is_positional())
            {
                let id = arg.get_long().unwrap_or(arg.get_id().as_str());
                assert!(
                    CONNECT_FLAGS.iter().any(|(flag, _)| *flag == id),
                    "runnel connect {mode} {id}: add it to CONNECT_FLAGS"
                );
            }
        }
    }

    #[test]
    fn every_source_key_is_a_sink_key_too() {
        let source = connector_def(ConnectorType::Source);
        let sink = connector_def(ConnectorType::Sink);
        assert!(keys_except(&source, &sink).is_empty());
    }

    #[test]
    fn the_reference_is_deterministic_and_complete() {
        let first = render(&cli());
        assert_eq!(first, render(&cli()));
        for name in TOPIC_CONFIGS.iter().map(|def| def.name) {
            assert!(first.contains(&format!("| `{name}` |")), "{name}");
        }
        // Hidden flags (fault injection for tests) are left out on purpose.
        let cli = cli();
        let server = subcommand(&cli, &["server"]);
        let hidden = |key: &str| {
            server
                .get_arguments()
                .any(|arg| arg.get_long() == Some(key) && arg.is_hide_set())
        };
        for setting in BROKER_SETTINGS.iter().filter(|s| !hidden(s.key)) {
            assert!(
                first.contains(&format!("| `{}` |", setting.key)),
                "{} is missing from the reference",
                setting.key
            );
        }
        assert!(first.contains("| `application_id` |"));
        assert!(first.contains("| `offset.flush.interval.ms` |"));
        assert!(first.contains("#### InsertField"));
    }
}
