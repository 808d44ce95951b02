//! The shop demo: 10,000 customers with encrypted e-mail, address and phone in a real SQLite
//! database, a blind-index lookup, an access-checked and audited reveal (masked, in full with a
//! ticket, and denied), key rotation with a rewrap of every stored value, the erasure of one
//! customer, and the tail of the audit trail checked against a signed checkpoint.
//!
//! `cargo run --release --example shop [folder]`
//!
//! With no folder it works in a temporary one that is deleted at the end; with a folder it keeps
//! the root key file, the key store, the audit log and the shop database there (run it twice to
//! reopen them).

use custodian::audit::{CheckpointVerifier, verify, verify_receipt};
use custodian::keys::Erasure;
use custodian::keys::{LocalRootKey, SqliteKeyStore, generate_key_file};
use custodian::mask;
use custodian::rbac::{Justification, Policy, Principal, Resource};
use custodian::record::Normalizer;
use custodian::rotation::{Rewritten, StoredValue};
use custodian::{Custodian, EncryptionContext, RevealRequest, SealedRecord};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const CUSTOMERS: usize = 10_000;
const FIELDS: [&str; 3] = ["email", "address", "phone"];

#[derive(Debug, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
    postcode: String,
    country: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let (folder, _temporary) = match std::env::args_os().nth(1) {
        Some(folder) => {
            std::fs::create_dir_all(&folder)?;
            (PathBuf::from(folder), None)
        }
        None => {
            let dir = tempfile::tempdir()?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    println!("working in {}", folder.display());

    // 1. Root key file (0600), key store, audit log and shop database, all inside the folder.
    let key_file = folder.join("root.key");
    let root = if key_file.exists() {
        LocalRootKey::from_file(&key_file)?
    } else {
        generate_key_file(&key_file)?
    };
    let custodian = Custodian::builder()
        .key_store(SqliteKeyStore::open(folder.join("keys.db"))?)
        .root_key(root)
        // The audit log lives in keys.db too: key operations commit their entries with them.
        .audit_origin("shop.example/audit")
        .build()?;
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))?;
    // Tenant-scoped: the same address in another shop of this deployment gets another token, so
    // index columns cannot link customers across shops.
    let email_index =
        custodian.tenant_blind_index("customers.email", "shop-1", Normalizer::Email)?;
    let mut shop = open_shop(&folder.join("shop.db"))?;

    // 2. Insert customers (and two orders each) in one transaction.
    let t = Instant::now();
    let subjects: Vec<String> = (0..CUSTOMERS).map(|i| format!("cus_{i:05}")).collect();
    custodian.create_subjects(&subjects.iter().map(String::as_str).collect::<Vec<_>>())?;
    let keys_created = t.elapsed();
    let tx = shop.transaction()?;
    for (i, subject) in subjects.iter().enumerate() {
        let id = i.to_string();
        let email = format!("Customer{i}@Example.com");
        let address = serde_json::to_vec(&Address {
            street: format!("{} Market Street", i % 400 + 1),
            city: ["Leeds", "Lyon", "Porto", "Graz"][i % 4].into(),
            postcode: format!("{:05}", i * 7 % 100_000),
            country: ["GB", "FR", "PT", "AT"][i % 4].into(),
        })?;
        let phone = format!("+44 7700 9{i:05}");
        let contexts =
            FIELDS.map(|field| EncryptionContext::for_field("customers", id.as_str(), field));
        let [email_ctx, address_ctx, phone_ctx] = contexts;
        let (email_ctx, address_ctx, phone_ctx) = (email_ctx?, address_ctx?, phone_ctx?);
        let sealed = custodian.encrypt_many(
            subject,
            &[
                (&email_ctx, email.as_bytes()),
                (&address_ctx, &address),
                (&phone_ctx, phone.as_bytes()),
            ],
        )?;
        tx.execute(
            "INSERT INTO customers (id, subject, email, email_idx, address, phone) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![i as i64, subject, sealed[0], email_index.token(&email)?.to_string(), sealed[1], sealed[2]],
        )?;
        for n in 0..2 {
            tx.execute(
                "INSERT INTO orders (customer_id, total_cents, status) VALUES (?1, ?2, ?3)",
                params![i as i64, ((i * 37 + n * 1_234) % 25_000) as i64, "paid"],
            )?;
        }
    }
    tx.commit()?;
    let insert = t.elapsed();
    println!(
        "inserted {CUSTOMERS} customers (3 encrypted fields + blind index each) and {} orders in {:.2} s: \
         {:.0} customers/s ({:.2} s of it creating {CUSTOMERS} customer keys)",
        2 * CUSTOMERS,
        insert.as_secs_f64(),
        CUSTOMERS as f64 / insert.as_secs_f64(),
        keys_created.as_secs_f64()
    );

    // 3. Look a customer up by e-mail through the blind index, and show a masked view.
    let wanted = "  customer4242@EXAMPLE.com ";
    let found =
        find_by_email(&custodian, &shop, &email_index, wanted)?.ok_or("customer not found")?;
    println!("lookup of {wanted:?} found customer {found}");
    print_masked(&custodian, &shop, found)?;
    reveal_as_staff(&custodian, &policy, &shop, found)?;
    let t = Instant::now();
    let lookups = 1_000;
    for i in 0..lookups {
        let email = format!("customer{}@example.com", i * 9 % CUSTOMERS);
        find_by_email(&custodian, &shop, &email_index, &email)?.ok_or("lookup failed")?;
    }
    let lookup = t.elapsed();
    println!(
        "{lookups} lookups by e-mail (index query + decrypt + compare): {:.0} lookups/s",
        lookups as f64 / lookup.as_secs_f64()
    );

    // 4. Rotate the key ring (one transaction, whatever the number of customers), move the
    //    customers' keys to the new version (the background job a service would run), and
    //    rewrap every stored value (payloads are not decrypted).
    let t = Instant::now();
    let rotation = custodian.rotate()?;
    println!(
        "rotated ring `customers` to version {} in {:.1} ms",
        rotation.new_version,
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let keys_rewrapped = custodian.rewrap_subject_keys(|_| {})?;
    println!(
        "rewrapped {keys_rewrapped} customer keys to it in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let rewrapped = rewrap_all(&custodian, &mut shop)?;
    let rewrap = t.elapsed();
    println!(
        "rewrapped {rewrapped} values in {:.2} s: {:.0} values/s",
        rewrap.as_secs_f64(),
        rewrapped as f64 / rewrap.as_secs_f64()
    );
    let again = rewrap_all(&custodian, &mut shop)?;
    println!("a second pass (as after an interrupted run) had {again} values left to rewrap");

    // 5. Erase one customer: crypto-shred their key and delete their index token.
    let erased = 4242;
    let erasure = custodian.erase_subject_by(&format!("cus_{erased:05}"), "dpo-1")?;
    shop.execute(
        "UPDATE customers SET email_idx = NULL WHERE id = ?1",
        params![erased],
    )?;
    for id in [erased, erased + 1] {
        match read_email(&custodian, &shop, id) {
            Ok(email) => println!("customer {id}: still opens ({})", mask::email(&email)),
            Err(e) if e.is_subject_erased() => println!("customer {id}: cannot be opened: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    if read_email(&custodian, &shop, erased).is_ok() {
        return Err("an erased customer's data still opened".into());
    }
    print_erasure_receipt(&custodian, &erasure)?;

    // 6. The audit trail: its tail, a signed checkpoint, and a verification of every entry.
    print_audit_trail(&custodian)?;

    println!("done in {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn open_shop(path: &Path) -> Result<Connection, Box<dyn Error>> {
    let shop = Connection::open(path)?;
    shop.pragma_update(None, "journal_mode", "WAL")?;
    shop.execute_batch(
        "DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS customers;
         CREATE TABLE customers (
             id INTEGER PRIMARY KEY, subject TEXT NOT NULL,
             email BLOB NOT NULL, email_idx TEXT, address BLOB NOT NULL, phone BLOB NOT NULL);
         CREATE INDEX customers_email_idx ON customers (email_idx);
         CREATE TABLE orders (
             id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers (id),
             total_cents INTEGER NOT NULL, status TEXT NOT NULL);",
    )?;
    Ok(shop)
}

fn find_by_email(
    custodian: &Custodian,
    shop: &Connection,
    index: &custodian::record::BlindIndex,
    email: &str,
) -> Result<Option<i64>, Box<dyn Error>> {
    let wanted = Normalizer::Email.apply(email)?;
    let mut query = shop.prepare_cached("SELECT id, email FROM customers WHERE email_idx = ?1")?;
    for token in index.search_tokens(email)? {
        let rows = query.query_map(params![token.to_string()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, sealed) = row?;
            // Tokens are truncated hashes: confirm the match on the decrypted value.
            let context = EncryptionContext::for_field("customers", id.to_string(), "email")?;
            let email = custodian.decrypt(&context, &sealed)?;
            if Normalizer::Email.apply(&String::from_utf8_lossy(email.expose_secret()))? == wanted {
                return Ok(Some(id));
            }
        }
    }
    Ok(None)
}

fn read_email(
    custodian: &Custodian,
    shop: &Connection,
    id: i64,
) -> Result<String, custodian::Error> {
    let sealed: Vec<u8> = shop
        .query_row(
            "SELECT email FROM customers WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .map_err(|e| {
            custodian::Error::Record(custodian::record::RecordError::Serialize(e.to_string()))
        })?;
    let context = EncryptionContext::for_field("customers", id.to_string(), "email")?;
    let email = custodian.decrypt(&context, &sealed)?;
    Ok(String::from_utf8_lossy(email.expose_secret()).into_owned())
}

fn print_masked(custodian: &Custodian, shop: &Connection, id: i64) -> Result<(), Box<dyn Error>> {
    let (email, address, phone): (Vec<u8>, Vec<u8>, Vec<u8>) = shop.query_row(
        "SELECT email, address, phone FROM customers WHERE id = ?1",
        params![id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let open = |field: &str, sealed: &[u8]| -> Result<String, Box<dyn Error>> {
        let context = EncryptionContext::for_field("customers", id.to_string(), field)?;
        Ok(String::from_utf8(
            custodian
                .decrypt(&context, sealed)?
                .expose_secret()
                .to_vec(),
        )?)
    };
    let address: Address = serde_json::from_str(&open("address", &address)?)?;
    let orders: i64 = shop.query_row(
        "SELECT COUNT(*) FROM orders WHERE customer_id = ?1",
        params![id],
        |r| r.get(0),
    )?;
    println!("  masked view for a support agent:");
    println!("    email   {}", mask::email(&open("email", &email)?));
    println!("    phone   {}", mask::phone(&open("phone", &phone)?));
    println!("    address {} *** ({})", address.city, address.country);
    println!("    orders  {orders}");
    Ok(())
}

/// The reveals a support agent and a packer ask for, through the shop policy: each one checked,
/// decrypted only as far as the policy shows, and recorded in the audit log.
fn reveal_as_staff(
    custodian: &Custodian,
    policy: &Policy,
    shop: &Connection,
    id: i64,
) -> Result<(), Box<dyn Error>> {
    let (email, address, phone): (Vec<u8>, Vec<u8>, Vec<u8>) = shop.query_row(
        "SELECT email, address, phone FROM customers WHERE id = ?1",
        params![id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let record = SealedRecord::new("customers")
        .field("email", &email)
        .field("address", &address)
        .field("phone", &phone);
    let customer = Resource::new("customer", id.to_string(), "shop-1");
    let agent = Principal::new("emp-17", "shop-1").with_role("support");
    let packer = Principal::new("emp-40", "shop-1").with_role("fulfillment");
    let ticket = Justification::ticket("SUP-5521").naming("customer", id.to_string());
    let requests = [
        (
            "support agent",
            RevealRequest::new(&agent, "view", &customer),
        ),
        (
            "support agent with ticket SUP-5521",
            RevealRequest::new(&agent, "view", &customer).with_justification(ticket),
        ),
        ("packer", RevealRequest::new(&packer, "view", &customer)),
    ];
    for (who, request) in &requests {
        match custodian.reveal(policy, request, &record) {
            Ok(shown) => {
                let fields: Vec<String> = shown
                    .fields()
                    .iter()
                    .map(|field| format!("{}={}", field.name(), field.expose_secret()))
                    .collect();
                println!("  reveal as {who}: {}", fields.join(", "));
            }
            Err(e) if e.denied().is_some() => println!("  reveal as {who}: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Prints the last five audit entries as JSON lines, signs a checkpoint of the whole log and
/// verifies every entry against it (as an auditor would, with the public key alone), then shows
/// that a changed entry is caught.
fn print_audit_trail(custodian: &Custodian) -> Result<(), Box<dyn Error>> {
    let audit = custodian.audit();
    let size = audit.tree_size()?;
    println!("audit trail: {size} entries; the last ones as JSON lines:");
    print!("{}", audit.export_json_lines(size.saturating_sub(5)..size)?);
    // The signing key lives in the key store, wrapped by the root key.
    let signer = custodian.checkpoint_signer();
    let now = custodian.now();
    let checkpoint = audit.checkpoint(signer, now)?;
    println!("signed checkpoint:\n{}", checkpoint.as_str());
    println!("verifier key: {}", signer.verifier().verifier_key());
    let mut entries = audit.store_entries(0..size)?;
    let verified = verify(&entries, &checkpoint, &signer.verifier(), now)?;
    println!(
        "verified all {} entries against the checkpoint",
        verified.checkpoint.tree_size()
    );
    if let Some(byte) = entries.first_mut().and_then(|entry| entry.last_mut()) {
        *byte ^= 1;
        match verify(&entries, &checkpoint, &signer.verifier(), now) {
            Ok(_) => return Err("a changed audit entry went unnoticed".into()),
            Err(e) => println!("with one bit of entry 0 flipped: {e}"),
        }
    }
    Ok(())
}

/// Prints the erasure's receipt (its audit entry, an inclusion proof and a signed checkpoint) and
/// verifies it as a data-protection officer's recipient would: with the published key alone.
fn print_erasure_receipt(custodian: &Custodian, erasure: &Erasure) -> Result<(), Box<dyn Error>> {
    println!(
        "erasure of {}: newly erased {}, key bytes purged from the files {}",
        erasure.subject, erasure.newly_erased, erasure.purged
    );
    if !erasure.newly_erased {
        println!("(erased by an earlier run: its receipt was issued then)");
        return Ok(());
    }
    let receipt = custodian.erasure_receipt(erasure)?;
    let json = serde_json::to_string(&receipt)?;
    println!("erasure receipt ({} bytes of JSON): {json}", json.len());
    let published = custodian.checkpoint_signer().verifier().verifier_key();
    let verifier = CheckpointVerifier::from_verifier_key(&published)?;
    let checked = verify_receipt(&serde_json::from_str(&json)?, &verifier, custodian.now())?;
    println!(
        "receipt verified with {published} against a checkpoint of {} entries",
        checked.tree_size()
    );
    Ok(())
}

/// Rewraps every stored value that is not under the current key version with
/// [`Custodian::rewrap_all`]: pages of 1,000 rows, each page's changes written in one transaction,
/// a progress bar after each page. Values already current are skipped, so an interrupted run
/// resumes where it stopped (from the reported position, or from the start).
fn rewrap_all(custodian: &Custodian, shop: &mut Connection) -> Result<u64, Box<dyn Error>> {
    let total: i64 = shop.query_row("SELECT COUNT(*) FROM customers", [], |r| r.get(0))?;
    let read = shop.prepare(
        "SELECT id, email, address, phone FROM customers WHERE id > ?1 ORDER BY id LIMIT 1000",
    );
    let mut read = read?;
    let next_page = |after: Option<&i64>| -> Result<_, Box<dyn Error>> {
        let mut values = Vec::new();
        let mut last = None;
        let mut rows = read.query(params![after.copied().unwrap_or(-1)])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            for (i, field) in FIELDS.into_iter().enumerate() {
                values.push(StoredValue {
                    key: (id, field),
                    context: EncryptionContext::for_field("customers", id.to_string(), field)?,
                    ciphertext: row.get(i + 1)?,
                });
            }
            last = Some(id);
        }
        Ok(last.map(|last| (values, last)))
    };
    let write_page = |changes: Vec<Rewritten<(i64, &str)>>| -> Result<(), Box<dyn Error>> {
        let tx = shop.unchecked_transaction()?;
        for change in changes {
            let (id, field) = change.key;
            // Compare-and-set on the old value: a row changed since it was read is left alone
            // (the next run picks it up).
            tx.execute(
                &format!("UPDATE customers SET {field} = ?1 WHERE id = ?2 AND {field} = ?3"),
                params![change.new, id, change.old],
            )?;
        }
        Ok(tx.commit()?)
    };
    let done = custodian.rewrap_all(None, next_page, write_page, |p| {
        progress(p.position.unwrap_or(0) + 1, total)
    })?;
    println!();
    if let Some((key, error)) = done.failures.first() {
        return Err(format!(
            "{} values failed to rewrap, first {key:?}: {error}",
            done.failures.len()
        )
        .into());
    }
    Ok(done.progress.changed)
}

fn progress(done: i64, total: i64) {
    let width = 40;
    let filled = (done * width / total.max(1)) as usize;
    print!(
        "\r  rewrap [{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width as usize - filled)
    );
    let _ = std::io::stdout().flush();
}
