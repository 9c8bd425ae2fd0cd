//! `--targets a,b` (environments or groups of `chmigrate.yaml`): one
//! command on several targets at once. Each target runs in its own
//! `chmigrate --env NAME …` process (the same binary, engine and ledger
//! lock as a single run), at most `--jobs` at a time. Every target's
//! settings are resolved first, so bad configuration runs nothing; two
//! environments naming the same target are refused, as the lock would only
//! make one of them wait; a `--password` reaches the children through their
//! environment, not their command lines. Progress and logs stream on stderr prefixed with
//! `[env]`; each target's output is printed as one block when it ends (with
//! `--format json`, one document: `{"ok", "targets": [...]}`). The exit code
//! is the most severe of the targets': 1 failed, 2 invalid or blocked,
//! 4 locked, 3 hosts pending, 0 when every target succeeded.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use chmigrate::config::Settings;

use super::{Cli, CliError, Command, Format, exit};

/// Commands that may run on several targets.
pub fn supported(command: &Command) -> bool {
    matches!(
        command,
        Command::Migrate { .. }
            | Command::Plan { offline: false, .. }
            | Command::Status { .. }
            | Command::History
            | Command::Validate { online: true, .. }
            | Command::Validate {
                check_conflicts: true,
                ..
            }
    )
}

/// The order of severity of exit codes, most severe first.
const SEVERITY: [i32; 5] = [
    exit::FAILED,
    exit::INVALID,
    exit::LOCKED,
    exit::HOSTS_PENDING,
    exit::OK,
];

/// The exit code of a run over several targets: the most severe one (a
/// code chmigrate does not define, such as a crash's, counts as failed).
pub fn combined_code(codes: &[i32]) -> i32 {
    if codes.iter().any(|c| !SEVERITY.contains(c)) {
        return exit::FAILED;
    }
    SEVERITY
        .iter()
        .copied()
        .find(|s| codes.contains(s))
        .unwrap_or(exit::OK)
}

/// What makes two environments one target: the ledger they would write
/// through the same entry node. (Two entry nodes of one cluster are one
/// target too; the ledger lock makes the second run wait, exit 4.)
fn target_key(s: &Settings) -> String {
    format!(
        "{}, {}.{}",
        s.url.trim_end_matches('/'),
        s.database,
        s.history_table
    )
}

/// A child's arguments: this process's without `--targets`/`--jobs` and
/// `--password` (and their values); the password, when given, goes to the
/// children through their environment instead, not onto their command
/// lines.
pub fn child_args(args: &[OsString]) -> (Vec<OsString>, Option<OsString>) {
    let mut out = Vec::with_capacity(args.len());
    let mut password = None;
    let mut iter = args.iter();
    while let Some(a) = iter.next() {
        match a.to_str() {
            Some("--") => {
                out.push(a.clone());
                out.extend(iter.by_ref().cloned());
            }
            Some("--targets" | "--jobs") => {
                iter.next();
            }
            Some("--password") => password = iter.next().cloned(),
            Some(s) if s.starts_with("--targets=") || s.starts_with("--jobs=") => {}
            Some(s) if s.starts_with("--password=") => {
                password = Some(OsString::from(&s["--password=".len()..]));
            }
            _ => out.push(a.clone()),
        }
    }
    (out, password)
}

/// One target's outcome.
struct Outcome {
    env: String,
    code: i32,
    stdout: String,
}

/// Runs `cli`'s command on every target `--targets` names.
pub fn run(cli: &Cli, format: Format) -> Result<(), CliError> {
    if !supported(&cli.command) {
        return Err(CliError::Invalid(
            "--targets works with migrate, plan, status, history and validate --online/--check-conflicts"
                .into(),
        ));
    }
    let Some(file) = super::config_file(&cli.global)? else {
        return Err(CliError::Invalid(
            "--targets names environments or groups of chmigrate.yaml, and there is none here (--config FILE)"
                .into(),
        ));
    };
    let envs = file
        .1
        .expand_targets(&cli.global.targets)
        .map_err(|e| CliError::Invalid(format!("--targets: {e}")))?;
    // Every target's settings first: bad configuration runs nothing.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for env in &envs {
        let mut o = super::overrides(&cli.global);
        o.environment = Some(env.clone());
        let s = super::resolve_settings(Some(&file), &o)
            .map_err(|e| CliError::Invalid(format!("environment {env}: {e}")))?;
        if let Some(other) = seen.insert(target_key(&s), env.clone()) {
            return Err(CliError::Invalid(format!(
                "environments {other} and {env} name the same target ({}); run them one after the other",
                target_key(&s)
            )));
        }
    }
    let jobs = cli.global.jobs.unwrap_or(envs.len()).max(1);
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot find this program: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the async runtime: {e}")))?;
    let (args, password) = child_args(&args);
    let outcomes = rt.block_on(run_all(exe, args, password, envs, jobs, format))?;
    let codes: Vec<i32> = outcomes.iter().map(|o| o.code).collect();
    let code = combined_code(&codes);
    match format {
        Format::Json => {
            let targets: Vec<Value> = outcomes
                .iter()
                .map(|o| {
                    json!({
                        "target": o.env,
                        "exit_code": o.code,
                        "result": serde_json::from_str::<Value>(&o.stdout)
                            .unwrap_or_else(|_| Value::String(o.stdout.clone())),
                    })
                })
                .collect();
            let doc = json!({ "ok": code == exit::OK, "exit_code": code, "targets": targets });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
            );
        }
        _ => {
            let summary: Vec<String> = outcomes
                .iter()
                .map(|o| format!("{} exit {}", o.env, o.code))
                .collect();
            println!("{} target(s): {}", outcomes.len(), summary.join(", "));
        }
    }
    match code {
        exit::OK => Ok(()),
        exit::INVALID => Err(CliError::Reported),
        exit::HOSTS_PENDING => Err(CliError::Pending),
        exit::LOCKED => Err(CliError::Locked(
            "a target's lock is held (see its output above)".into(),
        )),
        _ => Err(CliError::Failed(anyhow::anyhow!(
            "{} of {} target(s) failed",
            codes.iter().filter(|c| **c == exit::FAILED).count(),
            codes.len()
        ))),
    }
}

async fn run_all(
    exe: std::path::PathBuf,
    args: Vec<OsString>,
    password: Option<OsString>,
    envs: Vec<String>,
    jobs: usize,
    format: Format,
) -> Result<Vec<Outcome>, CliError> {
    let slots = Arc::new(tokio::sync::Semaphore::new(jobs));
    let mut tasks = Vec::new();
    for env in envs {
        let (exe, args, slots) = (exe.clone(), args.clone(), slots.clone());
        let password = password.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await;
            run_one(&exe, &args, password.as_ref(), env, format).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => out.push(r?),
            Err(e) => {
                return Err(CliError::Failed(anyhow::anyhow!(
                    "a target's runner stopped: {e}"
                )));
            }
        }
    }
    Ok(out)
}

async fn run_one(
    exe: &std::path::Path,
    args: &[OsString],
    password: Option<&OsString>,
    env: String,
    format: Format,
) -> Result<Outcome, CliError> {
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(pw) = password {
        cmd.env("CHMIGRATE_PASSWORD", pw);
    }
    cmd.arg("--env")
        .arg(&env)
        .args(args)
        .env_remove("CHMIGRATE_TARGETS")
        .env_remove("CHMIGRATE_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false);
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot start the run for {env}: {e}")))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CliError::Failed(anyhow::anyhow!(
            "the run for {env} has no output pipes"
        )));
    };
    let prefix = format!("[{env}] ");
    let relay = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{prefix}{line}");
        }
    });
    let mut text = String::new();
    let read = stdout.read_to_string(&mut text).await;
    let status = child
        .wait()
        .await
        .map_err(|e| CliError::Failed(anyhow::anyhow!("the run for {env}: {e}")))?;
    let _ = relay.await;
    read.map_err(|e| CliError::Failed(anyhow::anyhow!("the run for {env}: {e}")))?;
    // A child killed by a signal has no code: count it as failed.
    let code = status.code().unwrap_or(exit::FAILED);
    if !matches!(format, Format::Json) {
        let mut block = format!("== {env} (exit {code})\n");
        block.push_str(&text);
        if !text.ends_with('\n') && !text.is_empty() {
            block.push('\n');
        }
        print!("{block}");
    }
    Ok(Outcome {
        env,
        code,
        stdout: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn child_args_drop_targets_and_jobs_and_carry_the_password_aside() {
        assert_eq!(
            child_args(&os(&[
                "--targets",
                "a,b",
                "--jobs=2",
                "--dir",
                "m",
                "migrate",
                "--targets=x",
                "--jobs",
                "3",
                "--to",
                "5"
            ])),
            (os(&["--dir", "m", "migrate", "--to", "5"]), None)
        );
        assert_eq!(
            child_args(&os(&["--password", "pw", "status", "--password=pw2"])),
            (os(&["status"]), Some(OsString::from("pw2")))
        );
        assert_eq!(
            child_args(&os(&["--password=p", "new", "--", "--targets"])),
            (os(&["new", "--", "--targets"]), Some(OsString::from("p")))
        );
    }

    #[test]
    fn the_most_severe_code_wins() {
        assert_eq!(combined_code(&[0, 0]), 0);
        assert_eq!(combined_code(&[0, 3, 4]), 4);
        assert_eq!(combined_code(&[3, 2, 0]), 2);
        assert_eq!(combined_code(&[2, 1, 4]), 1);
        assert_eq!(combined_code(&[0, 101]), 1);
        assert_eq!(combined_code(&[]), 0);
    }
}
