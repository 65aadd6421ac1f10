//! Config providers (KIP-297, KIP-421): `${provider:[path:]key}` placeholders in connector
//! configs, resolved only where a connector or task starts. The worker stores and the REST
//! API shows the placeholders, never what they resolve to.
//!
//! Providers, under their Kafka names:
//! - `file`: `${file:/etc/secrets.properties:db.password}`, a key of a properties file;
//! - `env`: `${env:DB_PASSWORD}`, an environment variable;
//! - `dir`: `${dir:/run/secrets:db_password}`, the contents of a file in a directory.
//!
//! As in Kafka, a placeholder that names an unknown provider or a key that is not there is
//! left as written (and logged): the connector then fails on a value it cannot use.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use regex::Regex;

use crate::config::Configs;

/// The providers a worker resolves, from its `config.providers` (default `file,env,dir`).
#[derive(Debug, Clone)]
pub struct ConfigProviders {
    enabled: BTreeSet<String>,
}

impl Default for ConfigProviders {
    fn default() -> Self {
        ConfigProviders::new(["file", "env", "dir"])
    }
}

fn placeholder() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    // ${provider:key} or ${provider:path:key}; the path may itself contain ':' only in the
    // last position's sense, as in Kafka's pattern.
    PATTERN.get_or_init(|| {
        Regex::new(r"\$\{([^}:]*?):(?:([^}]*?):)?([^}]*?)\}")
            .expect("the placeholder pattern is valid")
    })
}

impl ConfigProviders {
    /// Resolves only the named providers.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> ConfigProviders {
        ConfigProviders {
            enabled: names.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether `value` holds a placeholder of an enabled provider.
    pub fn has_placeholder(&self, value: &str) -> bool {
        placeholder()
            .captures_iter(value)
            .any(|c| self.enabled.contains(&c[1]))
    }

    /// `configs` with every placeholder resolved.
    pub fn resolve(&self, configs: &Configs) -> Configs {
        Configs(
            configs
                .0
                .iter()
                .map(|(k, v)| (k.clone(), self.resolve_value(k, v)))
                .collect(),
        )
    }

    fn resolve_value(&self, key: &str, value: &str) -> String {
        placeholder()
            .replace_all(value, |c: &regex::Captures<'_>| {
                let provider = &c[1];
                let path = c.get(2).map(|m| m.as_str());
                let name = &c[3];
                let resolved = if self.enabled.contains(provider) {
                    lookup(provider, path, name)
                } else {
                    None
                };
                resolved.unwrap_or_else(|| {
                    tracing::warn!(key, placeholder = &c[0], "config placeholder not resolved");
                    c[0].to_owned()
                })
            })
            .into_owned()
    }

    /// Task configs as they may be stored and shown: a value a connector copied from its
    /// resolved config goes back to the placeholder it came from (Kafka's reverse transform).
    pub fn hide_resolved(&self, raw: &Configs, resolved: &Configs, task: &Configs) -> Configs {
        Configs(
            task.0
                .iter()
                .map(|(k, v)| {
                    let shown = match (raw.get(k), resolved.get(k)) {
                        (Some(raw_value), Some(resolved_value))
                            if resolved_value == v && self.has_placeholder(raw_value) =>
                        {
                            raw_value.to_owned()
                        }
                        _ => v.clone(),
                    };
                    (k.clone(), shown)
                })
                .collect(),
        )
    }
}

fn lookup(provider: &str, path: Option<&str>, name: &str) -> Option<String> {
    match (provider, path) {
        ("env", None) => std::env::var(name).ok(),
        ("file", Some(path)) => {
            let text = std::fs::read_to_string(path).ok()?;
            Configs::from_properties(&text).get(name).map(str::to_owned)
        }
        ("dir", Some(dir)) => {
            // Only a plain file name inside the directory, never a way out of it.
            if name.contains('/') || name == ".." || name == "." {
                return None;
            }
            std::fs::read_to_string(std::path::Path::new(dir).join(name)).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_env_and_dir_placeholders_resolve_and_hide_again() {
        let dir = tempfile::tempdir().unwrap();
        let props = dir.path().join("secrets.properties");
        std::fs::write(&props, "db.password=s3cret\n").unwrap();
        std::fs::write(dir.path().join("token"), "t0k").unwrap();
        let mut raw = Configs::new();
        raw.set(
            "connection.password",
            format!("${{file:{}:db.password}}", props.display()),
        );
        raw.set("token", format!("${{dir:{}:token}}", dir.path().display()));
        raw.set("home", "${env:HOME}");
        raw.set("plain", "x");
        raw.set("unknown", "${vault:a:b}");
        let providers = ConfigProviders::default();
        let resolved = providers.resolve(&raw);
        assert_eq!(resolved.get("connection.password"), Some("s3cret"));
        assert_eq!(resolved.get("token"), Some("t0k"));
        assert_eq!(
            resolved.get("home").map(str::to_owned),
            std::env::var("HOME").ok()
        );
        assert_eq!(resolved.get("unknown"), Some("${vault:a:b}"));

        let shown = providers.hide_resolved(&raw, &resolved, &resolved);
        assert_eq!(shown, raw);
    }

    #[test]
    fn a_disabled_provider_is_left_alone() {
        let mut raw = Configs::new();
        raw.set("home", "${env:HOME}");
        let resolved = ConfigProviders::new(["file"]).resolve(&raw);
        assert_eq!(resolved, raw);
    }

    #[test]
    fn dir_lookups_stay_inside_their_directory() {
        assert_eq!(lookup("dir", Some("/etc"), "../etc/hostname"), None);
    }
}
