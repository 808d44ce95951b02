//! Drives examples/axum_shop.rs over HTTP on 127.0.0.1: sign up, look up by e-mail as support
//! (masked) and as an admin, refused roles, erasure, and the erased customer gone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(feature = "postgres")]
mod pg_support;
#[path = "../examples/axum_shop.rs"]
mod shop;

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
    let state = shop::shop(
        dir.path(),
        &dir.path().join("root.key"),
        database_url.as_deref(),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, shop::app(state)).await });

    let json = [("content-type", "application/json")];
    let jane =
        r#"{"id":"cus_42","name":"Jane Doe","email":"jane@example.com","phone":"+447700900123"}"#;
    assert_eq!(
        request(addr, "POST", "/customers", &json, jane).await.0,
        201
    );
    assert_eq!(
        request(addr, "POST", "/customers", &json, jane).await.0,
        409
    );

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
    let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(shown["id"], "cus_42");
    assert_eq!(shown["fields"]["name"], "Jane Doe");
    let email = shown["fields"]["email"].as_str().unwrap();
    assert_ne!(email, "jane@example.com", "support sees a masked e-mail");
    assert!(email.ends_with("@example.com"), "{email}");
    assert!(
        !body.contains("7700900123"),
        "the phone is not shown in full: {body}"
    );

    // Fulfillment may not see customers at all; nobody is let in without credentials.
    let packer = [("x-staff", "emp-40"), ("x-role", "fulfillment")];
    assert_eq!(
        request(addr, "GET", "/customers/cus_42", &packer, "")
            .await
            .0,
        403
    );
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

    // Only an admin may erase; afterwards her data is gone for everyone.
    assert_eq!(
        request(addr, "DELETE", "/customers/cus_42", &support, "")
            .await
            .0,
        403
    );
    let admin = [("x-staff", "emp-01"), ("x-role", "admin")];
    let (status, body) = request(addr, "DELETE", "/customers/cus_42", &admin, "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""newly_erased":true"#), "{body}");
    let (status, _) = request(addr, "GET", "/customers/cus_42", &admin, "").await;
    assert_eq!(status, 410, "the erased customer's data cannot be opened");
}
