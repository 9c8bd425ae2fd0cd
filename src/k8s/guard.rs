//! Where a `MigrationSet` may send its credentials (pure): the runner's
//! `--allow-url` patterns and `--require-tls`. Checked before any Secret is
//! read or any connection opened, so someone who may edit a set but not
//! read Secrets cannot point the operator at a listener of their own.

use crate::k8s::crd::MigrationSet;

/// Why a set's target is refused: the status reason and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Characters a wildcard never matches: they end the host and port of a
/// URL, so that `https://*.analytics.svc:8443` cannot match
/// `https://evil.example/x.analytics.svc:8443` (whose host is
/// `evil.example`) or `https://u@evil.example…`.
fn delimiter(c: char) -> bool {
    matches!(c, '/' | '?' | '#' | '@' | '\\')
}

/// `pattern` matches all of `text`: `*` any run of characters, `?` one,
/// neither across a URL delimiter (`/ ? # @ \`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && ((p[i] == '?' && !delimiter(t[j])) || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star
            && !delimiter(t[sj])
        {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// A URL that is only `scheme://host[:port]` (an optional `/` after it):
/// no user, path, query or fragment that could make a pattern read one
/// host while the connection goes to another.
fn plain_origin(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("is not http:// or https://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("names no host");
    }
    if authority.contains('@') {
        return Err("carries a user name");
    }
    if authority
        .chars()
        .any(|c| matches!(c, '/' | '?' | '#' | '\\'))
    {
        return Err("has a path, query or fragment");
    }
    Ok(())
}

/// Whether `set` may be connected to under the runner's rules: its URL
/// matches one of `allowed` (all URLs when there is none), and with
/// `require_tls` it uses `https://` with certificate verification.
pub fn check(set: &MigrationSet, allowed: &[String], require_tls: bool) -> Result<(), Refusal> {
    let url = set.spec.connection.url.trim();
    if !allowed.is_empty()
        && let Err(why) = plain_origin(url)
    {
        return Err(Refusal {
            reason: "TargetNotAllowed",
            message: format!(
                "spec.connection.url {url:?} {why}: with allowed URLs configured, a set's URL is scheme://host[:port] only; nothing was sent"
            ),
        });
    }
    let origin = url.strip_suffix('/').unwrap_or(url);
    let matches = |p: &String| glob_match(p.strip_suffix('/').unwrap_or(p), origin);
    if !allowed.is_empty() && !allowed.iter().any(matches) {
        return Err(Refusal {
            reason: "TargetNotAllowed",
            message: format!(
                "spec.connection.url {url:?} matches none of the URLs this operator may connect to ({}); nothing was sent",
                allowed.join(", ")
            ),
        });
    }
    if require_tls {
        if !url.starts_with("https://") {
            return Err(Refusal {
                reason: "TLSRequired",
                message: format!(
                    "spec.connection.url {url:?} is not https:// and this operator requires TLS; nothing was sent"
                ),
            });
        }
        if set
            .spec
            .connection
            .tls
            .as_ref()
            .is_some_and(|t| t.insecure_skip_verify)
        {
            return Err(Refusal {
                reason: "TLSRequired",
                message: "spec.connection.tls.insecureSkipVerify is true and this operator requires verified TLS; nothing was sent".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::manifest;

    fn set(url: &str, insecure: bool) -> MigrationSet {
        let yaml = format!(
            "apiVersion: chmigrate.io/v1alpha1\nkind: MigrationSet\nmetadata: {{ name: s, namespace: apps }}\n\
             spec:\n  connection:\n    url: {url}\n    database: d\n    credentials: {{ user: u, passwordless: true }}\n\
             \x20   tls: {{ insecureSkipVerify: {insecure} }}\n"
        );
        manifest::parse(&[("s.yaml".into(), yaml)])
            .unwrap()
            .sets
            .remove(0)
    }

    #[test]
    fn globs_match_whole_urls() {
        assert!(glob_match(
            "https://*.analytics.svc:8443",
            "https://ch-0.analytics.svc:8443"
        ));
        assert!(!glob_match(
            "https://*.analytics.svc:8443",
            "https://evil.example:8443"
        ));
        assert!(!glob_match(
            "https://*.analytics.svc:8443",
            "https://x.analytics.svc:8443.evil.example"
        ));
        assert!(glob_match("http://127.0.0.?:8123", "http://127.0.0.1:8123"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("", "x"));
        // A wildcard never crosses into a path, a user or a query.
        for evil in [
            "https://evil.example/x.analytics.svc:8443",
            "https://evil.example?x.analytics.svc:8443",
            "https://evil.example#x.analytics.svc:8443",
            "https://u@evil.example:1@x.analytics.svc:8443",
            "https://evil.example\\x.analytics.svc:8443",
        ] {
            assert!(!glob_match("https://*.analytics.svc:8443", evil), "{evil}");
            assert!(!glob_match("https://*?analytics.svc:8443", evil), "{evil}");
        }
    }

    #[test]
    fn with_allowed_urls_a_url_is_an_origin_only() {
        let allowed = vec!["https://*".to_string()];
        for bad in [
            "https://user:pw@ch.analytics.svc:8443",
            "https://ch.analytics.svc:8443/path",
            "https://ch.analytics.svc:8443?database=x",
            "https://ch.analytics.svc:8443#frag",
            "https://",
        ] {
            let r = check(&set(bad, false), &allowed, false).unwrap_err();
            assert_eq!(r.reason, "TargetNotAllowed", "{bad}");
        }
        assert_eq!(
            check(
                &set("https://ch.analytics.svc:8443/", false),
                &allowed,
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn targets_are_refused_by_url_and_tls_before_anything_is_sent() {
        let allowed = vec!["https://*.analytics.svc:8443".to_string()];
        assert_eq!(
            check(&set("https://ch.analytics.svc:8443", false), &allowed, true),
            Ok(())
        );
        assert_eq!(
            check(&set("http://127.0.0.1:9999", false), &allowed, false)
                .unwrap_err()
                .reason,
            "TargetNotAllowed"
        );
        assert_eq!(
            check(&set("http://ch.analytics.svc:8123", false), &[], true)
                .unwrap_err()
                .reason,
            "TLSRequired"
        );
        assert_eq!(
            check(&set("https://ch.analytics.svc:8443", true), &allowed, true)
                .unwrap_err()
                .reason,
            "TLSRequired"
        );
        // No pattern and no TLS requirement: everything is allowed.
        assert_eq!(
            check(&set("http://127.0.0.1:9999", true), &[], false),
            Ok(())
        );
    }
}
