//! Seal and open one customer record with an encryption context.
//!
//! `cargo run --example quickstart`

use custodian::envelope::{self, EncryptionContext, Header, StaticKek};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A key-encryption key. In production it comes from a key store and rotates; here it is random.
    let kek = StaticKek::generate("customers", 1)?;

    // Where the value lives: bound into the ciphertext, supplied again to open it.
    let email_of_42 = EncryptionContext::new()
        .with("table", "customers")?
        .with("record", "42")?
        .with("field", "email")?;

    let stored = envelope::seal_text(&kek, &email_of_42, b"jane@example.com")?;
    println!("stored in the email column: {stored}");

    // Anyone can see which key a stored value needs, without the key.
    let header = Header::parse_text(&stored)?;
    println!(
        "sealed under: {} ({})",
        header.key_id(),
        header.suite().name()
    );

    let email = envelope::open_text(&kek, &email_of_42, &stored)?;
    println!("opened: {}", String::from_utf8_lossy(email.expose_secret()));

    // Copied into another customer's row, the value no longer opens.
    let email_of_43 = EncryptionContext::new()
        .with("table", "customers")?
        .with("record", "43")?
        .with("field", "email")?;
    match envelope::open_text(&kek, &email_of_43, &stored) {
        Ok(_) => return Err("a value moved to another row opened".into()),
        Err(error) => println!("moved to record 43: {error}"),
    }
    Ok(())
}
