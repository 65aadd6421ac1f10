//! Settings described as data, for the configuration reference (`runnel docs
//! config-reference`, published as `docs/configuration.md`).
//!
//! A configuration struct's fields say what they hold in their doc comments, but a reference
//! needs more than rustdoc gives: Kafka's name for each setting, its default as a value, the
//! values it takes. Each struct keeps a table of [`SettingDoc`]s next to it
//! ([`ClientConfig::SETTINGS`](crate::ClientConfig::SETTINGS),
//! [`ProducerConfig::SETTINGS`](crate::ProducerConfig::SETTINGS),
//! [`ConsumerConfig::SETTINGS`](crate::ConsumerConfig::SETTINGS); Streams' is in
//! `runnel-streams`), and a unit test there holds the table to the struct: one entry per
//! field (the test destructures the struct, so a new field does not compile until it is
//! listed) and each default equal to what the constructor sets ([`SettingDoc::mismatches`]).

/// One setting of a configuration struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDoc {
    /// The Rust field.
    pub field: &'static str,
    /// Kafka's name for the setting, where Kafka has one.
    pub kafka: Option<&'static str>,
    /// Its type, as the reference shows it (`duration` fields are given in milliseconds).
    pub kind: &'static str,
    /// Its default, as the reference shows it; empty when there is none.
    pub default: &'static str,
    /// The values it takes.
    pub valid: &'static str,
    /// What it does.
    pub doc: &'static str,
}

impl SettingDoc {
    /// How the reference writes a duration: in milliseconds, as Kafka's `.ms` settings.
    pub fn millis(duration: std::time::Duration) -> String {
        format!("{} ms", duration.as_millis())
    }

    /// Where `table` and a struct's actual defaults disagree: `actual` holds every field of
    /// the struct with its default rendered as the table renders it, or `None` for a value
    /// that cannot be rendered (a partitioner object), which is only required to be listed.
    /// Empty when they agree.
    pub fn mismatches(table: &[SettingDoc], actual: &[(&str, Option<String>)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (field, default) in actual {
            match table.iter().find(|entry| entry.field == *field) {
                None => problems.push(format!("field {field} has no entry")),
                Some(entry) => {
                    if let Some(default) = default {
                        if entry.default != default {
                            problems.push(format!(
                                "{field}: the table says the default is {:?}, the constructor \
                                 sets {default:?}",
                                entry.default
                            ));
                        }
                    }
                }
            }
        }
        for entry in table {
            if !actual.iter().any(|(field, _)| *field == entry.field) {
                problems.push(format!("entry {} names no field", entry.field));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[SettingDoc] = &[SettingDoc {
        field: "a",
        kafka: None,
        kind: "int",
        default: "1",
        valid: "",
        doc: "",
    }];

    #[test]
    fn mismatches_name_missing_extra_and_wrong_entries() {
        assert!(SettingDoc::mismatches(TABLE, &[("a", Some("1".into()))]).is_empty());
        assert!(SettingDoc::mismatches(TABLE, &[("a", None)]).is_empty());
        assert_eq!(
            SettingDoc::mismatches(TABLE, &[("a", Some("2".into())), ("b", None)]),
            [
                "a: the table says the default is \"1\", the constructor sets \"2\"",
                "field b has no entry"
            ]
        );
        assert_eq!(
            SettingDoc::mismatches(TABLE, &[]),
            ["entry a names no field"]
        );
    }
}
