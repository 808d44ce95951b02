//! The aws-lc-rs backend (feature `aws-lc`, on by default): AWS-LC's assembly AES-256-GCM and
//! ChaCha20-Poly1305. AWS-LC has no XChaCha20-Poly1305, so that suite comes from the RustCrypto
//! backend, the way a rustls provider may mix implementations.
//!
//! It exists for speed on short messages, where every seal expands a fresh data key: on the
//! reference machine an AES-256-GCM key setup plus a 256-byte seal costs about half of what the
//! RustCrypto backend needs (`benches/envelope.rs` measures both in one run). Key state lives inside
//! AWS-LC, which zeroes every allocation when it is freed (`OPENSSL_free` calls `OPENSSL_cleanse`).

use super::{AeadAlgorithm, AeadKey, CryptoError, CryptoProvider, Suite, Tag};
use crate::secret::SecretKey;
use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use core::fmt;

/// The aws-lc-rs provider.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    name: "aws-lc-rs",
    aes_256_gcm: &Algorithm {
        suite: Suite::Aes256Gcm,
        aead: &aead::AES_256_GCM,
    },
    chacha20_poly1305: &Algorithm {
        suite: Suite::ChaCha20Poly1305,
        aead: &aead::CHACHA20_POLY1305,
    },
    xchacha20_poly1305: super::rustcrypto::XCHACHA20_POLY1305,
};

struct Algorithm {
    suite: Suite,
    aead: &'static aead::Algorithm,
}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "aws-lc-rs {}", self.suite.name())
    }
}

impl Algorithm {
    /// AWS-LC refuses a key only if its length is wrong, which `SecretKey` rules out; should it
    /// refuse anyway, the key object carries the error and returns it from every seal and open.
    fn expand(&self, key: &SecretKey) -> Key {
        let key = UnboundKey::new(self.aead, key.expose_secret())
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::KeySetup);
        Key {
            suite: self.suite,
            key,
        }
    }
}

impl AeadAlgorithm for Algorithm {
    fn suite(&self) -> Suite {
        self.suite
    }

    fn key(&self, key: &SecretKey) -> Box<dyn AeadKey> {
        Box::new(self.expand(key))
    }

    // The one-shot paths keep the key on the stack: skipping the trait default's `Box` saves about
    // 50 ns per 256-byte seal and 30 ns per open (benches/envelope.rs, provider group).
    fn seal_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError> {
        self.expand(key).seal_in_place(nonce, aad, in_out)
    }

    fn open_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError> {
        self.expand(key).open_in_place(nonce, aad, in_out, tag)
    }
}

/// An expanded AWS-LC key (or the reason AWS-LC refused it).
struct Key {
    suite: Suite,
    key: Result<LessSafeKey, CryptoError>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeadKey({})", self.suite.name())
    }
}

impl Key {
    fn parts(&self, nonce: &[u8]) -> Result<(&LessSafeKey, Nonce), CryptoError> {
        let key = self.key.as_ref().map_err(|error| *error)?;
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::NonceLength {
                expected: self.suite.nonce_len(),
                actual: nonce.len(),
            })?;
        Ok((key, nonce))
    }
}

impl AeadKey for Key {
    fn suite(&self) -> Suite {
        self.suite
    }

    fn seal_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError> {
        let (key, nonce) = self.parts(nonce)?;
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(aad), in_out)
            .map_err(|_| CryptoError::MessageTooLong)?;
        tag.as_ref().try_into().map_err(|_| CryptoError::KeySetup)
    }

    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError> {
        let (key, nonce) = self.parts(nonce)?;
        key.open_in_place_separate_tag(nonce, Aad::from(aad), tag, in_out)
            .map(|_| ())
            .map_err(|_| CryptoError::Authentication)
    }
}
