//! Crash test: two child processes share one SQLite key store, rotating rings, creating and erasing
//! subjects and sealing, and record every ciphertext (fsync'd) right after `seal` returns. The
//! parent SIGKILLs them at random moments, over and over. After each kill the store must open,
//! its rings must be intact (versions 1..=n, all verifying), and every recorded ciphertext must
//! still open, except those of erased subjects, which must fail with `SubjectErased`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::SecretKey;
use custodian::crypto::{Suite, fill_random};
use custodian::envelope::EncryptionContext;
use custodian::keys::{
    KeyError, KeyManager, LocalRootKey, ManagerOptions, RotationPolicy, SqliteKeyStore,
};
use data_encoding::HEXLOWER;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHILD_ENV: &str = "CUSTODIAN_CRASH_CHILD";
const RINGS: [&str; 2] = ["profiles", "payments"];
const ROUNDS: usize = 30;
const CHILDREN: usize = 2;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn root() -> LocalRootKey {
    LocalRootKey::new(&SecretKey::from_bytes([0x5C; 32]))
}

fn manager(db: &Path) -> KeyManager {
    KeyManager::with_options(
        Arc::new(SqliteKeyStore::open(db).unwrap()),
        Arc::new(root()),
        ManagerOptions {
            // Small blocks: many usage reservations, so kills land inside them too.
            usage_block: 8,
            ..ManagerOptions::default()
        },
    )
    .unwrap()
}

fn ctx(record: &str) -> EncryptionContext {
    EncryptionContext::new().with("record", record).unwrap()
}

/// xorshift64*, seeded from the OS.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let mut seed = [0u8; 8];
        fill_random(&mut seed).unwrap();
        Self(u64::from_le_bytes(seed) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Appends one line and fsyncs it before returning.
fn record(log: &mut std::fs::File, line: &str) {
    log.write_all(line.as_bytes()).unwrap();
    log.write_all(b"\n").unwrap();
    log.sync_data().unwrap();
}

/// The child's endless loop (it only stops when killed).
fn child(db: &Path, log_path: &Path, id: &str) -> ! {
    let keys = manager(db);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    // A killed predecessor may have left its last line without its newline: that entry was never
    // acknowledged, and appending after it would fuse it with this child's first line.
    let text = std::fs::read(log_path).unwrap();
    if text.last().is_some_and(|&b| b != b'\n') {
        let complete = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |end| end + 1);
        log.set_len(complete as u64).unwrap();
    }
    let mut rng = Rng::new();
    let mut run = [0u8; 6];
    fill_random(&mut run).unwrap();
    // Subject ids are never reused after an erasure: unique per child start.
    let prefix = format!("c{id}-{}", HEXLOWER.encode(&run));
    let mut next_subject = 0u64;
    let mut live: Vec<String> = Vec::new();
    let mut sealed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut step = 0u64;
    loop {
        step += 1;
        let ring = RINGS[rng.below(2) as usize];
        match rng.below(100) {
            0..=54 => {
                let subject = match rng.below(3) {
                    0 => None,
                    1 if !live.is_empty() => {
                        Some(live[rng.below(live.len() as u64) as usize].clone())
                    }
                    _ => {
                        next_subject += 1;
                        let s = format!("{prefix}-{next_subject}");
                        live.push(s.clone());
                        Some(s)
                    }
                };
                let rec = format!("{prefix}-r{step}");
                let plaintext = format!("value {rec}");
                let ct = keys
                    .seal(
                        ring,
                        subject.as_deref(),
                        &ctx(&rec),
                        plaintext.as_bytes(),
                        now(),
                    )
                    .unwrap();
                record(
                    &mut log,
                    &format!(
                        "S {rec} {} {}",
                        HEXLOWER.encode(plaintext.as_bytes()),
                        HEXLOWER.encode(&ct)
                    ),
                );
                sealed.push((rec, ct));
            }
            55..=69 => {
                keys.rotate(ring, now()).unwrap();
            }
            70..=79 if !live.is_empty() => {
                let at = rng.below(live.len() as u64) as usize;
                let subject = live.swap_remove(at);
                // Erase it in every ring it may have data in.
                for ring in RINGS {
                    keys.erase_subject(ring, &subject, now()).unwrap();
                }
                record(&mut log, &format!("E {subject}"));
            }
            80..=89 if !sealed.is_empty() => {
                let at = rng.below(sealed.len() as u64) as usize;
                let (rec, ct) = &sealed[at];
                // Rewrap; erased subjects legitimately fail.
                if let Ok(new) = keys.rewrap(&ctx(rec), ct, now()) {
                    let plaintext = format!("value {rec}");
                    record(
                        &mut log,
                        &format!(
                            "S {rec} {} {}",
                            HEXLOWER.encode(plaintext.as_bytes()),
                            HEXLOWER.encode(&new)
                        ),
                    );
                }
            }
            _ => {
                let batch: Vec<String> = (0..5)
                    .map(|_| {
                        next_subject += 1;
                        format!("{prefix}-{next_subject}")
                    })
                    .collect();
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                keys.create_subjects(ring, &refs, now()).unwrap();
                live.extend(batch);
            }
        }
    }
}

#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let (db, log, id) = (
        PathBuf::from(parts.next().unwrap()),
        PathBuf::from(parts.next().unwrap()),
        parts.next().unwrap().to_owned(),
    );
    child(&db, &log, &id);
}

struct Entry {
    record: String,
    plaintext: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// Complete lines of a log (a kill may cut the last one short; it was never acknowledged).
fn read_log(path: &Path, entries: &mut Vec<Entry>, erased: &mut BTreeSet<String>) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    for line in complete.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["S", rec, plaintext, ct] => entries.push(Entry {
                record: (*rec).to_owned(),
                plaintext: HEXLOWER.decode(plaintext.as_bytes()).unwrap(),
                ciphertext: HEXLOWER.decode(ct.as_bytes()).unwrap(),
            }),
            ["E", subject] => {
                erased.insert((*subject).to_owned());
            }
            _ => panic!("malformed log line {line:?}"),
        }
    }
}

fn verify(db: &Path, logs: &[PathBuf]) -> (usize, usize) {
    let keys = manager(db);
    for ring in RINGS {
        let info = keys.ring_info(ring, now()).unwrap();
        let versions: Vec<u32> = info.versions.iter().map(|v| v.version).collect();
        assert_eq!(versions, (1..=info.primary_version).collect::<Vec<_>>());
        assert!(
            info.versions
                .iter()
                .all(|v| v.usage_reserved <= info.policy.max_encryptions)
        );
    }
    let (mut entries, mut erased) = (Vec::new(), BTreeSet::new());
    for log in logs {
        read_log(log, &mut entries, &mut erased);
    }
    let mut history_erased: BTreeMap<(String, String), bool> = BTreeMap::new();
    let (mut opened, mut shredded) = (0, 0);
    for e in &entries {
        let header = custodian::envelope::Header::parse(&e.ciphertext).unwrap();
        let id = header.key_id();
        match keys.open(&ctx(&e.record), &e.ciphertext, now()) {
            Ok(plaintext) => {
                assert_eq!(plaintext.expose_secret(), &e.plaintext[..]);
                if let Some(subject) = id.subject() {
                    assert!(
                        !erased.contains(subject),
                        "erased subject {subject} still opens"
                    );
                }
                opened += 1;
            }
            Err(KeyError::SubjectErased { subject, .. }) => {
                // Either the erasure was recorded, or the child died between the erasure's commit
                // and recording it: the store must then say so.
                let in_store = *history_erased
                    .entry((id.name().to_owned(), subject.clone()))
                    .or_insert_with(|| {
                        keys.subject_history(id.name(), &subject)
                            .unwrap()
                            .last()
                            .is_some_and(|g| g.erased_at.is_some())
                    });
                assert!(
                    erased.contains(&subject) || in_store,
                    "{subject} reported erased but was not"
                );
                shredded += 1;
            }
            Err(other) => panic!(
                "recorded ciphertext of {} no longer opens: {other:?}",
                e.record
            ),
        }
    }
    (opened, shredded)
}

#[cfg(unix)]
#[test]
fn sigkill_at_random_moments_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    {
        let keys = manager(&db);
        let policy = RotationPolicy {
            propagation_secs: 0,
            ..RotationPolicy::default()
        };
        for ring in RINGS {
            keys.create_ring(ring, Suite::default(), policy, now())
                .unwrap();
        }
    }
    let logs: Vec<PathBuf> = (0..CHILDREN)
        .map(|i| dir.path().join(format!("child-{i}.log")))
        .collect();
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng::new();
    let started = Instant::now();
    let mut kills = 0;
    let mut totals = (0, 0);
    for round in 0..ROUNDS {
        let mut children: Vec<_> = (0..CHILDREN)
            .map(|i| {
                let err = std::fs::File::create(dir.path().join(format!("child-{i}.err"))).unwrap();
                std::process::Command::new(&exe)
                    .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
                    .env(
                        CHILD_ENV,
                        format!("{}|{}|{i}", db.display(), logs[i].display()),
                    )
                    .stdout(std::process::Stdio::null())
                    .stderr(err)
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Let them work for a random while, then kill them at different moments.
        std::thread::sleep(Duration::from_millis(80 + rng.below(320)));
        for (i, child) in children.iter_mut().enumerate() {
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            child.kill().unwrap();
            let status = child.wait().unwrap();
            if status.signal() != Some(9) {
                let err = std::fs::read_to_string(dir.path().join(format!("child-{i}.err")))
                    .unwrap_or_default();
                panic!("round {round}: child {i} exited by itself ({status}):\n{err}");
            }
            kills += 1;
        }
        totals = verify(&db, &logs);
    }
    assert!(kills >= 50);
    let (opened, shredded) = totals;
    // The children must have got real work done between kills.
    assert!(opened > 100, "only {opened} ciphertexts recorded");
    eprintln!(
        "{kills} kills in {:?}: {opened} recorded ciphertexts open, {shredded} are erased",
        started.elapsed()
    );
}
