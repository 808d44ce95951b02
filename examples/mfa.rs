//! TOTP MFA end to end: enroll, confirm, log in, a refused replay, lockout, recovery.
//!
//! ```text
//! cargo run --example mfa              # the QR PNG goes to a temporary folder, removed at exit
//! cargo run --example mfa -- out/      # the QR PNG is written to out/enrollment-qr.png
//! ```
//!
//! The authenticator app is simulated by computing codes from the key; the clock is the real one
//! at start, then advanced by hand so the example runs instantly.

use custodian::Custodian;
use custodian::keys::{LocalRootKey, SqliteKeyStore};
use custodian::mfa::{RecoveryCodeSet, SqliteFactorStore, TerminalBackground, TotpKey, Verifier};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where the PNG goes: a folder given on the command line, or a temporary one.
    let temporary = tempfile::tempdir()?;
    let folder = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| temporary.path().to_path_buf());

    // The facade hands out the MFA service with its keys from the key hierarchy: seeds sealed in
    // the `staff-mfa` ring, factor states authenticated with a key derived from it. A fresh root
    // key per run is fine for a demo only (in production: `LocalRootKey::from_file`).
    let custodian = Custodian::builder()
        .key_store(SqliteKeyStore::open(temporary.path().join("keys.db"))?)
        .root_key(LocalRootKey::random()?)
        .build()?;
    let store = custodian.mfa(SqliteFactorStore::open(temporary.path().join("mfa.db"))?)?;
    let verifier = Verifier::default();
    let mut now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let (user, factor) = ("customer-42", "phone");

    println!("== 1. Enrollment: a pending factor with a fresh 160-bit secret");
    let pending =
        store.begin_enrollment(&verifier, user, factor, TotpKey::generate()?, now, None)?;
    let uri = pending.enrollment_uri("ACME Shop", "jane@example.com")?;
    // The URI holds the secret: show it to the enrolling user only, never log it.
    println!("otpauth URI: {}", uri.to_uri().expose_secret());
    let qr = uri.qr()?;
    println!(
        "{}",
        qr.to_terminal(TerminalBackground::Dark).expose_secret()
    );
    let png_path = folder.join("enrollment-qr.png");
    std::fs::write(&png_path, qr.to_png(8)?.expose_secret())?;
    println!("QR code PNG written to {}", png_path.display());
    let app = pending.key().duplicate(); // what the user's authenticator app now holds

    println!("\n== 2. Confirmation with the first code (the code is consumed)");
    let first = app.code_at(now)?;
    store.confirm_enrollment(&verifier, user, factor, first.expose_secret(), now)?;
    println!("confirmed; factors: {:?}", store.factors(user)?);
    let (recovery_set, recovery_codes) = RecoveryCodeSet::generate(user)?;
    store.replace_recovery_codes(&recovery_set)?;
    println!("recovery codes (show once, store only hashes):");
    for code in &recovery_codes {
        println!("  {}", code.expose_secret());
    }

    println!("\n== 3. Login 30 s later");
    now += 30;
    let code = app.code_at(now)?;
    let step_up = store.verify(&verifier, user, factor, code.expose_secret(), now)?;
    println!(
        "accepted: user {} verified with {} at {} (hand verified_at() to RBAC's MFA condition)",
        step_up.user(),
        step_up.factor(),
        step_up.verified_at()
    );

    println!("\n== 4. The same code again is refused");
    let replay = store
        .verify(&verifier, user, factor, code.expose_secret(), now + 2)
        .expect_err("a replayed code must be refused");
    println!("caller sees: {replay}");
    println!("audit log records: {:?}", replay.reject_reason());

    println!("\n== 5. Guessing: throttled, then locked (the refused replay was failure 1)");
    for attempt in 1.. {
        now += 1;
        let state = *store.load(user, factor)?.factor.state();
        if state.is_locked() {
            println!("locked after {} consecutive failures", state.failures());
            break;
        }
        now = now.max(state.retry_at());
        let error = store
            .verify(&verifier, user, factor, "000000", now)
            .expect_err("000000 is almost surely wrong");
        let after = *store.load(user, factor)?.factor.state();
        println!(
            "attempt {attempt:2}: {error} ({:?}); next attempt checked from +{} s",
            error.reject_reason(),
            after.retry_at().saturating_sub(now)
        );
    }
    let right = app.code_at(now)?;
    let locked = store
        .verify(&verifier, user, factor, right.expose_secret(), now)
        .expect_err("a locked factor refuses even the right code");
    println!(
        "even the right code: {locked} ({:?})",
        locked.reject_reason()
    );

    println!("\n== 6. A recovery code unlocks (and is used up)");
    let recovery = &recovery_codes[0];
    let proof = store.use_recovery_code(user, recovery.expose_secret(), now)?;
    println!(
        "recovery code accepted ({:?}); {} left",
        proof.method(),
        store.recovery_codes_remaining(user)?
    );
    let again = store.use_recovery_code(user, recovery.expose_secret(), now);
    println!(
        "the same recovery code again: {:?}",
        again.map(|_| ()).map_err(|e| e.to_string())
    );
    now += 30;
    let code = app.code_at(now)?;
    store.verify(&verifier, user, factor, code.expose_secret(), now)?;
    println!("login with the app works again");

    drop(temporary); // removes the temporary folder (and the PNG, unless a folder was given)
    Ok(())
}
