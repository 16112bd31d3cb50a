//! The HTTP API, compatible with sipstuff-k8s-operator's: `POST /call`,
//! `GET /jobs`, `GET /jobs/{name}`, `GET /health`; and `GET /ready`,
//! `GET /metrics`. Everything but `/health`, `/ready` and `/metrics` needs
//! `Authorization: Bearer <OPERATOR_TOKEN>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::OperatorConfig;
use crate::job::{self, CONTAINER_NAME, SELECTOR};
use crate::request::CallRequest;
use crate::status::{self, JobInfo};

/// The largest `POST /call` body read (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// The most of a pod's log read for its report (the last line only).
pub const MAX_LOG_BYTES: i64 = 256 * 1024;
/// Pods whose logs `GET /jobs` reads at once.
const LOG_READS_AT_ONCE: usize = 4;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub calls_created: AtomicU64,
    pub calls_invalid: AtomicU64,
    pub calls_refused_busy: AtomicU64,
    pub kubernetes_errors: AtomicU64,
    pub unauthorized: AtomicU64,
    pub job_reads: AtomicU64,
}

/// What the handlers share.
pub struct AppState {
    pub config: OperatorConfig,
    /// The bearer token every protected request must carry.
    token_digest: [u8; 32],
    /// The Kubernetes client, or why there is none (requests needing it
    /// answer 503; `/ready` too).
    kube: Result<kube::Client, String>,
    creates: Semaphore,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(
        config: OperatorConfig,
        token: &str,
        kube: Result<kube::Client, String>,
    ) -> AppState {
        let creates = Semaphore::new(config.max_concurrent_creates);
        AppState {
            config,
            token_digest: Sha256::digest(token.as_bytes()).into(),
            kube,
            creates,
            metrics: Metrics::default(),
        }
    }
}

/// The API's routes over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/call", post(create_call))
        .route("/jobs", get(list_jobs))
        .route("/jobs/{name}", get(get_job))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn detail(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, axum::Json(json!({"detail": msg.into()}))).into_response()
}

/// Compares digests of the two tokens (same length, every byte looked at).
async fn require_token(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = given.is_some_and(|t| {
        let d: [u8; 32] = Sha256::digest(t.as_bytes()).into();
        d.iter()
            .zip(st.token_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    });
    if !ok {
        st.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
        let mut r = detail(StatusCode::UNAUTHORIZED, "Not authenticated");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    next.run(req).await
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response()
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    match &st.kube {
        Ok(_) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => detail(StatusCode::SERVICE_UNAVAILABLE, e.clone()),
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let m = &st.metrics;
    let available = st.creates.available_permits();
    let in_flight = st.config.max_concurrent_creates.saturating_sub(available);
    let mut out = String::new();
    for (name, help, v) in [
        (
            "switchboard_operator_calls_created_total",
            "Call Jobs created.",
            m.calls_created.load(Ordering::Relaxed),
        ),
        (
            "switchboard_operator_calls_invalid_total",
            "POST /call bodies refused with 422.",
            m.calls_invalid.load(Ordering::Relaxed),
        ),
        (
            "switchboard_operator_calls_busy_total",
            "POST /call refused with 429 (MAX_CONCURRENT_CREATES in flight).",
            m.calls_refused_busy.load(Ordering::Relaxed),
        ),
        (
            "switchboard_operator_kubernetes_errors_total",
            "Kubernetes API requests that failed.",
            m.kubernetes_errors.load(Ordering::Relaxed),
        ),
        (
            "switchboard_operator_unauthorized_total",
            "Requests refused for a missing or wrong bearer token.",
            m.unauthorized.load(Ordering::Relaxed),
        ),
        (
            "switchboard_operator_job_reads_total",
            "GET /jobs and GET /jobs/{name} answered.",
            m.job_reads.load(Ordering::Relaxed),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP switchboard_operator_creates_in_flight POST /call requests talking to Kubernetes now.\n\
         # TYPE switchboard_operator_creates_in_flight gauge\n\
         switchboard_operator_creates_in_flight {in_flight}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn no_kube(why: &str) -> Response {
    detail(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("no Kubernetes API: {why}"),
    )
}

/// A failed Kubernetes request as an answer: the API's 422 (an object it
/// refused, e.g. a node selector label it finds invalid) stays a 422,
/// anything else is 502 with the API's message.
fn kube_error(st: &AppState, what: &str, e: kube::Error) -> Response {
    st.metrics.kubernetes_errors.fetch_add(1, Ordering::Relaxed);
    warn!(error = %e, "{what}");
    match e {
        kube::Error::Api(s) if s.code == 422 => detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{what}: the Kubernetes API refused it: {}", s.message),
        ),
        e => detail(StatusCode::BAD_GATEWAY, format!("{what}: {e}")),
    }
}

fn invalid(st: &AppState, errors: Value) -> Response {
    st.metrics.calls_invalid.fetch_add(1, Ordering::Relaxed);
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"detail": errors})),
    )
        .into_response()
}

async fn create_call(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return invalid(
                &st,
                json!([{"loc": ["body", e.column()], "msg": format!("JSON decode error: {e}"),
                        "type": "json_invalid"}]),
            );
        }
    };
    let req = match CallRequest::from_json(&parsed) {
        Ok(r) => r,
        Err(errors) => return invalid(&st, json!(errors)),
    };
    let client = match st.kube.clone() {
        Ok(c) => c,
        Err(e) => return no_kube(&e),
    };
    let Ok(_permit) = st.creates.try_acquire() else {
        st.metrics
            .calls_refused_busy
            .fetch_add(1, Ordering::Relaxed);
        return detail(
            StatusCode::TOO_MANY_REQUESTS,
            "too many calls being created at once; try again",
        );
    };
    let ns = st.config.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    // the Job first, then its Secret owned by it (the owner reference needs
    // the Job's uid): until the Secret exists the kubelet holds the
    // container back (CreateContainerConfigError, retried), as its
    // secretKeyRef is not optional. A name already taken (four random
    // characters per minute) is drawn again, twice at most.
    let mut attempt = 0;
    let (name, secret, created) = loop {
        attempt += 1;
        let name = job::job_name(jiff::Timestamp::now());
        let (job, secret) = job::build_job(&req, &st.config, &name);
        match jobs.create(&PostParams::default(), &job).await {
            Ok(j) => break (name, secret, j),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 3 => {
                warn!(job = %name, "Job name taken, drawing another");
            }
            Err(e) => return kube_error(&st, "creating the Job", e),
        }
    };
    if let Some(secret) = secret {
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let secrets: Api<Secret> = Api::namespaced(client, ns);
        let secret = job::owned_by(secret, &name, &uid);
        if let Err(e) = secrets.create(&PostParams::default(), &secret).await {
            // no Job without its Secret: its pod could never start
            let dp = DeleteParams::background();
            if let Err(de) = jobs.delete(&name, &dp).await {
                warn!(job = %name, error = %de, "deleting the Job whose Secret failed");
            }
            return kube_error(&st, "creating the Job's Secret", e);
        }
    }
    st.metrics.calls_created.fetch_add(1, Ordering::Relaxed);
    info!(job = %name, namespace = %ns, dest = %req.dest, "call Job created");
    (
        StatusCode::CREATED,
        axum::Json(json!({"job_name": name, "namespace": ns, "status": "created"})),
    )
        .into_response()
}

/// The label the job controller puts on a Job's pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The pods of `job_name` among `pods`.
fn pods_of(pods: &[Pod], job_name: &str) -> Vec<Pod> {
    pods.iter()
        .filter(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(JOB_NAME_LABEL))
                .map(String::as_str)
                == Some(job_name)
        })
        .cloned()
        .collect()
}

/// The pods matching `selector`; none (logged) when the list fails: the
/// Jobs are still shown, without reports.
async fn list_pods(client: &kube::Client, ns: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&ListParams::default().labels(selector)).await {
        Ok(l) => l.items,
        Err(e) => {
            warn!(selector, error = %e, "listing the Jobs' pods");
            Vec::new()
        }
    }
}

/// The report of a finished Job: the last log line of the newest of its
/// `pods` (the last attempt). A log that cannot be read gives no report.
async fn report(client: &kube::Client, ns: &str, job: &Job, pods: &[Pod]) -> Option<Value> {
    if !status::finished(job) {
        return None;
    }
    let pod = status::newest_pod(pods)?.metadata.name.as_deref()?;
    let params = LogParams {
        container: Some(CONTAINER_NAME.into()),
        tail_lines: Some(1),
        limit_bytes: Some(MAX_LOG_BYTES),
        ..LogParams::default()
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api.logs(pod, &params).await {
        Ok(log) => status::report_of(&log),
        Err(e) => {
            warn!(pod, error = %e, "reading the pod's log");
            None
        }
    }
}

fn ours(job: &Job) -> bool {
    let labels = job.metadata.labels.as_ref();
    let has = |(k, v): (&str, &str)| labels.and_then(|l| l.get(k)).map(String::as_str) == Some(v);
    has(job::NAME_LABEL) && has(job::MANAGED_BY_LABEL)
}

async fn list_jobs(State(st): State<Arc<AppState>>) -> Response {
    let client = match st.kube.clone() {
        Ok(c) => c,
        Err(e) => return no_kube(&e),
    };
    let ns = st.config.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let list = match jobs.list(&ListParams::default().labels(SELECTOR)).await {
        Ok(l) => l,
        Err(e) => return kube_error(&st, "listing the Jobs", e),
    };
    let mine: Vec<Job> = list.items.into_iter().filter(ours).collect();
    // one list for the pods of every Job (they carry the Jobs' labels)
    let pods = if mine.iter().any(status::finished) {
        list_pods(&client, ns, SELECTOR).await
    } else {
        Vec::new()
    };
    let with_pods: Vec<(Job, Vec<Pod>)> = mine
        .into_iter()
        .map(|j| {
            let own = pods_of(&pods, j.metadata.name.as_deref().unwrap_or(""));
            (j, own)
        })
        .collect();
    let ns = ns.to_owned();
    let infos: Vec<JobInfo> = futures_util::stream::iter(with_pods)
        .map(move |(j, own)| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                let r = report(&client, &ns, &j, &own).await;
                status::info(&j, r)
            }
        })
        .buffered(LOG_READS_AT_ONCE)
        .collect()
        .await;
    st.metrics.job_reads.fetch_add(1, Ordering::Relaxed);
    axum::Json(infos).into_response()
}

async fn get_job(State(st): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let not_found = || detail(StatusCode::NOT_FOUND, format!("Job '{name}' not found"));
    if !job::valid_job_name(&name) {
        return not_found();
    }
    let client = match st.kube.clone() {
        Ok(c) => c,
        Err(e) => return no_kube(&e),
    };
    let ns = st.config.namespace.as_str();
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = match jobs.get_opt(&name).await {
        Ok(Some(j)) if ours(&j) => j,
        Ok(_) => return not_found(),
        Err(e) => return kube_error(&st, "reading the Job", e),
    };
    let pods = if status::finished(&job) {
        list_pods(&client, ns, &format!("{JOB_NAME_LABEL}={name}")).await
    } else {
        Vec::new()
    };
    let report = report(&client, ns, &job, &pods).await;
    st.metrics.job_reads.fetch_add(1, Ordering::Relaxed);
    axum::Json(status::info(&job, report)).into_response()
}
