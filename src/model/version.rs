//! Migration versions: dot-separated numeric segments compared as numbers.
//!
//! `1 < 1.1 < 1.2 < 1.10 < 2`, timestamps such as `20250528120000` are plain
//! numbers, and trailing zero segments carry no meaning (`1.0 == 1`), so two
//! files `V1__a.sql` and `V1.0__b.sql` collide as duplicates. The text the
//! author wrote is kept for display.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("version is empty")]
    Empty,
    #[error("version {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("version {0:?} has a non-numeric segment {1:?}")]
    NotNumeric(String, String),
    #[error("version {0:?} has a segment larger than {max}", max = u64::MAX)]
    TooLarge(String),
}

/// A parsed migration version.
#[derive(Clone)]
pub struct Version {
    /// Numeric segments with trailing zeros removed (the comparison key).
    key: Vec<u64>,
    /// The text as written, normalized to `.` separators.
    text: String,
}

impl Version {
    /// `0`: below every migration (rolling back to it undoes them all).
    pub fn zero() -> Self {
        Version {
            key: vec![0],
            text: "0".into(),
        }
    }

    /// Parses `1`, `1.2.3`, `20250528120000`. Flyway file names write segments
    /// with `_` (`V1_2__x.sql`); callers translate those before parsing.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(VersionError::Empty);
        }
        let mut key = Vec::new();
        for seg in s.split('.') {
            if seg.is_empty() {
                return Err(VersionError::EmptySegment(s.to_string()));
            }
            if !seg.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::NotNumeric(s.to_string(), seg.to_string()));
            }
            let n: u64 = seg
                .parse()
                .map_err(|_| VersionError::TooLarge(s.to_string()))?;
            key.push(n);
        }
        while key.len() > 1 && key.last() == Some(&0) {
            key.pop();
        }
        Ok(Version {
            key,
            text: s.to_string(),
        })
    }

    /// The numeric segments (trailing zeros removed).
    pub fn segments(&self) -> &[u64] {
        &self.key
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the version is a single segment (`1`, `42`, a timestamp).
    pub fn is_integer(&self) -> bool {
        self.text.bytes().all(|b| b.is_ascii_digit())
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Version {}

impl Hash for Version {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        // Vec<u64> compares lexicographically by number, and a shorter prefix
        // sorts first: [1] < [1, 1] < [1, 2] < [1, 10] < [2].
        self.key.cmp(&other.key)
    }
}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "V{}", self.text)
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn compares_numerically_by_segment() {
        let mut vs = [
            v("2"),
            v("1.10"),
            v("1"),
            v("1.2"),
            v("1.1"),
            v("10"),
            v("9"),
        ];
        vs.sort();
        let texts: Vec<&str> = vs.iter().map(|v| v.as_str()).collect();
        assert_eq!(texts, ["1", "1.1", "1.2", "1.10", "2", "9", "10"]);
    }

    #[test]
    fn timestamps_are_numbers() {
        assert!(v("20250528120000") > v("20250528115959"));
        assert!(v("20250528120000") > v("999"));
    }

    #[test]
    fn trailing_zero_segments_are_equal() {
        assert_eq!(v("1.0"), v("1"));
        assert_eq!(v("1.0.0"), v("1"));
        assert_ne!(v("1.0.1"), v("1"));
        assert_eq!(v("1.0").as_str(), "1.0");
    }

    #[test]
    fn rejects_bad_versions() {
        assert_eq!(Version::parse(""), Err(VersionError::Empty));
        assert!(matches!(
            Version::parse("1..2"),
            Err(VersionError::EmptySegment(_))
        ));
        assert!(matches!(
            Version::parse("1.a"),
            Err(VersionError::NotNumeric(_, s)) if s == "a"
        ));
        assert!(matches!(
            Version::parse("-1"),
            Err(VersionError::NotNumeric(_, _))
        ));
        assert!(matches!(
            Version::parse("99999999999999999999999"),
            Err(VersionError::TooLarge(_))
        ));
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&v("1.10")).unwrap();
        assert_eq!(json, "\"1.10\"");
        let back: Version = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v("1.10"));
        assert!(serde_json::from_str::<Version>("\"x\"").is_err());
    }
}
