//! Several replicas as one platform, over real sockets, in front of the
//! real Postgres, Redis and NATS running on loopback (each test with its
//! own database, key prefix and streams): a phone registered through one
//! replica is called from another and reached through the first; a digest
//! challenge from one is answered to another; failed passwords spread over
//! replicas block the source on all; a dialplan PUT on one routes calls on
//! another within a second; the API answers the same everywhere.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::cluster::{
    LO, Platform, SECRET, eventually, sees_alive, sees_dead, two_replicas, users_plan, watch_events,
};
use common::phone::{SipPhone, sdp};
use common::start;
use serde_json::json;
use switchboard_sip::digest::{Challenge, respond};
use switchboard_sip::message::{Message, Method};
use switchboard_sip::request::{RequestBuilder, new_branch};
use tokio::net::UdpSocket;

fn media_addr(body: &[u8]) -> SocketAddr {
    let text = String::from_utf8_lossy(body);
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))
        .expect("c= line")
        .trim()
        .to_owned();
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split_whitespace().next())
        .expect("m= line")
        .to_owned();
    format!("{ip}:{port}").parse().expect("media address")
}

/// Sends `n` PCMU packets from `sock` to `to`.
async fn rtp_to(sock: &UdpSocket, to: SocketAddr, n: u16) {
    for seq in 0..n {
        let mut pkt = vec![0x80, 0x00];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        pkt.extend_from_slice(&[0xff; 160]);
        let _ = sock.send_to(&pkt, to).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn rtp_count(sock: &UdpSocket, wait: Duration) -> usize {
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let until = tokio::time::Instant::now() + wait;
    while let Ok(Ok(_)) = tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_registered_on_a_is_called_from_b_through_a() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |_| {}).await;
    let events = watch_events(&p).await;

    // carol registers through A
    let carol = SipPhone::bind(LO, a.sip).await;
    assert_eq!(carol.register("carol", "carol-secret", &[]).await.code, 200);
    // ... and B lists her at once, held by A
    let (_, regs) = b.http("GET", "/api/v1/registrations", None).await;
    let carol_aor = regs
        .as_array()
        .and_then(|l| {
            l.iter().find(|r| {
                r["aor"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("sip:carol@"))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("carol on B: {regs}"));
    assert_eq!(carol_aor["contacts"][0]["replica"], "a");
    assert_eq!(
        a.http("GET", "/api/v1/registrations", None).await.1,
        regs,
        "same answer on A"
    );

    // alice, on B, calls carol
    let alice = SipPhone::bind(LO, b.sip).await;
    let alice_rtp = UdpSocket::bind((LO, 0)).await.expect("rtp");
    let carol_rtp = UdpSocket::bind((LO, 0)).await.expect("rtp");
    let offer = sdp(LO, alice_rtp.local_addr().expect("addr").port(), "sendrecv");
    let answer = sdp(LO, carol_rtp.local_addr().expect("addr").port(), "sendrecv");
    let callee = async {
        let (inv, from) = carol.request_from(Method::Invite).await;
        carol.answer(&inv, 180, Some("caroltag"), None).await;
        carol
            .answer(&inv, 200, Some("caroltag"), Some(&answer))
            .await;
        let (_, ack_from) = carol.request_from(Method::Ack).await;
        (inv, from, ack_from)
    };
    let ((dialog, ok), (inv, from, ack_from)) = tokio::join!(
        alice.call("alice", "alice-secret", "carol", &offer, &[]),
        callee
    );
    assert_eq!(
        from, a.sip,
        "the INVITE comes from A, the replica carol registered on"
    );
    assert_eq!(ack_from, a.sip, "and so does the ACK");
    assert!(
        inv.header("Record-Route")
            .is_some_and(|rr| rr.contains("sb-flow=")),
        "A stays on the path: {inv:?}"
    );

    // audio both ways through B's media
    let to_alice_side = media_addr(&ok.body);
    let to_carol_side = media_addr(&inv.body);
    let (_, _, got_alice, got_carol) = tokio::join!(
        rtp_to(&alice_rtp, to_alice_side, 25),
        rtp_to(&carol_rtp, to_carol_side, 25),
        rtp_count(&alice_rtp, Duration::from_millis(1200)),
        rtp_count(&carol_rtp, Duration::from_millis(1200)),
    );
    assert!(got_carol >= 15, "carol heard alice: {got_carol} packets");
    assert!(got_alice >= 15, "alice heard carol: {got_alice} packets");

    // the call is listed the same on both replicas, owned by B
    let (_, calls_b) = b.http("GET", "/api/v1/calls", None).await;
    let (_, calls_a) = a.http("GET", "/api/v1/calls", None).await;
    assert_eq!(calls_a, calls_b, "same calls on A and B");
    let call = &calls_b[0];
    assert_eq!(call["node"], "b", "{calls_b}");
    let id = call["id"].as_str().expect("call id").to_owned();

    // hung up from A, the replica that does not own it
    let (status, body) = a
        .http("POST", &format!("/api/v1/calls/{id}/hangup"), None)
        .await;
    assert_eq!(status, 202, "{body}");
    let (bye, bye_from) = carol.request_from(Method::Bye).await;
    assert_eq!(bye_from, a.sip, "the BYE reaches carol through A too");
    carol.answer(&bye, 200, None, None).await;
    let alice_bye = alice.request(Method::Bye).await;
    alice.answer(&alice_bye, 200, None, None).await;
    drop(dialog);

    // one CDR, stored once through JetStream into Postgres, seen by both
    eventually(Duration::from_secs(10), "the CDR in Postgres", || async {
        let (_, cdrs) = a.http("GET", "/api/v1/cdrs", None).await;
        cdrs["cdrs"]
            .as_array()
            .is_some_and(|l| l.len() == 1 && l[0]["call_id"] == id.as_str())
    })
    .await;
    assert_eq!(
        a.http("GET", "/api/v1/cdrs", None).await.1,
        b.http("GET", "/api/v1/cdrs", None).await.1,
        "same CDRs on A and B"
    );
    eventually(Duration::from_secs(5), "no live calls", || async {
        b.http("GET", "/api/v1/calls", None).await.1 == json!([])
    })
    .await;
    assert!(
        common::metric(&b, "switchboard_cluster_via_edge_total").await >= Some(1),
        "B counted its call through A's edge"
    );
    assert!(common::metric(&a, "switchboard_cluster_bindings_published_total").await >= Some(1));

    // each fact once, by the replica where it happened
    let root = &p.nats_prefix;
    let seen = events.wait_for(&format!("{root}.calls.{id}.ended")).await;
    let of = |subject: String| {
        seen.iter()
            .filter(|(s, _)| *s == subject)
            .collect::<Vec<_>>()
    };
    for verb in ["received", "ringing", "answered", "ended"] {
        let got = of(format!("{root}.calls.{id}.{verb}"));
        assert_eq!(got.len(), 1, "{verb} once: {seen:?}");
        let e = &got[0].1;
        assert_eq!(e["version"], 1);
        assert_eq!(e["type"], format!("call.{verb}"));
        assert_eq!(e["node"], "b");
        assert_eq!(e["call_uuid"], id.as_str());
        assert_eq!(e["legs"][0]["side"], "a");
        assert!(e["ts"].as_i64().is_some_and(|t| t > 0));
    }
    let aor = carol_aor["aor"].as_str().expect("aor").replace('.', "%2E");
    let registered = of(format!("{root}.registrations.{aor}.registered"));
    assert_eq!(registered.len(), 1, "carol registered once: {seen:?}");
    assert_eq!(
        registered[0].1["node"], "a",
        "published by the replica she registered on"
    );
    let sessions: Vec<_> = seen
        .iter()
        .filter(|(s, e)| {
            s.starts_with(&format!("{root}.sessions.")) && e["call_uuid"] == id.as_str()
        })
        .map(|(s, _)| s.rsplit('.').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        sessions.iter().filter(|v| *v == "created").count(),
        2,
        "{sessions:?}"
    );
    assert_eq!(
        sessions.iter().filter(|v| *v == "destroyed").count(),
        2,
        "{sessions:?}"
    );
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}

/// A REGISTER with Authorization answering `ch`, sent from `phone` to `to`.
fn register_bytes(
    phone: &SipPhone,
    call_id: &str,
    cseq: u32,
    auth: Option<&str>,
    host: SocketAddr,
) -> Vec<u8> {
    let mut b = RequestBuilder::new("REGISTER", &format!("sip:{}", host.ip()))
        .via("UDP", &phone.addr().to_string(), &new_branch())
        .header("Max-Forwards", "70")
        .header("From", "<sip:carol@switchboard>;tag=r1")
        .header("To", "<sip:carol@switchboard>")
        .header("Call-ID", call_id)
        .header("CSeq", &format!("{cseq} REGISTER"))
        .header("Contact", &format!("<sip:carol@{}>", phone.addr()))
        .header("Expires", "300");
    if let Some(a) = auth {
        b = b.header("Authorization", a);
    }
    b.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_a_is_answered_to_b_and_a_dialplan_put_on_a_routes_on_b() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |_| {}).await;

    let mut phone = SipPhone::bind(LO, a.sip).await;
    phone
        .send(&register_bytes(&phone, "xreg@test", 1, None, a.sip))
        .await;
    let challenge = phone.final_response(Method::Register).await;
    assert_eq!(challenge.code, 401);
    let ch = challenge
        .header_lines("WWW-Authenticate")
        .into_iter()
        .find_map(|v| Challenge::parse(v).ok())
        .expect("challenge");
    let uri = format!("sip:{}", LO);
    let auth =
        respond(&ch, "REGISTER", &uri, "carol", "carol-secret", "c0ffee", 1).to_header_value();
    phone.server = b.sip;
    phone
        .send(&register_bytes(&phone, "xreg@test", 2, Some(&auth), b.sip))
        .await;
    let ok = phone.final_response(Method::Register).await;
    assert_eq!(ok.code, 200, "A's nonce accepted by B: {ok:?}");
    // the same credentials again (nc not advanced), sent to A by another
    // phone to bind its own contact, are a replay: challenged again, and
    // the thief's contact is bound nowhere
    let thief = SipPhone::bind(LO, a.sip).await;
    thief
        .send(&register_bytes(&thief, "xreg@test", 3, Some(&auth), a.sip))
        .await;
    let replay = thief.final_response(Method::Register).await;
    assert_eq!(
        replay.code, 401,
        "a replayed nonce count is challenged again on A"
    );
    let thief_port = format!(":{}", thief.addr().port());
    for r in [&a, &b] {
        let (_, regs) = r.http("GET", "/api/v1/registrations", None).await;
        assert!(
            !regs.to_string().contains(&thief_port),
            "the replay bound the thief's contact: {regs}"
        );
        assert!(
            regs.to_string()
                .contains(&format!(":{}", phone.addr().port())),
            "carol's own binding stays: {regs}"
        );
    }

    // a new plan on A: 7xx goes to a route that answers 404 by having no
    // user; B must route with it within a second
    let plan = json!({"version": "1.0", "routes": [
        {"id": "sevens", "pattern": "7*", "priority": 5,
         "actions": [{"type": "dial", "params": {"target": "user/carol", "timeout": 5}}]}]});
    let t0 = Instant::now();
    assert_eq!(a.http("PUT", "/api/v1/dialplan", Some(&plan)).await.0, 200);
    eventually(Duration::from_secs(1), "B uses A's dialplan", || async {
        b.http("GET", "/api/v1/dialplan", None).await.1["routes"][0]["id"] == "sevens"
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(1));
    // a call on B to 700 now reaches carol (registered through B above)
    phone.server = b.sip;
    let alice = SipPhone::bind(LO, b.sip).await;
    let callee = async {
        let inv = phone.request(Method::Invite).await;
        phone.answer(&inv, 486, Some("busy"), None).await;
    };
    let caller = async {
        let mut d = alice.dialog_to("alice", "700");
        alice
            .invite(
                &mut d,
                "alice",
                "alice-secret",
                &sdp(LO, 4000, "sendrecv"),
                &[],
            )
            .await
            .0
            .code
    };
    let (code, ()) = tokio::join!(caller, callee);
    assert_eq!(code, 486, "routed by the new plan on B");
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_spread_over_two_replicas_block_the_source_on_both() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |c| c.auth_fail_limit = 9).await;
    let guesser_ip: IpAddr = "127.0.0.77".parse().expect("ip");
    for i in 0..10 {
        let target = if i % 2 == 0 { a.sip } else { b.sip };
        let phone = SipPhone::bind(guesser_ip, target).await;
        let r = phone.register("carol", "wrong-password", &[]).await;
        assert_eq!(r.code, 401, "failure {i}: {r:?}");
    }
    // ten failures, five on each: over the limit of nine on both replicas
    for s in [&a, &b] {
        let sip = s.sip;
        eventually(Duration::from_secs(3), "blocked", || async move {
            let phone = SipPhone::bind(guesser_ip, sip).await;
            phone.register("carol", "carol-secret", &[]).await.code == 403
        })
        .await;
    }
    // another source is not blocked
    let honest = SipPhone::bind(LO, a.sip).await;
    assert_eq!(
        honest.register("carol", "carol-secret", &[]).await.code,
        200
    );
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_each_shared_server() {
    let p = Platform::new();
    let a = p.replica("a", |_| {}).await;
    // the NATS client connects in the background
    eventually(Duration::from_secs(5), "healthy", || async {
        a.http("GET", "/api/v1/health", None).await.1["status"] == "ok"
    })
    .await;
    let (status, body) = a.http("GET", "/api/v1/health", None).await;
    assert_eq!(status, 200);
    for k in ["postgres", "redis", "nats"] {
        assert_eq!(body[k], "ok", "{k}: {body}");
    }
    a.stop().await;
    // a node of its own: the three are off
    let solo = start("cluster-solo", |_| {}).await;
    let (_, body) = solo.http("GET", "/api/v1/health", None).await;
    for k in ["postgres", "redis", "nats"] {
        assert_eq!(body[k], "off", "{k}: {body}");
    }
    solo.stop().await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_at_start_are_degraded_not_fatal() {
    let dead = common::free_port(LO);
    let s = start("cluster-dead", |c| {
        c.node_name = Some("lonely".into());
        c.cluster.database_url = Some(format!("postgres://postgres@127.0.0.1:{dead}/x"));
        c.cluster.redis_addr = Some(format!("127.0.0.1:{dead}"));
        c.cluster.nats_url = Some(format!("nats://127.0.0.1:{dead}"));
        c.cluster.cluster_secret = Some(SECRET.into());
    })
    .await;
    let (status, body) = s.http("GET", "/api/v1/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "degraded", "{body}");
    for k in ["postgres", "redis", "nats"] {
        assert!(
            body[k].as_str().is_some_and(|v| v.starts_with("degraded")),
            "{k}: {body}"
        );
    }
    // SIP still answers
    let phone = SipPhone::bind(LO, s.sip).await;
    let opts = RequestBuilder::new("OPTIONS", &format!("sip:{}", s.sip))
        .via("UDP", &phone.addr().to_string(), &new_branch())
        .header("Max-Forwards", "70")
        .header("From", "<sip:x@test>;tag=1")
        .header("To", "<sip:y@test>")
        .header("Call-ID", "opts@test")
        .header("CSeq", "1 OPTIONS")
        .build();
    phone.send(&opts).await;
    match phone.recv(Duration::from_secs(3)).await {
        Some(Message::Response(r)) => assert_eq!(r.code, 200),
        other => panic!("no answer: {other:?}"),
    }
    s.stop().await;
}

#[test]
fn malformed_settings_stop_start_up_naming_the_variable() {
    use clap::Parser;
    for (var, value) in [
        ("DATABASE_URL", "mysql://db/x"),
        ("REDIS_ADDR", "redis://x:99999"),
        ("NATS_URL", "http://x:4222"),
    ] {
        let c = switchboard_signaling::Config::try_parse_from([
            "switchboard-signaling",
            &format!("--{}", var.to_ascii_lowercase().replace('_', "-")),
            value,
            "--cluster-secret",
            SECRET,
            "--bind",
            "127.0.0.1",
        ])
        .expect("parses");
        let err = c.validate().expect_err("refused");
        assert!(err.contains(var), "{var}: {err}");
    }
}

/// A replica as its own process (the binary the images ship), so it can be
/// killed with SIGKILL; started with the environment a deployment gives it.
struct Process {
    child: std::process::Child,
    sip: SocketAddr,
    api: SocketAddr,
    dir: std::path::PathBuf,
}

impl Process {
    /// Starts the replica on free ports; when another test took one of
    /// them between the probe and the bind (the suite runs in parallel),
    /// starts it again on new ones.
    async fn start(p: &Platform, node: &str) -> Self {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(p, node).await {
                Ok(process) => return process,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("replica {node} did not answer; its log:\n{log}"),
            }
        }
    }

    async fn try_start(p: &Platform, node: &str) -> Result<Self, String> {
        let dir = common::temp_dir(&format!("cluster-proc-{node}"));
        let sip = SocketAddr::new(LO, common::free_port(LO));
        let api = SocketAddr::new(LO, common::free_port(LO));
        let log = std::fs::File::create(dir.join("log")).expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard-signaling"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "LOGLEVEL",
                std::env::var("CLUSTER_TEST_LOGLEVEL").unwrap_or_else(|_| "warn".into()),
            )
            .env("NODE_NAME", node)
            .env("BIND", "127.0.0.1")
            .env("PORT", sip.port().to_string())
            .env("API_BIND", "127.0.0.1")
            .env("API_PORT", api.port().to_string())
            .env("API_TOKEN", "test-token")
            .env("DATA_DIR", &dir)
            .env("DIALPLAN_PATH", dir.join("dialplan.json"))
            .env("TRUNKS_PATH", dir.join("trunks.json"))
            .env("DATABASE_URL", p.database_url())
            .env("REDIS_ADDR", &p.servers.redis_addr)
            .env("NATS_URL", &p.servers.nats_url)
            .env("CLUSTER_SECRET", SECRET)
            .env("REDIS_PREFIX", &p.redis_prefix)
            .env("NATS_PREFIX", &p.nats_prefix)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start switchboard-signaling");
        // killed on drop, also when the wait below fails
        let mut process = Self {
            child,
            sip,
            api,
            dir,
        };
        // a debug binary on a machine running the rest of the suite may take
        // a while; a failure says what the process logged
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        loop {
            if tokio::net::TcpStream::connect(api).await.is_ok()
                && common::http(api, "GET", "/api/v1/health", None, None)
                    .await
                    .0
                    == 200
            {
                return Ok(process);
            }
            let exited = process.child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(process.dir.join("log")).unwrap_or_default();
                return Err(format!("exit {exited:?}\n{log}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(self) {
        drop(self); // SIGKILL: no shutdown, no goodbye
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("CLUSTER_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_sigkill_leaves_its_phones_reachable_and_its_calls_unlisted() {
    if let Ok(level) = std::env::var("CLUSTER_TEST_LOGLEVEL") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .try_init();
    }
    let p = Platform::new();
    let a = Process::start(&p, "a").await;
    let b = p.replica("b", |_| {}).await;
    b.create_user("alice", "alice-secret").await;
    b.create_user("carol", "carol-secret").await;
    b.create_user("dave", "dave-secret").await;
    assert_eq!(
        b.http("PUT", "/api/v1/dialplan", Some(&users_plan()))
            .await
            .0,
        200
    );
    sees_alive(&b, &["a", "b"]).await;
    let a_api = a.api;
    eventually(
        Duration::from_secs(5),
        "A routes through B",
        || async move {
            let (_, c) =
                common::http(a_api, "GET", "/api/v1/cluster", Some("test-token"), None).await;
            c["peers"]["b"].is_string()
        },
    )
    .await;
    eventually(Duration::from_secs(3), "users reach A", || async move {
        let (_, s) = common::http(a_api, "GET", "/api/v1/stats", Some("test-token"), None).await;
        s["users"] == 3
    })
    .await;

    // carol registers through A; dave (on A) calls alice (through B)
    let mut carol = SipPhone::bind(LO, a.sip).await;
    assert_eq!(carol.register("carol", "carol-secret", &[]).await.code, 200);
    let alice = SipPhone::bind(LO, b.sip).await;
    assert_eq!(alice.register("alice", "alice-secret", &[]).await.code, 200);
    let dave = SipPhone::bind(LO, a.sip).await;
    // never answered: A dies first
    let mut d = dave.dialog_to("dave", "alice");
    dave.start_invite(
        &mut d,
        "dave",
        "dave-secret",
        &sdp(LO, 4002, "sendrecv"),
        &[],
    )
    .await;
    let (inv, from) = alice.request_from(Method::Invite).await;
    assert_eq!(from, b.sip, "dave's call reaches alice through B");
    alice.answer(&inv, 180, Some("alicetag"), None).await;
    eventually(Duration::from_secs(3), "A's call listed on B", || async {
        let (_, calls) = b.http("GET", "/api/v1/calls", None).await;
        calls
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["node"] == "a"))
    })
    .await;

    a.kill9();

    // within 10 s B stops listing the dead replica's call
    let t0 = Instant::now();
    eventually(
        Duration::from_secs(14),
        "A's call leaves B's list",
        || async {
            let (_, calls) = b.http("GET", "/api/v1/calls", None).await;
            calls
                .as_array()
                .is_some_and(|l| !l.iter().any(|c| c["node"] == "a"))
        },
    )
    .await;
    assert!(t0.elapsed() <= Duration::from_secs(14));
    // and a call from B to carol goes to her own address directly
    sees_dead(&b, "a").await;
    let caller = SipPhone::bind(LO, b.sip).await;
    let call = tokio::spawn(async move {
        let mut d = caller.dialog_to("alice", "carol");
        caller
            .invite(
                &mut d,
                "alice",
                "alice-secret",
                &sdp(LO, 4004, "sendrecv"),
                &[],
            )
            .await
            .0
            .code
    });
    let (inv, from) = carol.request_from(Method::Invite).await;
    assert_eq!(from, b.sip, "A is gone: B reaches carol directly");
    carol.server = b.sip;
    carol.answer(&inv, 486, Some("c"), None).await;
    assert_eq!(call.await.expect("caller"), 486);
    b.stop().await;
    p.cleanup().await;
}

/// A phone on one TCP connection: what it sends and receives travels on
/// that connection only.
struct TcpPhone {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl TcpPhone {
    async fn connect(server: SocketAddr) -> Self {
        Self {
            stream: tokio::net::TcpStream::connect(server)
                .await
                .expect("connect"),
            buf: Vec::new(),
        }
    }

    fn addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next message on the connection; panics after 5 s.
    async fn recv(&mut self) -> Message {
        use tokio::io::AsyncReadExt;
        loop {
            if let Ok(Some(frame)) = switchboard_sip::framing::check(&self.buf, 65_536) {
                let bytes: Vec<u8> = self.buf.drain(..frame.len()).collect();
                if let Ok(m) = switchboard_sip::message::parse(&bytes) {
                    return m;
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
                .await
                .expect("a message within 5 s")
                .expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn register(&mut self, user: &str, password: &str, server: SocketAddr) -> u16 {
        let mut auth: Option<String> = None;
        for cseq in 1..=2 {
            let mut b =
                RequestBuilder::new("REGISTER", &format!("sip:{};transport=tcp", server.ip()))
                    .via("TCP", &self.addr().to_string(), &new_branch())
                    .header("Max-Forwards", "70")
                    .header("From", &format!("<sip:{user}@switchboard>;tag=t1"))
                    .header("To", &format!("<sip:{user}@switchboard>"))
                    .header("Call-ID", "tcp-reg@test")
                    .header("CSeq", &format!("{cseq} REGISTER"))
                    .header(
                        "Contact",
                        &format!("<sip:{user}@{};transport=tcp>", self.addr()),
                    )
                    .header("Expires", "300");
            if let Some(a) = &auth {
                b = b.header("Authorization", a);
            }
            self.send(&b.build()).await;
            let Message::Response(r) = self.recv().await else {
                panic!("a response");
            };
            if r.code != 401 {
                return r.code;
            }
            let ch = r
                .header_lines("WWW-Authenticate")
                .into_iter()
                .find_map(|v| Challenge::parse(v).ok())
                .expect("challenge");
            let uri = format!("sip:{};transport=tcp", server.ip());
            auth = Some(respond(&ch, "REGISTER", &uri, user, password, "7cp", 1).to_header_value());
        }
        401
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_on_tcp_through_a_gets_b_calls_on_its_own_connection() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |_| {}).await;
    let mut carol = TcpPhone::connect(a.sip).await;
    assert_eq!(carol.register("carol", "carol-secret", a.sip).await, 200);

    let alice = SipPhone::bind(LO, b.sip).await;
    let caller = tokio::spawn(async move {
        let mut d = alice.dialog_to("alice", "carol");
        alice
            .invite(
                &mut d,
                "alice",
                "alice-secret",
                &sdp(LO, 4006, "sendrecv"),
                &[],
            )
            .await
            .0
            .code
    });
    // the INVITE arrives on carol's own connection to A
    let inv = loop {
        match carol.recv().await {
            Message::Request(r) if r.method == Method::Invite => break r,
            _ => {}
        }
    };
    assert_eq!(
        inv.vias[0].transport, "TCP",
        "A's hop to carol is on TCP: {inv:?}"
    );
    assert!(
        inv.header("Record-Route")
            .is_some_and(|rr| rr.contains("sb-flow="))
    );
    let busy = switchboard_sip::response::response(&inv, 486, "Busy Here")
        .to_tag("c1")
        .build();
    carol.send(&busy).await;
    assert_eq!(
        caller.await.expect("caller"),
        486,
        "carol's answer reaches alice on B"
    );
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_limit_counts_calls_on_every_replica() {
    let p = Platform::new();
    let (a, b) = two_replicas(&p, |_| {}).await;
    let (status, body) = a
        .http(
            "PATCH",
            "/api/v1/accounts/1",
            Some(&json!({"max_concurrent_calls": 1})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    eventually(Duration::from_secs(3), "B knows the limit", || async {
        b.http("GET", "/api/v1/accounts/1", None).await.1["max_concurrent_calls"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await; // B's directory poll
    let carol = SipPhone::bind(LO, a.sip).await;
    assert_eq!(carol.register("carol", "carol-secret", &[]).await.code, 200);

    // one call on A, ringing
    let first = SipPhone::bind(LO, a.sip).await;
    let mut d = first.dialog_to("alice", "carol");
    first
        .start_invite(
            &mut d,
            "alice",
            "alice-secret",
            &sdp(LO, 4008, "sendrecv"),
            &[],
        )
        .await;
    let inv = carol.request(Method::Invite).await;
    carol.answer(&inv, 180, Some("c1"), None).await;
    // a second call of the same account on B is over the limit
    let second = SipPhone::bind(LO, b.sip).await;
    let mut d2 = second.dialog_to("alice", "carol");
    let (resp, _) = second
        .invite(
            &mut d2,
            "alice",
            "alice-secret",
            &sdp(LO, 4010, "sendrecv"),
            &[],
        )
        .await;
    assert_eq!(
        resp.code, 503,
        "the platform-wide limit refuses it: {resp:?}"
    );
    a.stop().await;
    b.stop().await;
    p.cleanup().await;
}
