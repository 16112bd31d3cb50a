//! `/dialplan`: the dialplan editor of one backend (`?backend=`, the
//! first by default: replicas on a shared database share one dialplan;
//! without one each has its own).
//!
//! The JSON is edited as text; "Validate" (`POST /dialplan/validate`) and
//! "Save" (`POST /dialplan/save`) send it to the backend
//! (`POST /api/v1/dialplan/validate`, `PUT /api/v1/dialplan`). A refusal is
//! shown at the route and field the backend names (`path`, `route`), and
//! the running dialplan stays. The dry run (`POST /dialplan/dry-run`) asks
//! which route a call would take; the saved versions
//! (`GET /api/v1/dialplan/versions`) can be viewed and restored (a restore
//! saves that version again, as the newest).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::{Extension, Form};
use serde_json::{Map, Value, json};

use super::cdrs::utc;
use super::{Layout, items, render, text};
use crate::SharedState;
use crate::auth::{Ctx, redirect};
use crate::backend::BackendError;

/// Where the backend says a dialplan is wrong.
pub struct Fault {
    /// `routes[1].actions[0].params.target`, `version`, `dialplan`.
    pub path: String,
    /// The path inside the route (`actions[0].params.target`), empty when
    /// the route itself is at fault (a duplicate id).
    pub field: String,
    pub route_index: Option<usize>,
    pub route: String,
    pub reason: String,
}

impl Fault {
    fn from(e: &BackendError) -> Option<Self> {
        let d = &e.detail;
        let path = d.get("path").and_then(Value::as_str)?.to_owned();
        let route_index = d
            .get("route_index")
            .and_then(Value::as_u64)
            .and_then(|i| usize::try_from(i).ok());
        let field = match route_index {
            Some(i) => path
                .strip_prefix(&format!("routes[{i}]"))
                .map(|f| f.trim_start_matches('.').to_owned())
                .unwrap_or_default(),
            None => String::new(),
        };
        Some(Self {
            field,
            route_index,
            route: text(d, "route"),
            reason: text(d, "reason"),
            path,
        })
    }
}

/// One route of the edited text, for the outline under the editor.
pub struct RouteRow {
    pub index: usize,
    pub id: String,
    pub pattern: String,
    pub priority: String,
    pub from: String,
    pub actions: String,
    pub enabled: bool,
    pub fault: Option<Fault>,
}

/// `dial, hangup` from a route's actions.
fn action_types(route: &Value) -> String {
    items(route.get("actions").unwrap_or(&Value::Null))
        .iter()
        .map(|a| text(a, "type"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The routes of `draft` when it is JSON with a route list; the fault goes
/// to its route's row.
fn outline(draft: &str, fault: &mut Option<Fault>) -> Vec<RouteRow> {
    let Ok(v) = serde_json::from_str::<Value>(draft) else {
        return Vec::new();
    };
    let mut rows: Vec<RouteRow> = items(v.get("routes").unwrap_or(&Value::Null))
        .iter()
        .enumerate()
        .map(|(index, r)| RouteRow {
            index,
            id: text(r, "id"),
            pattern: text(r, "pattern"),
            priority: text(r, "priority"),
            from: text(r, "from"),
            actions: action_types(r),
            enabled: r.get("enabled").and_then(Value::as_bool) != Some(false),
            fault: None,
        })
        .collect();
    if let Some(i) = fault.as_ref().and_then(|f| f.route_index)
        && let Some(row) = rows.get_mut(i)
    {
        row.fault = fault.take();
    }
    rows
}

/// The dry run's form and answer.
#[derive(Debug, Default, serde::Deserialize)]
pub struct DryForm {
    #[serde(default)]
    pub backend: String,
    #[serde(default)]
    pub destination: String,
    #[serde(default)]
    pub from_user: String,
    #[serde(default)]
    pub from_trunk: String,
}

pub struct DryResult {
    pub matched: bool,
    pub route_index: String,
    pub id: String,
    pub name: String,
    pub pattern: String,
    pub priority: String,
    /// `(type, params as JSON)`.
    pub actions: Vec<(String, String)>,
}

pub struct VersionRow {
    pub id: i64,
    pub at: String,
    pub size: String,
}

#[derive(Template)]
#[template(path = "dialplan.html")]
struct Page {
    l: Layout,
    backends: Vec<String>,
    backend: String,
    draft: String,
    /// Could not read the running dialplan.
    down: Option<String>,
    /// "Valid: 3 routes" after Validate.
    valid: Option<String>,
    /// A fault outside any route (`version`, JSON syntax).
    fault: Option<Fault>,
    routes: Vec<RouteRow>,
    dry: DryForm,
    dry_error: Option<String>,
    result: Option<DryResult>,
    versions: Vec<VersionRow>,
    versions_error: Option<String>,
}

#[derive(Template)]
#[template(path = "dialplan_version.html")]
struct VersionPage {
    l: Layout,
    backend: String,
    id: i64,
    at: String,
    json: String,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Pick {
    #[serde(default)]
    backend: String,
    /// The version a save just made.
    #[serde(default)]
    saved: Option<i64>,
}

/// The backend `name` names (empty: the first); `None` for a name no
/// backend has, or without backends.
fn pick(state: &SharedState, name: &str) -> Option<(usize, String)> {
    let idx = if name.is_empty() {
        0
    } else {
        state.backends.index(name)?
    };
    let name = state.backends.names().nth(idx)?.to_owned();
    Some((idx, name))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// What a page shows besides the editor's own state.
struct Extra {
    valid: Option<String>,
    fault: Option<Fault>,
    dry: DryForm,
    dry_error: Option<String>,
    result: Option<DryResult>,
    notice: Option<String>,
}

impl Extra {
    fn none() -> Self {
        Self {
            valid: None,
            fault: None,
            dry: DryForm::default(),
            dry_error: None,
            result: None,
            notice: None,
        }
    }
}

/// The editor page of backend `backend`; `draft` is the text to show
/// (`None`: the running dialplan).
async fn full(
    state: &SharedState,
    ctx: &Ctx,
    backend: &str,
    draft: Option<String>,
    mut x: Extra,
    status: StatusCode,
) -> Response {
    let mut l = Layout::new("Dialplan", "dialplan", &ctx.csrf);
    l.notice = x.notice.take();
    let backends: Vec<String> = state.backends.names().map(str::to_owned).collect();
    let Some((idx, backend)) = pick(state, backend) else {
        l.notice = Some("No such backend.".into());
        let page = Page {
            l,
            backends,
            backend: String::new(),
            draft: String::new(),
            down: None,
            valid: None,
            fault: None,
            routes: Vec::new(),
            dry: x.dry,
            dry_error: None,
            result: None,
            versions: Vec::new(),
            versions_error: None,
        };
        return render(&page, StatusCode::BAD_REQUEST);
    };
    let mut down = None;
    let draft = match draft {
        Some(d) => d,
        None => match state.backends.get(idx, "/dialplan").await {
            Ok(v) => pretty(&v),
            Err(e) => {
                down = Some(e.to_string());
                String::new()
            }
        },
    };
    let (versions, versions_error) = match state.backends.get(idx, "/dialplan/versions").await {
        Ok(v) => (
            items(v.get("versions").unwrap_or(&Value::Null))
                .iter()
                .filter_map(|r| {
                    Some(VersionRow {
                        id: r.get("id").and_then(Value::as_i64)?,
                        at: utc(r.get("created_at").and_then(Value::as_i64).unwrap_or(0)),
                        size: text(r, "size"),
                    })
                })
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let routes = outline(&draft, &mut x.fault);
    let mut dry = x.dry;
    dry.backend = backend.clone();
    let page = Page {
        l,
        backends,
        backend,
        draft,
        down,
        valid: x.valid,
        fault: x.fault,
        routes,
        dry,
        dry_error: x.dry_error,
        result: x.result,
        versions,
        versions_error,
    };
    render(&page, status)
}

pub async fn page(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Query(p): Query<Pick>,
) -> Response {
    let mut x = Extra::none();
    x.valid = p.saved.map(|n| format!("Saved and in use as version {n}."));
    full(&state, &ctx, &p.backend, None, x, StatusCode::OK).await
}

#[derive(Debug, serde::Deserialize)]
pub struct Edit {
    #[serde(default)]
    backend: String,
    #[serde(default)]
    dialplan: String,
}

/// The text as JSON for the backend; text that is not JSON at all is
/// answered here, at `dialplan`, like the backend would.
fn body_of(text: &str) -> Result<Value, Fault> {
    serde_json::from_str(text).map_err(|e| Fault {
        path: "dialplan".into(),
        field: String::new(),
        route_index: None,
        route: String::new(),
        reason: e.to_string(),
    })
}

/// A refused validation or save: the fault at its field, or the backend's
/// error as a notice.
fn refused(e: &BackendError, what: &str, backend: &str) -> Extra {
    let mut x = Extra::none();
    match Fault::from(e) {
        Some(f) => {
            x.notice = Some(format!(
                "Dialplan {what} on {backend}: {} — the running dialplan is unchanged.",
                f.path
            ));
            x.fault = Some(f);
        }
        None => x.notice = Some(format!("Dialplan {what} on {backend}: {e}")),
    }
    x
}

async fn submit(state: &SharedState, ctx: &Ctx, f: Edit, save: bool) -> Response {
    let what = if save { "not saved" } else { "not valid" };
    let Some((idx, backend)) = pick(state, &f.backend) else {
        return full(
            state,
            ctx,
            &f.backend,
            None,
            Extra::none(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let body = match body_of(&f.dialplan) {
        Ok(b) => b,
        Err(fault) => {
            let mut x = Extra::none();
            x.notice = Some(format!(
                "Dialplan {what}: it is not JSON — the running dialplan is unchanged."
            ));
            x.fault = Some(fault);
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            return full(state, ctx, &backend, Some(f.dialplan), x, status).await;
        }
    };
    let (method, path) = if save {
        (Method::PUT, "/dialplan")
    } else {
        (Method::POST, "/dialplan/validate")
    };
    match state.backends.send(idx, method, path, Some(&body)).await {
        Ok(v) if save => {
            let version = v.get("version").and_then(Value::as_i64);
            let q =
                serde_urlencoded::to_string([("backend", backend.as_str())]).unwrap_or_default();
            let saved = version.map(|n| format!("&saved={n}")).unwrap_or_default();
            redirect(&format!("/dialplan?{q}{saved}"))
        }
        Ok(v) => {
            let mut x = Extra::none();
            x.valid = Some(format!(
                "Valid: {} enabled routes. Not saved yet.",
                super::num(&v, "routes")
            ));
            full(state, ctx, &backend, Some(f.dialplan), x, StatusCode::OK).await
        }
        Err(e) => {
            let x = refused(&e, what, &backend);
            full(state, ctx, &backend, Some(f.dialplan), x, e.action_status()).await
        }
    }
}

pub async fn validate(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Edit>,
) -> Response {
    submit(&state, &ctx, f, false).await
}

pub async fn save(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Edit>,
) -> Response {
    submit(&state, &ctx, f, true).await
}

fn dry_result(v: &Value) -> DryResult {
    let r = v.get("route").unwrap_or(&Value::Null);
    DryResult {
        matched: v.get("matched").and_then(Value::as_bool) == Some(true),
        route_index: text(v, "route_index"),
        id: text(r, "id"),
        name: text(r, "name"),
        pattern: text(r, "pattern"),
        priority: text(r, "priority"),
        actions: items(r.get("actions").unwrap_or(&Value::Null))
            .iter()
            .map(|a| {
                let params = a.get("params").filter(|p| !p.is_null());
                (
                    text(a, "type"),
                    params.map(Value::to_string).unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// "Which route takes 1002 from alice?" against the running dialplan.
pub async fn dry_run(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<DryForm>,
) -> Response {
    let Some((idx, backend)) = pick(&state, &f.backend) else {
        return full(
            &state,
            &ctx,
            &f.backend,
            None,
            Extra::none(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let mut body = Map::new();
    body.insert("destination".into(), json!(f.destination.trim()));
    for (k, v) in [("from_user", &f.from_user), ("from_trunk", &f.from_trunk)] {
        if !v.trim().is_empty() {
            body.insert(k.into(), json!(v.trim()));
        }
    }
    let answer = state
        .backends
        .send(
            idx,
            Method::POST,
            "/dialplan/dry-run",
            Some(&Value::Object(body)),
        )
        .await;
    let mut x = Extra::none();
    let status = match answer {
        Ok(v) => {
            x.result = Some(dry_result(&v));
            StatusCode::OK
        }
        Err(e) => {
            x.dry_error = Some(e.to_string());
            e.action_status()
        }
    };
    x.dry = f;
    full(&state, &ctx, &backend, None, x, status).await
}

/// `GET /dialplan/versions/{id}?backend=`: one saved version, read-only.
pub async fn version(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<i64>,
    Query(p): Query<Pick>,
) -> Response {
    let Some((idx, backend)) = pick(&state, &p.backend) else {
        return super::not_found().await;
    };
    match state
        .backends
        .get(idx, &format!("/dialplan/versions/{id}"))
        .await
    {
        Ok(v) => render(
            &VersionPage {
                l: Layout::new("Dialplan version", "dialplan", &ctx.csrf),
                backend,
                id,
                at: utc(v.get("created_at").and_then(Value::as_i64).unwrap_or(0)),
                json: pretty(v.get("dialplan").unwrap_or(&Value::Null)),
            },
            StatusCode::OK,
        ),
        Err(e) => {
            let mut x = Extra::none();
            x.notice = Some(format!("Version {id} on {backend}: {e}"));
            let status = e.status.unwrap_or(StatusCode::BAD_GATEWAY);
            full(&state, &ctx, &backend, None, x, status).await
        }
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct Restore {
    #[serde(default)]
    backend: String,
    version: i64,
}

/// Saves a saved version again (as the newest).
pub async fn restore(
    State(state): State<SharedState>,
    Extension(ctx): Extension<Ctx>,
    Form(f): Form<Restore>,
) -> Response {
    let Some((idx, backend)) = pick(&state, &f.backend) else {
        return full(
            &state,
            &ctx,
            &f.backend,
            None,
            Extra::none(),
            StatusCode::BAD_REQUEST,
        )
        .await;
    };
    let path = format!("/dialplan/versions/{}", f.version);
    let answer = match state.backends.send(idx, Method::GET, &path, None).await {
        Ok(v) => {
            let d = v.get("dialplan").cloned().unwrap_or(Value::Null);
            state
                .backends
                .send(idx, Method::PUT, "/dialplan", Some(&d))
                .await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(v) => {
            let q =
                serde_urlencoded::to_string([("backend", backend.as_str())]).unwrap_or_default();
            let saved = v
                .get("version")
                .and_then(Value::as_i64)
                .map(|n| format!("&saved={n}"))
                .unwrap_or_default();
            redirect(&format!("/dialplan?{q}{saved}"))
        }
        Err(e) => {
            let mut x = refused(&e, "not restored", &backend);
            if x.fault.is_none() {
                x.notice = Some(format!(
                    "Version {} not restored on {backend}: {e}",
                    f.version
                ));
            }
            full(&state, &ctx, &backend, None, x, e.action_status()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_go_to_their_route() {
        let e = BackendError {
            message: "HTTP 422".into(),
            status: Some(StatusCode::UNPROCESSABLE_ENTITY),
            detail: json!({"path": "routes[1].actions[0].params.target", "route_index": 1,
                           "route": "internal", "reason": "unknown target"}),
        };
        let mut f = Fault::from(&e);
        assert_eq!(
            f.as_ref().map(|f| f.field.as_str()),
            Some("actions[0].params.target")
        );
        let draft = r#"{"routes":[{"id":"a","pattern":"1","actions":[{"type":"answer"}]},
                                  {"id":"internal","pattern":"1*","actions":[{"type":"dial"}]}]}"#;
        let rows = outline(draft, &mut f);
        assert!(f.is_none(), "taken by its route");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].fault.is_none());
        assert_eq!(
            rows[1].fault.as_ref().map(|f| f.route.as_str()),
            Some("internal")
        );
        assert_eq!(rows[1].actions, "dial");
        let mut top = body_of("{nope").err();
        assert!(outline("{nope", &mut top).is_empty());
        assert_eq!(top.map(|f| f.path), Some("dialplan".into()));
    }
}
