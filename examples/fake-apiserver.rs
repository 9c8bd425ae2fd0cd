//! chmigrate's FAKE Kubernetes API server as a runnable development tool:
//! the same code the tests use (`tests/support/fake_apiserver.rs`), serving
//! until stopped (Ctrl-C). It is not a kube-apiserver: see that file's
//! documentation for what it does and does not do.
//!
//! ```text
//! cargo run --release --example fake-apiserver -- \
//!     --listen 127.0.0.1:6443 --write-kubeconfig /tmp/fake.kubeconfig
//! KUBECONFIG=/tmp/fake.kubeconfig kubectl apply -f crds/chmigrate.yaml
//! ```

#[allow(dead_code)]
#[path = "../tests/support/fake_apiserver.rs"]
mod fake_apiserver;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-apiserver [--listen ADDR] [--write-kubeconfig FILE]\n\
    \n\
    Serves chmigrate's FAKE Kubernetes API server (in memory, plain HTTP) on\n\
    ADDR (default 127.0.0.1:6443) until stopped, and writes a kubeconfig\n\
    pointing at it to FILE once it is listening.";

fn main() -> ExitCode {
    let mut listen = "127.0.0.1:6443".to_string();
    let mut kubeconfig: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => match args.next() {
                Some(v) => listen = v,
                None => return usage("--listen needs an address"),
            },
            "--write-kubeconfig" => match args.next() {
                Some(v) => kubeconfig = Some(PathBuf::from(v)),
                None => return usage("--write-kubeconfig needs a file"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    let server = match fake_apiserver::FakeApiServer::start_on(&listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-apiserver: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &kubeconfig {
        if let Err(e) = std::fs::write(path, server.kubeconfig_yaml()) {
            eprintln!("fake-apiserver: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("fake-apiserver: kubeconfig written to {}", path.display());
    }
    eprintln!(
        "fake-apiserver: a FAKE Kubernetes API server (not a kube-apiserver) serving on {}; Ctrl-C stops it",
        server.url
    );
    loop {
        std::thread::park();
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("fake-apiserver: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}
