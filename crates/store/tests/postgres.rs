//! The store suite (`common/`) against Postgres, each test in a database of
//! its own on `TEST_DATABASE_URL` (default: the server on 127.0.0.1:5432),
//! plus what only the shared-database backend has: start-up without a
//! server, concurrent migrations, replicas writing the same rows at once,
//! statement timeouts. The batch timings are an ignored test:
//! `cargo test -p switchboard-store --test postgres -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;
#[path = "postgres/bench.rs"]
mod bench;
#[path = "postgres/replicas.rs"]
mod replicas;
#[path = "postgres/startup.rs"]
mod startup;

store_suite!(common::TestDb::postgres());
