//! A fake Kubernetes API on loopback for the operator's objects, in the
//! real wire format over HTTP/1.1 (after crates/signaling/tests/common/
//! fake_k8s.rs): Jobs (create, get, list with a `k=v,...` labelSelector,
//! delete), Secrets (create), Pods (list by labelSelector) and pods/log
//! (`tailLines`, `container`). Every request is recorded with its body
//! ([`FakeK8s::seen`]). Creating gives the object a uid, a resourceVersion
//! and a creationTimestamp, as the API server does; a name taken is 409.
//! [`FakeK8s::fail_secrets`] makes Secret creation fail with 403,
//! [`FakeK8s::set_delay`] makes every answer wait.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Inner {
    namespace: String,
    uid: u64,
    jobs: BTreeMap<String, Value>,
    secrets: BTreeMap<String, Value>,
    pods: BTreeMap<String, Value>,
    logs: HashMap<String, String>,
    seen: Vec<Seen>,
    fail_secrets: bool,
    /// The next this many Job creates answer 409 (a name taken).
    taken: u32,
    /// How long each answer waits (for requests overlapping).
    delay: std::time::Duration,
}

pub struct FakeK8s {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

fn selects(selector: Option<&str>, labels: &Value) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim()].as_str() == Some(v.trim()),
            None => false,
        })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn respond(code: u16, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap_or_default()
}

fn json_response(code: u16, body: &Value) -> Response {
    respond(code, "application/json", body.to_string())
}

fn not_found(what: &str) -> Response {
    json_response(404, &status(404, "NotFound", &format!("{what} not found")))
}

impl Inner {
    fn create(&mut self, kind: &str, mut obj: Value) -> Response {
        self.uid += 1;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        let store = if kind == "Job" {
            &mut self.jobs
        } else {
            &mut self.secrets
        };
        if store.contains_key(&name) {
            return json_response(
                409,
                &status(409, "AlreadyExists", &format!("{name} exists")),
            );
        }
        obj["metadata"]["uid"] = json!(format!("uid-{}", self.uid));
        obj["metadata"]["resourceVersion"] = json!(self.uid.to_string());
        obj["metadata"]["creationTimestamp"] = json!("2026-12-06T10:00:00Z");
        if kind == "Job" {
            obj["status"] = json!({});
        }
        store.insert(name, obj.clone());
        json_response(201, &obj)
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let delay = inner.lock().unwrap_or_else(|e| e.into_inner()).delay;
    tokio::time::sleep(delay).await;
    let mut st = inner.lock().unwrap_or_else(|e| e.into_inner());
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    st.seen.push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: q.clone(),
        body: parsed.clone(),
    });
    let selector = q.get("labelSelector").map(String::as_str);
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let ns_ok = |ns: &str, st: &Inner| ns == st.namespace;
    match (method.clone(), &parts[..]) {
        (Method::POST, ["apis", "batch", "v1", "namespaces", ns, "jobs"]) if ns_ok(ns, &st) => {
            if st.taken > 0 {
                st.taken -= 1;
                return json_response(409, &status(409, "AlreadyExists", "jobs.batch exists"));
            }
            st.create("Job", parsed.unwrap_or_default())
        }
        (Method::POST, ["api", "v1", "namespaces", ns, "secrets"]) if ns_ok(ns, &st) => {
            if st.fail_secrets {
                return json_response(403, &status(403, "Forbidden", "secrets is forbidden: test"));
            }
            st.create("Secret", parsed.unwrap_or_default())
        }
        (Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs"]) if ns_ok(ns, &st) => {
            let items: Vec<Value> = st
                .jobs
                .values()
                .filter(|j| selects(selector, &j["metadata"]["labels"]))
                .cloned()
                .collect();
            json_response(
                200,
                &json!({"kind": "JobList", "apiVersion": "batch/v1",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        (Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs", name])
            if ns_ok(ns, &st) =>
        {
            match st.jobs.get(*name) {
                Some(j) => json_response(200, j),
                None => not_found(&format!("jobs.batch \"{name}\"")),
            }
        }
        (Method::DELETE, ["apis", "batch", "v1", "namespaces", ns, "jobs", name])
            if ns_ok(ns, &st) =>
        {
            match st.jobs.remove(*name) {
                Some(j) => json_response(200, &j),
                None => not_found(&format!("jobs.batch \"{name}\"")),
            }
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) if ns_ok(ns, &st) => {
            let items: Vec<Value> = st
                .pods
                .values()
                .filter(|p| selects(selector, &p["metadata"]["labels"]))
                .cloned()
                .collect();
            json_response(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1",
                        "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name, "log"]) if ns_ok(ns, &st) => {
            let Some(log) = st.logs.get(*name) else {
                return not_found(&format!("pods \"{name}\""));
            };
            let lines: Vec<&str> = log.lines().collect();
            let tail = q
                .get("tailLines")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(lines.len())
                .min(lines.len());
            let mut text = lines[lines.len() - tail..].join("\n");
            text.push('\n');
            respond(200, "text/plain", text)
        }
        (_, [_, _, _, "namespaces", ns, ..]) | (_, [_, _, "namespaces", ns, ..])
            if !ns_ok(ns, &st) =>
        {
            json_response(403, &status(403, "Forbidden", &format!("namespace {ns}")))
        }
        _ => json_response(404, &status(404, "NotFound", "no such resource")),
    }
}

impl FakeK8s {
    /// Serves namespace `namespace` on a free loopback port.
    pub async fn start(namespace: &str) -> FakeK8s {
        let inner = Arc::new(Mutex::new(Inner {
            namespace: namespace.to_owned(),
            ..Inner::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Kubernetes API");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&inner));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeK8s { addr, inner, task }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `kube::Client` for this server (plain HTTP, no credentials).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        let mut config = kube::Config::new(url);
        config.default_namespace = self.inner().namespace.clone();
        kube::Client::try_from(config).expect("client")
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner().seen.clone()
    }

    /// The bodies of the POSTs to paths ending in `resource`.
    pub fn posted(&self, resource: &str) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path.ends_with(resource))
            .filter_map(|s| s.body)
            .collect()
    }

    pub fn fail_secrets(&self, fail: bool) {
        self.inner().fail_secrets = fail;
    }

    /// The next `n` Job creates answer 409 AlreadyExists.
    pub fn take_names(&self, n: u32) {
        self.inner().taken = n;
    }

    /// Every answer waits `d` first.
    pub fn set_delay(&self, d: std::time::Duration) {
        self.inner().delay = d;
    }

    pub fn job(&self, name: &str) -> Option<Value> {
        self.inner().jobs.get(name).cloned()
    }

    /// Stores a Job as the API would hold it (labels, status: test's own).
    pub fn put_job(&self, job: Value) {
        let name = job["metadata"]["name"].as_str().unwrap_or("").to_owned();
        self.inner().jobs.insert(name, job);
    }

    /// Sets a stored Job's status.
    pub fn set_job_status(&self, name: &str, status: Value) {
        if let Some(j) = self.inner().jobs.get_mut(name) {
            j["status"] = status;
        }
    }

    /// A pod of Job `job` (the job controller's labels and the operator's
    /// template labels) with `log`.
    pub fn add_pod(&self, job: &str, pod: &str, created: &str, log: &str) {
        let mut st = self.inner();
        let ns = st.namespace.clone();
        st.pods.insert(
            pod.to_owned(),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": pod, "namespace": ns, "creationTimestamp": created,
                                "labels": {"batch.kubernetes.io/job-name": job, "job-name": job,
                                           "app.kubernetes.io/name": "switchboard-call",
                                           "app.kubernetes.io/managed-by": "switchboard-operator"}},
                   "spec": {"containers": [{"name": "sip-caller"}]}}),
        );
        st.logs.insert(pod.to_owned(), log.to_owned());
    }
}

impl Drop for FakeK8s {
    fn drop(&mut self) {
        self.task.abort();
    }
}
