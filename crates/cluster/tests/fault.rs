//! Outages, with a private redis-server on a free port (the shared server is
//! never touched): start-up while Redis is down, a killed server, a frozen
//! one, and recovery on the same port.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Prefix, binding, handle_with, now_ms};
use switchboard_cluster::{Command, Error, Health, Options, ReplicaId, Shared};
use tokio::process::{Child, Command as Process};

/// Generous bound on "fails fast": the response timeout is 1 s.
const FAST: Duration = Duration::from_millis(2_000);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_redis(port: u16) -> Child {
    let child = Process::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed for the fault tests");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    for _ in 0..100 {
        if let Ok(mut c) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("private redis-server on port {port} did not start");
}

fn signal(child: &Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

async fn wait_health(s: &Shared, want: impl Fn(&Health) -> bool) {
    let mut h = s.health_watch();
    tokio::time::timeout(Duration::from_secs(10), h.wait_for(want))
        .await
        .expect("health did not change within 10 s")
        .unwrap();
}

/// Runs `op`, asserting it fails within [`FAST`]; returns the error.
async fn fails_fast<T: std::fmt::Debug>(
    what: &str,
    op: impl std::future::Future<Output = switchboard_cluster::Result<T>>,
) -> Error {
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), op)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for 10 s"));
    let took = t.elapsed();
    assert!(took < FAST, "{what} took {took:?}");
    match r {
        Ok(v) => panic!("{what} succeeded while Redis is down: {v:?}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_degrade_fail_fast_and_recover() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let p = Prefix::new(&url);
    let opts = |id: &str| Options::new(&url, &p.prefix, ReplicaId::new(id).unwrap());

    // Start-up with Redis down: a degraded handle, not an error.
    let a = Shared::connect_with(opts("a")).unwrap();
    assert!(matches!(a.health(), Health::Degraded(_)));
    fails_fast(
        "lookup before the first connection",
        a.lookup("sip:x@example.com", 0),
    )
    .await;
    wait_health(
        &a,
        |h| matches!(h, Health::Degraded(r) if r != "connecting"),
    )
    .await;
    let e = fails_fast(
        "put while known down",
        a.put_bindings("sip:x@example.com", &[binding(1, "a", now_ms() + 60_000)]),
    )
    .await;
    assert!(matches!(e, Error::Unavailable(_)), "{e}");
    assert_eq!(*a.generation().borrow(), 0);

    // The server arrives: the handle connects by itself.
    let mut server = start_redis(port).await;
    assert!(
        a.wait_ready(Duration::from_secs(10)).await,
        "never connected"
    );
    assert_eq!(*a.generation().borrow(), 1);
    let b = handle_with(opts("b")).await;
    let mut rx = a.subscribe();
    let aor = "sip:100001@example.com";
    let reg = binding(1, "b", now_ms() + 60_000);
    b.put_bindings(aor, std::slice::from_ref(&reg))
        .await
        .unwrap();
    assert_eq!(a.lookup(aor, now_ms()).await.unwrap(), vec![reg.clone()]);
    let hangup = Command::Hangup {
        call_id: "c1".into(),
    };
    deliver(&b, &mut rx, &hangup).await;

    // Killed: operations fail within the timeout, then at once.
    server.kill().await.unwrap();
    fails_fast("lookup as the server dies", a.lookup(aor, now_ms())).await;
    wait_health(&a, |h| matches!(h, Health::Degraded(_))).await;
    let t = Instant::now();
    for _ in 0..100 {
        let e = a.lookup(aor, now_ms()).await.unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
    }
    println!("100 lookups while down took {:?}", t.elapsed());
    assert!(t.elapsed() < FAST);
    fails_fast("slot while down", a.acquire_call_slot(1, "c9", 5)).await;
    fails_fast("send while down", a.send("b", &hangup)).await;
    let gen_before = *a.generation().borrow();

    // Back on the same port (empty: no persistence): a new generation, and
    // the subscription resumes.
    let mut server = start_redis(port).await;
    assert!(
        a.wait_ready(Duration::from_secs(10)).await,
        "never reconnected"
    );
    let gen_after = *a.generation().borrow();
    assert!(
        gen_after > gen_before,
        "generation {gen_before} → {gen_after}"
    );
    assert!(
        a.lookup(aor, now_ms()).await.unwrap().is_empty(),
        "not the restarted server"
    );
    assert!(b.wait_ready(Duration::from_secs(10)).await);
    b.put_bindings(aor, std::slice::from_ref(&reg))
        .await
        .unwrap();
    assert_eq!(a.lookup(aor, now_ms()).await.unwrap(), vec![reg.clone()]);
    deliver(&b, &mut rx, &Command::ConfigChanged).await;

    // Frozen (SIGSTOP): nothing answers, the socket stays open. Operations
    // end at the response timeout, then fail at once; thawed, all resumes.
    signal(&server, "-STOP");
    let e = fails_fast("lookup on a frozen server", a.lookup(aor, now_ms())).await;
    assert!(matches!(e, Error::Timeout | Error::Unavailable(_)), "{e}");
    wait_health(&a, |h| matches!(h, Health::Degraded(_))).await;
    fails_fast(
        "put on a frozen server",
        a.put_bindings(aor, std::slice::from_ref(&reg)),
    )
    .await;
    // Long enough for the supervisor to give up on the stuck connection.
    tokio::time::sleep(Duration::from_secs(4)).await;
    signal(&server, "-CONT");
    assert!(
        a.wait_ready(Duration::from_secs(10)).await,
        "never recovered from the freeze"
    );
    println!(
        "generation: {gen_before} before the kill, {gen_after} after the restart, {} after the freeze",
        *a.generation().borrow()
    );
    assert_eq!(a.lookup(aor, now_ms()).await.unwrap(), vec![reg]);
    deliver(
        &b,
        &mut rx,
        &Command::Hangup {
            call_id: "c2".into(),
        },
    )
    .await;

    let s = a.stats().snapshot();
    assert!(
        s.connected && s.reconnects >= 2 && s.unavailable >= 100,
        "{s:?}"
    );
    server.kill().await.unwrap();
}

/// Sends `cmd` from `from` to replica `a` until a subscriber takes it (the
/// subscription may still be re-establishing), then expects it on `rx`.
async fn deliver(
    from: &Shared,
    rx: &mut tokio::sync::mpsc::Receiver<switchboard_cluster::Message>,
    cmd: &Command,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if from.send("a", cmd).await.unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "subscription did not resume");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("command not delivered")
        .expect("subscription ended");
    assert_eq!(&m.command, cmd);
}
