use super::CryptoError;

/// Fills `dest` from a cryptographically secure generator that is safe across `fork()`.
///
/// Every key, nonce, salt and recovery code custodian makes comes from here. With the `aws-lc`
/// feature (on by default) the source is AWS-LC's `RAND_bytes`: a per-thread CTR-DRBG seeded from
/// the OS, whose state is wiped in a forked child (`MADV_WIPEONFORK`) and which, where it cannot
/// detect a VM snapshot restore, reseeds before every call and mixes in the CPU's generator
/// (RDRAND/RNDR). Without the feature the source is `getrandom(2)` directly (`rand::rngs::SysRng`).
/// docs/ARCHITECTURE.md explains the choice; `tests/random_fork.rs` checks the fork case.
pub fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    #[cfg(feature = "aws-lc")]
    return aws_lc_rs::rand::fill(dest).map_err(|_| CryptoError::Random);
    #[cfg(not(feature = "aws-lc"))]
    return rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, dest)
        .map_err(|_| CryptoError::Random);
}
