//! A NATS server that wants a user and password (as the Kubernetes
//! manifests run it): the credentials of `NATS_URL` are sent, a wrong
//! password is refused and reported, never taken for a connection.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::time::Duration;

use switchboard_events::{Health, Nats};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_urls_user_and_password_are_sent_and_a_wrong_one_is_refused() {
    let server = PrivateNats::start_with(&["--user", "switchboard", "--pass", "p@ss:word"]);
    let port = server.port;

    let good = Nats::connect(
        &format!("nats://switchboard:p%40ss%3Aword@127.0.0.1:{port}"),
        "auth-good",
    )
    .await
    .unwrap();
    let g = good.clone();
    wait_for(
        "connected with the URL's credentials",
        Duration::from_secs(5),
        move || g.health() == Health::Ok,
    )
    .await;
    // and it works: a request the server answers
    good.client().flush().await.unwrap();

    let bad = Nats::connect(
        &format!("nats://switchboard:wrong@127.0.0.1:{port}"),
        "auth-bad",
    )
    .await
    .unwrap();
    let without = Nats::connect(&format!("nats://127.0.0.1:{port}"), "auth-none")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (what, n) in [("a wrong password", &bad), ("no credentials", &without)] {
        match n.health() {
            Health::Ok => panic!("{what}: connected"),
            Health::Degraded(why) => assert!(
                why.to_lowercase().contains("authoriz"),
                "{what}: the reason names authorization: {why}"
            ),
        }
    }
}
