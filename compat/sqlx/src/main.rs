//! Builds only if custodian (default features, with its SQLite store) and sqlx (with SQLite and
//! PostgreSQL) share one dependency graph: both link the one `libsqlite3-sys` that sqlx 0.9 uses.
//! Running it seals with custodian on SQLite and reads SQLite through sqlx in the same process.

use custodian::Custodian;
use custodian::keys::{LocalRootKey, SqliteKeyStore};
use sqlx::Connection;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("custodian-sqlx-compat-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let keys = dir.join("keys.db");
    let custodian = Custodian::builder()
        .key_store(SqliteKeyStore::open(&keys)?)
        .root_key(LocalRootKey::random()?)
        .build()?;
    let context = custodian::EncryptionContext::for_field("customers", "42", "email")?;
    let sealed = custodian.encrypt("cus_42", &context, b"jane@example.com")?;

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", keys.display())).await?;
    let rings: i64 = sqlx::query_scalar("SELECT count(*) FROM rings")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(rings, 2, "the facade creates its data and blind-index rings");
    println!("custodian and sqlx share one graph: sealed {} bytes, sqlx saw {rings} rings", sealed.len());
    Ok(())
}
