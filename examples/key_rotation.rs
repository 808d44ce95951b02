//! Key rotation end to end: seal customer records, rotate the key ring, rewrap every record with a
//! progress line, destroy the old version, check everything still opens, then erase one customer.
//!
//! Run with `cargo run --example key_rotation`.

use custodian::crypto::Suite;
use custodian::envelope::{EncryptionContext, Header};
use custodian::keys::{
    KeyError, KeyManager, RewrapOutcome, RotationPolicy, SqliteKeyStore, generate_key_file,
};
use std::io::Write;

/// The bound context of one stored value: table, record and field.
fn context(record: u32) -> Result<EncryptionContext, custodian::EnvelopeError> {
    EncryptionContext::new()
        .with("table", "customers")?
        .with("record", record.to_string())?
        .with("field", "email")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    // The clock is passed in; a real service passes the current Unix time.
    let mut now = 1_700_000_000;

    // 1. A root key file (mode 0600) and an SQLite key store.
    let root = generate_key_file(dir.path().join("root.key"))?;
    let store = SqliteKeyStore::open(dir.path().join("keys.db"))?;
    let keys = KeyManager::new(store, root)?;
    keys.create_ring(
        "customers",
        Suite::default(),
        RotationPolicy::default(),
        now,
    )?;

    // 2. Seal 1,000 e-mail addresses of 250 customers, each under the customer's own key.
    let mut table: Vec<(u32, String, Vec<u8>)> = Vec::new();
    for record in 0..1_000u32 {
        let customer = format!("cus_{}", record % 250);
        let email = format!("customer{record}@example.com");
        let sealed = keys.seal(
            "customers",
            Some(&customer),
            &context(record)?,
            email.as_bytes(),
            now,
        )?;
        table.push((record, customer, sealed));
    }
    println!("sealed {} records under version 1", table.len());

    // 3. Rotate: version 2 becomes the primary at once; then the customer keys are rewrapped to
    //    it, a job apart (a rotation's own cost does not grow with the number of customers).
    now += 86_400;
    let rotation = keys.rotate("customers", now)?;
    let rewrapped = keys.rewrap_subject_keys("customers", now)?;
    println!(
        "rotated to version {}, then rewrapped {rewrapped} customer keys to it",
        rotation.new_version
    );
    let stale = table
        .iter()
        .filter(|(_, _, v)| keys.needs_rewrap(v, now).unwrap_or(true))
        .count();
    println!("{stale} records still under an old version");

    // 4. Rewrap every record (only the wrapped data key changes; payloads are not decrypted).
    let items = table
        .iter()
        .map(|(record, _, value)| Ok((*record, context(*record)?, value.clone())))
        .collect::<Result<Vec<_>, custodian::EnvelopeError>>()?;
    let total = items.len();
    let outcomes = keys.rewrap_batch(items, now, |p| {
        if p.seen % 100 == 0 || p.seen as usize == total {
            print!(
                "\rrewrapping: {}/{total} ({} rewrapped, {} current, {} failed)",
                p.seen, p.rewrapped, p.current, p.failed
            );
            let _ = std::io::stdout().flush();
        }
    });
    println!();
    for (record, outcome) in outcomes {
        match outcome {
            RewrapOutcome::Rewrapped(bytes) => table[record as usize].2 = bytes,
            RewrapOutcome::Current => {}
            RewrapOutcome::Failed(e) => return Err(e.into()),
        }
    }

    // 5. Retire version 1: decrypt-only, then disabled, then destroyed for good.
    keys.set_min_encryption_version("customers", 2, now)?;
    now += 3_600; // well past the ring's propagation time (120 s by default)
    keys.set_min_decryption_version("customers", 2, now)?;
    keys.destroy_version("customers", 1, now)?;
    let info = keys.ring_info("customers", now)?;
    for v in &info.versions {
        println!("version {}: {:?}", v.version, v.state);
    }

    // 6. Everything still opens.
    for (record, _, value) in &table {
        let email = keys.open(&context(*record)?, value, now)?;
        assert_eq!(
            email.expose_secret(),
            format!("customer{record}@example.com").as_bytes()
        );
        assert_eq!(Header::parse(value)?.key_id().version(), 2);
    }
    println!("all {} records open under version 2", table.len());

    // 7. Erase one customer (GDPR Art. 17): their records, wherever copied, become unreadable.
    now += 60;
    let erasure = keys.erase_subject("customers", "cus_7", now)?;
    println!(
        "erased `{}` (key generation {}) at {}",
        erasure.subject, erasure.generation, erasure.erased_at
    );
    let (mut erased, mut readable) = (0, 0);
    for (record, customer, value) in &table {
        match keys.open(&context(*record)?, value, now) {
            Ok(_) => readable += 1,
            Err(KeyError::SubjectErased { .. }) if customer == "cus_7" => erased += 1,
            Err(e) => return Err(e.into()),
        }
    }
    println!("{readable} records readable, {erased} records of cus_7 erased");
    for generation in keys.subject_history("customers", "cus_7")? {
        println!("cus_7 history: {generation:?}");
    }
    Ok(())
}
