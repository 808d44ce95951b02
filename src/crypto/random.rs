use super::CryptoError;

/// Fills `dest` from a cryptographically secure generator that is safe across `fork()`.
///
/// Every key, nonce, salt and recovery code custodian makes comes from here. With the `aws-lc`
/// feature (on by default) the source is AWS-LC's `RAND_bytes`: a per-thread CTR-DRBG seeded from
/// the OS, whose state is wiped in a forked child (`MADV_WIPEONFORK`) and which, where it cannot
/// detect a VM snapshot restore, reseeds before every call and mixes in the CPU's generator
/// (RDRAND/RNDR). Without the feature the source is `getrandom(2)` directly (the `getrandom` crate, on every call).
/// docs/ARCHITECTURE.md explains the choice; `tests/random_fork.rs` checks the fork case.
pub fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    #[cfg(feature = "aws-lc")]
    return aws_lc_rs::rand::fill(dest).map_err(|_| CryptoError::Random);
    #[cfg(not(feature = "aws-lc"))]
    return getrandom::fill(dest).map_err(|_| CryptoError::Random);
}

#[cfg(test)]
mod tests {
    /// docs/ARCHITECTURE.md rejects user-space generators, so none may be one import away: the
    /// library depends on no `rand` with its default features (`thread_rng`, `StdRng`).
    #[test]
    fn no_user_space_generator_is_a_dependency() {
        let manifest: toml::Table = toml::from_str(include_str!("../../Cargo.toml")).unwrap();
        let dependencies = manifest["dependencies"].as_table().unwrap();
        for name in ["rand", "rand_chacha", "rand_hc"] {
            if let Some(spec) = dependencies.get(name) {
                let default_features = spec
                    .as_table()
                    .and_then(|t| t.get("default-features"))
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(true);
                assert!(
                    !default_features,
                    "`{name}` is a dependency with its default features (user-space generators)"
                );
            }
        }
    }
}
