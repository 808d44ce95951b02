//! The three ways to encrypt a message that the envelope benches compare.
//!
//! - custodian: [`custodian::envelope::seal`] with a [`StaticKek`]: a fresh data key per message,
//!   wrapped by the key-encryption key, the encryption context bound as associated data.
//! - Tink: `tink_aead::KmsEnvelopeAead` with an AES-256-GCM data-key template and, as the "remote"
//!   KMS, an AES-256-GCM keyset in the same process: a fresh data key per message, wrapped by
//!   the key-encryption AEAD. Tink's Rust port computes AES-GCM with RustCrypto's `aes-gcm` 0.10.
//! - raw AWS-LC AES-256-GCM: one key built once, a fresh random nonce per message, no data key,
//!   no wrap: the floor under any envelope on this backend.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use custodian::SecretKey;
use custodian::crypto::{CryptoProvider, Suite};
use custodian::envelope::{EncryptionContext, EnvelopeError, KeyId, StaticKek};

/// The encryption context of every custodian message in the benches.
pub fn context() -> Result<EncryptionContext, EnvelopeError> {
    EncryptionContext::new()
        .with("table", "customers")?
        .with("record", "123456")?
        .with("field", "address")
}

/// The associated data given to Tink and raw AES-GCM: the same three pairs, as bytes.
pub const AAD: &[u8] = b"table=customers;record=123456;field=address";

/// A custodian key-encryption key for AES-256-GCM on `provider`, from a random key.
pub fn custodian_kek(
    provider: &'static CryptoProvider,
) -> Result<StaticKek, Box<dyn std::error::Error + Send + Sync>> {
    Ok(StaticKek::with_algorithm(
        KeyId::new("customers", 1)?,
        &SecretKey::try_random()?,
        provider.aead(Suite::Aes256Gcm),
    ))
}

/// Tink's KMS envelope AEAD: AES-256-GCM data keys wrapped by an in-process AES-256-GCM keyset.
pub fn tink_envelope() -> Result<tink_aead::KmsEnvelopeAead, tink_core::TinkError> {
    tink_aead::init();
    let kek = tink_core::keyset::Handle::new(&tink_aead::aes256_gcm_key_template())?;
    Ok(tink_aead::KmsEnvelopeAead::new(
        tink_aead::aes256_gcm_key_template(),
        tink_aead::new(&kek)?,
    ))
}

/// Raw AES-256-GCM through aws-lc-rs, with a fresh nonce from AWS-LC's generator per seal.
pub struct RawAesGcm {
    key: LessSafeKey,
}

impl RawAesGcm {
    /// A random key.
    pub fn random() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key)?;
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key)?),
        })
    }

    /// Nonce, ciphertext and tag in a new vector.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce)?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self.key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(AAD),
            out.get_mut(NONCE_LEN..)
                .ok_or(aws_lc_rs::error::Unspecified)?,
        )?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// The plaintext of [`RawAesGcm::seal`]'s output, in a new vector.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let nonce = sealed
            .get(..NONCE_LEN)
            .ok_or(aws_lc_rs::error::Unspecified)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce)?;
        let mut out = sealed
            .get(NONCE_LEN..)
            .ok_or(aws_lc_rs::error::Unspecified)?
            .to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut out)?
            .len();
        out.truncate(len);
        Ok(out)
    }
}
