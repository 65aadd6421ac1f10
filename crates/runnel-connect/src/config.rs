//! Configuration of connectors, transforms and converters: string maps as users write them,
//! typed definitions of the keys each plugin takes (Kafka's `ConfigDef`), and the validation
//! that answers `PUT /connector-plugins/{plugin}/config/validate` with an error on exactly
//! the keys that are wrong.

use std::collections::BTreeMap;

use serde::Serialize;

/// A configuration as users write it: every value a string. Ordered, so that what the REST
/// API shows is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configs(pub BTreeMap<String, String>);

/// A configuration value that is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The key at fault.
    pub key: String,
    /// What is wrong, as Kafka words it.
    pub message: String,
}

impl ConfigError {
    /// `value` is not acceptable for `key`: `why`.
    pub fn invalid(key: &str, value: &str, why: &str) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            message: format!("Invalid value {value} for configuration {key}: {why}"),
        }
    }

    /// `key` is required and missing.
    pub fn missing(key: &str) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            message: format!(
                "Missing required configuration \"{key}\" which has no default value."
            ),
        }
    }
}

impl Configs {
    /// An empty configuration.
    pub fn new() -> Configs {
        Configs::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets `key` to `value`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value of `key`, or a [`ConfigError::missing`].
    pub fn required(&self, key: &str) -> Result<&str, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::missing(key))
    }

    /// `key` read as `T`, or `default` when unset or empty.
    pub fn parsed_or<T: std::str::FromStr>(
        &self,
        key: &str,
        default: T,
        kind: ConfigType,
    ) -> Result<T, ConfigError> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                ConfigError::invalid(key, text, &format!("Not a number of type {}", kind.name()))
            }),
        }
    }

    /// `key` as a boolean (`true`/`false`, any case), or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(default),
            Some(text) if text.eq_ignore_ascii_case("true") => Ok(true),
            Some(text) if text.eq_ignore_ascii_case("false") => Ok(false),
            Some(text) => Err(ConfigError::invalid(
                key,
                text,
                "Expected value to be either true or false",
            )),
        }
    }

    /// `key` as a comma-separated list, trimmed, empty items dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(split_list).unwrap_or_default()
    }

    /// The keys under `prefix`, with the prefix removed.
    pub fn with_prefix(&self, prefix: &str) -> Configs {
        Configs(
            self.0
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(prefix)
                        .map(|rest| (rest.to_owned(), v.clone()))
                })
                .collect(),
        )
    }

    /// A configuration read from a Java properties text (`key=value` or `key: value` lines,
    /// `#` and `!` comments, trailing `\` continuations).
    pub fn from_properties(text: &str) -> Configs {
        let mut configs = Configs::new();
        let mut logical = String::new();
        for line in text.lines() {
            let line = line.trim_start();
            if logical.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
            {
                continue;
            }
            match line.strip_suffix('\\') {
                Some(continued) => {
                    logical.push_str(continued);
                    continue;
                }
                None => logical.push_str(line),
            }
            let entry = std::mem::take(&mut logical);
            let split = entry.find(['=', ':']).unwrap_or(entry.len());
            let key = entry[..split].trim();
            let value = entry.get(split + 1..).unwrap_or("").trim();
            if !key.is_empty() {
                configs.set(key, value);
            }
        }
        configs
    }
}

/// Splits a comma-separated list, as Kafka's LIST type does.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The types of configuration values, with Kafka's names for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// Free text.
    String,
    /// A 32-bit integer.
    Int,
    /// A 16-bit integer.
    Short,
    /// A 64-bit integer.
    Long,
    /// A floating point number.
    Double,
    /// `true` or `false`.
    Boolean,
    /// A comma-separated list.
    List,
    /// A class name (a plugin, converter or transform).
    Class,
    /// A secret: never shown.
    Password,
}

impl ConfigType {
    /// Kafka's name, as the REST API shows it.
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }

    /// Why `text` is not a value of this type, if it is not.
    fn check(self, text: &str) -> Option<String> {
        let text = text.trim();
        let ok = match self {
            ConfigType::Int => text.parse::<i32>().is_ok(),
            ConfigType::Short => text.parse::<i16>().is_ok(),
            ConfigType::Long => text.parse::<i64>().is_ok(),
            ConfigType::Double => text.parse::<f64>().is_ok(),
            ConfigType::Boolean => {
                text.eq_ignore_ascii_case("true") || text.eq_ignore_ascii_case("false")
            }
            ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => {
                true
            }
        };
        match (ok, self) {
            (true, _) => None,
            (false, ConfigType::Boolean) => {
                Some("Expected value to be either true or false".to_owned())
            }
            (false, kind) => Some(format!("Not a number of type {}", kind.name())),
        }
    }
}

/// How much a key matters, as Kafka ranks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// `HIGH`
    High,
    /// `MEDIUM`
    Medium,
    /// `LOW`
    Low,
}

impl Importance {
    fn name(self) -> &'static str {
        match self {
            Importance::High => "HIGH",
            Importance::Medium => "MEDIUM",
            Importance::Low => "LOW",
        }
    }
}

/// A rule a value must follow beyond its type.
#[derive(Debug, Clone)]
pub enum Validator {
    /// A number at least `min` and, if given, at most `max`.
    Range {
        /// The least value.
        min: i64,
        /// The greatest value, if bounded.
        max: Option<i64>,
    },
    /// One of these strings (case-insensitive).
    OneOf(&'static [&'static str]),
    /// Not empty.
    NonEmpty,
    /// A valid regular expression.
    Regex,
}

impl Validator {
    fn check(&self, text: &str) -> Option<String> {
        match self {
            Validator::Range { min, max } => {
                let n: f64 = text.trim().parse().ok()?;
                if n < *min as f64 {
                    Some(format!("Value must be at least {min}"))
                } else {
                    max.filter(|m| n > *m as f64)
                        .map(|m| format!("Value must be no more than {m}"))
                }
            }
            Validator::OneOf(choices) => {
                (!choices.iter().any(|c| c.eq_ignore_ascii_case(text.trim())))
                    .then(|| format!("String must be one of: {}", choices.join(", ")))
            }
            Validator::NonEmpty => text
                .trim()
                .is_empty()
                .then(|| "String must be non-empty".to_owned()),
            Validator::Regex => regex::Regex::new(text)
                .err()
                .map(|e| format!("not a valid regular expression: {e}")),
        }
    }

    fn recommended(&self) -> Vec<String> {
        match self {
            Validator::OneOf(choices) => choices.iter().map(|c| (*c).to_owned()).collect(),
            _ => Vec::new(),
        }
    }
}

/// The definition of one key.
#[derive(Debug, Clone)]
pub struct ConfigKey {
    /// The key.
    pub name: String,
    /// Its type.
    pub kind: ConfigType,
    /// Its default, if it has one.
    pub default: Option<String>,
    /// Whether a value must be given (no default, not optional).
    pub required: bool,
    /// Its rule beyond the type.
    pub validator: Option<Validator>,
    /// How much it matters.
    pub importance: Importance,
    /// What it does.
    pub documentation: String,
    /// Which group the REST API shows it in; empty for none.
    pub group: String,
    /// Its place in the group.
    pub order: i32,
    /// A short name for forms.
    pub display_name: String,
}

/// The keys a plugin takes, in order.
#[derive(Debug, Clone, Default)]
pub struct ConfigDef {
    keys: Vec<ConfigKey>,
}

impl ConfigDef {
    /// No keys.
    pub fn new() -> ConfigDef {
        ConfigDef::default()
    }

    /// Adds a key in group `group`; `default` `None` makes it required.
    pub fn define(
        mut self,
        name: &str,
        kind: ConfigType,
        default: Option<&str>,
        importance: Importance,
        group: &str,
        documentation: &str,
    ) -> ConfigDef {
        let order = self.keys.iter().filter(|k| k.group == group).count() as i32 + 1;
        self.keys.push(ConfigKey {
            name: name.to_owned(),
            kind,
            default: default.map(str::to_owned),
            required: default.is_none(),
            validator: None,
            importance,
            documentation: documentation.to_owned(),
            group: group.to_owned(),
            order,
            display_name: name.to_owned(),
        });
        self
    }

    /// Gives the key defined last a validator.
    pub fn validated(mut self, validator: Validator) -> ConfigDef {
        if let Some(key) = self.keys.last_mut() {
            key.validator = Some(validator);
        }
        self
    }

    /// Makes the key defined last optional with no default (Kafka's `null` default).
    pub fn optional(mut self) -> ConfigDef {
        if let Some(key) = self.keys.last_mut() {
            key.required = false;
        }
        self
    }

    /// The keys of `self` then those of `other`.
    pub fn merged(mut self, other: &ConfigDef) -> ConfigDef {
        for key in &other.keys {
            if !self.keys.iter().any(|k| k.name == key.name) {
                self.keys.push(key.clone());
            }
        }
        self
    }

    /// The keys, in definition order.
    pub fn keys(&self) -> &[ConfigKey] {
        &self.keys
    }

    /// The first error of `configs`, if any: for a task's start, where one error is enough.
    pub fn check(&self, configs: &Configs) -> Result<(), ConfigError> {
        for value in self.validate(configs) {
            if let Some(message) = value.errors.into_iter().next() {
                return Err(ConfigError {
                    key: value.name,
                    message,
                });
            }
        }
        Ok(())
    }

    /// The errors of each key of `configs`, in definition order: missing required keys,
    /// values of the wrong type, values breaking their rule.
    pub fn validate(&self, configs: &Configs) -> Vec<ConfigValue> {
        self.keys
            .iter()
            .map(|key| {
                let value = configs.get(&key.name);
                let mut errors = Vec::new();
                match value {
                    None if key.required => errors.push(ConfigError::missing(&key.name).message),
                    None => {}
                    Some(text) => {
                        let why = key
                            .kind
                            .check(text)
                            .or_else(|| key.validator.as_ref().and_then(|v| v.check(text)));
                        if let Some(why) = why {
                            errors.push(ConfigError::invalid(&key.name, text, &why).message);
                        }
                    }
                }
                ConfigValue {
                    name: key.name.clone(),
                    value: value.map(str::to_owned).or_else(|| key.default.clone()),
                    recommended_values: key
                        .validator
                        .as_ref()
                        .map(Validator::recommended)
                        .unwrap_or_default(),
                    errors,
                    visible: true,
                }
            })
            .collect()
    }
}

/// One key's outcome in a validation, as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigValue {
    /// The key.
    pub name: String,
    /// Its value (a password's is hidden by [`ConfigInfos`]).
    pub value: Option<String>,
    /// Values to offer.
    pub recommended_values: Vec<String>,
    /// What is wrong with it; empty when nothing is.
    pub errors: Vec<String>,
    /// Whether a form shows it.
    pub visible: bool,
}

/// The body of a validation answer: `{"name", "error_count", "groups", "configs"}`.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfos {
    /// The connector class validated.
    pub name: String,
    /// The number of errors over all keys.
    pub error_count: usize,
    /// The groups, in order of first appearance.
    pub groups: Vec<String>,
    /// Each key's definition and outcome.
    pub configs: Vec<ConfigInfo>,
}

/// One key in [`ConfigInfos`].
#[derive(Debug, Clone, Serialize)]
pub struct ConfigInfo {
    /// The key's definition.
    pub definition: ConfigKeyInfo,
    /// The key's outcome.
    pub value: ConfigValue,
}

/// A key's definition as the REST API shows it (`GET /connector-plugins/{plugin}/config`).
#[derive(Debug, Clone, Serialize)]
pub struct ConfigKeyInfo {
    /// The key.
    pub name: String,
    /// Kafka's type name.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it has no default.
    pub required: bool,
    /// The default, if any.
    pub default_value: Option<String>,
    /// `HIGH`, `MEDIUM` or `LOW`.
    pub importance: String,
    /// What it does.
    pub documentation: String,
    /// Its group, if it has one.
    pub group: Option<String>,
    /// Always `NONE`: no form widths here.
    pub width: String,
    /// A short name.
    pub display_name: String,
    /// Keys whose meaning depends on it.
    pub dependents: Vec<String>,
    /// Its place in the group.
    pub order: i32,
}

impl From<&ConfigKey> for ConfigKeyInfo {
    fn from(key: &ConfigKey) -> ConfigKeyInfo {
        ConfigKeyInfo {
            name: key.name.clone(),
            kind: key.kind.name().to_owned(),
            required: key.required,
            default_value: key.default.clone(),
            importance: key.importance.name().to_owned(),
            documentation: key.documentation.clone(),
            group: (!key.group.is_empty()).then(|| key.group.clone()),
            width: "NONE".to_owned(),
            display_name: key.display_name.clone(),
            dependents: Vec::new(),
            order: key.order,
        }
    }
}

impl ConfigInfos {
    /// The answer for `class` from `def`'s keys and their outcomes (`values` by name),
    /// passwords hidden.
    pub fn new(class: &str, def: &ConfigDef, values: Vec<ConfigValue>) -> ConfigInfos {
        let mut groups: Vec<String> = Vec::new();
        let mut configs = Vec::new();
        for mut value in values {
            let key = def.keys().iter().find(|k| k.name == value.name);
            let definition = match key {
                Some(key) => {
                    if key.kind == ConfigType::Password && value.value.is_some() {
                        value.value = Some("[hidden]".to_owned());
                    }
                    ConfigKeyInfo::from(key)
                }
                None => continue,
            };
            if let Some(group) = &definition.group {
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
            configs.push(ConfigInfo { definition, value });
        }
        ConfigInfos {
            name: class.to_owned(),
            error_count: configs.iter().map(|c| c.value.errors.len()).sum(),
            groups,
            configs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> ConfigDef {
        ConfigDef::new()
            .define(
                "topic",
                ConfigType::String,
                None,
                Importance::High,
                "Common",
                "The topic.",
            )
            .define(
                "tasks.max",
                ConfigType::Int,
                Some("1"),
                Importance::High,
                "Common",
                "Tasks.",
            )
            .validated(Validator::Range { min: 1, max: None })
            .define(
                "mode",
                ConfigType::String,
                Some("bulk"),
                Importance::High,
                "Mode",
                "How.",
            )
            .validated(Validator::OneOf(&["bulk", "incrementing"]))
    }

    #[test]
    fn validation_puts_each_error_on_its_own_key() {
        let mut configs = Configs::new();
        configs.set("tasks.max", "abc");
        configs.set("mode", "sometimes");
        let values = def().validate(&configs);
        let errors: BTreeMap<&str, &[String]> = values
            .iter()
            .map(|v| (v.name.as_str(), &v.errors[..]))
            .collect();
        assert_eq!(
            errors["topic"],
            ["Missing required configuration \"topic\" which has no default value."]
        );
        assert_eq!(
            errors["tasks.max"],
            ["Invalid value abc for configuration tasks.max: Not a number of type INT"]
        );
        assert_eq!(errors["mode"].len(), 1);
        let infos = ConfigInfos::new("X", &def(), values);
        assert_eq!(infos.error_count, 3);
        assert_eq!(infos.groups, ["Common", "Mode"]);
    }

    #[test]
    fn ranges_are_checked_after_types() {
        let mut configs = Configs::new();
        configs.set("topic", "t");
        configs.set("tasks.max", "0");
        let values = def().validate(&configs);
        assert_eq!(
            values[1].errors,
            ["Invalid value 0 for configuration tasks.max: Value must be at least 1"]
        );
    }

    #[test]
    fn properties_files_read_as_java_reads_them() {
        let configs = Configs::from_properties(
            "# comment\nname=local-file-source\nconnector.class : FileStreamSource\n\
             file=/a/b\\\n  /c.txt\n! other comment\nempty=\n",
        );
        assert_eq!(configs.get("name"), Some("local-file-source"));
        assert_eq!(configs.get("connector.class"), Some("FileStreamSource"));
        assert_eq!(configs.get("file"), Some("/a/b/c.txt"));
        assert_eq!(configs.get("empty"), Some(""));
    }
}
