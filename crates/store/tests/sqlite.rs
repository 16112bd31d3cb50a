//! The store suite (`common/`) against SQLite: each test on a file database
//! in its own temporary directory. Plus what only SQLite has: the in-memory
//! database and the data directory.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use switchboard_store::{DEFAULT_ACCOUNT_ID, Store};

store_suite!(common::TestDb::sqlite());

#[tokio::test]
async fn memory_store_has_the_schema_and_is_private() {
    let a = Store::open_sqlite_memory().await.unwrap();
    let b = Store::open_sqlite_memory().await.unwrap();
    assert_eq!(a.kind(), "sqlite");
    a.health().await.unwrap();
    a.put_trunk("t", "{}").await.unwrap();
    assert_eq!(a.list_accounts().await.unwrap()[0].id, DEFAULT_ACCOUNT_ID);
    assert_eq!(a.list_trunks().await.unwrap().len(), 1);
    assert_eq!(b.list_trunks().await.unwrap(), []);
}

#[tokio::test]
async fn open_creates_the_data_directory() {
    let dir = common::TempDir::new("nested");
    let data_dir = dir.0.join("nested").join("data");
    let store = Store::open_sqlite(&data_dir).await.unwrap();
    store.health().await.unwrap();
    assert!(data_dir.join("switchboard.db").exists());
    store.close().await;
}
