//! `chmigrate operator`: the Kubernetes controller. It watches
//! `MigrationSet`s and what they read (`ClickHouseMigration`s, labelled
//! ConfigMaps; the Secrets a set names are read by name, never listed),
//! reconciles each set with the engine's one migrate path, and
//! writes status, conditions and events back. Several replicas elect a
//! leader through a Lease; the ledger lock still keeps the CLI and the
//! operator apart.

mod apply;
mod backoff;
mod context;
mod crds;
mod dereference;
mod error;
mod leader;
mod metrics;
mod reconcile;
mod status;
#[cfg(test)]
mod tests;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::sync::watch;

use chmigrate::k8s::crd::{ClickHouseMigration, MigrationSet};
use chmigrate::k8s::manifest;

use chmigrate::engine::StopFlag;
use chmigrate::k8s::reconcile::Policy;
use context::{Ctx, Settings, Shared, Stores};
use metrics::{Health, Metrics};

/// Flags of `chmigrate operator`.
#[derive(clap::Args, Debug, Clone)]
pub struct OperatorArgs {
    /// Namespace to watch (repeatable); all namespaces when none is given
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "CHMIGRATE_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Only MigrationSets with these labels (a Kubernetes label selector)
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// The environment this operator serves (the global `--env`): sets
    /// without one get it, sets naming another are refused
    #[arg(skip)]
    pub environment: Option<String>,
    /// Every set freezes before destructive statements (the global
    /// `--backup freeze`)
    #[arg(skip)]
    pub always_freeze: bool,
    /// The rollback strategy of sets that name none (the global
    /// `--rollback-strategy`)
    #[arg(skip)]
    pub default_rollback_strategy: Option<chmigrate::model::strategy::RollbackStrategy>,
    /// The parallelism of sets that name none (the global `--parallel`)
    #[arg(skip)]
    pub default_parallel: Option<usize>,
    /// Refuse every rollback, whatever a set allows (production)
    #[arg(long, env = "CHMIGRATE_FORBID_ROLLBACK")]
    pub forbid_rollback: bool,
    /// Only connect to URLs matching this glob (repeatable, or
    /// comma-separated in the variable); other sets stall as
    /// TargetNotAllowed and nothing is sent [default: any URL]
    #[arg(
        long = "allow-url",
        value_name = "PATTERN",
        env = "CHMIGRATE_ALLOW_URLS",
        value_delimiter = ','
    )]
    pub allow_urls: Vec<String>,
    /// Refuse http:// URLs and insecureSkipVerify (TLSRequired)
    #[arg(long, env = "CHMIGRATE_REQUIRE_TLS")]
    pub require_tls: bool,
    /// Address of /metrics, /healthz and /readyz
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Elect a leader through a coordination.k8s.io Lease (required with
    /// more than one replica)
    #[arg(long)]
    pub leader_election: bool,
    /// Namespace of the Lease
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the Lease
    #[arg(long, default_value = "chmigrate-operator")]
    pub lease_name: String,
    /// Lease duration in seconds (a new leader takes over this long after
    /// the old one vanished)
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// This instance's name (defaults to the pod name, then the host name)
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// MigrationSets reconciled at once (different targets)
    #[arg(long, default_value_t = 4)]
    pub concurrency: u16,
    /// Seconds between rechecks of a set whose inputs did not change
    #[arg(long, default_value_t = 300)]
    pub recheck_seconds: u64,
}

fn identity(args: &OperatorArgs) -> String {
    args.identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("chmigrate-{}", std::process::id()))
}

/// Resolves when SIGINT or SIGTERM arrives (or the sender goes away).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn on_signals(tx: watch::Sender<bool>, stop: StopFlag) {
    tokio::spawn(async move {
        chmigrate::engine::context::terminated().await;
        tracing::info!("shutting down: running migrations stop before their next statement");
        stop.request();
        let _ = tx.send(true);
    });
}

/// Runs the operator until a signal (or the loss of leadership).
pub async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API (kubeconfig or in-cluster)")?;
    crds::check(&client).await?;
    let identity = identity(&args);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    health.live.store(true, Ordering::SeqCst);
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_flag = StopFlag::default();
    on_signals(stop_tx.clone(), stop_flag.clone());
    let server = tokio::spawn(metrics::serve(
        args.listen,
        metrics.clone(),
        health.clone(),
        stopped(stop_rx.clone()),
    ));

    // The leader's term (the Lease's transitions) and the task renewing it.
    let mut leadership = None;
    let deposed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if args.leader_election {
        // Unique per process (as client-go's): two instances given one
        // name never both hold the Lease.
        let lease_identity = format!(
            "{identity}_{:x}{:x}",
            std::process::id(),
            chmigrate::clock::now_us() & 0xffff_ffff
        );
        let elector = Arc::new(leader::Elector::new(
            Api::namespaced(client.clone(), &args.lease_namespace),
            &args.lease_name,
            &lease_identity,
            leader::Timing::for_lease(Duration::from_secs(args.lease_seconds)),
        ));
        // A standby is ready: it is doing its job, which is waiting.
        health.ready.store(true, Ordering::SeqCst);
        tracing::info!(lease = %args.lease_name, %identity, "waiting to become the leader");
        let Some(term) = elector.acquire(stopped(stop_rx.clone())).await else {
            return Ok(());
        };
        let timing = elector.timing();
        tracing::info!(%identity, term, renew_deadline_s = timing.renew_deadline.as_secs_f64(), "became the leader");
        metrics.leader.set(1);
        health.ready.store(false, Ordering::SeqCst);
        // Losing the Lease (or failing to renew it in time) stops this
        // instance before the next statement: the next leader resumes from
        // the ledger, and fences this one in ClickHouse by its term.
        let keeper = elector.clone();
        let tx = stop_tx.clone();
        let lost = stop_flag.clone();
        let deposed = deposed.clone();
        let task = tokio::spawn(async move {
            let why = keeper.hold(term).await;
            tracing::error!(reason = %why, "lost the leadership; stopping before the next statement");
            deposed.store(true, Ordering::SeqCst);
            lost.request();
            let _ = tx.send(true);
        });
        leadership = Some((elector, term, task));
    }

    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "chmigrate".into(),
            instance: Some(identity.clone()),
        },
    );
    let shared = Arc::new(Shared::new(
        client.clone(),
        recorder,
        metrics.clone(),
        Settings {
            policy: Policy {
                forbid_rollback: args.forbid_rollback,
                environment: args.environment.clone(),
                always_freeze: args.always_freeze,
                default_rollback_strategy: args.default_rollback_strategy,
                default_parallel: args.default_parallel,
                allowed_urls: args.allow_urls.clone(),
                require_tls: args.require_tls,
            },
            recheck: Duration::from_secs(args.recheck_seconds.max(1)),
            identity: identity.clone(),
            leader: leadership.is_some(),
            term: leadership.as_ref().map(|(_, t, _)| *t),
            started_us: chmigrate::runtime::store::now_us(),
            stop: stop_flag.clone(),
            concurrency: usize::from(args.concurrency.max(1)),
            deposed: deposed.clone(),
        },
    ));
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    tracing::info!(namespaces = ?args.namespaces, environment = ?args.environment,
        forbid_rollback = args.forbid_rollback, "operator starting");
    let mut controllers = Vec::new();
    let mut readiness = Vec::new();
    for ns in scopes {
        let (fut, stores) = controller(client.clone(), ns, &args, shared.clone(), stop_rx.clone());
        controllers.push(fut);
        readiness.push(stores);
    }
    let h = health.clone();
    tokio::spawn(async move {
        for s in readiness {
            if !s.ready().await {
                return;
            }
        }
        h.ready.store(true, Ordering::SeqCst);
        tracing::info!("caches synced; ready");
    });
    futures::future::join_all(controllers).await;
    if let Some((elector, _, task)) = leadership {
        task.abort();
        elector.release().await;
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    Ok(())
}

fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

fn sets_using<K: Resource>(
    sets: &Store<DeserializeGuard<MigrationSet>>,
    kind: &'static str,
    obj: &K,
) -> Vec<ObjectRef<DeserializeGuard<MigrationSet>>> {
    let meta = obj.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|s| {
            s.0.as_ref()
                .is_ok_and(|set| manifest::set_uses(set, kind, &ns, &name, &labels))
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// One controller over one namespace (or all), with its caches.
fn controller(
    client: Client,
    ns: Option<String>,
    args: &OperatorArgs,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> (impl std::future::Future<Output = ()>, Stores) {
    let mut sets_cfg = watcher::Config::default();
    if let Some(sel) = &args.selector {
        sets_cfg = sets_cfg.labels(sel);
    }
    let (sets, sets_w) = reflector::store();
    let (migrations, migrations_w) = reflector::store();
    let (config_maps, config_maps_w) = reflector::store();
    let stores = Stores {
        sets: sets.clone(),
        migrations,
        config_maps,
    };
    let set_stream = watcher(
        api::<DeserializeGuard<MigrationSet>>(&client, &ns),
        sets_cfg,
    )
    .default_backoff()
    .reflect(sets_w)
    .applied_objects();
    let migration_stream = watcher(
        api::<DeserializeGuard<ClickHouseMigration>>(&client, &ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(migrations_w)
    .touched_objects();
    // Only labelled ConfigMaps are cached; Secrets are never listed or
    // watched (each reconcile reads the ones its set names).
    let cm_stream = watcher(
        api::<ConfigMap>(&client, &ns),
        watcher::Config::default().labels(&format!("{}=true", manifest::MIGRATIONS_LABEL)),
    )
    .default_backoff()
    .reflect(config_maps_w)
    .touched_objects();
    let (s1, s2) = (sets.clone(), sets.clone());
    let ctx = Arc::new(Ctx {
        shared,
        stores: stores.clone(),
    });
    let fut = Controller::for_stream(set_stream, sets)
        .watches_stream(
            migration_stream,
            move |m: DeserializeGuard<ClickHouseMigration>| {
                sets_using(&s1, "ClickHouseMigration", &m)
            },
        )
        .watches_stream(cm_stream, move |c: ConfigMap| {
            sets_using(&s2, "ConfigMap", &c)
        })
        .with_config(ControllerConfig::default().concurrency(args.concurrency.max(1)))
        .graceful_shutdown_on(stopped(stop))
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|r| async move {
            match r {
                Ok((o, _)) => tracing::debug!(set = %o, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller"),
            }
        });
    (fut, stores)
}
