//! Fuzz body: arbitrary bytes through the `KeyManager`: header resolution (ring, version state,
//! subject state), open, needs_rewrap, rewrap; plus seal round trips and tampering of sealed values.
//!
//! Input layout: byte 0 selects the mode; the rest is mode-specific:
//! - mode % 3 == 0: the rest is a ciphertext (nothing may panic);
//! - mode % 3 == 1: the rest is a plaintext, sealed (for subject `cus_1` if mode >= 128), which must
//!   open again, and rewrap must keep it opening;
//! - mode % 3 == 2: the rest is a list of (offset, xor) byte pairs applied to a sealed value; a changed
//!   value must fail to open.
//!
//! The store is set up once: ring `r` with version 1 destroyed, 2 decrypt-only, 3 primary; subject
//! `cus_1` live, `cus_2` erased.

use custodian::crypto::Suite;
use custodian::envelope::EncryptionContext;
use custodian::keys::{KeyManager, LocalRootKey, MemoryKeyStore, RotationPolicy};
use custodian::SecretKey;
use std::sync::OnceLock;

const NOW: u64 = 1_700_000_000;

fn context() -> EncryptionContext {
    EncryptionContext::new().with("record", "1").unwrap()
}

fn manager() -> &'static (KeyManager, Vec<u8>, Vec<u8>) {
    static SETUP: OnceLock<(KeyManager, Vec<u8>, Vec<u8>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let root = LocalRootKey::new(&SecretKey::from_bytes([7; 32]));
        let keys = KeyManager::new(MemoryKeyStore::new(), root).unwrap();
        let policy = RotationPolicy {
            propagation_secs: 0,
            ..RotationPolicy::default()
        };
        keys.create_ring("r", Suite::default(), policy, NOW).unwrap();
        keys.rotate("r", NOW).unwrap();
        keys.rotate("r", NOW).unwrap();
        keys.set_min_encryption_version("r", 3, NOW).unwrap();
        keys.set_min_decryption_version("r", 2, NOW).unwrap();
        keys.destroy_version("r", 1, NOW).unwrap();
        let ctx = context();
        keys.seal("r", Some("cus_2"), &ctx, b"gone", NOW).unwrap();
        keys.erase_subject("r", "cus_2", NOW).unwrap();
        let ring_level = keys.seal("r", None, &ctx, b"shop secret", NOW).unwrap();
        let subject = keys.seal("r", Some("cus_1"), &ctx, b"jane", NOW).unwrap();
        (keys, ring_level, subject)
    })
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (keys, ring_level, subject) = manager();
    let ctx = context();
    match mode % 3 {
        0 => {
            let opened = keys.open(&ctx, rest, NOW);
            let _ = keys.needs_rewrap(rest, NOW);
            let rewrapped = keys.rewrap(&ctx, rest, NOW);
            if let (Ok(plain), Ok(new)) = (opened, rewrapped) {
                let again = keys.open(&ctx, &new, NOW).unwrap();
                assert_eq!(again.expose_secret(), plain.expose_secret());
            }
        }
        1 => {
            let who = (mode >= 128).then_some("cus_1");
            let sealed = keys.seal("r", who, &ctx, rest, NOW).unwrap();
            assert_eq!(keys.open(&ctx, &sealed, NOW).unwrap().expose_secret(), rest);
            assert!(!keys.needs_rewrap(&sealed, NOW).unwrap());
            assert_eq!(keys.rewrap(&ctx, &sealed, NOW).unwrap(), sealed);
        }
        _ => {
            let original = if mode >= 128 { subject } else { ring_level };
            let mut sealed = original.clone();
            for pair in rest.chunks(2) {
                let at = usize::from(pair[0]) % sealed.len();
                sealed[at] ^= pair.get(1).copied().unwrap_or(1);
            }
            let opened = keys.open(&ctx, &sealed, NOW);
            if sealed == *original {
                assert!(opened.is_ok());
            } else {
                assert!(opened.is_err(), "a modified ciphertext opened");
            }
        }
    }
}
