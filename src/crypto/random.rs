use super::CryptoError;
use rand::TryRng;
use rand::rngs::SysRng;

/// Fills `dest` from the operating system's CSPRNG (`getrandom(2)` on Linux).
///
/// Every key and nonce custodian makes comes from here. The OS generator is used directly, not a
/// user-space generator seeded from it, so that a forked process can never repeat a nonce.
pub fn fill_random(dest: &mut [u8]) -> Result<(), CryptoError> {
    SysRng.try_fill_bytes(dest).map_err(|_| CryptoError::Random)
}
