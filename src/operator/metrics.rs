//! Prometheus metrics and the `/metrics`, `/healthz`, `/readyz` endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SetLabels {
    pub namespace: String,
    pub set: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `noop` (nothing changed, nothing ran) or an error category.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `status`, `migration_status`, `finalizer`, `event`.
    pub kind: String,
}

/// Everything the operator counts.
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub applied: Family<SetLabels, Counter>,
    pub rolled_back: Family<SetLabels, Counter>,
    pub failed: Family<SetLabels, Counter>,
    pub pending: Family<SetLabels, Gauge>,
    pub hosts_pending: Family<SetLabels, Gauge>,
    pub writes: Family<WriteLabels, Counter>,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chmigrate");
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)),
            applied: Family::default(),
            rolled_back: Family::default(),
            failed: Family::default(),
            pending: Family::default(),
            hosts_pending: Family::default(),
            writes: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register(
            "reconciles",
            "Reconciles of MigrationSets by result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "migrations_applied",
            "Migrations applied",
            m.applied.clone(),
        );
        registry.register(
            "migrations_rolled_back",
            "Migrations rolled back",
            m.rolled_back.clone(),
        );
        registry.register(
            "migrations_failed",
            "Reconciles that ended with a failed migration",
            m.failed.clone(),
        );
        registry.register(
            "migrations_pending",
            "Migrations not yet applied, per set",
            m.pending.clone(),
        );
        registry.register(
            "hosts_pending",
            "Hosts that have not finished an ON CLUSTER statement, per set",
            m.hosts_pending.clone(),
        );
        registry.register(
            "kubernetes_writes",
            "Writes the operator made to the Kubernetes API, by kind",
            m.writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this instance holds the leader lease",
            m.leader.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn wrote(&self, kind: &str) {
        self.writes
            .get_or_create(&WriteLabels { kind: kind.into() })
            .inc();
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Health as the probes see it.
#[derive(Default)]
pub struct Health {
    /// The process is up and its loops run.
    pub live: AtomicBool,
    /// Able to do its job: caches synced as leader, or waiting as standby.
    pub ready: AtomicBool,
}

fn reply(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn route(path: &str, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let flag = |b: &AtomicBool| {
        if b.load(Ordering::SeqCst) {
            reply(StatusCode::OK, "text/plain", "ok\n".into())
        } else {
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "not ready\n".into(),
            )
        }
    };
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/healthz" | "/livez" => flag(&health.live),
        "/readyz" => flag(&health.ready),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serves the endpoints until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let (metrics, health) = (metrics.clone(), health.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let r = route(req.uri().path(), &metrics, &health);
                async move { Ok::<_, std::convert::Infallible>(r) }
            });
            let io = hyper_util::rt::TokioIo::new(tcp);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_counters_with_labels_and_probes_follow_flags() {
        let m = Metrics::new();
        m.applied
            .get_or_create(&SetLabels {
                namespace: "apps".into(),
                set: "orders".into(),
            })
            .inc_by(3);
        m.wrote("status");
        let text = m.render();
        assert!(
            text.contains(r#"chmigrate_migrations_applied_total{namespace="apps",set="orders"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chmigrate_kubernetes_writes_total{kind="status"} 1"#),
            "{text}"
        );
        assert!(text.contains("# TYPE chmigrate_reconcile_duration_seconds histogram"));
        let h = Health::default();
        assert_eq!(
            route("/readyz", &m, &h).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        h.ready.store(true, Ordering::SeqCst);
        assert_eq!(route("/readyz", &m, &h).status(), StatusCode::OK);
        assert_eq!(route("/nope", &m, &h).status(), StatusCode::NOT_FOUND);
    }
}
