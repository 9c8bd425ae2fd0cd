//! Commands that write migration files and manifests: `init`, `new`,
//! `resolve` and `render` (the pure halves are in `chmigrate::authoring`
//! and `chmigrate::k8s::render`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chmigrate::authoring::scaffold::{self, Template};
use chmigrate::config::{DEFAULT_CONFIG_FILE, Settings};
use chmigrate::model::version::Version;

use crate::cli::args::TemplateArg;
use crate::cli::error::CliError;
use crate::cli::output::{self, Format};
use crate::cli::{load, loaded_or_fail};

/// `init`: the migrations folder and a commented `chmigrate.yaml` (at
/// `--config`, or `chmigrate.yaml` here). Refuses to overwrite a file.
pub fn init(
    config: Option<&Path>,
    settings: &Settings,
    database: &str,
    force: bool,
    format: Format,
) -> Result<(), CliError> {
    let database = chmigrate::sql::Ident::new("database name", database)
        .map_err(|e| CliError::Invalid(format!("--database: {e}")))?;
    // A project that has the seed framework's configuration keeps it: it is
    // read as it is, and a chmigrate.yaml beside it would take precedence.
    if let (None, Some(seed)) = (config, crate::cli::default_config_path())
        && seed != Path::new(DEFAULT_CONFIG_FILE)
        && !force
    {
        let dir = &settings.dir;
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::Failed(anyhow::anyhow!(
                "{}: cannot create folder: {e}",
                dir.display()
            ))
        })?;
        output::print_message(
            format,
            &format!(
                "{}/ is ready; the configuration stays {} (the seed framework's, read as it is; `chmigrate init --force` writes a chmigrate.yaml, which would be read instead) — next: chmigrate create --name create_users_table",
                dir.display(),
                seed.display()
            ),
            serde_json::json!({ "ok": true, "dir": dir.display().to_string(), "config": seed.display().to_string() }),
        );
        return Ok(());
    }
    let path = config.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf);
    if path.exists() && !force {
        return Err(CliError::Invalid(format!(
            "{} exists; pass --force to overwrite it",
            path.display()
        )));
    }
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        CliError::Failed(anyhow::anyhow!("{}: cannot {what}: {e}", p.display()))
    };
    // The file names the folder relative to itself.
    let base = path.parent().unwrap_or(Path::new(""));
    let dir = &base.join(&settings.dir);
    std::fs::create_dir_all(dir).map_err(|e| fail("create folder", dir, e))?;
    let text = scaffold::config_template(database.as_str(), &settings.dir.display().to_string());
    std::fs::write(&path, text).map_err(|e| fail("write", &path, e))?;
    output::print_message(
        format,
        &format!(
            "wrote {} and {}/ — next: chmigrate new \"create events\"",
            path.display(),
            dir.display()
        ),
        serde_json::json!({ "ok": true, "config": path.display().to_string(), "dir": dir.display().to_string() }),
    );
    Ok(())
}

pub fn new(
    settings: &Settings,
    name: &str,
    template: TemplateArg,
    use_timestamp: bool,
    format: Format,
) -> Result<(), CliError> {
    let template = match template {
        TemplateArg::Table => Template::Table,
        TemplateArg::Alter => Template::Alter,
        TemplateArg::Index => Template::Index,
        TemplateArg::Data => Template::Data,
        TemplateArg::View => Template::View,
    };
    let name = scaffold::snake_name(name).map_err(|e| CliError::Invalid(e.to_string()))?;
    let dir = &settings.dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        CliError::Failed(anyhow::anyhow!(
            "{}: cannot create folder: {e}",
            dir.display()
        ))
    })?;
    let existing = existing_versions(dir);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let version = scaffold::next_version(&existing, use_timestamp, now)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    if existing.contains(&version) {
        return Err(CliError::Invalid(format!(
            "version {version} already exists in {}",
            dir.display()
        )));
    }
    let stamp = scaffold::timestamp(now);
    let created = format!("{}-{}-{}", &stamp[0..4], &stamp[4..6], &stamp[6..8]);
    let author = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let text = scaffold::render(template, &version, &name, &author, &created);
    let path = dir.join(scaffold::file_name(&version, &name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| CliError::Invalid(format!("{}: cannot create: {e}", path.display())))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", path.display())))?;
    output::print_created(format, &path, &version, template.name());
    Ok(())
}

pub fn render(
    settings: &Settings,
    set: String,
    namespace: Option<String>,
    labels: Vec<(String, String)>,
    out: Option<PathBuf>,
    configmap: bool,
    format: Format,
) -> Result<(), CliError> {
    use chmigrate::k8s::render::{RenderOptions, render_configmaps, render_resources};
    let migrations = loaded_or_fail(load(settings), format)?;
    let opts = RenderOptions {
        set,
        namespace,
        labels: labels.into_iter().collect(),
    };
    let docs = if configmap {
        let mut files = Vec::new();
        for m in &migrations {
            for loc in std::iter::once(&m.location).chain(m.down_location.iter()) {
                let path = PathBuf::from(loc.file.as_ref());
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", path.display())))?;
                files.push((name, text));
            }
        }
        let (docs, names) =
            render_configmaps(&files, &opts).map_err(|e| CliError::Invalid(e.to_string()))?;
        eprintln!(
            "list these in the MigrationSet's spec.configMaps: {}",
            names.join(", ")
        );
        docs
    } else {
        render_resources(&migrations, &opts).map_err(|e| CliError::Invalid(e.to_string()))?
    };
    match out {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::Failed(anyhow::anyhow!("{}: {e}", dir.display())))?;
            for (name, text) in &docs {
                std::fs::write(dir.join(name), text).map_err(|e| {
                    CliError::Failed(anyhow::anyhow!("{}: {e}", dir.join(name).display()))
                })?;
            }
            println!("wrote {} file(s) to {}", docs.len(), dir.display());
        }
        None => {
            for (name, text) in docs.iter().filter(|(n, _)| n != "kustomization.yaml") {
                println!("---\n# {name}\n{text}");
            }
        }
    }
    Ok(())
}

/// `resolve --migration FILE`: FILE (and its down half) renamed to the next
/// free version, its header updated. Refused when FILE collides with no
/// other file.
pub fn resolve(settings: &Settings, file: &Path, format: Format) -> Result<(), CliError> {
    use chmigrate::authoring::renumber::{name_version, pair_key, renamed, rewrite_header};
    let base = |p: &Path| {
        p.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let name = base(file);
    let (version, _) = name_version(&name).ok_or_else(|| {
        CliError::Invalid(format!(
            "{}: not a migration file name (V<version>__<description>.sql, <version>_<name>.up.sql, …)",
            file.display()
        ))
    })?;
    if !file.is_file() {
        return Err(CliError::Invalid(format!(
            "{}: no such file",
            file.display()
        )));
    }
    let key = pair_key(&name);
    let files = migration_files(&settings.dir);
    // `./migrations/V3__x.sql` and `/abs/migrations/V3__x.sql` name one
    // folder: compare where the files really are.
    let folder = |p: &Path| p.parent().and_then(|d| std::fs::canonicalize(d).ok());
    let own_folder = folder(file);
    let same_version: Vec<&PathBuf> = files
        .iter()
        .filter(|p| name_version(&base(p)).is_some_and(|(v, _)| v == version))
        .collect();
    let (mine, others): (Vec<&PathBuf>, Vec<&PathBuf>) = same_version
        .into_iter()
        .partition(|p| pair_key(&base(p)) == key && folder(p) == own_folder);
    if others.is_empty() {
        return Err(CliError::Invalid(format!(
            "{}: version {version} collides with no other file in {}; nothing to renumber",
            file.display(),
            settings.dir.display()
        )));
    }
    let mine: Vec<PathBuf> = if mine.is_empty() {
        vec![file.to_path_buf()]
    } else {
        mine.into_iter().cloned().collect()
    };
    let existing: Vec<Version> = files
        .iter()
        .filter_map(|p| name_version(&base(p)).map(|(v, _)| v))
        .collect();
    let timestamps = version
        .segments()
        .first()
        .is_some_and(|m| *m >= 10_000_000_000);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = scaffold::next_version(&existing, timestamps, now)
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    let mut moves = Vec::new();
    for from in &mine {
        let new_name = renamed(&base(from), &to)
            .ok_or_else(|| CliError::Invalid(format!("{}: cannot rename", from.display())))?;
        let dest = from.with_file_name(new_name);
        let text = std::fs::read_to_string(from)
            .map_err(|e| CliError::Invalid(format!("{}: cannot read: {e}", from.display())))?;
        moves.push((from.clone(), dest, rewrite_header(&text, &to)));
    }
    // Write every new file before removing any old one: a failure leaves
    // the old files in place.
    for (_, dest, text) in &moves {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| CliError::Invalid(format!("{}: cannot create: {e}", dest.display())))?;
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| {
            CliError::Failed(anyhow::anyhow!("{}: cannot write: {e}", dest.display()))
        })?;
    }
    for (from, _, _) in &moves {
        std::fs::remove_file(from).map_err(|e| {
            CliError::Failed(anyhow::anyhow!("{}: cannot remove: {e}", from.display()))
        })?;
    }
    // Migrations that name the old version as a dependency now have two
    // candidates in mind; say which ones to check.
    let dependents: Vec<String> = load(settings)
        .migrations
        .iter()
        .filter(|m| m.dependencies.contains(&version) && m.version != to)
        .map(|m| m.location.file.to_string())
        .collect();
    let renamed_txt: Vec<String> = moves
        .iter()
        .map(|(f, d, _)| format!("{} -> {}", f.display(), d.display()))
        .collect();
    let mut text = format!(
        "renumbered version {version} to {to}: {}",
        renamed_txt.join(", ")
    );
    if !dependents.is_empty() {
        text.push_str(&format!(
            "\ncheck these, which depend on version {version}: {}",
            dependents.join(", ")
        ));
    }
    output::print_message(
        format,
        &text,
        serde_json::json!({
            "ok": true,
            "from": version.to_string(),
            "to": to.to_string(),
            "files": moves.iter().map(|(f, d, _)| serde_json::json!({"from": f.display().to_string(), "to": d.display().to_string()})).collect::<Vec<_>>(),
            "dependents": dependents,
        }),
    );
    Ok(())
}

/// Every `.sql` file under `dir`.
fn migration_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Versions named by migration files under `dir`, whatever their content.
fn existing_versions(dir: &Path) -> Vec<Version> {
    migration_files(dir)
        .iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
        .filter_map(|n| chmigrate::authoring::renumber::name_version(n).map(|(v, _)| v))
        .collect()
}
