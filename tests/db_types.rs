//! `Encrypted<T>` and `IndexToken` as column values, through real tables: rusqlite, sqlx on SQLite
//! and sqlx on PostgreSQL. Each driver writes sealed fields and tokens, finds the row again by a
//! blind-index lookup, opens what it read, and refuses malformed column values with an error.
//!
//! The PostgreSQL test needs `CUSTODIAN_PG_URL`: run
//! `scripts/with-postgres cargo test --release --all-features --test storage db_types`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::pg_support;

use custodian::keys::{LocalRootKey, MemoryKeyStore};
use custodian::postgres::sqlx::{self, Row};
use custodian::record::{BlindIndex, Encrypted, IndexToken, Normalizer, RecordError};
use custodian::{Custodian, EncryptionContext};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
}

/// What a shop keeps per customer: two sealed fields and the e-mail's index token.
struct Customer {
    id: i64,
    email: Encrypted<String>,
    address: Encrypted<Address>,
    email_idx: IndexToken,
}

struct Shop {
    custodian: Custodian,
    email_index: BlindIndex,
}

impl Shop {
    fn new() -> Shop {
        let custodian = Custodian::builder()
            .key_store(MemoryKeyStore::new())
            .root_key(LocalRootKey::random().unwrap())
            .build()
            .unwrap();
        let email_index = custodian
            .blind_index("customers.email", Normalizer::Email)
            .unwrap();
        Shop {
            custodian,
            email_index,
        }
    }

    fn customer(&self, id: i64, email: &str) -> Customer {
        let subject = format!("cus_{id}");
        Customer {
            id,
            email: self
                .custodian
                .seal(&subject, &ctx(id, "email"), &email.to_string())
                .unwrap(),
            address: self
                .custodian
                .seal(&subject, &ctx(id, "address"), &address_of(id))
                .unwrap(),
            email_idx: self.email_index.token(email).unwrap(),
        }
    }

    fn customers(&self) -> Vec<Customer> {
        [
            (1, "ann@example.com"),
            (2, "Jane@Example.com"),
            (3, "bob@example.org"),
        ]
        .into_iter()
        .map(|(id, email)| self.customer(id, email))
        .collect()
    }

    /// The tokens that find Jane, typed differently from how she signed up.
    fn jane_tokens(&self) -> Vec<IndexToken> {
        self.email_index.search_tokens(" jane@EXAMPLE.com").unwrap()
    }

    /// Checks that a row read back is Jane's and opens.
    fn assert_jane(&self, id: i64, email: &Encrypted<String>, address: &Encrypted<Address>) {
        assert_eq!(id, 2);
        assert_eq!(
            self.custodian.open(email, &ctx(id, "email")).unwrap(),
            "Jane@Example.com"
        );
        assert_eq!(
            self.custodian.open(address, &ctx(id, "address")).unwrap(),
            address_of(2)
        );
    }
}

fn ctx(id: i64, field: &str) -> EncryptionContext {
    EncryptionContext::for_field("customers", id.to_string(), field).unwrap()
}

fn address_of(id: i64) -> Address {
    Address {
        street: format!("{id} Main St"),
        city: "Leeds".into(),
    }
}

/// A blob whose first bytes are no custodian header, and strings that are no token.
const NOT_A_CIPHERTEXT: &[u8] = &[0x00, 0x01, 0x02, 0x03, 0xff];
const NOT_TOKENS: [&str; 4] = ["hello", "bi1:0:AAAAAAAA", "bi1:1:AA", "bi1:1:not base64!"];

/// The `RecordError` a driver error carries, wherever in its source chain it is.
fn record_error(error: &(dyn std::error::Error + 'static)) -> RecordError {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(record) = e.downcast_ref::<RecordError>() {
            return record.clone();
        }
        current = e.source();
    }
    panic!("no RecordError in the error chain: {error:?}");
}

mod with_rusqlite {
    use super::*;
    use rusqlite::{Connection, params, params_from_iter};

    fn table() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE customers (
                 id INTEGER PRIMARY KEY,
                 email BLOB NOT NULL,
                 address BLOB NOT NULL,
                 email_idx TEXT NOT NULL
             );
             CREATE INDEX customers_email_idx ON customers (email_idx);",
        )
        .unwrap();
        db
    }

    #[test]
    fn round_trip_and_lookup_by_token() {
        let shop = Shop::new();
        let db = table();
        let customers = shop.customers();
        for c in &customers {
            db.execute(
                "INSERT INTO customers (id, email, address, email_idx) VALUES (?1, ?2, ?3, ?4)",
                params![c.id, c.email, c.address, c.email_idx],
            )
            .unwrap();
        }

        // Stored as the binary ciphertext and the token's text form.
        let (email_type, stored, idx_type, idx): (String, Vec<u8>, String, String) = db
            .query_row(
                "SELECT typeof(email), email, typeof(email_idx), email_idx FROM customers WHERE id = 2",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(email_type, "blob");
        assert_eq!(stored, customers[1].email.as_bytes());
        assert_eq!(idx_type, "text");
        assert_eq!(idx, customers[1].email_idx.to_string());

        // `IN (...)` with every live index-key version's token.
        let tokens = shop.jane_tokens();
        let placeholders = vec!["?"; tokens.len()].join(", ");
        let sql = format!(
            "SELECT id, email, address, email_idx FROM customers WHERE email_idx IN ({placeholders})"
        );
        let mut statement = db.prepare(&sql).unwrap();
        let rows: Vec<(i64, Encrypted<String>, Encrypted<Address>, IndexToken)> = statement
            .query_map(params_from_iter(tokens.iter()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 1, "one customer is Jane");
        let (id, email, address, idx) = &rows[0];
        assert_eq!(email, &customers[1].email);
        assert_eq!(idx, &customers[1].email_idx);
        shop.assert_jane(*id, email, address);

        // `= ?` with one token.
        let id: i64 = db
            .query_row(
                "SELECT id FROM customers WHERE email_idx = ?1",
                [&customers[0].email_idx],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(id, 1);
    }

    #[test]
    fn a_text_ciphertext_in_the_column_still_reads() {
        let shop = Shop::new();
        let db = table();
        let jane = shop.customer(2, "Jane@Example.com");
        db.execute(
            "INSERT INTO customers VALUES (2, ?1, ?2, ?3)",
            params![jane.email.to_text(), jane.address.to_text(), jane.email_idx],
        )
        .unwrap();
        let (email, address): (Encrypted<String>, Encrypted<Address>) = db
            .query_row("SELECT email, address FROM customers", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(email, jane.email);
        shop.assert_jane(2, &email, &address);
    }

    #[test]
    fn malformed_column_values_are_errors() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (v)").unwrap();
        let read_ciphertext = |db: &Connection| {
            db.query_row("SELECT v FROM t", [], |r| r.get::<_, Encrypted<String>>(0))
        };
        let read_token =
            |db: &Connection| db.query_row("SELECT v FROM t", [], |r| r.get::<_, IndexToken>(0));

        for bad in [
            rusqlite::types::Value::Blob(NOT_A_CIPHERTEXT.to_vec()),
            rusqlite::types::Value::Blob(Vec::new()),
            rusqlite::types::Value::Text("hello".into()),
            rusqlite::types::Value::Text("cst1:AAAA".into()),
        ] {
            db.execute("DELETE FROM t", []).unwrap();
            db.execute("INSERT INTO t VALUES (?1)", [&bad]).unwrap();
            let err = read_ciphertext(&db).unwrap_err();
            assert!(
                matches!(record_error(&err), RecordError::Envelope(_)),
                "{bad:?}: {err}"
            );
        }
        // A number or NULL is neither: the driver's type error.
        for other in ["7", "NULL"] {
            db.execute("DELETE FROM t", []).unwrap();
            db.execute(&format!("INSERT INTO t VALUES ({other})"), [])
                .unwrap();
            assert!(matches!(
                read_ciphertext(&db).unwrap_err(),
                rusqlite::Error::InvalidColumnType(..)
            ));
            assert!(matches!(
                read_token(&db).unwrap_err(),
                rusqlite::Error::InvalidColumnType(..)
            ));
        }

        for bad in NOT_TOKENS {
            db.execute("DELETE FROM t", []).unwrap();
            db.execute("INSERT INTO t VALUES (?1)", [bad]).unwrap();
            let err = read_token(&db).unwrap_err();
            assert!(
                matches!(record_error(&err), RecordError::MalformedToken(_)),
                "{bad}: {err}"
            );
        }
    }
}

mod with_sqlx_sqlite {
    use super::*;
    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

    /// A value of each SQLite storage class a column may hold.
    enum Value {
        Blob(Vec<u8>),
        Text(&'static str),
        Int(i64),
        Null,
    }

    /// One connection: every connection to `sqlite::memory:` is a database of its own.
    async fn pool() -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    async fn table() -> SqlitePool {
        let pool = pool().await;
        sqlx::raw_sql(
            "CREATE TABLE customers (
                 id INTEGER PRIMARY KEY,
                 email BLOB NOT NULL,
                 address BLOB NOT NULL,
                 email_idx TEXT NOT NULL
             )",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool
    }

    #[tokio::test]
    async fn round_trip_and_lookup_by_token() {
        let shop = Shop::new();
        let pool = table().await;
        let customers = shop.customers();
        for c in &customers {
            sqlx::query(
                "INSERT INTO customers (id, email, address, email_idx) VALUES (?, ?, ?, ?)",
            )
            .bind(c.id)
            .bind(&c.email)
            .bind(&c.address)
            .bind(&c.email_idx)
            .execute(&pool)
            .await
            .unwrap();
        }

        let row = sqlx::query(
            "SELECT typeof(email), email, typeof(email_idx), email_idx FROM customers WHERE id = 2",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>(0), "blob");
        assert_eq!(row.get::<Vec<u8>, _>(1), customers[1].email.as_bytes());
        assert_eq!(row.get::<String, _>(2), "text");
        assert_eq!(row.get::<String, _>(3), customers[1].email_idx.to_string());

        let tokens = shop.jane_tokens();
        let placeholders = vec!["?"; tokens.len()].join(", ");
        let sql = format!(
            "SELECT id, email, address, email_idx FROM customers WHERE email_idx IN ({placeholders})"
        );
        let mut query = sqlx::query_as::<_, (i64, Encrypted<String>, Encrypted<Address>, IndexToken)>(
            sqlx::AssertSqlSafe(sql),
        );
        for token in &tokens {
            query = query.bind(token);
        }
        let rows = query.fetch_all(&pool).await.unwrap();
        assert_eq!(rows.len(), 1, "one customer is Jane");
        let (id, email, address, idx) = &rows[0];
        assert_eq!(email, &customers[1].email);
        assert_eq!(idx, &customers[1].email_idx);
        shop.assert_jane(*id, email, address);

        let id: i64 = sqlx::query_scalar("SELECT id FROM customers WHERE email_idx = ?")
            .bind(&customers[0].email_idx)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(id, 1);
    }

    #[tokio::test]
    async fn a_text_ciphertext_in_the_column_still_reads() {
        let shop = Shop::new();
        let pool = table().await;
        let jane = shop.customer(2, "Jane@Example.com");
        sqlx::query("INSERT INTO customers VALUES (2, ?, ?, ?)")
            .bind(jane.email.to_text())
            .bind(jane.address.to_text())
            .bind(&jane.email_idx)
            .execute(&pool)
            .await
            .unwrap();
        let (email, address): (Encrypted<String>, Encrypted<Address>) =
            sqlx::query_as("SELECT email, address FROM customers")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(email, jane.email);
        shop.assert_jane(2, &email, &address);
    }

    #[tokio::test]
    async fn malformed_column_values_are_errors() {
        let pool = pool().await;
        sqlx::raw_sql("CREATE TABLE t (v)")
            .execute(&pool)
            .await
            .unwrap();
        async fn put(pool: &SqlitePool, value: Value) {
            sqlx::raw_sql("DELETE FROM t").execute(pool).await.unwrap();
            let insert = sqlx::query("INSERT INTO t VALUES (?)");
            match value {
                Value::Blob(bytes) => insert.bind(bytes),
                Value::Text(text) => insert.bind(text),
                Value::Int(n) => insert.bind(n),
                Value::Null => insert.bind(None::<i64>),
            }
            .execute(pool)
            .await
            .unwrap();
        }
        async fn read<T>(pool: &SqlitePool) -> sqlx::Error
        where
            T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
                + sqlx::Type<sqlx::Sqlite>
                + Send
                + Unpin
                + std::fmt::Debug,
        {
            sqlx::query_scalar::<_, T>("SELECT v FROM t")
                .fetch_one(pool)
                .await
                .unwrap_err()
        }

        for bad in [NOT_A_CIPHERTEXT.to_vec(), Vec::new()] {
            put(&pool, Value::Blob(bad)).await;
            let err = read::<Encrypted<String>>(&pool).await;
            assert!(
                matches!(record_error(&err), RecordError::Envelope(_)),
                "{err}"
            );
        }
        for bad in ["hello", "cst1:AAAA"] {
            put(&pool, Value::Text(bad)).await;
            let err = read::<Encrypted<String>>(&pool).await;
            assert!(
                matches!(record_error(&err), RecordError::Envelope(_)),
                "{bad}: {err}"
            );
        }
        for bad in NOT_TOKENS {
            put(&pool, Value::Text(bad)).await;
            let err = read::<IndexToken>(&pool).await;
            assert!(
                matches!(record_error(&err), RecordError::MalformedToken(_)),
                "{bad}: {err}"
            );
        }
        // A number or NULL is neither: sqlx refuses it before decoding.
        for other in [Value::Int(7), Value::Null] {
            put(&pool, other).await;
            assert!(matches!(
                read::<Encrypted<String>>(&pool).await,
                sqlx::Error::ColumnDecode { .. }
            ));
            assert!(matches!(
                read::<IndexToken>(&pool).await,
                sqlx::Error::ColumnDecode { .. }
            ));
        }
    }
}

mod with_sqlx_postgres {
    use super::*;
    use sqlx::AssertSqlSafe;
    use sqlx::postgres::PgPool;

    #[test]
    fn round_trip_lookup_by_token_and_malformed_values() {
        let Some(url) = pg_support::url() else { return };
        let schema = pg_support::fresh_schema(&url);
        let pool = pg_support::pool_in(&url, &schema, 2);
        pg_support::admin(&url)
            .runtime()
            .block_on(round_trip(&pool, &schema));
        pg_support::admin(&url)
            .runtime()
            .block_on(malformed(&pool, &schema));
    }

    async fn round_trip(pool: &PgPool, schema: &str) {
        let shop = Shop::new();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {schema}.customers (
                 id BIGINT PRIMARY KEY,
                 email BYTEA NOT NULL,
                 address BYTEA NOT NULL,
                 email_idx TEXT NOT NULL
             )"
        )))
        .execute(pool)
        .await
        .unwrap();
        let customers = shop.customers();
        for c in &customers {
            sqlx::query(
                "INSERT INTO customers (id, email, address, email_idx) VALUES ($1, $2, $3, $4)",
            )
            .bind(c.id)
            .bind(&c.email)
            .bind(&c.address)
            .bind(&c.email_idx)
            .execute(pool)
            .await
            .unwrap();
        }

        let (stored, idx): (Vec<u8>, String) =
            sqlx::query_as("SELECT email, email_idx FROM customers WHERE id = 2")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(stored, customers[1].email.as_bytes());
        assert_eq!(idx, customers[1].email_idx.to_string());

        // `= ANY($1)` with all of `search_tokens` bound as one `text[]`.
        let rows: Vec<(i64, Encrypted<String>, Encrypted<Address>, IndexToken)> = sqlx::query_as(
            "SELECT id, email, address, email_idx FROM customers WHERE email_idx = ANY($1)",
        )
        .bind(shop.jane_tokens())
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(rows.len(), 1, "one customer is Jane");
        let (id, email, address, idx) = &rows[0];
        assert_eq!(email, &customers[1].email);
        assert_eq!(idx, &customers[1].email_idx);
        shop.assert_jane(*id, email, address);

        let id: i64 = sqlx::query_scalar("SELECT id FROM customers WHERE email_idx = $1")
            .bind(&customers[0].email_idx)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(id, 1);

        // A token array comes back as tokens.
        let all: Vec<IndexToken> =
            sqlx::query_scalar("SELECT array_agg(email_idx ORDER BY id) FROM customers")
                .fetch_one(pool)
                .await
                .unwrap();
        let expected: Vec<IndexToken> = customers.iter().map(|c| c.email_idx.clone()).collect();
        assert_eq!(all, expected);
    }

    async fn malformed(pool: &PgPool, schema: &str) {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE TABLE {schema}.t (b BYTEA, s TEXT, n BIGINT)"
        )))
        .execute(pool)
        .await
        .unwrap();
        async fn put(pool: &PgPool, b: &[u8], s: &str) {
            sqlx::raw_sql("DELETE FROM t").execute(pool).await.unwrap();
            sqlx::query("INSERT INTO t VALUES ($1, $2, 7)")
                .bind(b)
                .bind(s)
                .execute(pool)
                .await
                .unwrap();
        }
        async fn read<T>(pool: &PgPool, column: &str) -> sqlx::Error
        where
            T: for<'r> sqlx::Decode<'r, sqlx::Postgres>
                + sqlx::Type<sqlx::Postgres>
                + Send
                + Unpin
                + std::fmt::Debug,
        {
            sqlx::query_scalar::<_, T>(AssertSqlSafe(format!("SELECT {column} FROM t")))
                .fetch_one(pool)
                .await
                .unwrap_err()
        }

        for (bad_bytes, bad_token) in [
            (NOT_A_CIPHERTEXT, NOT_TOKENS[0]),
            (&[][..], NOT_TOKENS[1]),
            (&b"cst1:AAAA"[..], NOT_TOKENS[2]),
            (NOT_A_CIPHERTEXT, NOT_TOKENS[3]),
        ] {
            put(pool, bad_bytes, bad_token).await;
            let err = read::<Encrypted<String>>(pool, "b").await;
            assert!(
                matches!(record_error(&err), RecordError::Envelope(_)),
                "{bad_bytes:?}: {err}"
            );
            let err = read::<IndexToken>(pool, "s").await;
            assert!(
                matches!(record_error(&err), RecordError::MalformedToken(_)),
                "{bad_token}: {err}"
            );
        }
        // Declared column types are checked: a ciphertext is not read from text, nor a token from
        // a number.
        for (column, err) in [
            ("s", read::<Encrypted<String>>(pool, "s").await),
            ("n", read::<IndexToken>(pool, "n").await),
        ] {
            assert!(
                matches!(err, sqlx::Error::ColumnDecode { .. }),
                "{column}: {err}"
            );
        }
    }
}
