//! The Kubernetes manifests start the real binaries.
//!
//! `deploy/k8s` is rendered with `kubectl kustomize`; each container is
//! started as the kubelet would start it (see `common::manifests`) on
//! loopback: private Postgres, Redis and NATS stand in for the Services of
//! those names, a fake Kubernetes API serves the RTP managers' EndpointSlices
//! (the one setting the test adds is `KUBECONFIG`, pointing signaling at it
//! instead of the in-cluster service account), and `status.hostIP` is
//! 127.0.0.1. Then every probe of the manifests is run as the kubelet would
//! run it, and what the Services and annotations name is reached: the two
//! RTP managers on disjoint ports, signaling's SIP port, API, metrics, a
//! call whose media lands on each manager in turn, SIP over TLS with the
//! certificate of the mounted Secret (overlays/tls) and over secure
//! WebSocket with it (overlays/wss), and the dashboard (its
//! probes, its login with the Secret's UI_ADMIN_PASSWORD, its overview
//! showing the signaling backend ok through the `signaling` Service).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Child;
use std::time::Duration;

use common::cluster::{eventually, try_psql};
use common::fake_k8s::{FakeK8s, endpoint, endpoint_slice, grpc_port};
use common::manifests::{self, Cluster, Launch, find, pod_spec, text};
use common::phone::{SipPhone, sdp};
use common::servers::PrivatePg;
use serde_json::Value;
use switchboard_sip::message::Method;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A started container; killed when dropped.
struct Running {
    what: String,
    child: Child,
    launch: Launch,
    log: std::path::PathBuf,
}

impl Running {
    fn start(what: &str, launch: Launch) -> Self {
        let log = launch.cwd.join("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = launch
            .command(&launch.argv())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        Self {
            what: what.to_owned(),
            child,
            launch,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running? A container that exited is a failure, with its log.
    fn alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.what, self.log());
        }
    }

    /// Runs an exec probe of the manifests in this container: its exit
    /// status and what it printed.
    fn exec(&self, argv: &[String]) -> (bool, String) {
        let out = self.launch.command(argv).output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| text(s, "command").to_owned())
        .collect()
}

fn port(v: &Value) -> u16 {
    v.as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("not a port: {v}"))
}

/// The port of the Service's port entry called `name`.
fn service_port(svc: &Value, name: &str) -> u16 {
    let p = svc["spec"]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("Service {} has no port {name}", svc["metadata"]["name"]));
    port(&p["port"])
}

/// The server of the StatefulSet `name` as its manifest runs it: `program`
/// (the image's entrypoint; empty when the container's arguments start with
/// the program) and the container's arguments and environment, then
/// `extra` (a loopback address and port of its own).
fn start_server(
    cluster: &Cluster,
    name: &str,
    pod_name: &str,
    program: &[&str],
    port: u16,
    extra: &[String],
) -> Running {
    let sts = find(&cluster.objects, "StatefulSet", name);
    let mut launch = cluster.launch(pod_spec(sts), name, pod_name);
    let mut argv: Vec<String> = program.iter().map(|p| (*p).to_owned()).collect();
    argv.extend(launch.args.iter().cloned());
    argv.extend(extra.iter().cloned());
    launch.program = manifests::binary(&argv[0]);
    launch.args = argv[1..].to_vec();
    let mut server = Running::start(name, launch);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        server.alive();
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not start:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// Runs the manifests' Postgres set-up on the private server: the user and
/// database its container's POSTGRES_USER / POSTGRES_DB create.
fn create_database(pg: &PrivatePg, cluster: &Cluster) {
    let sts = find(&cluster.objects, "StatefulSet", "postgres");
    let launch = cluster.launch(pod_spec(sts), "postgres", "postgres-0");
    let user = launch.env("POSTGRES_USER").unwrap_or("postgres").to_owned();
    let db = launch.env("POSTGRES_DB").unwrap_or(&user).to_owned();
    if user != "postgres" {
        try_psql(
            pg.port,
            "postgres",
            &format!("CREATE ROLE \"{user}\" LOGIN"),
        )
        .unwrap();
    }
    try_psql(
        pg.port,
        "postgres",
        &format!("CREATE DATABASE \"{db}\" OWNER \"{user}\""),
    )
    .unwrap();
}

/// The base and every overlay, one after the other (they take the same
/// node ports).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_start_the_real_binaries() {
    for dir in [
        "deploy/k8s",
        "deploy/k8s/overlays/multi-node",
        "deploy/k8s/overlays/tls",
        "deploy/k8s/overlays/wss",
    ] {
        platform_comes_up(dir).await;
    }
}

/// The TLS Secret a user makes (`kubectl create secret tls
/// switchboard-sip-tls`): a certificate for 127.0.0.1 from a test CA.
fn sip_tls_secret(cluster: &mut Cluster) -> common::tls_phone::Ca {
    let ca = common::tls_phone::ca("switchboard k8s test CA");
    let dir = common::temp_dir("k8s-sip-tls");
    common::tls_phone::leaf(&dir, "tls", &["127.0.0.1"], &ca);
    for (key, file) in [("tls.crt", "tls.pem"), ("tls.key", "tls.key")] {
        let pem = std::fs::read_to_string(dir.join(file)).unwrap();
        cluster
            .secrets
            .insert(("switchboard-sip-tls".into(), key.into()), pem);
    }
    let _ = std::fs::remove_dir_all(&dir);
    ca
}

async fn platform_comes_up(dir: &str) {
    let objects = manifests::render(dir);
    let ns = text(
        &find(&objects, "Namespace", "switchboard")["metadata"]["name"],
        "namespace",
    )
    .to_owned();

    // --- the Services the platform depends on, on private servers: Redis
    // and NATS run with the manifests' own arguments, configuration and
    // Secret (their passwords), on a loopback port of their own ---
    let pg = PrivatePg::start();
    let redis_port = common::servers::free_tcp_port();
    let nats_port = common::servers::free_tcp_port();
    let mut services = HashMap::new();
    for (svc, port_name, local) in [
        ("postgres", "postgres", pg.port),
        ("redis", "redis", redis_port),
        ("nats", "client", nats_port),
    ] {
        let p = service_port(find(&objects, "Service", svc), port_name);
        services.insert((svc.to_owned(), p), local);
    }
    let mut cluster = Cluster {
        namespace: ns.clone(),
        node_name: "node-a".into(),
        secrets: HashMap::new(),
        services,
        objects: objects.clone(),
    };
    let _redis = start_server(
        &cluster,
        "redis",
        "redis-0",
        &[],
        redis_port,
        &[
            "--port".into(),
            redis_port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
        ],
    );
    let monitor = common::servers::free_tcp_port();
    let _nats = start_server(
        &cluster,
        "nats",
        "nats-0",
        &["nats-server"],
        nats_port,
        &[
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            nats_port.to_string(),
            "-m".into(),
            monitor.to_string(),
        ],
    );
    create_database(&pg, &cluster);

    // --- the RTP managers: rtpmanager-0 and rtpmanager-1 on one node ---
    let sts = find(&objects, "StatefulSet", "rtpmanager");
    let pod = pod_spec(sts);
    assert_eq!(
        pod["hostNetwork"], true,
        "RTP managers use the node's ports"
    );
    let rtp_svc = find(&objects, "Service", "rtpmanager");
    let grpc_base = service_port(rtp_svc, "grpc");
    let container = manifests::container(pod, "rtpmanager");
    let mut managers = Vec::new();
    for n in 0..2u16 {
        let name = format!("rtpmanager-{n}");
        let launch = cluster.launch(pod, "rtpmanager", &name);
        managers.push(Running::start(&name, launch));
    }
    for (n, m) in managers.iter_mut().enumerate() {
        let grpc = SocketAddr::new(LO, grpc_base + n as u16);
        let what = format!(
            "{} serves gRPC on {grpc} (Service port {grpc_base} + ordinal)",
            m.what
        );
        eventually(Duration::from_secs(30), &what, || async {
            tokio::net::TcpStream::connect(grpc).await.is_ok()
        })
        .await;
        m.alive();
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let Some(cmd) = container[probe]["exec"]["command"].as_array() else {
                assert!(container[probe].is_null(), "{probe}: an exec probe");
                continue;
            };
            let argv = strings(&Value::Array(cmd.clone()));
            let (ok, said) = m.exec(&argv);
            assert!(
                ok,
                "{} {probe} {argv:?} failed: {said}\n{}",
                m.what,
                m.log()
            );
        }
    }

    // --- the fake Kubernetes API: the managers' EndpointSlice ---
    let k8s = FakeK8s::start(&ns).await;
    let rtp_svc_name = text(&rtp_svc["metadata"]["name"], "Service name");
    // the controller copies the Service's labels onto its slices
    let labels = rtp_svc["metadata"]["labels"].clone();
    let endpoints = (0..2)
        .map(|n| endpoint(&format!("rtpmanager-{n}"), "127.0.0.1", true, false))
        .collect();
    k8s.apply(endpoint_slice(
        "rtpmanager-abcde",
        rtp_svc_name,
        grpc_port(grpc_base),
        labels,
        endpoints,
    ));

    // --- signaling ---
    let workload = objects
        .iter()
        .find(|o| {
            o["metadata"]["name"] == "signaling"
                && matches!(
                    o["kind"].as_str(),
                    Some("Deployment" | "DaemonSet" | "StatefulSet")
                )
        })
        .expect("a signaling workload");
    let pod = pod_spec(workload);
    assert_eq!(pod["hostNetwork"], true, "signaling uses the node's ports");
    let container = manifests::container(pod, "signaling");
    // SIP over TLS (overlays/tls): the certificate from its Secret
    let tls_port = container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "sip-tls"))
        .map(|p| port(&p["containerPort"]));
    let tls_ca = tls_port.map(|_| sip_tls_secret(&mut cluster));
    // SIP over secure WebSocket (overlays/wss): the same certificate
    let wss_port = container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "sip-wss"))
        .map(|p| port(&p["containerPort"]));
    let mut launch = cluster.launch(pod, "signaling", "signaling-node-a");
    // the one setting the cluster would not give: where the API server is
    let kubeconfig = k8s.kubeconfig(&launch.cwd);
    launch
        .env
        .push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    let api_token = launch.env("API_TOKEN").expect("API_TOKEN").to_owned();
    let mut signaling = Running::start("signaling", launch);

    // its probes, as the kubelet runs them
    let mut probe_ports = Vec::new();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            continue;
        }
        let p = match &get["port"] {
            Value::String(named) => port(
                &container["ports"]
                    .as_array()
                    .and_then(|ps| ps.iter().find(|p| p["name"] == *named))
                    .unwrap_or_else(|| panic!("{probe}: no container port {named}"))["containerPort"],
            ),
            v => port(v),
        };
        let path = text(&get["path"], "probe path").to_owned();
        let addr = SocketAddr::new(LO, p);
        eventually(
            Duration::from_secs(30),
            &format!("signaling {probe} {path} on {p}"),
            || {
                let path = path.clone();
                async move {
                    tokio::net::TcpStream::connect(addr).await.is_ok()
                        && common::http(addr, "GET", &path, None, None).await.0 == 200
                }
            },
        )
        .await;
        probe_ports.push(addr);
    }
    assert!(!probe_ports.is_empty(), "signaling has HTTP probes");
    signaling.alive();
    let api = probe_ports[0];

    // it reaches Postgres, Redis and NATS
    eventually(
        Duration::from_secs(30),
        "Postgres, Redis and NATS ok",
        || async {
            let (code, health) = common::http(api, "GET", "/api/v1/health", None, None).await;
            code == 200
                && ["postgres", "redis", "nats"]
                    .iter()
                    .all(|s| health[s] == "ok")
        },
    )
    .await;

    // it found both managers through the EndpointSlice and reaches them
    eventually(
        Duration::from_secs(10),
        "both RTP managers in the pool",
        || async {
            let (_, list) =
                common::http(api, "GET", "/api/v1/rtpmanagers", Some(&api_token), None).await;
            let names: Vec<&str> = list
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["healthy"] == true)
                .filter_map(|m| m["name"].as_str())
                .collect();
            names.contains(&"rtpmanager-0") && names.contains(&"rtpmanager-1")
        },
    )
    .await;

    // Prometheus scrapes what the annotations name, without a token
    let ann = &workload["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    let metrics_port: u16 = text(&ann["prometheus.io/port"], "prometheus.io/port")
        .parse()
        .unwrap();
    let metrics_path = ann["prometheus.io/path"].as_str().unwrap_or("/metrics");
    let (code, body) = common::http(
        SocketAddr::new(LO, metrics_port),
        "GET",
        metrics_path,
        None,
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.as_str().unwrap_or_default().contains("switchboard_"),
        "{body}"
    );

    // the SIP port the container declares answers, and calls anchor their
    // media on each manager in turn, each within its own port range
    let sip_port = container["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["protocol"] == "UDP"))
        .map(|p| port(&p["containerPort"]))
        .expect("a UDP container port for SIP");
    let sip = SocketAddr::new(LO, sip_port);
    let (code, _) = common::http(
        api,
        "POST",
        "/api/v1/users",
        Some(&api_token),
        Some(&serde_json::json!({"username": "kate", "password": "kate-secret-1"})),
    )
    .await;
    assert_eq!(code, 201);
    let phone = SipPhone::bind(LO, sip).await;
    assert_eq!(phone.register("kate", "kate-secret-1", &[]).await.code, 200);
    if let (Some(p), Some(ca)) = (tls_port, &tls_ca) {
        // the mounted Secret's certificate is served on the TLS port
        let tls = common::tls_phone::TlsPhone::connect(SocketAddr::new(LO, p), ca).await;
        assert_eq!(tls.register("kate", "kate-secret-1").await.code, 200);
    }
    if let (Some(p), Some(ca)) = (wss_port, &tls_ca) {
        // and on the WSS port, to a phone that sends no Origin
        let wss = common::ws_phone::ws_phone(SocketAddr::new(LO, p), Some(ca), None).await;
        assert_eq!(wss.register("kate", "kate-secret-1").await.code, 200);
    }
    let mut ranges_seen = Vec::new();
    let mut dialogs = Vec::new();
    for _ in 0..2 {
        let offer = sdp(LO, common::free_port(LO), "sendrecv");
        let (d, ok) = phone
            .call("kate", "kate-secret-1", "600", &offer, &[])
            .await;
        let answer = String::from_utf8_lossy(&ok.body).to_string();
        let media_port: u16 = answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no m=audio in {answer}"));
        assert!(answer.contains("c=IN IP4 127.0.0.1"), "{answer}");
        // rtpmanager-N: RTP on 10000+100N … +99
        let n = (media_port - 10000) / 100;
        assert!(media_port >= 10000 && n < 2, "media port {media_port}");
        ranges_seen.push(n);
        dialogs.push(d);
    }
    ranges_seen.sort_unstable();
    assert_eq!(ranges_seen, vec![0, 1], "one call on each manager");
    for d in &mut dialogs {
        let bye = d.request(&Method::Bye, None, &[]);
        phone.send(&bye.bytes).await;
        assert_eq!(phone.final_response(Method::Bye).await.code, 200);
    }
    for m in &mut managers {
        m.alive();
    }
    signaling.alive();

    // the dashboard of the manifests shows this signaling as healthy
    dashboard_comes_up(&cluster).await;
    signaling.alive();

    // the Role allows exactly what signaling asked the API for
    rbac_allows_what_was_asked(&objects, pod, &k8s);
}

/// The signaling pod's ServiceAccount is bound to a Role whose rules are
/// exactly the (group, resource, verb)s of the requests the fake API saw,
/// and the pod mounts the account's token.
fn rbac_allows_what_was_asked(objects: &[Value], pod: &Value, k8s: &FakeK8s) {
    let account = text(&pod["serviceAccountName"], "serviceAccountName");
    let sa = find(objects, "ServiceAccount", account);
    let mounted = pod["automountServiceAccountToken"]
        .as_bool()
        .or(sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    assert!(mounted, "signaling needs its service account token");
    let binding = objects
        .iter()
        .find(|o| {
            o["kind"] == "RoleBinding"
                && o["subjects"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["kind"] == "ServiceAccount" && s["name"] == account)
                })
        })
        .expect("a RoleBinding for signaling's ServiceAccount");
    assert_eq!(
        binding["roleRef"]["kind"], "Role",
        "namespaced, not a ClusterRole"
    );
    let role = find(
        objects,
        "Role",
        text(&binding["roleRef"]["name"], "roleRef"),
    );
    let mut allowed = std::collections::BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for g in strings(&rule["apiGroups"]) {
            for r in strings(&rule["resources"]) {
                for v in strings(&rule["verbs"]) {
                    allowed.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    let mut asked = std::collections::BTreeSet::new();
    for r in k8s.seen() {
        assert_eq!(r.method, "GET", "{r:?}");
        let (group, resource) = match r.path.split('/').collect::<Vec<_>>()[..] {
            ["", "apis", group, _version, "namespaces", _ns, resource] => (group, resource),
            _ => panic!("unexpected API request {r:?}"),
        };
        let verb = if r.watch { "watch" } else { "list" };
        asked.insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
    }
    assert_eq!(
        allowed, asked,
        "the Role's rules against the requests signaling made"
    );
}

/// One HTTP/1.1 exchange: the status, the `Set-Cookie` value and the body.
async fn web(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return (0, None, String::new());
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let cookie = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("set-cookie"))
        .and_then(|(_, v)| v.trim().split(';').next().map(str::to_owned));
    (status, cookie, body.to_owned())
}

/// The `ui` Deployment's container started as the kubelet would: its
/// HTTP probes pass, it is reached through its Service's port, the admin
/// password of the Secret logs in, and the overview shows the signaling
/// backend (UI_BACKENDS through the `signaling` Service, with the API
/// token from UI_BACKEND_TOKENS' $(API_TOKEN)) as ok.
async fn dashboard_comes_up(cluster: &Cluster) {
    let workload = find(&cluster.objects, "Deployment", "ui");
    let pod = pod_spec(workload);
    assert_ne!(pod["hostNetwork"], true, "the dashboard needs no node port");
    let container = manifests::container(pod, "ui");
    let launch = cluster.launch(pod, "ui", "ui-7d9f8-abcde");
    let password = launch
        .env("UI_ADMIN_PASSWORD")
        .expect("UI_ADMIN_PASSWORD")
        .to_owned();
    assert_eq!(
        password,
        cluster.secret("switchboard-secrets", "UI_ADMIN_PASSWORD")
    );
    let token = cluster.secret("switchboard-secrets", "API_TOKEN");
    assert_eq!(
        launch.env("UI_BACKEND_TOKENS"),
        Some(format!("signaling={token}").as_str()),
        "$(API_TOKEN) expanded"
    );
    let mut ui = Running::start("ui", launch);

    // the probes, as the kubelet runs them
    let named_port = |named: &str| -> u16 {
        port(
            &container["ports"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == named))
                .unwrap_or_else(|| panic!("ui: no container port {named}"))["containerPort"],
        )
    };
    let mut probes = 0;
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        if get.is_null() {
            continue;
        }
        let p = match &get["port"] {
            Value::String(named) => named_port(named),
            v => port(v),
        };
        let path = text(&get["path"], "probe path").to_owned();
        let addr = SocketAddr::new(LO, p);
        eventually(
            Duration::from_secs(15),
            &format!("ui {probe} {path} on {p}"),
            || {
                let path = path.clone();
                async move { web(addr, "GET", &path, &[], "").await.0 == 200 }
            },
        )
        .await;
        probes += 1;
    }
    assert!(probes >= 2, "the ui has readiness and liveness HTTP probes");
    ui.alive();

    // its Service's port, log in, the overview
    let svc = find(&cluster.objects, "Service", "ui");
    let target = &svc["spec"]["ports"][0]["targetPort"];
    let p = match target {
        Value::String(named) => named_port(named),
        v => port(v),
    };
    let addr = SocketAddr::new(LO, p);
    let form = format!("username=admin&password={password}");
    let ctype = ("Content-Type", "application/x-www-form-urlencoded");
    let (status, cookie, body) = web(addr, "POST", "/login", &[ctype], &form).await;
    assert_eq!(status, 303, "login with the Secret's password: {body}");
    let cookie = cookie.expect("a session cookie");
    let (status, _, _) = web(
        addr,
        "POST",
        "/login",
        &[ctype],
        "username=admin&password=wrong",
    )
    .await;
    assert_ne!(status, 303, "a wrong password is refused");
    let until = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = web(addr, "GET", "/", &[("Cookie", &cookie)], "").await;
        assert_eq!(status, 200, "{body}");
        let row = body
            .find("<tr data-backend=\"signaling\">")
            .map(|at| body[at..].split("</tr>").next().unwrap_or("").to_owned())
            .unwrap_or_default();
        if row.contains("status ok") {
            assert!(!body.contains(&token), "the page shows the API token");
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the overview does not show signaling ok:\n{body}\n{}",
            ui.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ui.alive();
}

#[test]
fn kubelet_expansion_and_host_rewrites() {
    use manifests::{expand, replace_host};
    let defined = vec![("PW".to_owned(), "s3cret".to_owned())];
    assert_eq!(
        expand("postgres://u:$(PW)@db:5432/x", &defined),
        "postgres://u:s3cret@db:5432/x"
    );
    assert_eq!(expand("$$(PW) $(NOPE)", &defined), "$(PW) $(NOPE)");
    let to = "127.0.0.1:1";
    assert_eq!(
        replace_host("postgres://u:p@db.ns.svc:5432/x", "db.ns.svc:5432", to),
        "postgres://u:p@127.0.0.1:1/x"
    );
    assert_eq!(replace_host("redis:63790", "redis:6379", to), "redis:63790");
    assert_eq!(
        replace_host("myredis:6379", "redis:6379", to),
        "myredis:6379"
    );
    assert_eq!(replace_host("redis:6379", "redis:6379", to), to);
    assert_eq!(
        replace_host("nats://nats:4222,nats://nats:4222", "nats:4222", to),
        "nats://127.0.0.1:1,nats://127.0.0.1:1"
    );
}
