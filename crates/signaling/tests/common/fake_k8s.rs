//! A fake Kubernetes API on loopback, for the EndpointSlices of one
//! namespace, speaking the real wire format over HTTP/1.1:
//! `GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices` answers
//! an `EndpointSliceList` (with `metadata.resourceVersion`; `labelSelector`
//! of `key=value` terms is honoured); with `watch=true` (or `1`) it streams
//! newline-delimited watch events (`ADDED`, `MODIFIED`, `DELETED`), chunked
//! and kept open, starting after the request's `resourceVersion`. A watch
//! from a version older than the last [`FakeK8s::expire`] gets the API
//! server's `ERROR` event with a 410 `Status`. Other namespaces are
//! forbidden (as a namespaced Role would make them), other paths 404,
//! other methods 405; every request is recorded ([`FakeK8s::seen`]).
//!
//! The test changes the slices with [`FakeK8s::apply`] and
//! [`FakeK8s::delete`], and points a client at it with
//! [`FakeK8s::kubeconfig`].

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub watch: bool,
    pub resource_version: Option<String>,
    pub label_selector: Option<String>,
}

type Chunk = Result<Bytes, Infallible>;

struct Watcher {
    tx: mpsc::UnboundedSender<Chunk>,
    selector: Option<String>,
}

#[derive(Default)]
struct Inner {
    namespace: String,
    /// The last resource version given out.
    rv: u64,
    /// Watches from a version below this are answered 410 Gone.
    floor: u64,
    slices: BTreeMap<String, Value>,
    /// Every change: (version, event type, object).
    log: Vec<(u64, &'static str, Value)>,
    watchers: Vec<Watcher>,
    seen: Vec<Seen>,
}

pub struct FakeK8s {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

/// Whether `labels` satisfy `selector` (`k=v,k2=v2`; `None` selects all).
fn selects(selector: Option<&str>, labels: &Value) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|term| match term.split_once('=') {
            Some((k, v)) => labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim()),
            None => false,
        })
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn line(ev: &Value) -> Chunk {
    Ok(Bytes::from(format!("{ev}\n")))
}

impl Inner {
    fn notify(&mut self, kind: &'static str, object: &Value) {
        let ev = json!({"type": kind, "object": object});
        let labels = &object["metadata"]["labels"];
        self.watchers
            .retain(|w| !selects(w.selector.as_deref(), labels) || w.tx.send(line(&ev)).is_ok());
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let watch = matches!(q.get("watch").map(String::as_str), Some("true" | "1"));
    let selector = q.get("labelSelector").cloned();
    let mut st = inner.lock().unwrap_or_else(|e| e.into_inner());
    st.seen.push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        watch,
        resource_version: q.get("resourceVersion").cloned(),
        label_selector: selector.clone(),
    });
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let [
        "apis",
        "discovery.k8s.io",
        "v1",
        "namespaces",
        ns,
        "endpointslices",
    ] = parts[..]
    else {
        return json_response(
            404,
            &status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );
    };
    if method != Method::GET {
        return json_response(
            405,
            &status(405, "MethodNotAllowed", "only list and watch here"),
        );
    }
    if ns != st.namespace {
        return json_response(
            403,
            &status(
                403,
                "Forbidden",
                &format!("endpointslices.discovery.k8s.io is forbidden in namespace {ns}"),
            ),
        );
    }
    if !watch {
        let items: Vec<Value> = st
            .slices
            .values()
            .filter(|s| selects(selector.as_deref(), &s["metadata"]["labels"]))
            .cloned()
            .collect();
        let list = json!({
            "kind": "EndpointSliceList",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"resourceVersion": st.rv.to_string()},
            "items": items,
        });
        return json_response(200, &list);
    }
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(st.rv);
    let (tx, rx) = mpsc::unbounded_channel();
    if from < st.floor {
        let gone = json!({"type": "ERROR", "object": status(410, "Expired", &format!("too old resource version: {from} ({})", st.floor))});
        let _ = tx.send(line(&gone));
        drop(tx);
    } else {
        for (v, kind, object) in &st.log {
            if *v > from && selects(selector.as_deref(), &object["metadata"]["labels"]) {
                let _ = tx.send(line(&json!({"type": kind, "object": object})));
            }
        }
        st.watchers.push(Watcher { tx, selector });
    }
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from_stream(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
        .unwrap_or_default()
}

impl FakeK8s {
    /// Serves the EndpointSlices of `namespace` on a free loopback port.
    pub async fn start(namespace: &str) -> FakeK8s {
        let inner = Arc::new(Mutex::new(Inner {
            namespace: namespace.to_owned(),
            rv: 100,
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

    /// A kubeconfig file in `dir` whose current context is this server
    /// (plain HTTP, no credentials) and its namespace.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let ns = self.inner().namespace.clone();
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {ns}\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write the kubeconfig");
        path
    }

    /// Creates or replaces a slice (by `metadata.name`): `ADDED` or
    /// `MODIFIED` to the watches. Returns its resource version.
    pub fn apply(&self, slice: Value) -> u64 {
        self.change(slice, true)
    }

    /// As [`FakeK8s::apply`], but open watches are not told (as if the
    /// event were lost with a compacted history; only a new list shows it).
    pub fn apply_unwatched(&self, slice: Value) -> u64 {
        self.change(slice, false)
    }

    fn change(&self, mut slice: Value, tell: bool) -> u64 {
        let mut st = self.inner();
        st.rv += 1;
        let rv = st.rv;
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        slice["metadata"]["namespace"] = json!(st.namespace.clone());
        let name = slice["metadata"]["name"]
            .as_str()
            .expect("a slice has a name")
            .to_owned();
        let kind = if st.slices.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.slices.insert(name, slice.clone());
        st.log.push((rv, kind, slice.clone()));
        if tell {
            st.notify(kind, &slice);
        }
        rv
    }

    /// Deletes a slice: `DELETED` to the watches.
    pub fn delete(&self, name: &str) {
        let mut st = self.inner();
        let Some(mut slice) = st.slices.remove(name) else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        slice["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.log.push((rv, "DELETED", slice.clone()));
        st.notify("DELETED", &slice);
    }

    /// Ends every open watch (the chunked stream is closed cleanly, as
    /// when the API server's watch timeout is reached).
    pub fn close_watches(&self) {
        self.inner().watchers.clear();
    }

    /// Compacts the history: every version before the current one is too
    /// old to watch from (a new list gives the current one); open watches
    /// get a 410 `ERROR` event and end.
    pub fn expire(&self) {
        let mut st = self.inner();
        st.floor = st.rv;
        let msg = format!("too old resource version ({})", st.floor);
        let gone = json!({"type": "ERROR", "object": status(410, "Expired", &msg)});
        for w in st.watchers.drain(..) {
            let _ = w.tx.send(line(&gone));
        }
    }

    /// Watches open now.
    pub fn watching(&self) -> usize {
        let mut st = self.inner();
        st.watchers.retain(|w| !w.tx.is_closed());
        st.watchers.len()
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.inner().seen.clone()
    }

    /// Lists so far (requests without `watch`).
    pub fn lists(&self) -> usize {
        self.seen().iter().filter(|s| !s.watch).count()
    }
}

impl Drop for FakeK8s {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An EndpointSlice of `service` (the controller's
/// `kubernetes.io/service-name` label added to `labels`).
pub fn endpoint_slice(
    name: &str,
    service: &str,
    ports: Value,
    labels: Value,
    endpoints: Vec<Value>,
) -> Value {
    let mut labels = if labels.is_object() {
        labels
    } else {
        json!({})
    };
    labels["kubernetes.io/service-name"] = json!(service);
    labels["endpointslice.kubernetes.io/managed-by"] = json!("endpointslice-controller.k8s.io");
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": labels},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// One endpoint of pod `pod` at `address`.
pub fn endpoint(pod: &str, address: &str, ready: bool, terminating: bool) -> Value {
    json!({
        "addresses": [address],
        "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating},
        "hostname": pod,
        "targetRef": {"kind": "Pod", "name": pod, "namespace": "ignored"},
        "nodeName": "node-a",
    })
}

/// The `ports` of a slice with one port named `grpc`.
pub fn grpc_port(port: u16) -> Value {
    json!([{"name": "grpc", "port": port, "protocol": "TCP"}])
}
