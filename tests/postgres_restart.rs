//! The PostgreSQL server is killed (SIGKILL) under a live store and started again: calls fail as
//! "store unavailable" while it is down, without hanging, and the same store works again once it
//! is back, with what was committed before the kill. A test binary of its own, because it stops
//! the server that other tests use (cargo runs test binaries one after the other).
//!
//! Needs `scripts/with-postgres` (`CUSTODIAN_PG_URL`, `CUSTODIAN_PG_DATA`, `CUSTODIAN_PG_CTL`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod pg_support;

use custodian::keys::{KeyError, KeyStore, PgKeyStore};
use custodian::postgres::Postgres;
use std::process::Command;
use std::time::Duration;

fn postmaster_pid(data: &str) -> String {
    let pid_file = std::fs::read_to_string(format!("{data}/postmaster.pid")).unwrap();
    pid_file.lines().next().unwrap().trim().to_owned()
}

#[test]
fn a_store_recovers_after_the_server_is_killed_and_restarted() {
    let Some(url) = pg_support::url() else { return };
    let (Ok(data), Ok(ctl)) = (
        std::env::var("CUSTODIAN_PG_DATA"),
        std::env::var("CUSTODIAN_PG_CTL"),
    ) else {
        panic!("CUSTODIAN_PG_DATA and CUSTODIAN_PG_CTL are set by scripts/with-postgres");
    };
    let schema = pg_support::fresh_schema(&url);
    let pool = pg_support::pool_in(&url, &schema, 2);
    let pg = {
        let _entered = pg_support::admin(&url).runtime().enter();
        Postgres::from_pool(pool)
            .unwrap()
            .with_timeout(Duration::from_secs(2))
    };
    let store = PgKeyStore::open(pg).unwrap();
    assert_eq!(
        store.put_meta_if_absent("before", b"kill").unwrap(),
        b"kill"
    );

    let pid = postmaster_pid(&data);
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Every call while the server is down is refused as unavailable (none hangs, none panics).
    let mut refused = 0;
    for _ in 0..3 {
        match store.get_meta("before") {
            Err(KeyError::StoreUnavailable(message)) => {
                assert!(
                    message.contains("reading key store value `before`"),
                    "{message}"
                );
                refused += 1;
            }
            // The kill may not have taken effect for the very first call.
            Ok(_) if refused == 0 => {}
            other => panic!("{other:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(refused >= 2);

    assert!(Command::new(&ctl).arg("start").status().unwrap().success());
    // The pool replaces its dead connections by itself.
    let mut back = None;
    for _ in 0..40 {
        match store.get_meta("before") {
            Ok(value) => {
                back = Some(value);
                break;
            }
            Err(KeyError::StoreUnavailable(_)) => std::thread::sleep(Duration::from_millis(250)),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(
        back,
        Some(Some(b"kill".to_vec())),
        "committed data survives the kill"
    );
    assert_eq!(
        store.put_meta_if_absent("after", b"restart").unwrap(),
        b"restart"
    );
}
