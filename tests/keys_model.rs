//! Property test: random sequences of rotate / thresholds / destroy / erase / seal / open / rewrap
//! / restart against a simple model of what each open must return.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretKey;
use custodian::crypto::Suite;
use custodian::envelope::{EncryptionContext, Header};
use custodian::keys::{
    KeyError, KeyManager, KeyStore, LocalRootKey, ManagerOptions, MemoryKeyStore, RotationPolicy,
    SqliteKeyStore, VersionState,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Op {
    Seal { subject: Option<u8> },
    Open(usize),
    Rewrap(usize),
    Reencrypt(usize),
    Rotate,
    SetMinEncryption(u32),
    SetMinDecryption(u32),
    Destroy(u32),
    Erase(u8),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::option::of(0u8..4).prop_map(|subject| Op::Seal { subject }),
        3 => any::<usize>().prop_map(Op::Open),
        2 => any::<usize>().prop_map(Op::Rewrap),
        1 => any::<usize>().prop_map(Op::Reencrypt),
        2 => Just(Op::Rotate),
        1 => (1u32..8).prop_map(Op::SetMinEncryption),
        1 => (1u32..8).prop_map(Op::SetMinDecryption),
        1 => (1u32..8).prop_map(Op::Destroy),
        1 => (0u8..4).prop_map(Op::Erase),
        1 => Just(Op::Restart),
    ]
}

/// What the model expects from opening an item.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Plaintext,
    Destroyed,
    Disabled,
    Erased,
    Decrypt,
}

struct Item {
    record: String,
    plaintext: Vec<u8>,
    sealed: Vec<u8>,
    version: u32,
    /// Subject and the generation of its key at seal time.
    subject: Option<(String, u64)>,
}

#[derive(Default)]
struct Model {
    states: Vec<VersionState>,
    min_enc: u32,
    min_dec: u32,
    /// subject -> (newest generation, erased)
    subjects: BTreeMap<String, (u64, bool)>,
}

impl Model {
    fn primary(&self) -> u32 {
        self.states.len() as u32
    }

    fn restate(&mut self) {
        let (min_enc, min_dec) = (self.min_enc, self.min_dec);
        for (i, s) in self.states.iter_mut().enumerate() {
            let v = i as u32 + 1;
            if *s != VersionState::Destroyed {
                *s = if v < min_dec {
                    VersionState::Disabled
                } else if v < min_enc {
                    VersionState::DecryptOnly
                } else {
                    VersionState::Active
                };
            }
        }
    }

    fn expect(&self, item: &Item) -> Expect {
        match self.states[item.version as usize - 1] {
            VersionState::Destroyed => return Expect::Destroyed,
            VersionState::Disabled => return Expect::Disabled,
            _ => {}
        }
        match &item.subject {
            None => Expect::Plaintext,
            Some((subject, generation)) => {
                let (newest, erased) = self.subjects[subject];
                if erased {
                    Expect::Erased
                } else if newest == *generation {
                    Expect::Plaintext
                } else {
                    Expect::Decrypt
                }
            }
        }
    }

    /// Generation a seal for `subject` uses, creating one as the manager does.
    fn seal_generation(&mut self, subject: &str) -> u64 {
        let entry = self.subjects.entry(subject.to_owned()).or_insert((0, true));
        if entry.1 {
            *entry = (entry.0 + 1, false);
        }
        entry.0
    }
}

fn classify(result: &Result<impl Sized, KeyError>) -> Expect {
    match result {
        Ok(_) => Expect::Plaintext,
        Err(KeyError::VersionDestroyed { .. }) => Expect::Destroyed,
        Err(KeyError::VersionDisabled { .. }) => Expect::Disabled,
        Err(KeyError::SubjectErased { .. }) => Expect::Erased,
        Err(e) if e.is_decrypt_failure() => Expect::Decrypt,
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::new().with("record", record).unwrap()
}

fn run(ops: Vec<Op>, store: Arc<dyn KeyStore>) {
    let root = Arc::new(LocalRootKey::new(&SecretKey::from_bytes([9; 32])));
    let options = ManagerOptions {
        subject_cache_capacity: 2,
        usage_block: 3,
        ..ManagerOptions::default()
    };
    let open_manager =
        || KeyManager::with_options(Arc::clone(&store), root.clone(), options.clone()).unwrap();
    let mut keys = open_manager();
    let policy = RotationPolicy {
        propagation_secs: 0,
        ..RotationPolicy::default()
    };
    keys.create_ring("r", Suite::default(), policy, 0).unwrap();
    let mut model = Model {
        states: vec![VersionState::Active],
        min_enc: 1,
        min_dec: 1,
        ..Model::default()
    };
    let mut items: Vec<Item> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = step as u64 + 1;
        match op {
            Op::Seal { subject } => {
                let subject = subject.map(|s| format!("cus_{s}"));
                let record = format!("rec{step}");
                let plaintext = format!("value {step}").into_bytes();
                let sealed = keys
                    .seal("r", subject.as_deref(), &ctx(&record), &plaintext, now)
                    .unwrap();
                let header = Header::parse(&sealed).unwrap();
                assert_eq!(header.key_id().version(), model.primary());
                let subject = subject.map(|s| {
                    let generation = model.seal_generation(&s);
                    (s, generation)
                });
                items.push(Item {
                    record,
                    plaintext,
                    sealed,
                    version: model.primary(),
                    subject,
                });
            }
            Op::Open(i) if !items.is_empty() => {
                let item = &items[i % items.len()];
                let result = keys.open(&ctx(&item.record), &item.sealed, now);
                assert_eq!(classify(&result), model.expect(item), "step {step}");
                if let Ok(plaintext) = result {
                    assert_eq!(plaintext.expose_secret(), &item.plaintext[..]);
                }
            }
            Op::Rewrap(i) | Op::Reencrypt(i) if !items.is_empty() => {
                let index = i % items.len();
                let item = &items[index];
                let expected = model.expect(item);
                let rewrap = matches!(op, Op::Rewrap(_));
                let current = item.version == model.primary();
                let result = if rewrap {
                    keys.rewrap(&ctx(&item.record), &item.sealed, now)
                } else {
                    keys.reencrypt(&ctx(&item.record), &item.sealed, now)
                };
                if rewrap && current {
                    // Already current: nothing decrypted, bytes unchanged.
                    assert_eq!(result.unwrap(), item.sealed);
                    continue;
                }
                assert_eq!(classify(&result), expected, "step {step}");
                if let Ok(sealed) = result {
                    assert_eq!(
                        Header::parse(&sealed).unwrap().key_id().version(),
                        model.primary()
                    );
                    let item = &mut items[index];
                    item.sealed = sealed;
                    item.version = model.primary();
                }
            }
            Op::Rotate => {
                let rotation = keys.rotate("r", now).unwrap();
                model.states.push(VersionState::Active);
                assert_eq!(rotation.new_version, model.primary());
                model.restate();
            }
            Op::SetMinEncryption(k) => {
                let result = keys.set_min_encryption_version("r", k, now);
                let allowed = k >= model.min_dec && k <= model.primary();
                assert_eq!(result.is_ok(), allowed, "step {step}: {result:?}");
                if allowed {
                    model.min_enc = k;
                    model.restate();
                }
            }
            Op::SetMinDecryption(k) => {
                let result = keys.set_min_decryption_version("r", k, now);
                let newest_destroyed = model
                    .states
                    .iter()
                    .rposition(|s| *s == VersionState::Destroyed)
                    .map_or(0, |i| i as u32 + 1);
                let allowed = k >= 1 && k <= model.min_enc && k > newest_destroyed;
                assert_eq!(result.is_ok(), allowed, "step {step}: {result:?}");
                if allowed {
                    model.min_dec = k;
                    model.restate();
                }
            }
            Op::Destroy(v) => {
                let result = keys.destroy_version("r", v, now);
                if v > model.primary() {
                    assert!(matches!(result, Err(KeyError::UnknownVersion { .. })));
                } else if model.states[v as usize - 1] == VersionState::Destroyed {
                    assert!(!result.unwrap().newly_destroyed);
                } else if v < model.min_dec {
                    assert!(result.unwrap().newly_destroyed);
                    model.states[v as usize - 1] = VersionState::Destroyed;
                } else {
                    assert!(matches!(result, Err(KeyError::Refused(_))), "{result:?}");
                }
            }
            Op::Erase(s) => {
                let subject = format!("cus_{s}");
                let erasure = keys.erase_subject("r", &subject, now).unwrap();
                let entry = model.subjects.entry(subject).or_insert((1, false));
                assert_eq!(erasure.newly_erased, !entry.1);
                assert_eq!(erasure.generation, entry.0);
                entry.1 = true;
            }
            Op::Restart => keys = open_manager(),
            Op::Open(_) | Op::Rewrap(_) | Op::Reencrypt(_) => {}
        }
        // The stored ring always matches the model.
        if step % 5 == 4 {
            let info = keys.ring_info("r", now).unwrap();
            let states: Vec<_> = info.versions.iter().map(|v| v.state).collect();
            assert_eq!(states, model.states, "step {step}");
            assert_eq!(
                (info.min_encryption_version, info.min_decryption_version),
                (model.min_enc, model.min_dec)
            );
        }
    }
    // Finally every item opens (or fails) exactly as the model says, in a fresh process too.
    let fresh = open_manager();
    for item in &items {
        for k in [&keys, &fresh] {
            let result = k.open(&ctx(&item.record), &item.sealed, 10_000);
            assert_eq!(classify(&result), model.expect(item));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_matches_the_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops, Arc::new(MemoryKeyStore::new()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_store_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        run(ops, Arc::new(SqliteKeyStore::open(dir.path().join("k.db")).unwrap()));
    }
}
