//! Two processes share one store. After `erase_subject` returns in the parent (A), the child (B),
//! which has the customer's key cached, must refuse the customer's data within one second, must
//! not seal under the erased key for longer than that, and its seals for the re-created customer
//! must use the new key (A opens them, after A's own cache learns of the re-creation).
// Needs a store that two processes can share.
#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretKey;
use custodian::crypto::Suite;
use custodian::envelope::EncryptionContext;
use custodian::keys::{KeyError, KeyManager, KeyStore, LocalRootKey, RotationPolicy};
use data_encoding::HEXLOWER;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "CUSTODIAN_INVALIDATION_CHILD";
const RING: &str = "customers";
const SUBJECT: &str = "cus_1";
/// What the issue promises: an erasure reaches every process within one second.
const PROMISE: Duration = Duration::from_secs(1);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn ctx() -> EncryptionContext {
    EncryptionContext::for_field("customers", "1", "email").unwrap()
}

/// Opens the store named by `spec` (`sqlite:PATH` or `postgres:URL`).
fn store(spec: &str) -> Arc<dyn KeyStore> {
    match spec.split_once(':') {
        #[cfg(feature = "sqlite")]
        Some(("sqlite", path)) => Arc::new(custodian::keys::SqliteKeyStore::open(path).unwrap()),
        #[cfg(feature = "postgres")]
        Some(("postgres", url)) => Arc::new(
            custodian::keys::PgKeyStore::open(custodian::postgres::Postgres::connect(url).unwrap())
                .unwrap(),
        ),
        _ => panic!("unknown store spec `{spec}`"),
    }
}

fn manager(spec: &str) -> KeyManager {
    let root = LocalRootKey::new(&SecretKey::from_bytes([0x42; 32]));
    KeyManager::with_options(store(spec), Arc::new(root), Default::default()).unwrap()
}

fn line(out: &mut impl BufRead, tag: &str) -> String {
    let mut buf = String::new();
    loop {
        buf.clear();
        assert!(
            out.read_line(&mut buf).unwrap() > 0,
            "child ended before `{tag}`"
        );
        // libtest may have printed `test invalidation_child ... ` on the same line first.
        let marker = format!("@@{tag}");
        if let Some(at) = buf.find(&marker) {
            return buf[at + marker.len()..].trim().to_owned();
        }
    }
}

#[test]
fn invalidation_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let b = manager(&spec);
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let ciphertext = HEXLOWER.decode(line(&mut input, "ct").as_bytes()).unwrap();
    // Warm B's caches: the ring and the customer's key.
    b.open(&ctx(), &ciphertext, now()).unwrap();
    b.seal(RING, Some(SUBJECT), &ctx(), b"warm", now()).unwrap();
    println!("@@ready");
    line(&mut input, "erased");
    let started = Instant::now();
    let mut window = Vec::new();
    let refused_after = loop {
        match b.open(&ctx(), &ciphertext, now()) {
            Err(KeyError::SubjectErased { .. }) => break started.elapsed(),
            Ok(_) => {}
            Err(other) => panic!("unexpected error {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B never saw the erasure"
        );
        let sealed = b
            .seal(RING, Some(SUBJECT), &ctx(), b"during", now())
            .unwrap();
        window.push((started.elapsed(), sealed));
        std::thread::sleep(Duration::from_millis(5));
    };
    let after = b
        .seal(RING, Some(SUBJECT), &ctx(), b"after", now())
        .unwrap();
    println!("@@refused {}", refused_after.as_millis());
    for (at, sealed) in window {
        println!("@@window {} {}", at.as_millis(), HEXLOWER.encode(&sealed));
    }
    println!("@@after {}", HEXLOWER.encode(&after));
    println!("@@done");
}

/// The parent side, for one store.
fn erasure_reaches_the_other_process(spec: &str) {
    let a = manager(spec);
    a.create_ring(RING, Suite::default(), RotationPolicy::default(), now())
        .unwrap();
    let ciphertext = a
        .seal(RING, Some(SUBJECT), &ctx(), b"jane@example.com", now())
        .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(crate::test_name(module_path!(), "invalidation_child"))
        .args(["--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap());
    writeln!(to_child, "@@ct {}", HEXLOWER.encode(&ciphertext)).unwrap();
    line(&mut from_child, "ready");

    let erasure = a.erase_subject(RING, SUBJECT, now()).unwrap();
    assert!(erasure.newly_erased);
    writeln!(to_child, "@@erased").unwrap();

    let refused_ms: u64 = line(&mut from_child, "refused").parse().unwrap();
    eprintln!("{spec}: B refused the erased customer's data {refused_ms} ms after the erasure");
    assert!(
        Duration::from_millis(refused_ms) < PROMISE,
        "B served the erased customer's data for {refused_ms} ms"
    );
    let mut window = Vec::new();
    let after = loop {
        let mut buf = String::new();
        from_child.read_line(&mut buf).unwrap();
        assert!(!buf.is_empty(), "child ended early");
        if let Some(rest) = buf.trim().strip_prefix("@@window ") {
            let (ms, hex) = rest.split_once(' ').unwrap();
            window.push((
                ms.parse::<u64>().unwrap(),
                HEXLOWER.decode(hex.as_bytes()).unwrap(),
            ));
        } else if let Some(hex) = buf.trim().strip_prefix("@@after ") {
            break HEXLOWER.decode(hex.as_bytes()).unwrap();
        }
    };
    line(&mut from_child, "done");
    assert!(child.wait().unwrap().success());

    // B's seal after it saw the erasure is under the re-created key: A opens it once its own
    // cache (which holds "erased" for this customer) learns of the new generation.
    let started = Instant::now();
    loop {
        match a.open(&ctx(), &after, now()) {
            Ok(plain) => {
                assert_eq!(plain.expose_secret(), b"after");
                break;
            }
            Err(KeyError::SubjectErased { .. }) if started.elapsed() < PROMISE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(other) => panic!("A cannot open B's seal for the re-created customer: {other}"),
        }
    }
    // No seal succeeded under the erased key later than the promise.
    for (ms, sealed) in window {
        if Duration::from_millis(ms) >= PROMISE {
            assert!(
                a.open(&ctx(), &sealed, now()).is_ok(),
                "B sealed under the erased key {ms} ms after the erasure"
            );
        }
    }
    // And the erased data stays unopenable for A (the customer has a new key now, so the old
    // ciphertext fails like any ciphertext under a wrong key).
    assert!(a.open(&ctx(), &ciphertext, now()).is_err());
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_erasure_reaches_the_other_process_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    erasure_reaches_the_other_process(&format!("sqlite:{}", dir.path().join("keys.db").display()));
}

#[cfg(feature = "postgres")]
use crate::pg_support;

#[cfg(feature = "postgres")]
#[test]
fn postgres_erasure_reaches_the_other_process_within_a_second() {
    let Some(url) = pg_support::url() else { return };
    // A schema of its own, named in the URL so that the child process uses it too.
    let schema = pg_support::fresh_schema(&url);
    erasure_reaches_the_other_process(&format!("postgres:{url}?options[search_path]={schema}"));
    let erasures = pg_support::scalar(
        &url,
        format!("SELECT count(*) FROM {schema}.custodian_subject_keys WHERE erased_at IS NOT NULL"),
    );
    assert_eq!(erasures, 1, "both processes worked in schema `{schema}`");
}

/// A blind index built on B before A rotates the index ring makes tokens of the new version within
/// a second, without being built again, and still searches the old version.
#[cfg(feature = "sqlite")]
#[test]
fn a_blind_index_follows_an_index_key_rotation_made_by_another_server() {
    use custodian::Custodian;
    use custodian::record::Normalizer;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let facade = || {
        Custodian::builder()
            .key_store(custodian::keys::SqliteKeyStore::open(&path).unwrap())
            .root_key(LocalRootKey::new(&SecretKey::from_bytes([0x42; 32])))
            .build()
            .unwrap()
    };
    let (a, b) = (facade(), facade());
    let index = b
        .tenant_blind_index("customers.email", "shop-1", Normalizer::Email)
        .unwrap();
    let before = index.token("jane@example.com").unwrap();
    assert_eq!(before.version(), 1);

    let rotation = a.rotate_index_keys().unwrap();
    let started = Instant::now();
    while index.primary_version() != rotation.new_version {
        assert!(
            started.elapsed() < PROMISE,
            "B's index still makes version-1 tokens"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!(
        "B's index followed the rotation after {:?}",
        started.elapsed()
    );
    let after = index.token("jane@example.com").unwrap();
    assert_eq!(after.version(), rotation.new_version);
    assert!(!index.is_current(&before));
    let searched = index.search_tokens("Jane@Example.com").unwrap();
    assert!(searched.contains(&before) && searched.contains(&after));
    // A's own index, built after the rotation, agrees with B's.
    let a_index = a
        .tenant_blind_index("customers.email", "shop-1", Normalizer::Email)
        .unwrap();
    assert_eq!(a_index.token("jane@example.com").unwrap(), after);
}
