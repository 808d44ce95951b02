//! A small shop service on axum and tokio, doing what a shop needs from custodian: sign up
//! customers with encrypted fields and an e-mail blind index, show them to staff through the RBAC
//! policy's field views (audited), TOTP for staff with a step-up before card data, key rotation
//! with rewrap and re-index, and erasure with a receipt. Keys and MFA factors live in SQLite by
//! default, or in PostgreSQL when `DATABASE_URL` is set (and the `postgres` feature is on): several
//! copies of this service can then share them.
//!
//! ```sh
//! cargo run --release --example axum_shop --features tokio      # listens on 127.0.0.1:3000
//! curl -X POST localhost:3000/customers -H 'content-type: application/json' -d '{"id":"cus_42",
//!      "name":"Jane Doe","email":"jane@example.com","phone":"+447700900123","card":"4111111111111111"}'
//! curl 'localhost:3000/customers?email=JANE@example.com' -H 'x-staff: emp-17' -H 'x-role: support'
//! curl -X POST localhost:3000/staff/emp-50/mfa -H 'x-staff: emp-50' -H 'x-role: finance'
//! # ... add the otpauth:// URI to an authenticator app, then
//! curl -X POST localhost:3000/staff/emp-50/mfa/confirm -H 'x-staff: emp-50' -H 'x-role: finance' \
//!      -H 'content-type: application/json' -d '{"code":"123456"}'     # the app's code
//! curl -X POST localhost:3000/staff/emp-50/login ... -d '{"code":"654321"}'   # a later code
//! curl localhost:3000/customers/cus_42/card -H 'x-staff: emp-50' -H 'x-role: finance'
//! curl -X POST localhost:3000/admin/rotate -H 'x-staff: emp-01' -H 'x-role: admin'
//! curl -X DELETE localhost:3000/customers/cus_42 -H 'x-staff: emp-01' -H 'x-role: admin'
//! ```
//!
//! The staff headers stand in for the application's own authentication, and a map of MFA
//! step-ups per staff member for its sessions. The customer rows (ciphertexts and index tokens)
//! stay in this process's memory to keep the example short; a real service keeps them in its
//! database, and its rotation walks the table page by page (see `custodian::rotation`).
//!
//! Glue: the non-blank, non-comment lines that exist only to connect custodian to
//! the application (imports, state, contexts, calls and their result handling, error mapping);
//! routes, request types, the in-memory tables and the stand-in authentication are not glue.
//!
//! | feature | lines of this file | glue |
//! |---|---|---|
//! | setup: imports, stores (SQLite or PostgreSQL by one location), root key, facade, MFA, index, policy | 48-54, 62, 75-78, 335-345, 359-361 | 26 |
//! | encrypted fields (`Encrypted<String>`) + e-mail blind index | 68-69, 154, 163-165, 167, 173, 183, 187-188 | 11 |
//! | RBAC field views (`reveal`, audited), the audited delete check (`authorize`) | 220-225, 230-233, 306-308 | 13 |
//! | TOTP enrollment, login, step-up into `reveal` | 80, 229, 244-246, 258-259, 271-273 | 10 |
//! | rotation: rotate, `rewrap_in_place`, `reindex_in_place` | 284-294 | 11 |
//! | erasure with receipt | 309, 311-313 | 4 |
//! | error mapping: `ErrorKind::http_status`, `Error::public_message` | 117-127 | 11 |
//! | **total** | | **86** |

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use custodian::asynchronous::{AsyncCustodian, AsyncMfa};
use custodian::audit::ErasureReceipt;
use custodian::keys::LocalRootKey;
use custodian::mfa::{StepUp, TotpKey, Verifier};
use custodian::rbac::{Policy, Principal, Resource};
use custodian::record::{BlindIndex, Encrypted, IndexToken, Normalizer};
use custodian::{Custodian, EncryptionContext, RevealRequest, Revealed, SealedRecord, Stores};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The shop every staff member and customer of this example belongs to (the RBAC tenant).
const SHOP: &str = "store-3";
const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies/shop.toml");

/// The application's tables: sealed values by where they are stored (their context: table,
/// record id, field), and the e-mail index tokens by the context of the e-mail they index.
#[derive(Default)]
pub(crate) struct Tables {
    pub(crate) values: HashMap<EncryptionContext, Encrypted<String>>,
    pub(crate) email_tokens: HashMap<EncryptionContext, IndexToken>,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Shop {
    pub(crate) custodian: AsyncCustodian,
    mfa: AsyncMfa,
    pub(crate) email_index: Arc<BlindIndex>,
    policy: Arc<Policy>,
    pub(crate) tables: Arc<Mutex<Tables>>,
    step_ups: Arc<Mutex<HashMap<String, StepUp>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Deserialize)]
struct SignUp {
    id: String,
    name: String,
    email: String,
    phone: String,
    card: Option<String>,
}

#[derive(Deserialize)]
struct Lookup {
    email: String,
}

#[derive(Deserialize)]
struct Code {
    code: String,
}

/// An error answer: a status and a text.
pub struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// Any custodian error, by its kind, with the text a client may see (a refused one-time code is
/// "code rejected" and nothing more); server-side failures are logged.
impl<E: Into<custodian::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        let error = error.into();
        let status = StatusCode::from_u16(error.kind().http_status());
        let status = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            eprintln!("custodian: {error}");
        }
        Failure(status, error.public_message().into_owned())
    }
}

type Answer<T> = Result<T, Failure>;

fn failure(status: StatusCode, text: &str) -> Failure {
    Failure(status, text.into())
}

/// The caller, from the stand-in authentication headers.
fn staff(headers: &HeaderMap) -> Answer<Principal> {
    let header = |name| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        value.ok_or_else(|| Failure(StatusCode::UNAUTHORIZED, format!("missing `{name}` header")))
    };
    Ok(Principal::new(header("x-staff")?, SHOP).with_role(header("x-role")?))
}

/// The caller, who must be staff member `id`.
fn staff_member(headers: &HeaderMap, id: &str) -> Answer<Principal> {
    let principal = staff(headers)?;
    if principal.id() != id {
        return Err(failure(StatusCode::FORBIDDEN, "only for yourself"));
    }
    Ok(principal)
}

async fn sign_up(State(shop): State<Shop>, Json(form): Json<SignUp>) -> Answer<StatusCode> {
    let token = shop.email_index.token(&form.email)?;
    let mut fields = vec![
        ("customers", "name", form.name),
        ("customers", "email", form.email),
        ("customers", "phone", form.phone),
    ];
    fields.extend(form.card.map(|number| ("payment_cards", "number", number)));
    let mut sealed = Vec::new();
    for (table, field, value) in fields {
        let context = EncryptionContext::for_field(table, form.id.as_str(), field)?;
        let value = shop.custodian.seal(&form.id, &context, value.as_str());
        sealed.push((context.clone(), value.await?));
    }
    let email = EncryptionContext::for_field("customers", form.id.as_str(), "email")?;
    let mut tables = lock(&shop.tables);
    if tables.email_tokens.contains_key(&email) {
        return Err(failure(StatusCode::CONFLICT, "customer exists"));
    }
    tables.values.extend(sealed);
    tables.email_tokens.insert(email, token);
    Ok(StatusCode::CREATED)
}

/// Finds a customer by e-mail through the blind index, then shows them as the policy allows.
async fn find_by_email(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Query(lookup): Query<Lookup>,
) -> Answer<Json<Revealed>> {
    let tokens = shop.email_index.search_tokens(&lookup.email)?;
    let found = lock(&shop.tables)
        .email_tokens
        .iter()
        .find(|(_, token)| tokens.contains(token))
        .and_then(|(email, _)| email.get("record").map(str::to_owned));
    let id = found.ok_or_else(|| failure(StatusCode::NOT_FOUND, "no such customer"))?;
    reveal(shop, &headers, "customer", "customers", id).await
}

async fn show(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Revealed>> {
    reveal(shop, &headers, "customer", "customers", id).await
}

async fn show_card(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<Revealed>> {
    reveal(shop, &headers, "payment_card", "payment_cards", id).await
}

/// Shows record `id` of `table` (an RBAC `kind`) to the caller: the policy decides, with the
/// caller's last MFA step-up if any, only the fields its view shows are decrypted, and the audit
/// log records who saw which fields.
async fn reveal(
    shop: Shop,
    headers: &HeaderMap,
    kind: &str,
    table: &str,
    id: String,
) -> Answer<Json<Revealed>> {
    let principal = staff(headers)?;
    let mut record = SealedRecord::new(table);
    for (context, value) in lock(&shop.tables).values.iter() {
        if context.get("table") == Some(table) && context.get("record") == Some(id.as_str()) {
            record = record.field(context.get("field").unwrap_or_default(), value.clone());
        }
    }
    if record.field_names().next().is_none() {
        return Err(failure(StatusCode::NOT_FOUND, "no such record"));
    }
    let step_up = lock(&shop.step_ups).get(principal.id()).cloned();
    let resource = Resource::new(kind, &id, SHOP);
    let request = RevealRequest::new(&principal, "view", &resource).with_step_up(step_up.as_ref());
    let revealed = shop.custodian.reveal(&shop.policy, &request, &record);
    Ok(Json(revealed.await?))
}

/// Starts enrolling the caller's authenticator app. The answer, an otpauth:// URI (show it as a
/// QR code), holds the secret: it goes to this staff member only.
async fn enroll(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<String> {
    staff_member(&headers, &id)?;
    let (key, now) = (TotpKey::generate()?, shop.custodian.sync().now());
    let factor = shop.mfa.begin_enrollment(&id, "totp", key, now, None);
    let uri = factor.await?.enrollment_uri("ACME Shop", &id)?.to_uri();
    Ok(uri.expose_secret().to_owned())
}

/// Activates the factor with the first code the app shows.
async fn confirm(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(Code { code }): Json<Code>,
) -> Answer<StatusCode> {
    staff_member(&headers, &id)?;
    let now = shop.custodian.sync().now();
    shop.mfa.confirm_enrollment(&id, "totp", &code, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a code and keeps the step-up for the policy's "MFA within N seconds" rules.
async fn login(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(Code { code }): Json<Code>,
) -> Answer<StatusCode> {
    staff_member(&headers, &id)?;
    let now = shop.custodian.sync().now();
    let step_up = shop.mfa.verify(&id, "totp", &code, now).await?;
    lock(&shop.step_ups).insert(id, step_up);
    Ok(StatusCode::NO_CONTENT)
}

/// Rotates the data and index keys, then brings every stored value and e-mail token up to date
/// in place (admins only), on the blocking pool with the tables locked. A real service walks its
/// table page by page with `rewrap_all` and `reindex_all`, keeping the position to resume from.
async fn rotate(State(shop): State<Shop>, headers: HeaderMap) -> Answer<Json<serde_json::Value>> {
    if !staff(&headers)?.roles().iter().any(|role| role == "admin") {
        return Err(failure(StatusCode::FORBIDDEN, "admins only"));
    }
    let rotated = shop.custodian.blocking(move |c| {
        c.rotate()?;
        c.rotate_index_keys()?;
        let tables = &mut *lock(&shop.tables);
        let rewrapped = c.rewrap_in_place(tables.values.iter_mut());
        let (values, emails) = (&tables.values, tables.email_tokens.iter_mut());
        let emails = emails.filter_map(|(email, token)| Some((email, values.get(email)?, token)));
        let reindexed = c.reindex_in_place(&shop.email_index, emails);
        Ok(serde_json::json!({ "rewrapped": rewrapped, "reindexed": reindexed }))
    });
    Ok(Json(rotated.await?))
}

/// Crypto-shreds a customer (admins only, as the policy says; the decision is audited): every
/// copy of their ciphertexts becomes unreadable. Answers the erasure receipt, which anyone can
/// check against the published verifier key.
async fn erase(
    State(shop): State<Shop>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer<Json<ErasureReceipt>> {
    let principal = staff(&headers)?;
    let resource = Resource::new("customer", &id, SHOP);
    let request = RevealRequest::new(&principal, "delete", &resource);
    shop.custodian.authorize(&shop.policy, &request).await?;
    let erasure = shop.custodian.erase_subject_by(&id, principal.id()).await?;
    // The token would still link the row to the address: it goes with the data.
    let email = EncryptionContext::for_field("customers", id.as_str(), "email")?;
    lock(&shop.tables).email_tokens.remove(&email);
    Ok(Json(shop.custodian.erasure_receipt(&erasure).await?))
}

/// The service's routes over `shop`.
pub fn app(shop: Shop) -> Router {
    Router::new()
        .route("/customers", post(sign_up).get(find_by_email))
        .route("/customers/{id}", get(show).delete(erase))
        .route("/customers/{id}/card", get(show_card))
        .route("/staff/{id}/mfa", post(enroll))
        .route("/staff/{id}/mfa/confirm", post(confirm))
        .route("/staff/{id}/login", post(login))
        .route("/admin/rotate", post(rotate))
        .with_state(shop)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the shared state: keys and MFA factors at `location` (a PostgreSQL URL, with the
/// `postgres` feature, or a directory for SQLite), the root key from `root_key_file` (created on
/// first run, mode 0600), the shop policy. Opening a database does I/O (and migrates a new one):
/// call it on the blocking pool.
pub fn open(location: &str, root_key_file: &FsPath) -> Result<Shop, BoxError> {
    let stores = Stores::open(location)?;
    let custodian = Custodian::builder().with_store(stores.keys);
    let custodian = custodian.root_key(LocalRootKey::from_file_or_generate(root_key_file)?);
    let custodian = custodian.build()?;
    let mfa = custodian.mfa_with_store(stores.factors)?;
    Ok(Shop {
        email_index: Arc::new(custodian.blind_index("customers.email", Normalizer::Email)?),
        mfa: AsyncMfa::new(mfa, Verifier::default()),
        custodian: custodian.into(),
        policy: Arc::new(Policy::from_path(POLICY)?),
        tables: Arc::default(),
        step_ups: Arc::default(),
    })
}

#[allow(
    dead_code,
    reason = "the test includes this file as a module and runs `app` itself"
)]
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join("custodian-axum-shop");
    std::fs::create_dir_all(&dir)?;
    let location = std::env::var("DATABASE_URL").unwrap_or_else(|_| dir.display().to_string());
    let shop = tokio::task::spawn_blocking(move || open(&location, &dir.join("root.key")));
    let shop = shop.await??;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(shop)).await?;
    Ok(())
}
