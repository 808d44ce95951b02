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
#[derive(Zeroize, ZeroizeOnDrop, Default)]
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
    fn from_slice_checks_length() {
        assert!(SecretKey::from_slice(&[0u8; 31]).is_none());
        assert!(SecretKey::from_slice(&[0u8; 33]).is_none());
        assert_eq!(
            SecretKey::from_slice(&[7u8; 32]).unwrap().expose_secret(),
            &[7u8; 32]
        );
    }
}
