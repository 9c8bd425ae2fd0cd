//! `${name}` placeholders: the built-ins `${database}`, `${cluster}` and
//! `${environment}` plus user variables from configuration. ClickHouse's own
//! `{macro}` syntax has no `$` and passes through untouched.

use std::collections::BTreeMap;

use crate::sql::lexer::placeholders;

/// Names chmigrate defines itself.
pub const BUILT_INS: [&str; 3] = ["database", "cluster", "environment"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarError {
    #[error(
        "variable name {0:?} is not valid (use letters, digits and '_', not starting with a digit)"
    )]
    BadName(String),
    #[error("variable {0:?} is built in and cannot be set")]
    BuiltIn(String),
}

/// A placeholder with no value, at a byte offset of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    pub name: String,
    pub offset: usize,
}

impl Unknown {
    /// The message for people, with a hint for `${cluster}`.
    pub fn message(&self) -> String {
        if self.name == "cluster" {
            "placeholder ${cluster} is used but no cluster is configured".to_string()
        } else {
            format!("unknown placeholder ${{{}}}", self.name)
        }
    }
}

/// The values placeholders take on one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

impl Variables {
    /// Built-ins from the target, then the user's variables.
    pub fn new(
        database: &str,
        cluster: Option<&str>,
        environment: &str,
        user: &BTreeMap<String, String>,
    ) -> Result<Self, VarError> {
        let mut values = BTreeMap::new();
        values.insert("database".to_string(), database.to_string());
        if let Some(c) = cluster {
            values.insert("cluster".to_string(), c.to_string());
        }
        values.insert("environment".to_string(), environment.to_string());
        for (k, v) in user {
            if !valid_name(k) {
                return Err(VarError::BadName(k.clone()));
            }
            if BUILT_INS.contains(&k.as_str()) {
                return Err(VarError::BuiltIn(k.clone()));
            }
            values.insert(k.clone(), v.clone());
        }
        Ok(Variables { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Placeholders in `text` that have no value.
    pub fn unknown_in(&self, text: &str) -> Vec<Unknown> {
        placeholders(text)
            .into_iter()
            .filter(|(_, name)| !self.values.contains_key(*name))
            .map(|(offset, name)| Unknown {
                name: name.to_string(),
                offset,
            })
            .collect()
    }

    /// Replaces every placeholder; fails on the first unknown one.
    pub fn substitute(&self, text: &str) -> Result<String, Unknown> {
        let found = placeholders(text);
        if found.is_empty() {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (offset, name) in found {
            let Some(value) = self.values.get(name) else {
                return Err(Unknown {
                    name: name.to_string(),
                    offset,
                });
            };
            out.push_str(&text[last..offset]);
            out.push_str(value);
            last = offset + name.len() + 3;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Variables {
        let mut user = BTreeMap::new();
        user.insert("ttl_days".to_string(), "30".to_string());
        Variables::new("analytics", Some("chm_cluster"), "staging", &user).unwrap()
    }

    #[test]
    fn substitutes_built_ins_and_user_variables() {
        let sql = "CREATE TABLE ${database}.t ON CLUSTER ${cluster} (d Date) ENGINE = ReplicatedMergeTree('/t/{shard}/${database}', '{replica}') TTL d + INTERVAL ${ttl_days} DAY -- ${environment}";
        assert_eq!(
            vars().substitute(sql).unwrap(),
            "CREATE TABLE analytics.t ON CLUSTER chm_cluster (d Date) ENGINE = ReplicatedMergeTree('/t/{shard}/analytics', '{replica}') TTL d + INTERVAL 30 DAY -- staging"
        );
    }

    #[test]
    fn clickhouse_macros_and_dollar_signs_pass_through() {
        let sql = "SELECT '{shard}', $$ $x $$, '$', '${'";
        assert_eq!(vars().substitute(sql).unwrap(), sql);
    }

    #[test]
    fn unknown_placeholders_are_reported_with_offsets() {
        let v = Variables::new("db", None, "dev", &BTreeMap::new()).unwrap();
        let unknown = v.unknown_in("SELECT ${nope}, ${cluster}");
        assert_eq!(unknown.len(), 2);
        assert_eq!(
            unknown[0],
            Unknown {
                name: "nope".into(),
                offset: 7
            }
        );
        assert_eq!(unknown[0].message(), "unknown placeholder ${nope}");
        assert!(unknown[1].message().contains("no cluster is configured"));
        assert_eq!(v.substitute("x ${nope}").unwrap_err().offset, 2);
    }

    #[test]
    fn rejects_bad_or_built_in_names() {
        let mut user = BTreeMap::new();
        user.insert("database".to_string(), "x".to_string());
        assert_eq!(
            Variables::new("db", None, "dev", &user),
            Err(VarError::BuiltIn("database".into()))
        );
        let mut user = BTreeMap::new();
        user.insert("1x".to_string(), "x".to_string());
        assert!(matches!(
            Variables::new("db", None, "dev", &user),
            Err(VarError::BadName(_))
        ));
    }
}
