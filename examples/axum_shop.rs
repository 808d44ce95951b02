//! A minimal shop service on axum and tokio: sign up customers with encrypted fields and an
//! e-mail blind index, serve a customer to staff through the RBAC policy's field view, erase a
//! customer (GDPR). Keys live in SQLite by default, or in PostgreSQL when `DATABASE_URL` is set
//! (and the `postgres` feature is on): several copies of this service can then share them.
//!
//! ```sh
//! cargo run --release --example axum_shop --features tokio      # listens on 127.0.0.1:3000
//! curl -X POST localhost:3000/customers -H 'content-type: application/json' \
//!      -d '{"id":"cus_42","name":"Jane Doe","email":"jane@example.com","phone":"+447700900123"}'
//! curl 'localhost:3000/customers?email=JANE@example.com' -H 'x-staff: emp-17' -H 'x-role: support'
//! curl -X DELETE localhost:3000/customers/cus_42 -H 'x-staff: emp-01' -H 'x-role: admin'
//! ```
//!
//! The staff headers stand in for the application's own authentication. The customer rows (ids,
//! ciphertexts, index tokens) stay in this process's memory to keep the example short; a real
//! service keeps them in its database, as text columns.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use custodian::asynchronous::AsyncCustodian;
use custodian::keys::{KeyStore, LocalRootKey};
use custodian::rbac::{Policy, Principal, Reason, RequestContext, Resource};
use custodian::record::{BlindIndex, Encrypted, Normalizer};
use custodian::{Custodian, EncryptionContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The shop every staff member and customer of this example belongs to (the RBAC tenant).
const SHOP: &str = "store-3";
const FIELDS: [&str; 3] = ["name", "email", "phone"];

/// One stored customer: only ciphertexts and the index token.
#[derive(Clone)]
struct Row {
    fields: BTreeMap<&'static str, Encrypted<String>>,
    email_token: String,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Shop {
    custodian: AsyncCustodian,
    email_index: Arc<BlindIndex>,
    policy: Arc<Policy>,
    rows: Arc<Mutex<BTreeMap<String, Row>>>,
}

#[derive(Deserialize)]
struct SignUp {
    id: String,
    name: String,
    email: String,
    phone: String,
}

#[derive(Deserialize)]
struct Lookup {
    email: String,
}

#[derive(Serialize)]
struct Shown {
    id: String,
    fields: BTreeMap<String, String>,
}

type Answer<T> = Result<T, (StatusCode, String)>;

fn context(id: &str, field: &str) -> Answer<EncryptionContext> {
    EncryptionContext::for_field("customers", id, field).map_err(bad_request)
}

fn bad_request(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, e.to_string())
}

/// Maps library errors to HTTP: an erased customer is gone (410); anything else is a server error
/// whose detail stays in the log.
fn server_error(e: custodian::Error) -> (StatusCode, String) {
    if e.is_subject_erased() {
        (StatusCode::GONE, "this customer's data was erased".into())
    } else {
        eprintln!("custodian: {e}");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

/// The caller, from the stand-in authentication headers.
fn staff(headers: &HeaderMap) -> Answer<Principal> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or((StatusCode::UNAUTHORIZED, format!("missing `{name}` header")))
    };
    Ok(Principal::new(header("x-staff")?, SHOP).with_role(header("x-role")?))
}

async fn sign_up(State(shop): State<Shop>, Json(form): Json<SignUp>) -> Answer<StatusCode> {
    let email_token = shop
        .email_index
        .token(&form.email)
        .map_err(bad_request)?
        .to_string();
    let values = [form.name, form.email, form.phone];
    let mut fields = BTreeMap::new();
    for (field, value) in FIELDS.into_iter().zip(&values) {
        let sealed = shop
            .custodian
            .seal(&form.id, &context(&form.id, field)?, value)
            .await
            .map_err(server_error)?;
        fields.insert(field, sealed);
    }
    let row = Row {
        fields,
        email_token,
    };
    let mut rows = shop.rows.lock().map_err(|_| bad_request("poisoned"))?;
    if rows.contains_key(&form.id) {
        return Err((StatusCode::CONFLICT, "customer exists".into()));
    }
    rows.insert(form.id, row);
    Ok(StatusCode::CREATED)
}

/// Finds a customer by e-mail through the blind index, then shows them as the policy allows.
async fn find_by_email(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Query(lookup): Query<Lookup>,
) -> Answer<Json<Shown>> {
    let tokens: Vec<String> = shop
        .email_index
        .search_tokens(&lookup.email)
        .map_err(bad_request)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let found = shop
        .rows
        .lock()
        .map_err(|_| bad_request("poisoned"))?
        .iter()
        .find(|(_, row)| tokens.contains(&row.email_token))
        .map(|(id, _)| id.clone());
    let id = found.ok_or((StatusCode::NOT_FOUND, "no such customer".into()))?;
    show(State(shop), headers, Path(id)).await
}

/// Shows a customer to a staff member: the policy decides, its field view redacts, and only the
/// fields the view shows are decrypted.
async fn show(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Shown>> {
    let principal = staff(&headers)?;
    let now = shop.custodian.sync().now();
    let resource = Resource::new("customer", &id, SHOP);
    let decision = shop
        .policy
        .check(&principal, "view", &resource, &RequestContext::at(now))
        .into_owned();
    if !decision.is_allowed() {
        return Err(match decision.reason() {
            Reason::StepUpRequired { within_secs, .. } => (
                StatusCode::UNAUTHORIZED,
                format!("step-up required within {within_secs} s"),
            ),
            _ => (StatusCode::FORBIDDEN, "forbidden".into()),
        });
    }
    let row = shop
        .rows
        .lock()
        .map_err(|_| bad_request("poisoned"))?
        .get(&id)
        .cloned()
        .ok_or((StatusCode::NOT_FOUND, "no such customer".into()))?;
    let mut fields = BTreeMap::new();
    for (field, sealed) in &row.fields {
        if decision.view().show(field, "").is_none() {
            continue; // hidden: never decrypted
        }
        let value: String = shop
            .custodian
            .open(sealed, &context(&id, field)?)
            .await
            .map_err(server_error)?;
        if let Some(shown) = decision.view().show(field, &value) {
            fields.insert((*field).to_owned(), shown.into_owned());
        }
    }
    Ok(Json(Shown { id, fields }))
}

/// Crypto-shreds a customer (admins only): every copy of their ciphertexts becomes unreadable.
async fn erase(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<serde_json::Value>> {
    let principal = staff(&headers)?;
    let now = shop.custodian.sync().now();
    let resource = Resource::new("customer", &id, SHOP);
    let context = RequestContext::at(now);
    let decision = shop.policy.check(&principal, "delete", &resource, &context);
    if !decision.is_allowed() {
        return Err((StatusCode::FORBIDDEN, "forbidden".into()));
    }
    let erasure = shop
        .custodian
        .erase_subject(&id)
        .await
        .map_err(server_error)?;
    if let Ok(mut rows) = shop.rows.lock()
        && let Some(row) = rows.get_mut(&id)
    {
        // The token would still link the row to the address: drop it with the data.
        row.email_token.clear();
    }
    Ok(Json(serde_json::json!({
        "subject": erasure.subject,
        "erased_at": erasure.erased_at,
        "newly_erased": erasure.newly_erased,
    })))
}

/// The service's routes over `shop`.
pub fn app(shop: Shop) -> Router {
    Router::new()
        .route("/customers", post(sign_up).get(find_by_email))
        .route("/customers/{id}", get(show).delete(erase))
        .with_state(shop)
}

/// The key store: PostgreSQL at `database_url` if given, else SQLite in `dir`.
fn key_store(
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn KeyStore>, Box<dyn std::error::Error + Send + Sync>> {
    if let Some(url) = database_url {
        #[cfg(feature = "postgres")]
        {
            let pg = custodian::postgres::Postgres::connect(url)?;
            return Ok(Arc::new(custodian::keys::PgKeyStore::open(pg)?));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(format!("DATABASE_URL `{url}` needs the `postgres` feature").into());
    }
    Ok(Arc::new(custodian::keys::SqliteKeyStore::open(
        dir.join("keys.db"),
    )?))
}

/// Builds the shared state: keys in PostgreSQL at `database_url` or else in SQLite in `dir`, the
/// root key from `root_key_file` (created on first run, mode 0600), the shop policy.
pub async fn shop(
    dir: &std::path::Path,
    root_key_file: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Shop, Box<dyn std::error::Error>> {
    let root = if root_key_file.exists() {
        LocalRootKey::from_file(root_key_file)?
    } else {
        custodian::keys::generate_key_file(root_key_file)?
    };
    // Opening a store does I/O (and migrates a new database): keep it off the runtime's threads.
    let (dir, url) = (dir.to_path_buf(), database_url.map(str::to_owned));
    let store = tokio::task::spawn_blocking(move || key_store(&dir, url.as_deref()))
        .await?
        .map_err(|e| e as Box<dyn std::error::Error>)?;
    let custodian =
        AsyncCustodian::build(Custodian::builder().with_store(store).root_key(root)).await?;
    let email_index = custodian
        .blind_index("customers.email", Normalizer::Email)
        .await?;
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))?;
    Ok(Shop {
        custodian,
        email_index: Arc::new(email_index),
        policy: Arc::new(policy),
        rows: Arc::default(),
    })
}

#[allow(
    dead_code,
    reason = "the test includes this file as a module and runs `app` itself"
)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("custodian-axum-shop");
    std::fs::create_dir_all(&dir)?;
    let database_url = std::env::var("DATABASE_URL").ok();
    let shop = shop(&dir, &dir.join("root.key"), database_url.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(shop)).await?;
    Ok(())
}
