//! Replays every checked-in fuzz corpus through its target's body on stable, so CI covers the fuzz
//! targets without nightly. The bodies live in `fuzz/bodies/` and are shared with `fuzz/fuzz_targets/`.

use std::path::Path;

/// Runs `body` over every file in `fuzz/corpus/<name>/` and checks the corpus is not empty.
fn replay(name: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        body(&data);
        count += 1;
    }
    assert!(count > 0, "corpus {name} is empty");
}

macro_rules! corpus_tests {
    ($($name:ident = $path:literal),* $(,)?) => {$(
        #[path = $path]
        mod $name;
        #[test]
        fn $name() {
            replay(stringify!($name), $name::run);
        }
    )*};
}

// One entry per fuzz target: `name = "path of its body"`; each body defines `pub fn run(data: &[u8])`.
corpus_tests! {
    envelope_open = "../fuzz/bodies/envelope_open.rs",
    otpauth_uri = "../fuzz/bodies/otpauth_uri.rs",
    base32_secret = "../fuzz/bodies/base32_secret.rs",
    rbac_policy_load = "../fuzz/bodies/rbac_policy_load.rs",
    keys_open = "../fuzz/bodies/keys_open.rs",
    audit_parse = "../fuzz/bodies/audit_parse.rs",
}
