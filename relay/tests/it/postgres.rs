//! The PostgreSQL schema against the SQLite one, on the server the README's test command starts
//! (`STARLING_TEST_POSTGRES`). That command also runs this whole binary a second time with its
//! relays on PostgreSQL (`STARLING_TEST_STORE=postgres`).

use sqlx::Row;
use starling_relay::store::Store;
use std::collections::BTreeSet;

/// Tables, columns (with whether they take NULL and their type family) and indexes.
type Schema = (BTreeSet<(String, String, String, bool)>, BTreeSet<String>);

fn family(sql_type: &str) -> String {
    match sql_type.to_ascii_lowercase().as_str() {
        "integer" | "bigint" | "int8" => "integer".into(),
        "text" => "text".into(),
        other => other.into(),
    }
}

async fn sqlite_schema(store: &Store) -> Schema {
    let columns = sqlx::query(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk FROM sqlite_master m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let columns = columns
        .iter()
        .map(|r| {
            // A primary key column takes no NULL in either database (SQLite's pragma says 0).
            let not_null = r.get::<i64, _>(3) != 0 || r.get::<i64, _>(4) != 0;
            (r.get::<String, _>(0), r.get::<String, _>(1), family(&r.get::<String, _>(2)), !not_null)
        })
        .collect();
    (columns, indexes.into_iter().collect())
}

async fn postgres_schema(store: &Store) -> Schema {
    let columns = sqlx::query(
        "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT, is_nullable::TEXT FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::TEXT FROM pg_indexes WHERE schemaname = 'public' AND indexname NOT LIKE '%_pkey'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let columns = columns
        .iter()
        .map(|r| {
            let nullable = r.get::<String, _>(3) == "YES";
            (r.get::<String, _>(0), r.get::<String, _>(1), family(&r.get::<String, _>(2)), nullable)
        })
        .collect();
    (columns, indexes.into_iter().collect())
}

#[tokio::test]
async fn schema_matches_sqlite() {
    let Some(server) = crate::support::postgres_server() else {
        eprintln!("schema_matches_sqlite: STARLING_TEST_POSTGRES is not set (scripts/test.sh sets it); skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&dir.path().join("relay.sqlite")).await.unwrap();
    let postgres = Store::connect(&crate::support::fresh_postgres_database(&server).await).await.unwrap();
    let (lite_columns, lite_indexes) = sqlite_schema(&sqlite).await;
    let (pg_columns, pg_indexes) = postgres_schema(&postgres).await;
    assert!(lite_columns.len() > 30, "{lite_columns:?}");
    assert_eq!(
        lite_columns.symmetric_difference(&pg_columns).collect::<Vec<_>>(),
        Vec::<&(String, String, String, bool)>::new(),
        "columns differ between migrations/sqlite and migrations/postgres"
    );
    assert_eq!(lite_indexes, pg_indexes, "indexes differ");
}

/// A relay that lost the lead stores nothing more: its write transactions check the epoch it led
/// in, and a check holds the epoch row until its commit, so a new leader cannot take over between
/// a deposed leader's check and its commit.
#[tokio::test]
async fn a_deposed_leaders_writes_are_refused() {
    let Some(server) = crate::support::postgres_server() else {
        eprintln!(
            "a_deposed_leaders_writes_are_refused: STARLING_TEST_POSTGRES is not set (scripts/test.sh sets it); skipped"
        );
        return;
    };
    let store = Store::connect(&crate::support::fresh_postgres_database(&server).await).await.unwrap();
    sqlx::query("INSERT INTO relay_cluster (id, leader, epoch, secret) VALUES (1, 'a:1', 1, 's')")
        .execute(store.pool())
        .await
        .unwrap();
    let mut old = store.begin().await.unwrap();
    Store::check_fence(&mut old, 1).await.unwrap();
    // A new leader claims the lead while the old one's transaction is open: it waits for it.
    let claim = tokio::spawn({
        let store = store.clone();
        async move {
            sqlx::query("UPDATE relay_cluster SET leader = 'b:2', epoch = epoch + 1 WHERE id = 1")
                .execute(store.pool())
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!claim.is_finished(), "the lead changed under an open, fenced write");
    old.commit().await.unwrap();
    claim.await.unwrap();
    // From now on the old leader's writes fail, the new one's pass.
    let mut old = store.begin().await.unwrap();
    let refused = Store::check_fence(&mut old, 1).await;
    assert!(matches!(refused, Err(starling_relay::error::Error::Fenced(1))), "{refused:?}");
    let mut new = store.begin().await.unwrap();
    Store::check_fence(&mut new, 2).await.unwrap();
}
