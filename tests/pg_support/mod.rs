//! PostgreSQL for tests: the server `scripts/with-postgres` started (`CUSTODIAN_PG_URL`), and a
//! fresh schema per store so that every test starts empty. Each test file uses part of it.
#![allow(dead_code)]

use custodian::keys::{KeyStore, PgKeyStore};
use custodian::postgres::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use custodian::postgres::sqlx::{self, AssertSqlSafe};
use custodian::postgres::{Postgres, sqlx::postgres::PgPool};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The server's URL; `None` (after a loud notice) when unset outside CI. In CI (`CI` set) a
/// missing server fails the test: it must never pass by skipping.
pub fn url() -> Option<String> {
    match std::env::var("CUSTODIAN_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "CUSTODIAN_PG_URL is not set but CI is: run the tests through `scripts/with-postgres cargo test --release --all-features`"
        ),
        _ => {
            eprintln!(
                "\n!!! SKIPPED: PostgreSQL tests need a server. Run them with\n!!!   scripts/with-postgres cargo test --release --all-features\n"
            );
            None
        }
    }
}

/// One handle for administration (creating schemas), with its own runtime, for the whole run.
pub fn admin(url: &str) -> &'static Postgres {
    static ADMIN: OnceLock<Postgres> = OnceLock::new();
    ADMIN.get_or_init(|| Postgres::connect(url).expect("admin connection"))
}

/// Runs one administrative statement.
pub fn execute(url: &str, sql: String) {
    let admin = admin(url);
    admin
        .runtime()
        .block_on(sqlx::query(AssertSqlSafe(sql)).execute(admin.pool()))
        .expect("administrative statement");
}

/// Runs one administrative query that returns a number.
pub fn scalar(url: &str, sql: String) -> i64 {
    let admin = admin(url);
    admin
        .runtime()
        .block_on(sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).fetch_one(admin.pool()))
        .expect("administrative query")
}

/// A new, empty schema; its name.
pub fn fresh_schema(url: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let schema = format!(
        "custodian_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    execute(url, format!("CREATE SCHEMA {schema}"));
    schema
}

/// A pool whose connections use `schema`, on the admin runtime.
pub fn pool_in(url: &str, schema: &str, max_connections: u32) -> PgPool {
    let options = PgConnectOptions::from_str(url)
        .expect("CUSTODIAN_PG_URL")
        .options([("search_path", schema)]);
    let _entered = admin(url).runtime().enter();
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy_with(options)
}

/// A handle on `schema` (as another application server would have), with a timeout long enough
/// for a loaded CI machine.
pub fn handle_in(url: &str, schema: &str) -> Postgres {
    let pool = pool_in(url, schema, 4);
    let _entered = admin(url).runtime().enter();
    Postgres::from_pool(pool)
        .expect("inside the admin runtime")
        .with_timeout(Duration::from_secs(30))
}

/// A fresh, empty key store.
pub fn fresh_key_store(url: &str) -> Arc<dyn KeyStore> {
    let schema = fresh_schema(url);
    Arc::new(PgKeyStore::open(handle_in(url, &schema)).expect("open PgKeyStore"))
}
