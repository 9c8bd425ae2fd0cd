//! Loading migration files from a folder (the file-system edge of the
//! sources): walks it recursively in name order, skips hidden entries,
//! lists files that are neither `.sql` nor `.exs` as warnings (never
//! silently), checks each file's size before reading it.

use std::path::{Path, PathBuf};

use super::{Loaded, SourceError, SourceErrorKind, assemble};
use crate::model::migration::Location;

/// Loads every migration under `dir`.
pub fn load_dir(dir: &Path, max_bytes: u64) -> Loaded {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut others = Vec::new();
    walk(dir, &mut files, &mut others, &mut errors);
    files.sort();
    others.sort();
    let mut parts = Vec::new();
    for path in files {
        let display = path.display().to_string();
        let at = |kind| SourceError::new(Location::new(display.as_str(), 1), kind);
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            errors.push(at(SourceErrorKind::BadFileName(
                "file name is not valid UTF-8".into(),
            )));
            continue;
        };
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > max_bytes => {
                errors.push(at(SourceErrorKind::TooLarge {
                    size: meta.len(),
                    limit: max_bytes,
                }));
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                errors.push(at(SourceErrorKind::Io(e.to_string())));
                continue;
            }
        }
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                errors.push(at(SourceErrorKind::Io(e.to_string())));
                continue;
            }
        };
        let Ok(content) = String::from_utf8(bytes) else {
            errors.push(at(SourceErrorKind::NotUtf8));
            continue;
        };
        match super::parse_any(&display, name, &content, max_bytes) {
            Ok(Some(p)) => parts.push(p),
            Ok(None) => {}
            Err(e) => errors.extend(e),
        }
    }
    let mut loaded = assemble(parts);
    errors.append(&mut loaded.errors);
    loaded.errors = errors;
    for path in others {
        loaded.warnings.push(SourceError::new(
            Location::new(path.display().to_string(), 0),
            SourceErrorKind::NotRead,
        ));
    }
    loaded
}

fn walk(
    dir: &Path,
    files: &mut Vec<PathBuf>,
    others: &mut Vec<PathBuf>,
    errors: &mut Vec<SourceError>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(SourceError::new(
                Location::new(dir.display().to_string(), 0),
                SourceErrorKind::Io(e.to_string()),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, others, errors),
            Ok(_) if path.extension().is_some_and(|e| e == "sql" || e == "exs") => files.push(path),
            _ => others.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_mixed_formats_recursively_and_reports_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir(p.join("sub")).unwrap();
        std::fs::create_dir(p.join(".hidden")).unwrap();
        std::fs::write(p.join("V1__a.sql"), "SELECT 1;").unwrap();
        std::fs::write(p.join("sub/2_b.up.sql"), "SELECT 2;").unwrap();
        std::fs::write(p.join("3_c.sql"), "-- migrate:up\nSELECT 3;").unwrap();
        std::fs::write(p.join(".hidden/V9__x.sql"), "nonsense '").unwrap();
        std::fs::write(p.join("notes.txt"), "ignored").unwrap();
        std::fs::write(p.join("V4__bin.sql"), [0xff, 0xfe]).unwrap();
        std::fs::write(p.join("V5__big.sql"), "SELECT 5;".repeat(20)).unwrap();
        let loaded = load_dir(p, 100);
        let versions: Vec<String> = loaded
            .migrations
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        assert_eq!(versions, ["1", "2", "3"]);
        let msgs: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].ends_with("V4__bin.sql:1: file is not valid UTF-8"),
            "{msgs:?}"
        );
        assert!(msgs[1].ends_with(
            "V5__big.sql:1: migration is 180 bytes, over the limit of 100 bytes (max_file_size)"
        ));
        let warned: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].ends_with("notes.txt: not a migration file chmigrate reads (it reads .sql files and Pillar's .exs files); ignored"),
            "{warned:?}"
        );
    }

    #[test]
    fn missing_folder_is_reported() {
        let loaded = load_dir(Path::new("/nonexistent/chmigrate"), 100);
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0]
                .to_string()
                .starts_with("/nonexistent/chmigrate: cannot read")
        );
    }
}
