//! Drives examples/axum_shop.rs over HTTP on 127.0.0.1, every flow: sign up, look up by e-mail as
//! support (masked) and as an admin, refused roles, a card read that needs an MFA step-up (TOTP
//! enrollment, a wrong code, login), key rotation with rewrap and re-index, erasure with a receipt
//! that verifies, and the erased customer gone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "postgres")]
use crate::pg_support;
#[path = "../examples/axum_shop.rs"]
mod shop;

use custodian::audit::{CheckpointVerifier, ErasureReceipt, verify_receipt};
use custodian::mfa::OtpauthUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_service_over_http_on_sqlite() {
    the_shop_service_over_http(None).await;
}

/// The same service with its keys in PostgreSQL (`DATABASE_URL` in the example).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_service_over_http_on_postgres() {
    let Some(url) = pg_support::url() else {
        return;
    };
    let schema = tokio::task::spawn_blocking({
        let url = url.clone();
        move || pg_support::fresh_schema(&url)
    })
    .await
    .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    the_shop_service_over_http(Some(format!("{url}{sep}options[search_path]={schema}"))).await;
}

async fn the_shop_service_over_http(database_url: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let state = tokio::task::spawn_blocking(move || {
        let location = database_url.unwrap_or_else(|| path.display().to_string());
        shop::open(&location, &path.join("root.key"))
    })
    .await
    .unwrap()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn({
        let state = state.clone();
        async move { axum::serve(listener, shop::app(state)).await }
    });

    let json = [("content-type", "application/json")];
    let jane = r#"{"id":"cus_42","name":"Jane Doe","email":"jane@example.com","phone":"+447700900123","card":"4111111111111111"}"#;
    assert_eq!(
        request(addr, "POST", "/customers", &json, jane).await.0,
        201
    );
    assert_eq!(
        request(addr, "POST", "/customers", &json, jane).await.0,
        409
    );
    let bob =
        r#"{"id":"cus_7","name":"Bob Roe","email":"bob@example.org","phone":"+447700900456"}"#;
    assert_eq!(request(addr, "POST", "/customers", &json, bob).await.0, 201);

    // Support finds her by e-mail, spelt differently, and sees the masked view.
    let support = [("x-staff", "emp-17"), ("x-role", "support")];
    let (status, body) = request(
        addr,
        "GET",
        "/customers?email=%20JANE@Example.com",
        &support,
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let shown = fields(&body);
    assert_eq!(shown["name"], "Jane Doe");
    let email = &shown["email"];
    assert_ne!(email, "jane@example.com", "support sees a masked e-mail");
    assert!(email.ends_with("@example.com"), "{email}");
    assert!(
        !body.contains("7700900123"),
        "the phone is not shown: {body}"
    );
    // An admin inherits support's view of customers: name in full, e-mail masked, no phone (full
    // PII needs a ticket, which this service does not take).
    let admin = [("x-staff", "emp-01"), ("x-role", "admin")];
    let (status, body) = request(addr, "GET", "/customers/cus_42", &admin, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fields(&body)["name"], "Jane Doe");
    assert_eq!(fields(&body)["email"], *email);
    assert!(!fields(&body).contains_key("phone"), "{body}");

    // Fulfillment may not see customers at all; nobody is let in without credentials.
    let packer = [("x-staff", "emp-40"), ("x-role", "fulfillment")];
    let (status, body) = request(addr, "GET", "/customers/cus_42", &packer, "").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        request(addr, "GET", "/customers/cus_42", &[], "").await.0,
        401
    );
    assert_eq!(
        request(
            addr,
            "GET",
            "/customers?email=nobody@example.com",
            &support,
            ""
        )
        .await
        .0,
        404
    );

    // Finance sees cards only after an MFA step-up: 401 until the staff member logs in with a code.
    let finance = [
        ("x-staff", "emp-50"),
        ("x-role", "finance"),
        ("content-type", "application/json"),
    ];
    let (status, body) = request(addr, "GET", "/customers/cus_42/card", &finance, "").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("step-up"), "{body}");
    // Nobody enrolls for someone else.
    assert_eq!(
        request(addr, "POST", "/staff/emp-50/mfa", &support, "")
            .await
            .0,
        403
    );
    let (status, uri) = request(addr, "POST", "/staff/emp-50/mfa", &finance, "").await;
    assert_eq!(status, 200, "{uri}");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let app = OtpauthUri::parse(&uri).unwrap().to_totp_key().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = |at: u64| {
        format!(
            r#"{{"code":"{}"}}"#,
            app.code_at(at).unwrap().expose_secret()
        )
    };
    let (status, body) = request(
        addr,
        "POST",
        "/staff/emp-50/mfa/confirm",
        &finance,
        &code(now),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        request(addr, "GET", "/customers/cus_42/card", &finance, "")
            .await
            .0,
        401,
        "an enrollment is not a login"
    );
    // A wrong code gets the coarse answer and nothing more. (Each digit of the next step's code
    // shifted by one: never that code.)
    let right = app.code_at(now + 30).unwrap().expose_secret().to_owned();
    let wrong: String = right
        .chars()
        .map(|d| char::from_digit((d.to_digit(10).unwrap() + 1) % 10, 10).unwrap())
        .collect();
    let (status, body) = request(
        addr,
        "POST",
        "/staff/emp-50/login",
        &finance,
        &format!(r#"{{"code":"{wrong}"}}"#),
    )
    .await;
    assert_eq!((status, body.as_str()), (401, "code rejected"));
    // The next step's code (the window accepts one step ahead; the confirmed one is used up).
    let (status, body) = request(
        addr,
        "POST",
        "/staff/emp-50/login",
        &finance,
        &code(now + 30),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = request(addr, "GET", "/customers/cus_42/card", &finance, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fields(&body)["number"], "4111111111111111");
    // The reveals are in the audit log, without the values.
    let trail = state
        .custodian
        .sync()
        .audit()
        .export_json_lines(0..state.custodian.sync().audit().tree_size().unwrap())
        .unwrap();
    assert!(trail.contains(r#""fields":["number"]"#), "{trail}");
    assert!(!trail.contains("4111111111111111"));

    // Rotation: only admins; afterwards every value is under the new keys and still opens, and
    // every e-mail token is current (and still finds its customer).
    assert_eq!(
        request(addr, "POST", "/admin/rotate", &support, "").await.0,
        403
    );
    let (status, body) = request(addr, "POST", "/admin/rotate", &admin, "").await;
    assert_eq!(status, 200, "{body}");
    let rotated: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rotated["rewrapped"]["changed"], 7, "{body}");
    assert_eq!(rotated["rewrapped"]["failed"], 0, "{body}");
    assert_eq!(rotated["reindexed"]["changed"], 2, "{body}");
    assert_eq!(rotated["reindexed"]["failed"], 0, "{body}");
    {
        let tables = state.tables.lock().unwrap();
        assert_eq!(tables.values.len(), 7);
        for (context, value) in &tables.values {
            let c = state.custodian.sync();
            assert!(!c.needs_rewrap(value.as_bytes()).unwrap(), "{context:?}");
            let opened = c.open(value, context).unwrap();
            if context.get("field") == Some("email") {
                assert!(["jane@example.com", "bob@example.org"].contains(&opened.as_str()));
            }
        }
        assert_eq!(tables.email_tokens.len(), 2);
        for token in tables.email_tokens.values() {
            assert!(state.email_index.is_current(token));
        }
    }
    let (status, body) = request(addr, "GET", "/customers?email=bob@example.org", &admin, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(fields(&body)["name"], "Bob Roe");

    // Only an admin may erase; the receipt verifies with the published key; afterwards her data
    // is gone for everyone, and her e-mail finds nobody.
    assert_eq!(
        request(addr, "DELETE", "/customers/cus_42", &support, "")
            .await
            .0,
        403
    );
    let (status, body) = request(addr, "DELETE", "/customers/cus_42", &admin, "").await;
    assert_eq!(status, 200, "{body}");
    let receipt: ErasureReceipt = serde_json::from_str(&body).unwrap();
    let verifier = CheckpointVerifier::from_verifier_key(
        &state
            .custodian
            .sync()
            .checkpoint_signer()
            .verifier()
            .verifier_key(),
    )
    .unwrap();
    verify_receipt(&receipt, &verifier, now + 60).unwrap();
    assert_eq!(receipt.entry.event.subject.as_deref(), Some("cus_42"));
    let (status, _) = request(addr, "GET", "/customers/cus_42", &admin, "").await;
    assert_eq!(status, 410, "the erased customer's data cannot be opened");
    let (status, _) = request(addr, "GET", "/customers/cus_42/card", &finance, "").await;
    assert_eq!(status, 410, "nor her card, with a fresh step-up");
    let (status, _) = request(addr, "GET", "/customers?email=jane@example.com", &admin, "").await;
    assert_eq!(status, 404);
    let (status, _) = request(addr, "GET", "/customers/cus_7", &admin, "").await;
    assert_eq!(status, 200, "the other customer is untouched");
}

/// The shown fields of a reveal's JSON answer, by name.
fn fields(body: &str) -> std::collections::BTreeMap<String, String> {
    let revealed: serde_json::Value = serde_json::from_str(body).unwrap();
    revealed["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
