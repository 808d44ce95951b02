//! The default backend: RustCrypto's `aes-gcm` and `chacha20poly1305`, with zeroization enabled.

use super::{AeadAlgorithm, AeadKey, CryptoError, CryptoProvider, Suite, Tag};
use crate::secret::SecretKey;
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use core::fmt;

/// The RustCrypto provider.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    name: "rustcrypto",
    aes_256_gcm: &Algorithm(Suite::Aes256Gcm),
    chacha20_poly1305: &Algorithm(Suite::ChaCha20Poly1305),
    xchacha20_poly1305: XCHACHA20_POLY1305,
};

/// XChaCha20-Poly1305, which the aws-lc-rs provider borrows from this one.
pub(super) static XCHACHA20_POLY1305: &dyn AeadAlgorithm = &Algorithm(Suite::XChaCha20Poly1305);

#[derive(Debug)]
struct Algorithm(Suite);

impl AeadAlgorithm for Algorithm {
    fn suite(&self) -> Suite {
        self.0
    }

    fn key(&self, key: &SecretKey) -> Box<dyn AeadKey> {
        let bytes = key.expose_secret().into();
        match self.0 {
            Suite::Aes256Gcm => Box::new(Key(Aes256Gcm::new(bytes))),
            Suite::ChaCha20Poly1305 => Box::new(Key(ChaCha20Poly1305::new(bytes))),
            Suite::XChaCha20Poly1305 => Box::new(Key(XChaCha20Poly1305::new(bytes))),
        }
    }

    fn seal_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError> {
        let bytes = key.expose_secret().into();
        match self.0 {
            Suite::Aes256Gcm => Key(Aes256Gcm::new(bytes)).seal_in_place(nonce, aad, in_out),
            Suite::ChaCha20Poly1305 => {
                Key(ChaCha20Poly1305::new(bytes)).seal_in_place(nonce, aad, in_out)
            }
            Suite::XChaCha20Poly1305 => {
                Key(XChaCha20Poly1305::new(bytes)).seal_in_place(nonce, aad, in_out)
            }
        }
    }

    fn open_once(
        &self,
        key: &SecretKey,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError> {
        let bytes = key.expose_secret().into();
        match self.0 {
            Suite::Aes256Gcm => Key(Aes256Gcm::new(bytes)).open_in_place(nonce, aad, in_out, tag),
            Suite::ChaCha20Poly1305 => {
                Key(ChaCha20Poly1305::new(bytes)).open_in_place(nonce, aad, in_out, tag)
            }
            Suite::XChaCha20Poly1305 => {
                Key(XChaCha20Poly1305::new(bytes)).open_in_place(nonce, aad, in_out, tag)
            }
        }
    }
}

/// An expanded key of one of the RustCrypto AEADs (each zeroizes on drop with the `zeroize` feature).
struct Key<A>(A);

impl<A: Named> fmt::Debug for Key<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeadKey({})", A::SUITE.name())
    }
}

/// Ties each RustCrypto type to its suite.
trait Named {
    const SUITE: Suite;
}
impl Named for Aes256Gcm {
    const SUITE: Suite = Suite::Aes256Gcm;
}
impl Named for ChaCha20Poly1305 {
    const SUITE: Suite = Suite::ChaCha20Poly1305;
}
impl Named for XChaCha20Poly1305 {
    const SUITE: Suite = Suite::XChaCha20Poly1305;
}

impl<A> AeadKey for Key<A>
where
    A: AeadInOut + Named + Send + Sync + zeroize::ZeroizeOnDrop,
{
    fn suite(&self) -> Suite {
        A::SUITE
    }

    fn seal_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<Tag, CryptoError> {
        let nonce = nonce_of::<A>(nonce)?;
        let tag = self
            .0
            .encrypt_inout_detached(nonce, aad, in_out.into())
            .map_err(|_| CryptoError::MessageTooLong)?;
        let mut out = [0u8; super::TAG_LEN];
        out.copy_from_slice(tag.as_slice());
        Ok(out)
    }

    fn open_in_place(
        &self,
        nonce: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &Tag,
    ) -> Result<(), CryptoError> {
        let nonce = nonce_of::<A>(nonce)?;
        let tag =
            aes_gcm::aead::Tag::<A>::try_from(&tag[..]).map_err(|_| CryptoError::Authentication)?;
        self.0
            .decrypt_inout_detached(nonce, aad, in_out.into(), &tag)
            .map_err(|_| CryptoError::Authentication)
    }
}

fn nonce_of<A: AeadInOut + Named>(nonce: &[u8]) -> Result<&aes_gcm::aead::Nonce<A>, CryptoError> {
    nonce.try_into().map_err(|_| CryptoError::NonceLength {
        expected: A::SUITE.nonce_len(),
        actual: nonce.len(),
    })
}
