//! The `custodian` binary as an operator runs it: every command against an SQLite store built
//! here with the library, exit codes, `--json`, and `custodian doctor` on a healthy store and on
//! each broken condition that can be built. Every run's output is checked for the root key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use assert_cmd::Command;
use custodian::crypto::Suite;
use custodian::keys::{
    KeyManager, LocalRootKey, RotationPolicy, SqliteKeyStore, generate_key_file,
};
use custodian::mfa::{
    LockoutPolicy, MfaService, OtpSecret, RecoveryCodeSet, RejectReason, SqliteFactorStore,
    TotpKey, TotpParams, Verifier,
};
use custodian::{Custodian, EncryptionContext, SecretBytes};
use predicates::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A store as an application leaves it: the facade's rings, two customers with sealed data, a
/// staff member with an active MFA factor, all under a 0600 root key file.
struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
    key: PathBuf,
    /// The root key file's text: it must never appear in any output.
    key_text: String,
    /// An email sealed for `cus_42`.
    sealed: Vec<u8>,
}

const MFA_NOW: u64 = 1_700_000_010;
/// The RFC 6238 appendix B seed (SHA-1).
const SEED: &[u8] = b"12345678901234567890";

fn totp_key() -> TotpKey {
    TotpKey::new(
        OtpSecret::from_bytes(SecretBytes::new(SEED.to_vec())).unwrap(),
        TotpParams::PORTABLE,
    )
}

fn code_at(now: u64) -> String {
    totp_key().code_at(now).unwrap().expose_secret().to_owned()
}

/// Two free failures, the third consecutive one locks.
fn verifier() -> Verifier {
    Verifier::default().with_lockout(LockoutPolicy::new(2, 1, 1, 3).unwrap())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn email_context() -> EncryptionContext {
    EncryptionContext::for_field("customers", "42", "email").unwrap()
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let db = path.join("keys.db");
        let key = path.join("root.key");
        generate_key_file(&key).unwrap();
        let key_text = std::fs::read_to_string(&key).unwrap().trim().to_owned();
        let custodian = Custodian::builder()
            .key_store(SqliteKeyStore::open(&db).unwrap())
            .root_key(LocalRootKey::from_file(&key).unwrap())
            .build()
            .unwrap();
        let sealed = custodian
            .encrypt("cus_42", &email_context(), b"jane@example.com")
            .unwrap();
        let context = EncryptionContext::for_field("customers", "43", "email").unwrap();
        custodian
            .encrypt("cus_43", &context, b"joe@example.com")
            .unwrap();
        let mfa = custodian
            .mfa(SqliteFactorStore::open(&db).unwrap())
            .unwrap();
        let v = verifier();
        mfa.begin_enrollment(&v, "emp-7", "phone", totp_key(), MFA_NOW, None)
            .unwrap();
        mfa.confirm_enrollment(&v, "emp-7", "phone", &code_at(MFA_NOW), MFA_NOW)
            .unwrap();
        // A careful operator's database file: readable by its owner only.
        #[cfg(unix)]
        for file in ["keys.db", "keys.db-wal", "keys.db-shm"] {
            use std::os::unix::fs::PermissionsExt;
            let file = path.join(file);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
        Self {
            _dir: dir,
            dir: path,
            db,
            key,
            key_text,
            sealed,
        }
    }

    fn keys(&self) -> KeyManager {
        KeyManager::new(
            SqliteKeyStore::open(&self.db).unwrap(),
            LocalRootKey::from_file(&self.key).unwrap(),
        )
        .unwrap()
    }

    /// `custodian --store DB --root-key KEY ARGS...`, without colour.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custodian"));
        cmd.env_remove("CUSTODIAN_ROOT_KEY")
            .env_remove("CUSTODIAN_STORE")
            .env_remove("CUSTODIAN_ROOT_KEY_FILE")
            .env("NO_COLOR", "1")
            .arg("--store")
            .arg(&self.db)
            .arg("--root-key")
            .arg(&self.key)
            .args(args);
        cmd
    }

    /// Runs and checks the exit code; returns stdout. Neither stream may hold the root key.
    fn run(&self, args: &[&str], code: i32) -> String {
        let output = self.cmd(args).output().unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "custodian {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        self.assert_no_secret(&stdout);
        self.assert_no_secret(&stderr);
        stdout
    }

    /// Runs and checks that neither stream holds a secret; the caller asserts the rest.
    fn assert(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        let assert = self.cmd(args).assert();
        let output = assert.get_output();
        self.assert_no_secret(&String::from_utf8_lossy(&output.stdout));
        self.assert_no_secret(&String::from_utf8_lossy(&output.stderr));
        assert
    }

    /// [`Fixture::assert`] for a command built by hand.
    fn checked(&self, cmd: &mut Command) -> assert_cmd::assert::Assert {
        let assert = cmd.assert();
        let output = assert.get_output();
        self.assert_no_secret(&String::from_utf8_lossy(&output.stdout));
        self.assert_no_secret(&String::from_utf8_lossy(&output.stderr));
        assert
    }

    fn run_json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.run(&all, code);
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    fn assert_no_secret(&self, text: &str) {
        assert!(!text.contains(&self.key_text), "root key printed: {text}");
        // The seed of the staff member's factor, in its usual base32 and as text.
        assert!(
            !text.contains("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "seed printed: {text}"
        );
        assert!(
            !text.contains("12345678901234567890"),
            "seed printed: {text}"
        );
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The checks of a doctor run, by name: (status, reason).
fn doctor_checks(report: &Value) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn check<'a>(checks: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    checks
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}

// ---- keys ----

#[test]
fn keys_list_prints_a_table_and_json() {
    let f = Fixture::new();
    let table = f.run(&["keys", "list"], 0);
    assert!(table.starts_with("RING"), "{table}");
    assert!(table.contains("customers"), "{table}");
    assert!(table.contains("blind-index"), "{table}");
    assert!(table.contains("staff-mfa"), "{table}");
    assert!(!table.contains('\u{1b}'), "colour with NO_COLOR: {table}");

    let json = f.run_json(&["keys", "list"], 0);
    let rings = json.as_array().unwrap();
    let customers = rings.iter().find(|r| r["name"] == "customers").unwrap();
    assert_eq!(customers["primary_version"], 1);
    assert_eq!(customers["rotation_due"], false);
    assert_eq!(customers["versions"][0]["state"], "active");
    assert!(customers["versions"][0]["usage_reserved"].as_u64().unwrap() > 0);
}

#[test]
fn keys_rotate_disable_destroy_and_policy() {
    let f = Fixture::new();
    let rotated = f.run_json(&["keys", "rotate", "customers"], 0);
    assert_eq!(rotated["rotated"], true);
    assert_eq!(rotated["new_version"], 2);
    assert_eq!(rotated["subject_keys_rewrapped"], 2);

    let status = f.run_json(&["keys", "status", "customers"], 0);
    assert_eq!(status["primary_version"], 2);
    assert_eq!(status["versions"][0]["state"], "active");

    // Not due under the default policy: nothing changes.
    let not_due = f.run_json(&["keys", "rotate", "customers", "--if-due"], 0);
    assert_eq!(not_due["rotated"], false);

    // Disabling waits for the ring's propagation time (2 minutes by default).
    let refused = f
        .cmd(&["keys", "disable", "customers", "1"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let policy = f.run_json(&["keys", "policy", "customers", "--propagation", "0"], 0);
    assert_eq!(policy["policy"]["propagation_secs"], 0);
    let disabled = f.run_json(&["keys", "disable", "customers", "1"], 0);
    assert_eq!(disabled["versions"][0]["state"], "disabled");
    assert_eq!(disabled["min_decryption_version"], 2);

    // The primary cannot be disabled.
    f.assert(&["keys", "disable", "customers", "2"])
        .code(1)
        .stderr(predicate::str::contains("is the primary"));

    // Destroying needs --yes.
    f.assert(&["keys", "destroy", "customers", "1"])
        .code(1)
        .stderr(predicate::str::contains("irreversible"));
    let destroyed = f.run_json(&["keys", "destroy", "customers", "1", "--yes"], 0);
    assert_eq!(destroyed["newly_destroyed"], true);
    let table = f.run(&["keys", "status", "customers"], 0);
    assert!(table.contains("destroyed"), "{table}");

    // The rotation rewrapped the subject keys, not the stored value: its header still names
    // version 1, so it no longer opens (an application rewraps stored values with
    // `Custodian::rewrap_all` before its operator destroys a version).
    let keys = f.keys();
    let opened = keys.open(&email_context(), &f.sealed, now());
    assert!(
        opened.is_err(),
        "the header names version 1, which is destroyed"
    );

    let policy = f.run(&["keys", "policy", "customers", "--max-age", "90d"], 0);
    assert!(policy.contains("max age 90d 0h"), "{policy}");
    f.assert(&["keys", "policy", "customers", "--max-age", "3w"])
        .code(2);
    f.assert(&["keys", "policy", "customers", "--max-encryptions", "0"])
        .code(1)
        .stderr(predicate::str::contains("max_encryptions must be"));
}

#[test]
fn keys_rotate_off_a_terminal_prints_only_its_summary() {
    let f = Fixture::new();
    // stderr is a pipe here: the progress bar (with the store's count of keys to rewrap as its
    // total) is drawn only on a terminal, and never with --json.
    let output = f.cmd(&["keys", "rotate", "customers"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "rotated `customers`: version 2 is the primary; 2 subject keys rewrapped\n"
    );
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
    let output = f
        .cmd(&["--json", "keys", "rewrap", "customers"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(output.stderr).unwrap(), "");
    let rewrap: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rewrap["subject_keys_rewrapped"], 0);
}

#[test]
fn keys_rewrap_resumes_and_unknown_rings_are_refused() {
    let f = Fixture::new();
    let rewrap = f.run_json(&["keys", "rewrap", "customers"], 0);
    assert_eq!(rewrap["subject_keys_rewrapped"], 0);
    f.assert(&["keys", "status", "nope"])
        .code(1)
        .stderr(predicate::str::contains("no key ring `nope`"));
}

// ---- store and root key errors ----

#[test]
fn store_and_root_key_errors_have_their_exit_codes() {
    let f = Fixture::new();
    // No store: a usage error.
    f.checked(
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .env_remove("CUSTODIAN_STORE")
            .args(["keys", "list"]),
    )
    .code(2)
    .stderr(predicate::str::contains("no store given"));
    // A store that does not exist is not created.
    let missing = f.dir.join("missing.db");
    f.checked(Command::new(env!("CARGO_BIN_EXE_custodian")).args([
        "--store",
        s(&missing),
        "--root-key",
        s(&f.key),
        "keys",
        "list",
    ]))
    .code(3)
    .stderr(predicate::str::contains("does not create a store"));
    assert!(!missing.exists());
    // Another root key: the store says so.
    let other = f.dir.join("other.key");
    generate_key_file(&other).unwrap();
    f.checked(Command::new(env!("CARGO_BIN_EXE_custodian")).args([
        "--store",
        s(&f.db),
        "--root-key",
        s(&other),
        "keys",
        "list",
    ]))
    .code(3)
    .stderr(predicate::str::contains("root key"));
    // The key from the environment, as the library reads it.
    f.checked(
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .env("CUSTODIAN_ROOT_KEY", &f.key_text)
            .env("CUSTODIAN_STORE", &f.db)
            .args(["keys", "list"]),
    )
    .success()
    .stdout(predicate::str::contains("customers"));
    // `--help` never shows the variables' values (a URL may hold a password).
    f.checked(
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .env("CUSTODIAN_STORE", "postgres://app:hunter2@db/shop")
            .arg("--help"),
    )
    .success()
    .stdout(predicate::str::contains("CUSTODIAN_STORE"))
    .stdout(predicate::str::contains("hunter2").not());
    // A usage error from the parser.
    f.assert(&["keys", "frobnicate"]).code(2);
}

#[cfg(not(feature = "postgres"))]
#[test]
fn postgres_urls_need_the_postgres_feature() {
    let f = Fixture::new();
    f.checked(
        Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args([
                "--store",
                "postgres://u:hunter2@db/shop",
                "--root-key",
                s(&f.key),
            ])
            .args(["keys", "list"]),
    )
    .code(2)
    .stderr(predicate::str::contains("`postgres` feature"))
    .stderr(predicate::str::contains("hunter2").not());
}

// ---- subjects ----

#[test]
fn subjects_status_and_erase_print_a_receipt_that_verifies() {
    let f = Fixture::new();
    let status = f.run_json(&["subjects", "status", "cus_42"], 0);
    assert_eq!(status["state"], "live");
    assert_eq!(status["generations"][0]["wrapped_by"], 1);

    let receipt_file = f.dir.join("receipt.json");
    let receipt = f.run(
        &["subjects", "erase", "cus_42", "--receipt", s(&receipt_file)],
        0,
    );
    let receipt: Value = serde_json::from_str(&receipt).unwrap();
    assert_eq!(receipt["entry"]["subject"], "cus_42");
    assert_eq!(receipt["entry"]["actor"], "custodian-cli");
    assert!(
        receipt["checkpoint"]
            .as_str()
            .unwrap()
            .starts_with("custodian/audit\n")
    );

    // Crypto-shredded: the sealed email no longer opens.
    let err = f
        .keys()
        .open(&email_context(), &f.sealed, now())
        .unwrap_err();
    assert!(
        matches!(err, custodian::keys::KeyError::SubjectErased { .. }),
        "{err}"
    );

    let status = f.run(&["subjects", "status", "cus_42"], 0);
    assert!(
        status.contains("cus_42` in ring `customers`: erased"),
        "{status}"
    );
    let never = f.run_json(&["subjects", "status", "cus_99"], 0);
    assert_eq!(never["state"], "none");

    // Anyone verifies the receipt with the published key alone, without the store.
    let checkpoint = f.run_json(&["audit", "checkpoint"], 0);
    let verifier_key = checkpoint["verifier_key"].as_str().unwrap().to_owned();
    let verified = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .env_remove("CUSTODIAN_STORE")
        .args(["--json", "audit", "verify-receipt", s(&receipt_file)])
        .args(["--verifier-key", &verifier_key])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    f.assert_no_secret(&String::from_utf8_lossy(&verified.stdout));
    let verified: Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verified["subject"], "cus_42");

    // A receipt edited to name another customer does not verify.
    let forged = std::fs::read_to_string(&receipt_file)
        .unwrap()
        .replace("cus_42", "cus_43");
    let forged = f.file("forged.json", &forged);
    f.checked(Command::new(env!("CARGO_BIN_EXE_custodian")).args([
        "audit",
        "verify-receipt",
        s(&forged),
        "--verifier-key",
        &verifier_key,
    ]))
    .code(1)
    .stderr(predicate::str::contains("does not verify"));

    // Erasing again changes nothing and hands over the first erasure's receipt.
    let again = f.run_json(&["subjects", "erase", "cus_42"], 0);
    assert_eq!(again["erasure"]["newly_erased"], false);
    assert_eq!(
        again["receipt"]["entry"]["index"],
        receipt["entry"]["index"]
    );
}

#[test]
fn erasing_a_staff_member_erases_their_mfa_seeds_too() {
    let f = Fixture::new();
    f.run(&["subjects", "erase", "emp-7"], 0);
    let keys = f.keys();
    let history = keys.subject_history("staff-mfa", "emp-7").unwrap();
    assert!(history.last().unwrap().erased_at.is_some());
}

// ---- policy ----

const POLICIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies");

#[test]
fn policy_check_test_and_explain() {
    let f = Fixture::new();
    let shop = format!("{POLICIES}/shop.toml");
    let tests = format!("{POLICIES}/shop.tests.toml");
    let checked = f.run_json(&["policy", "check", &shop], 0);
    assert_eq!(checked["warnings"].as_array().unwrap().len(), 0);
    assert_eq!(checked["digest"].as_str().unwrap().len(), 64);

    let report = f.run(&["policy", "test", &shop, &tests], 0);
    assert!(report.contains("passed, 0 failed"), "{report}");

    // A test that fails: exit 1 and the failure's line.
    let failing = f.file(
        "failing.tests.toml",
        r#"
[[test]]
name = "nobody views customers"
principal = { id = "x", tenant = "store-1", roles = [] }
action = "view"
resource = { type = "customer", id = "1", tenant = "store-1" }
expect = "allow"
"#,
    );
    f.assert(&["policy", "test", &shop, s(&failing)])
        .code(1)
        .stdout(predicate::str::contains("0 passed, 1 failed"))
        .stdout(predicate::str::contains("failing.tests.toml:2"));

    // A broken policy: exit 1 with the file and line.
    let broken = f.file(
        "broken.toml",
        "version = 1\n[roles.support]\n[[rules]]\nname = \"r\"\neffect = \"allow\"\nroles = [\"suport\"]\npermissions = []\n",
    );
    f.assert(&["policy", "check", s(&broken)])
        .code(1)
        .stderr(predicate::str::contains("broken.toml:"))
        .stderr(predicate::str::contains("suport"));

    // A policy with a warning: listed, and fatal only with --deny-warnings.
    let lookalike = f.file(
        "lookalike.toml",
        "version = 1\n[resource_types.order]\nactions = [\"view\"]\n[roles.support]\n[roles.Support]\n",
    );
    let warned = f.run(&["policy", "check", s(&lookalike)], 0);
    assert!(warned.contains("warn: "), "{warned}");
    f.assert(&["policy", "check", s(&lookalike), "--deny-warnings"])
        .code(1);
}

#[test]
fn policy_explain_names_the_rule_the_view_and_what_would_allow() {
    let f = Fixture::new();
    let policy = f.file(
        "explain.toml",
        r#"
version = 1
[resource_types.customer]
actions = ["view"]
fields = { name = "text", email = "email" }
[roles.support]
[roles.auditor]
[[rules]]
name = "support-views-customers"
effect = "allow"
roles = ["support"]
permissions = ["customer:view"]
fields = { name = "full", email = "masked" }
when = { mfa_within = 300 }
"#,
    );
    let request = |roles: &str, mfa: Option<u64>| {
        let context = match mfa {
            Some(at) => format!(r#", "context": {{"now": 1700000000, "mfa_verified_at": {at}}}"#),
            None => r#", "context": {"now": 1700000000}"#.to_owned(),
        };
        format!(
            r#"{{"principal": {{"id": "emp-7", "tenant": "store-1", "roles": [{roles}]}},
               "action": "view",
               "resource": {{"type": "customer", "id": "42", "tenant": "store-1"}}{context}}}"#
        )
    };
    let allowed = f.file(
        "allowed.json",
        &request(r#""support""#, Some(1_699_999_990)),
    );
    let json = f.run_json(&["policy", "explain", s(&policy), s(&allowed)], 0);
    assert_eq!(json["allowed"], true);
    assert_eq!(json["rule"], "support-views-customers");
    let fields = json["fields"].as_array().unwrap();
    assert!(
        fields
            .iter()
            .any(|f| f["field"] == "email" && f["visibility"] == "masked")
    );

    let step_up = f.file("step_up.json", &request(r#""support""#, None));
    let json = f.run_json(&["policy", "explain", s(&policy), s(&step_up)], 0);
    assert_eq!(json["allowed"], false);
    assert_eq!(json["reason"], "step_up_required");
    assert!(
        json["would_allow"][0]
            .as_str()
            .unwrap()
            .contains("MFA step-up at most 300 s")
    );

    let no_role = f.file(
        "no_role.json",
        &request(r#""auditor""#, Some(1_699_999_990)),
    );
    let text = f.run(&["policy", "explain", s(&policy), s(&no_role)], 0);
    assert!(text.starts_with("deny: no rule allowed it"), "{text}");
    assert!(text.contains("would allow: role `support`"), "{text}");

    let bad = f.file("bad.json", r#"{"principal": {}}"#);
    f.assert(&["policy", "explain", s(&policy), s(&bad)])
        .code(2);
}

// ---- audit ----

#[test]
fn audit_tail_verify_checkpoint_and_prove() {
    let f = Fixture::new();
    let tail = f.run(&["audit", "tail", "-n", "3"], 0);
    assert!(tail.starts_with("INDEX"), "{tail}");
    assert_eq!(tail.lines().count(), 4, "{tail}");
    let entries = f.run_json(&["audit", "tail"], 0);
    assert!(
        entries
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"]["type"] == "key_ring_created")
    );

    let verified = f.run_json(&["audit", "verify"], 0);
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["against_kept_checkpoint"], false);

    let kept = f.dir.join("checkpoint.txt");
    let text = f.run(&["audit", "checkpoint", "--out", s(&kept)], 0);
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), text);
    f.run(&["subjects", "erase", "cus_43"], 0);
    let verified = f.run_json(&["audit", "verify", "--checkpoint", s(&kept)], 0);
    assert_eq!(verified["against_kept_checkpoint"], true);
    assert!(verified["unsigned_entries"].as_u64().unwrap() >= 1);

    let proof = f.run_json(&["audit", "prove", "0"], 0);
    assert_eq!(proof["proof"]["leaf_index"], 0);
    assert_eq!(proof["entry"]["index"], 0);
    let consistency = f.run_json(&["audit", "prove", "--from", "1"], 0);
    assert_eq!(consistency["proof"]["old_size"], 1);
    f.assert(&["audit", "prove", "100000"]).code(1);

    // A checkpoint signed under another origin is refused.
    f.assert(&[
        "--origin",
        "other/log",
        "audit",
        "verify",
        "--checkpoint",
        s(&kept),
    ])
    .code(1);
}

// ---- MFA ----

#[test]
fn mfa_status_and_unlock() {
    let f = Fixture::new();
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["factor"], "phone");
    assert_eq!(status["factors"][0]["phase"], "active");
    assert_eq!(status["factors"][0]["locked"], false);

    lock_emp_7(&f);
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["locked"], true);
    let table = f.run(&["mfa", "status", "emp-7"], 0);
    assert!(table.contains("locked"), "{table}");

    let unlocked = f.run_json(&["--actor", "admin-1", "mfa", "unlock", "emp-7"], 0);
    assert_eq!(unlocked["unlocked"][0], "phone");
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["locked"], false);
    let tail = f.run_json(&["audit", "tail", "-n", "1"], 0);
    assert_eq!(tail[0]["action"]["type"], "mfa_unlocked");
    assert_eq!(tail[0]["actor"], "admin-1");

    f.assert(&["mfa", "reset", "nobody"]).code(1);
    f.assert(&["mfa", "unlock", "emp-7", "laptop"]).code(1);
}

#[test]
fn mfa_reset_disables_every_factor_and_the_user_enrolls_again() {
    let f = Fixture::new();
    let mfa = mfa_service(&f);
    let v = verifier();
    let before = MFA_NOW + 60;
    mfa.verify(&v, "emp-7", "phone", &code_at(before), before)
        .unwrap();
    let (set, codes) = RecoveryCodeSet::generate("emp-7").unwrap();
    mfa.replace_recovery_codes(&set).unwrap();
    mfa.use_recovery_code("emp-7", codes[0].expose_secret(), before)
        .unwrap();

    let reset = f.run_json(&["--actor", "admin-2", "mfa", "reset", "emp-7"], 0);
    assert_eq!(reset["disabled"], serde_json::json!(["phone"]));
    assert_eq!(reset["must_enroll_again"], true);
    assert_eq!(reset["recovery_codes_revoked"], codes.len() - 1);
    let tail = f.run_json(&["audit", "tail", "-n", "2"], 0);
    for entry in tail.as_array().unwrap() {
        assert_eq!(entry["action"]["type"], "mfa_disabled");
        assert_eq!(entry["actor"], "admin-2");
    }
    assert_eq!(tail[0]["resource"], "emp-7/phone");
    assert_eq!(tail[1]["resource"], "emp-7/recovery-code");
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["phase"], "disabled");
    let table = f.run(&["mfa", "status", "emp-7"], 0);
    assert!(table.contains("disabled"), "{table}");

    // A second reset changes nothing and records nothing.
    let again = f.run(&["mfa", "reset", "emp-7"], 0);
    assert!(again.contains("already disabled"), "{again}");
    assert!(again.contains("must enroll again"), "{again}");
    let tail = f.run_json(&["audit", "tail", "-n", "1"], 0);
    assert_eq!(tail[0]["action"]["type"], "mfa_disabled");
    assert_eq!(tail[0]["actor"], "admin-2");
    assert_eq!(tail[0]["resource"], "emp-7/recovery-code");

    // A code the member still had no longer gives a step-up.
    assert!(
        mfa.use_recovery_code("emp-7", codes[1].expose_secret(), before + 1)
            .is_err()
    );

    // The old code no longer logs in.
    let after = MFA_NOW + 120;
    assert_eq!(
        mfa.verify(&v, "emp-7", "phone", &code_at(after), after)
            .unwrap_err()
            .reject_reason(),
        Some(RejectReason::NotActive)
    );

    // A fresh enrollment of the same factor id, without a step-up, replaces the disabled one.
    let new_key = TotpKey::generate().unwrap();
    let app = new_key.duplicate();
    mfa.begin_enrollment(&v, "emp-7", "phone", new_key, after, None)
        .unwrap();
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["phase"], "pending");
    let confirm = after + 30;
    mfa.confirm_enrollment(
        &v,
        "emp-7",
        "phone",
        app.code_at(confirm).unwrap().expose_secret(),
        confirm,
    )
    .unwrap();
    let login = confirm + 30;
    mfa.verify(
        &v,
        "emp-7",
        "phone",
        app.code_at(login).unwrap().expose_secret(),
        login,
    )
    .unwrap();
    let status = f.run_json(&["mfa", "status", "emp-7"], 0);
    assert_eq!(status["factors"][0]["phase"], "active");
}

/// The application's MFA service over the fixture's store.
fn mfa_service(f: &Fixture) -> MfaService {
    let custodian = Custodian::builder()
        .key_store(SqliteKeyStore::open(&f.db).unwrap())
        .root_key(LocalRootKey::from_file(&f.key).unwrap())
        .build()
        .unwrap();
    custodian
        .mfa(SqliteFactorStore::open(&f.db).unwrap())
        .unwrap()
}

fn lock_emp_7(f: &Fixture) {
    let mfa = mfa_service(f);
    let v = verifier();
    for i in 0..3 {
        mfa.verify(&v, "emp-7", "phone", "000000", MFA_NOW + 100 + i)
            .unwrap_err();
    }
}

// ---- doctor ----

#[test]
fn doctor_passes_on_a_healthy_store() {
    let f = Fixture::new();
    for ring in ["customers", "blind-index", "staff-mfa"] {
        f.run(&["keys", "policy", ring, "--max-age", "365d"], 0);
    }
    let kept = f.dir.join("checkpoint.txt");
    f.run(&["audit", "checkpoint", "--out", s(&kept)], 0);
    let staff = f.file("staff.txt", "# staff\nemp-7\n");
    let policy = format!("{POLICIES}/shop.toml");
    let report = f.run_json(
        &[
            "doctor",
            "--checkpoint",
            s(&kept),
            "--staff",
            s(&staff),
            "--policy",
            &policy,
        ],
        0,
    );
    assert_eq!(report["status"], "pass", "{report:#}");
    let checks = doctor_checks(&report);
    for name in [
        "root-key",
        "sqlite-wal",
        "sqlite-secure-delete",
        "sqlite-file",
        "store",
        "ring:customers",
        "erasures-purged",
        "audit-log",
        "audit-checkpoint",
        "mfa",
        "policy",
    ] {
        assert_eq!(check(&checks, name).1, "pass", "{name}: {checks:?}");
    }
    let table = f.run(&["doctor", "--checkpoint", s(&kept)], 0);
    assert!(table.trim_end().ends_with("doctor: pass"), "{table}");
}

#[test]
fn doctor_warns_without_a_kept_checkpoint() {
    let f = Fixture::new();
    let report = f.run_json(&["doctor"], 0);
    assert_eq!(report["status"], "warn");
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "audit-checkpoint");
    assert_eq!(status, "warn");
    assert!(reason.contains("rollback"), "{reason}");
}

#[cfg(unix)]
#[test]
fn doctor_fails_on_a_root_key_file_others_can_read() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    std::fs::set_permissions(&f.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = f.run_json(&["doctor"], 1);
    assert_eq!(report["status"], "fail");
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "root-key");
    assert_eq!(status, "fail");
    assert!(reason.contains("mode 0644"), "{reason}");
    let fix = report["checks"][0]["fix"].as_str().unwrap();
    assert_eq!(fix, format!("chmod 600 {}", f.key.display()));
    let text = f.run(&["doctor"], 1);
    assert!(text.contains("fail root-key: chmod 600"), "{text}");
}

#[test]
fn doctor_fails_on_a_ring_overdue_for_rotation() {
    let f = Fixture::new();
    let policy = RotationPolicy {
        max_age_secs: Some(3_600),
        ..RotationPolicy::default()
    };
    // Created two hours ago under a one-hour policy.
    f.keys()
        .create_ring("orders", Suite::default(), policy, now() - 7_200)
        .unwrap();
    let report = f.run_json(&["doctor"], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "ring:orders");
    assert_eq!(status, "fail");
    assert!(
        reason.starts_with("overdue for rotation: primary version 1 is 2h"),
        "{reason}"
    );
    let (_, status, reason) = check(&checks, "ring:customers");
    assert_eq!(status, "warn");
    assert!(reason.starts_with("no maximum age"), "{reason}");

    // Near the limit (over 90% of the age) is a warning; rotating fixes both.
    f.run(&["keys", "rotate", "orders"], 0);
    f.keys()
        .create_ring("invoices", Suite::default(), policy, now() - 3_400)
        .unwrap();
    let report = f.run_json(&["doctor"], 0);
    let checks = doctor_checks(&report);
    assert_eq!(check(&checks, "ring:orders").1, "pass");
    assert_eq!(check(&checks, "ring:invoices").1, "warn");
}

#[test]
fn doctor_fails_when_an_audit_row_was_tampered_with() {
    let f = Fixture::new();
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    // Someone with the file drops the append-only trigger and flips one byte of entry 1.
    conn.execute_batch("DROP TRIGGER audit_entries_no_update")
        .unwrap();
    let entry: Vec<u8> = conn
        .query_row("SELECT entry FROM audit_entries WHERE idx = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let mut edited = entry.clone();
    let last = edited.len() - 1;
    edited[last] ^= 1;
    conn.execute(
        "UPDATE audit_entries SET entry = ?1 WHERE idx = 1",
        rusqlite::params![edited],
    )
    .unwrap();
    drop(conn);
    let report = f.run_json(&["doctor"], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "audit-log");
    assert_eq!(status, "fail");
    assert!(reason.contains("does not verify"), "{reason}");
    f.assert(&["audit", "verify"])
        .code(1)
        .stderr(predicate::str::contains("does not verify"));
}

#[test]
fn doctor_fails_when_the_log_was_rolled_back_or_the_checkpoint_is_old() {
    let f = Fixture::new();
    let kept = f.dir.join("checkpoint.txt");
    f.run(&["subjects", "erase", "cus_43"], 0);
    f.run(&["audit", "checkpoint", "--out", s(&kept)], 0);
    let fresh = f.run_json(&["doctor", "--checkpoint", s(&kept)], 0);
    assert_eq!(check(&doctor_checks(&fresh), "audit-checkpoint").1, "pass");
    // Older than allowed: a warning with the fix.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let report = f.run_json(
        &[
            "doctor",
            "--checkpoint",
            s(&kept),
            "--checkpoint-max-age",
            "0s",
        ],
        0,
    );
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "audit-checkpoint");
    assert_eq!(status, "warn");
    assert!(reason.contains("more than 0s"), "{reason}");

    // Roll the database back past the checkpoint: the newest entry disappears.
    let conn = rusqlite::Connection::open(&f.db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_entries_no_delete")
        .unwrap();
    conn.execute(
        "DELETE FROM audit_entries WHERE idx = (SELECT max(idx) FROM audit_entries)",
        [],
    )
    .unwrap();
    drop(conn);
    let report = f.run_json(&["doctor", "--checkpoint", s(&kept)], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "audit-checkpoint");
    assert_eq!(status, "fail", "{checks:?}");
    assert!(reason.contains("does not extend checkpoint"), "{reason}");
}

#[test]
fn doctor_fails_when_sqlite_left_wal_mode() {
    let f = Fixture::new();
    // A copy of the store, so that no connection of this test process is open on it (leaving
    // WAL needs the only connection).
    let copy = f.dir.join("copy.db");
    std::fs::copy(&f.db, &copy).unwrap();
    let wal = f.dir.join("keys.db-wal");
    if wal.exists() {
        std::fs::copy(&wal, f.dir.join("copy.db-wal")).unwrap();
    }
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    drop(conn);
    let output = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "--json",
            "--store",
            s(&copy),
            "--root-key",
            s(&f.key),
            "doctor",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    f.assert_no_secret(&String::from_utf8_lossy(&output.stdout));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "sqlite-wal");
    assert_eq!(status, "fail");
    assert!(reason.contains("`delete`"), "{reason}");
}

#[test]
fn doctor_fails_while_an_erasure_is_not_purged_from_the_wal() {
    let f = Fixture::new();
    // A long reader (a backup, a report) holds a snapshot from before the erasure.
    let reader = rusqlite::Connection::open(&f.db).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM audit_entries", [], |r| r.get(0))
        .unwrap();
    f.run(&["subjects", "erase", "cus_43"], 0);
    let report = f.run_json(&["doctor"], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "erasures-purged");
    assert_eq!(status, "fail");
    assert!(reason.contains("write-ahead log"), "{reason}");
    // Once the reader is done, the next run purges and passes.
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let report = f.run_json(&["doctor"], 0);
    assert_eq!(check(&doctor_checks(&report), "erasures-purged").1, "pass");
}

#[test]
fn doctor_warns_on_disabled_versions_past_their_grace_and_locked_staff() {
    let f = Fixture::new();
    f.run(&["keys", "rotate", "customers"], 0);
    f.run(&["keys", "policy", "customers", "--propagation", "0"], 0);
    f.run(&["keys", "disable", "customers", "1"], 0);
    lock_emp_7(&f);
    let staff = f.file("staff.txt", "emp-7 support\nemp-8\nemp-9 support,auditor\n");
    let report = f.run_json(
        &["doctor", "--destroy-grace", "0s", "--staff", s(&staff)],
        0,
    );
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "ring:customers:v1");
    assert_eq!(status, "warn");
    assert!(reason.contains("disabled but not destroyed"), "{reason}");
    let (_, status, reason) = check(&checks, "mfa:emp-7");
    assert_eq!(status, "warn");
    assert!(reason.contains("locked factors: phone"), "{reason}");
    let (_, status, reason) = check(&checks, "mfa:emp-8");
    assert_eq!(status, "warn");
    assert!(reason.contains("no active MFA factor"), "{reason}");

    // With the policy: a member without a factor whose role needs a step-up fails.
    let policy = f.file(
        "step_up.toml",
        r#"
version = 1
[resource_types.customer]
actions = ["view"]
[roles.support]
[roles.auditor]
[[rules]]
name = "support-views-with-mfa"
effect = "allow"
roles = ["support"]
permissions = ["customer:view"]
when = { mfa_within = 300 }
"#,
    );
    let staff = f.file("staff2.txt", "emp-8 auditor\nemp-9 support,auditor\n");
    let report = f.run_json(&["doctor", "--staff", s(&staff), "--policy", s(&policy)], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "mfa:emp-9");
    assert_eq!(status, "fail");
    assert!(
        reason.contains("step-up on customer:view (rule `support-views-with-mfa`)"),
        "{reason}"
    );
    assert_eq!(check(&checks, "mfa:emp-8").1, "warn");
}

#[test]
fn doctor_finds_step_up_rules_that_depend_on_resource_attributes() {
    let f = Fixture::new();
    // A probe without attributes misses both step-ups: the allow rule asks for MFA only on
    // orders assigned to the member, the deny rule only on large refunds.
    let policy = f.file(
        "attributes.toml",
        r#"
version = 1
[resource_types.order]
actions = ["view", "refund"]
attributes = { total = "integer", assigned_agent = "ref:employee" }
[roles.support]
[roles.finance]
[roles.auditor]
[roles.trainee]
inherits = ["support"]
[[rules]]
name = "support-views-assigned-orders-with-mfa"
effect = "allow"
roles = ["support"]
except_roles = ["trainee"]
permissions = ["order:view"]
when = { principal_is = "assigned_agent", mfa_within = 300 }
[[rules]]
name = "finance-refunds"
effect = "allow"
roles = ["finance"]
permissions = ["order:refund"]
[[rules]]
name = "large-refunds-after-mfa"
effect = "deny"
roles = ["finance"]
permissions = ["order:refund"]
when = { at_least = { total = 100000 } }
unless = { mfa_within = 120 }
[[rules]]
name = "expired-audit-grant"
effect = "allow"
roles = ["auditor"]
permissions = ["order:view"]
when = { mfa_within = 300, valid_until = 1000000000 }
"#,
    );
    let staff = f.file(
        "staff.txt",
        "emp-8 support\nemp-9 finance\nemp-10 auditor\nemp-11 trainee\n",
    );
    let report = f.run_json(&["doctor", "--staff", s(&staff), "--policy", s(&policy)], 1);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "mfa:emp-8");
    assert_eq!(status, "fail");
    assert!(
        reason.contains("step-up on order:view (rule `support-views-assigned-orders-with-mfa`)"),
        "{reason}"
    );
    let (_, status, reason) = check(&checks, "mfa:emp-9");
    assert_eq!(status, "fail");
    assert!(
        reason.contains("step-up on order:refund (rule `large-refunds-after-mfa`)"),
        "{reason}"
    );
    // A grant that expired asks for nothing any more; an excepted role is not asked.
    assert_eq!(check(&checks, "mfa:emp-10").1, "warn");
    assert_eq!(check(&checks, "mfa:emp-11").1, "warn");
}

#[test]
fn doctor_reports_policy_warnings_and_broken_policies() {
    let f = Fixture::new();
    let lookalike = f.file(
        "lookalike.toml",
        "version = 1\n[resource_types.order]\nactions = [\"view\"]\n[roles.support]\n[roles.Support]\n",
    );
    let report = f.run_json(&["doctor", "--policy", s(&lookalike)], 0);
    assert_eq!(check(&doctor_checks(&report), "policy").1, "warn");
    let broken = f.file("broken.toml", "version = 2\n");
    let report = f.run_json(&["doctor", "--policy", s(&broken)], 1);
    assert_eq!(check(&doctor_checks(&report), "policy").1, "fail");
}

// ---- PostgreSQL (the server `scripts/with-postgres` starts) ----

/// The test server's URL, or `None` (with a notice) without one; in CI a missing server fails.
#[cfg(feature = "postgres")]
fn pg_url() -> Option<String> {
    match std::env::var("CUSTODIAN_PG_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CUSTODIAN_PG_URL is not set but CI is: run through `scripts/with-postgres`")
        }
        _ => {
            eprintln!("\n!!! SKIPPED: the PostgreSQL CLI test needs `scripts/with-postgres`\n");
            None
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn commands_and_doctor_run_against_a_postgres_store_by_url() {
    use custodian::keys::PgKeyStore;
    use custodian::postgres::Postgres;
    use custodian::postgres::sqlx::{self, AssertSqlSafe};

    let Some(url) = pg_url() else { return };
    // A database of its own, named in the URL as an operator would.
    let admin = Postgres::connect(&url).unwrap();
    let database = format!("custodian_cli_{}", std::process::id());
    let run = |sql: String| {
        admin
            .runtime()
            .block_on(sqlx::query(AssertSqlSafe(sql)).execute(admin.pool()))
            .unwrap();
    };
    run(format!("DROP DATABASE IF EXISTS {database}"));
    run(format!("CREATE DATABASE {database}"));
    let (base, _) = url.rsplit_once('/').unwrap();
    let db_url = format!("{base}/{database}");

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("root.key");
    generate_key_file(&key).unwrap();
    let key_text = std::fs::read_to_string(&key).unwrap().trim().to_owned();
    {
        let store = PgKeyStore::open(Postgres::connect(&db_url).unwrap()).unwrap();
        let keys = KeyManager::new(store, LocalRootKey::from_file(&key).unwrap()).unwrap();
        keys.create_ring(
            "customers",
            Suite::default(),
            RotationPolicy::default(),
            now(),
        )
        .unwrap();
        keys.seal(
            "customers",
            Some("cus_1"),
            &email_context(),
            b"a@example.com",
            now(),
        )
        .unwrap();
    }
    let custodian = |args: &[&str], code: i32| -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(["--json", "--store", &db_url, "--root-key", s(&key)])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(
            output.status.code(),
            Some(code),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(!stdout.contains(&key_text) && !stderr.contains(&key_text));
        serde_json::from_str(&stdout).unwrap()
    };
    let rings = custodian(&["keys", "list"], 0);
    assert_eq!(rings[0]["name"], "customers");
    let rotated = custodian(&["keys", "rotate", "customers"], 0);
    assert_eq!(rotated["subject_keys_rewrapped"], 1);
    let erased = custodian(&["subjects", "erase", "cus_1"], 0);
    assert_eq!(erased["receipt"]["entry"]["subject"], "cus_1");
    let verified = custodian(&["audit", "verify"], 0);
    assert_eq!(verified["verified"], true);

    // The test server listens on 127.0.0.1 without TLS: doctor says so as a warning.
    let report = custodian(&["doctor"], 0);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "postgres-tls");
    assert_eq!(status, "warn");
    assert!(reason.contains("no TLS"), "{reason}");
    assert_eq!(check(&checks, "audit-log").1, "pass");
    let (_, status, reason) = check(&checks, "erasures-purged");
    assert_eq!(status, "warn");
    assert!(reason.contains("VACUUM"), "{reason}");
    run(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
}

#[cfg(feature = "postgres")]
#[test]
fn doctor_fails_on_a_postgres_connection_that_leaves_the_host_without_tls() {
    let f = Fixture::new();
    // Nothing listens at this documentation address (RFC 5737): the store check fails too, after
    // the connection timeout, but the transport check needs no server.
    let output = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args([
            "--json",
            "--store",
            "postgres://app:hunter2@192.0.2.1:5432/shop",
        ])
        .args(["--root-key", s(&f.key), "doctor"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("hunter2"), "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "postgres-tls");
    assert_eq!(status, "fail");
    assert!(reason.contains("`192.0.2.1` has no TLS"), "{reason}");
    assert_eq!(check(&checks, "store").1, "fail");
}

#[cfg(unix)]
#[test]
fn doctor_warns_on_a_database_file_others_can_read_and_on_usage_near_the_limit() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    std::fs::set_permissions(&f.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A ring whose primary has reserved one block of 65,536 encryptions out of 70,000.
    let policy = RotationPolicy {
        max_age_secs: Some(86_400),
        max_encryptions: 70_000,
        ..RotationPolicy::default()
    };
    let keys = f.keys();
    keys.create_ring("orders", Suite::default(), policy, now())
        .unwrap();
    keys.seal("orders", None, &email_context(), b"x", now())
        .unwrap();
    drop(keys);
    let report = f.run_json(&["doctor"], 0);
    let checks = doctor_checks(&report);
    let (_, status, reason) = check(&checks, "sqlite-file");
    assert_eq!(status, "warn");
    assert!(reason.contains("mode 0644"), "{reason}");
    let (_, status, reason) = check(&checks, "ring:orders");
    assert_eq!(status, "warn", "{reason}");
    assert!(reason.contains("usage 93.6%"), "{reason}");
}
