//! Connection profiles and client properties, which every client command takes.
//!
//! A profile is a `[profiles.NAME]` table of the CLI's config file (`--config-file`,
//! `RUNNEL_CLI_CONFIG`, else `$XDG_CONFIG_HOME/runnel/cli.toml` or
//! `~/.config/runnel/cli.toml`): `bootstrap`, and Kafka client properties by their Kafka
//! names. `--profile NAME` (`RUNNEL_PROFILE`) picks one, else the file's top-level
//! `current_profile`:
//!
//! ```toml
//! current_profile = "local"
//!
//! [profiles.local]
//! bootstrap = "127.0.0.1:9092"
//!
//! [profiles.prod]
//! bootstrap = ["10.0.0.1:9092", "10.0.0.2:9092"]
//! "client.id" = "ops-laptop"
//! "request.timeout.ms" = 10000
//! ```
//!
//! `-X KEY=VALUE` sets one property on the command line. A flag wins over its environment
//! variable, which wins over the profile. Properties are checked when read, so a typo is an
//! error naming the key rather than a setting silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context};
use runnel_client::ClientConfig;

use crate::output::key_value;

/// The brokers a command talks to when nothing says otherwise.
pub(crate) const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";

/// The client properties `-X` and profiles take, by their Kafka names, so that what people
/// know from Kafka's tools and librdkafka works here. What each does is said once, in
/// `ClientConfig::SETTINGS` (`tests::every_property_is_a_documented_client_setting`), which
/// `-X`'s help and the configuration reference both show.
pub(crate) const PROPERTIES: &[&str] = &[
    "client.id",
    "request.timeout.ms",
    "socket.connection.setup.timeout.ms",
    "metadata.max.age.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "max.in.flight.requests.per.connection",
];

/// `-X`'s long help: what it is, and every property it takes.
pub(crate) fn properties_help() -> String {
    let mut help = String::from(
        "A Kafka client property, KEY=VALUE (repeatable); over the profile's. Known properties:\n",
    );
    for name in PROPERTIES {
        let doc = ClientConfig::SETTINGS
            .iter()
            .find(|setting| setting.kafka == Some(name))
            .map_or("", |setting| setting.doc);
        help.push_str(&format!("  {name}: {doc}\n"));
    }
    help
}

/// One client property, known and well-formed (checked when it was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientProperty {
    pub(crate) key: String,
    pub(crate) value: String,
}

impl ClientProperty {
    /// `KEY=VALUE` of a known property with a value it takes: `-X`'s value parser.
    pub(crate) fn parse(text: &str) -> Result<ClientProperty, String> {
        let (key, value) = key_value(text)?;
        ClientProperty::new(key, value)
    }

    fn new(key: String, value: String) -> Result<ClientProperty, String> {
        let property = ClientProperty { key, value };
        // Applied to a scratch config so that the checks live in one place.
        property.apply(&mut ClientConfig::new(DEFAULT_BOOTSTRAP))?;
        Ok(property)
    }

    /// Sets the property on `config`.
    pub(crate) fn apply(&self, config: &mut ClientConfig) -> Result<(), String> {
        let key = self.key.as_str();
        let value = self.value.trim();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: {value:?} is not a whole number"))
        };
        let positive = || match number()? {
            0 => Err(format!("{key}: must be above 0")),
            n => Ok(n),
        };
        match key {
            "client.id" => config.client_id = self.value.clone(),
            "request.timeout.ms" => config.request_timeout = Duration::from_millis(positive()?),
            "socket.connection.setup.timeout.ms" => {
                config.connect_timeout = Duration::from_millis(positive()?)
            }
            "metadata.max.age.ms" => config.metadata_max_age = Duration::from_millis(number()?),
            "reconnect.backoff.ms" => config.reconnect_backoff = Duration::from_millis(number()?),
            "reconnect.backoff.max.ms" => {
                config.reconnect_backoff_max = Duration::from_millis(number()?)
            }
            "retry.backoff.ms" => config.retry_backoff = Duration::from_millis(number()?),
            "max.in.flight.requests.per.connection" => {
                config.max_in_flight = usize::try_from(positive()?)
                    .map_err(|_| format!("{key}: {value} is too large"))?
            }
            "bootstrap.servers" | "bootstrap" => {
                return Err(format!(
                    "{key} is not a client property here: give the brokers with -b/--bootstrap \
                     (or `bootstrap` in a profile)"
                ))
            }
            _ => {
                return Err(format!(
                    "unknown client property {key:?} (known: {})",
                    PROPERTIES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The profile a command runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) name: String,
    /// The profile's brokers, comma-separated; `None` when it names none.
    pub(crate) bootstrap: Option<String>,
    pub(crate) properties: Vec<ClientProperty>,
}

/// `$XDG_CONFIG_HOME/runnel/cli.toml`, else `~/.config/runnel/cli.toml`; `None` without
/// either variable.
pub(crate) fn default_config_path() -> Option<PathBuf> {
    // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute());
    let base = match xdg {
        Some(base) => base,
        None => {
            PathBuf::from(std::env::var_os("HOME").filter(|home| !home.is_empty())?).join(".config")
        }
    };
    Some(base.join("runnel").join("cli.toml"))
}

/// The profile selected by `profile` (`--profile`/`RUNNEL_PROFILE`) or else the file's
/// `current_profile`, from `config_file` (`--config-file`/`RUNNEL_CLI_CONFIG`, which must
/// exist) or else the default file (which may not). `None` when no profile is selected.
pub(crate) fn select(
    config_file: Option<&Path>,
    profile: Option<&str>,
) -> anyhow::Result<Option<Profile>> {
    let (path, text) = match config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the config file {}", path.display()))?;
            (path.to_owned(), text)
        }
        None => {
            let Some(path) = default_config_path() else {
                return match profile {
                    Some(name) => Err(anyhow!(
                        "no profile {name:?}: there is no config file (HOME is not set; give \
                         --config-file)"
                    )),
                    None => Ok(None),
                };
            };
            match std::fs::read_to_string(&path) {
                Ok(text) => (path, text),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return match profile {
                        Some(name) => Err(anyhow!(
                            "no profile {name:?}: {} does not exist",
                            path.display()
                        )),
                        None => Ok(None),
                    }
                }
                Err(error) => {
                    return Err(error)
                        .with_context(|| format!("cannot read the config file {}", path.display()))
                }
            }
        }
    };
    from_text(&text, profile).with_context(|| format!("config file {}", path.display()))
}

/// [`select`] on the file's text.
fn from_text(text: &str, wanted: Option<&str>) -> anyhow::Result<Option<Profile>> {
    let document: toml::Table = text.parse()?;
    let mut current = None;
    let mut profiles = toml::Table::new();
    for (key, value) in document {
        match (key.as_str(), value) {
            ("current_profile", toml::Value::String(name)) => current = Some(name),
            ("current_profile", _) => return Err(anyhow!("current_profile must be a string")),
            ("profiles", toml::Value::Table(table)) => profiles = table,
            ("profiles", _) => return Err(anyhow!("profiles must be [profiles.NAME] tables")),
            (other, toml::Value::Table(_)) => return Err(anyhow!("unknown table [{other}]")),
            (other, _) => {
                return Err(anyhow!(
                    "unknown setting {other} (profiles go in [profiles.NAME] tables)"
                ))
            }
        }
    }
    let Some(name) = wanted.map(str::to_owned).or(current) else {
        return Ok(None);
    };
    let Some(settings) = profiles.get(&name) else {
        let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
        let known = if names.is_empty() {
            "it has no profiles".to_owned()
        } else {
            format!("it has {}", names.join(", "))
        };
        return Err(anyhow!("no profile {name:?} ({known})"));
    };
    let toml::Value::Table(settings) = settings else {
        return Err(anyhow!(
            "profile {name:?} must be a [profiles.{name}] table"
        ));
    };
    let mut entries = Vec::new();
    // `client.id = 1` in TOML is a nested table; the Kafka name is the dotted path.
    flatten("", settings, &mut entries);
    let mut profile = Profile {
        name: name.clone(),
        ..Profile::default()
    };
    for (key, value) in entries {
        if key == "bootstrap" {
            profile.bootstrap = Some(value);
        } else {
            let property = ClientProperty::new(key, value)
                .map_err(|problem| anyhow!("profile {name:?}: {problem}"))?;
            profile.properties.push(property);
        }
    }
    Ok(Some(profile))
}

/// The settings of `table` as (dotted key, value as a property takes it).
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(nested) => flatten(&key, nested, out),
            other => out.push((key, property_text(other))),
        }
    }
}

/// A value as a client property takes it: numbers and booleans as written, strings as they
/// are, arrays comma-separated (a list of brokers).
fn property_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        toml::Value::Array(items) => items
            .iter()
            .map(property_text)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "current_profile = \"local\"\n\
                        [profiles.local]\n\
                        bootstrap = \"127.0.0.1:9092\"\n\
                        [profiles.prod]\n\
                        bootstrap = [\"a:9092\", \"b:9092\"]\n\
                        \"client.id\" = \"ops\"\n\
                        request.timeout.ms = 2500\n";

    #[test]
    fn the_named_profile_else_the_current_one() {
        let prod = from_text(FILE, Some("prod"))
            .expect("reads")
            .expect("selected");
        assert_eq!(prod.bootstrap.as_deref(), Some("a:9092,b:9092"));
        let mut config = ClientConfig::new("x:1");
        for property in &prod.properties {
            property.apply(&mut config).expect("applies");
        }
        assert_eq!(config.client_id, "ops");
        assert_eq!(config.request_timeout, Duration::from_millis(2500));

        let local = from_text(FILE, None).expect("reads").expect("selected");
        assert_eq!(local.name, "local");
        assert!(local.properties.is_empty());

        assert_eq!(from_text("[profiles.a]\n", None).expect("reads"), None);
    }

    #[test]
    fn mistakes_are_errors_that_name_them() {
        let error = |text: &str, wanted: Option<&str>| {
            format!("{:#}", from_text(text, wanted).expect_err(text))
        };
        assert!(
            error(FILE, Some("staging")).contains("no profile \"staging\" (it has local, prod)")
        );
        assert!(error("[profiles.a]\nclient.idd = \"x\"", Some("a"))
            .contains("profile \"a\": unknown client property \"client.idd\""));
        assert!(
            error("[profiles.a]\nrequest.timeout.ms = \"soon\"", Some("a"))
                .contains("request.timeout.ms: \"soon\" is not a whole number")
        );
        assert!(error("current-profile = \"a\"", None).contains("unknown setting current-profile"));
        assert!(error("[profile.a]", None).contains("unknown table [profile]"));
        // A broken profile that is not used breaks nothing else.
        assert!(from_text("[profiles.a]\nx = 1\n[profiles.b]\n", Some("b")).is_ok());
    }

    #[test]
    fn every_property_is_a_documented_client_setting() {
        for name in PROPERTIES {
            assert!(
                ClientConfig::SETTINGS
                    .iter()
                    .any(|setting| setting.kafka == Some(name) && !setting.doc.is_empty()),
                "{name} is not a Kafka name in ClientConfig::SETTINGS"
            );
            // And `apply` takes it (a value every one of them accepts).
            assert_eq!(
                ClientProperty::parse(&format!("{name}=7")).map(|p| p.key),
                Ok(name.to_string())
            );
        }
    }

    #[test]
    fn properties_check_key_and_value() {
        assert_eq!(
            ClientProperty::parse("client.id=me"),
            Ok(ClientProperty {
                key: "client.id".to_owned(),
                value: "me".to_owned()
            })
        );
        let unknown = ClientProperty::parse("acks=all").expect_err("unknown");
        assert!(unknown.starts_with("unknown client property \"acks\" (known: client.id, "));
        assert!(ClientProperty::parse("request.timeout.ms=0").is_err());
        assert!(ClientProperty::parse("max.in.flight.requests.per.connection=-1").is_err());
        assert!(ClientProperty::parse("bootstrap.servers=a:1")
            .expect_err("not here")
            .contains("-b/--bootstrap"));
        assert!(ClientProperty::parse("client.id").is_err());
    }
}
