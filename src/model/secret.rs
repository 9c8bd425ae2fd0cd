//! A value never to be printed: passwords and Secret data.

use std::fmt;

use serde::Deserialize;

/// A value that must never be printed: its `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces secret values with `***` in text that leaves the process: the
/// ledger, status, Events, logs and plans. Built from the values of
/// Secret-backed variables (and the forms they take once substituted).
#[derive(Clone, Default)]
pub struct Masker {
    /// Longest first, so that a value containing another is masked whole.
    values: Vec<String>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        values.dedup();
        Masker { values }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }

    /// Masks every string of a JSON document in place.
    pub fn mask_json(&self, v: &mut serde_json::Value) {
        if self.values.is_empty() {
            return;
        }
        match v {
            serde_json::Value::String(s) => *s = self.mask(s),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.mask_json(x)),
            serde_json::Value::Object(o) => o.values_mut().for_each(|x| self.mask_json(x)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_value_longest_first_and_never_prints_them() {
        let m = Masker::new(["abc".to_string(), "abcdef".into(), String::new()]);
        assert_eq!(m.mask("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(format!("{m:?}"), "Masker(2 values)");
        let mut doc = serde_json::json!({"a": ["abc", 1], "b": {"c": "1abcdef"}});
        m.mask_json(&mut doc);
        assert_eq!(
            doc,
            serde_json::json!({"a": ["***", 1], "b": {"c": "1***"}})
        );
        assert_eq!(Masker::default().mask("abc"), "abc");
    }
}
