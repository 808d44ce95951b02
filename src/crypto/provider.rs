//! The two traits a crypto backend implements, and the provider that bundles them.

use super::{CryptoError, Suite};
use crate::secret::SecretKey;
use core::fmt;

/// Length of every AEAD tag custodian uses.
pub const TAG_LEN: usize = 16;

/// An AEAD authentication tag.
pub type Tag = [u8; TAG_LEN];

/// An AEAD algorithm: turns key bytes into a ready-to-use [`AeadKey`].
pub trait AeadAlgorithm: Send + Sync + fmt::Debug {
    /// The suite this algorithm implements.
    fn suite(&self) -> Suite;

    /// Expands `key` (key schedule, hash subkey) into a key object that can seal and open many
    /// messages. The key object zeroizes its state when dropped.
    fn key(&self, key: &SecretKey) -> Box<dyn AeadKey>;

    /// Seals one message under a key that is used only once (a data key). The default expands the
    /// key with [`AeadAlgorithm::key`]; a backend may keep the expanded key on the stack instead.
    fn seal_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError> {
        self.key(key).seal_in_place(nonce, aad, in_out)
    }

    /// Opens one message under a key that is used only once; see [`AeadAlgorithm::seal_once`].
    fn open_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError> {
        self.key(key).open_in_place(nonce, aad, in_out, tag)
    }
}

/// An expanded AEAD key. Implementations must zeroize their state on drop and must not print it.
pub trait AeadKey: Send + Sync + fmt::Debug {
    /// The suite this key belongs to.
    fn suite(&self) -> Suite;

    /// Encrypts `in_out` in place and returns the tag.
    ///
    /// The caller promises that `nonce` is never used twice with this key; custodian only passes
    /// nonces freshly drawn from [`crate::crypto::fill_random`].
    fn seal_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError>;

    /// Verifies `tag` and decrypts `in_out` in place. On failure `in_out` must not be used: its
    /// content is unspecified (implementations should leave it encrypted).
    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError>;
}

/// A crypto backend: one algorithm object per suite.
#[derive(Debug)]
pub struct CryptoProvider {
    /// Backend name, for diagnostics (`"aws-lc-rs"`, `"rustcrypto"`).
    pub name: &'static str,
    /// AES-256-GCM.
    pub aes_256_gcm: &'static dyn AeadAlgorithm,
    /// ChaCha20-Poly1305.
    pub chacha20_poly1305: &'static dyn AeadAlgorithm,
    /// XChaCha20-Poly1305.
    pub xchacha20_poly1305: &'static dyn AeadAlgorithm,
}

impl CryptoProvider {
    /// The algorithm for `suite`.
    pub fn aead(&self, suite: Suite) -> &'static dyn AeadAlgorithm {
        match suite {
            Suite::Aes256Gcm => self.aes_256_gcm,
            Suite::ChaCha20Poly1305 => self.chacha20_poly1305,
            Suite::XChaCha20Poly1305 => self.xchacha20_poly1305,
        }
    }
}
