//! A TOTP key at rest: the seed record v1, sealed with the envelope layer.
//!
//! The plaintext is `0x01 (record version) || algorithm (1 = SHA-1, 2 = SHA-256, 3 = SHA-512) ||
//! digits (6-8) || period (u64 big-endian, seconds, not 0) || seed bytes (16-128)`, so the
//! parameters are authenticated with the seed and cannot be downgraded by editing a column. It is
//! sealed with [`crate::envelope::seal`] under the encryption context `purpose=mfa-seed`,
//! `user=<user id>`, `factor=<factor id>`: a sealed seed copied into another user's (or factor's)
//! row does not open. Legacy 80-bit seeds are stored the same way.

use super::error::MfaError;
use super::otp::{Algorithm, TotpKey, TotpParams};
use super::secret::{MAX_SECRET_LEN, MIN_LEGACY_SECRET_LEN, OtpSecret};
use crate::envelope::{self, EncryptionContext, Kek};
use crate::secret::SecretBytes;
use zeroize::Zeroizing;

/// Version byte of the seed record.
pub const SEED_RECORD_VERSION: u8 = 1;
/// Bytes before the seed in a v1 record.
const HEADER_LEN: usize = 1 + 1 + 1 + 8;

/// The encryption context that binds a sealed seed to its user and factor.
pub fn seed_context(user: &str, factor: &str) -> Result<EncryptionContext, MfaError> {
    EncryptionContext::new()
        .with("purpose", "mfa-seed")
        .and_then(|c| c.with("user", user))
        .and_then(|c| c.with("factor", factor))
        .map_err(MfaError::Seal)
}

/// Seals `key` for `user`'s factor `factor`.
pub fn seal_seed(
    kek: &dyn Kek,
    user: &str,
    factor: &str,
    key: &TotpKey,
) -> Result<Vec<u8>, MfaError> {
    seal_seed_with(&KekSeeds(kek), user, factor, key)
}

/// Opens a seed sealed by [`seal_seed`] for the same user and factor.
pub fn open_seed(
    kek: &dyn Kek,
    user: &str,
    factor: &str,
    sealed: &[u8],
) -> Result<TotpKey, MfaError> {
    open_seed_with(&KekSeeds(kek), user, factor, sealed)
}

/// Where seed records are sealed: under a key-encryption key the caller holds ([`seal_seed`]), or
/// under the staff member's subject key in a ring of the key hierarchy (the facade's
/// `Custodian::mfa`), which makes seeds rotatable with the ring and erased with the subject.
pub(crate) trait SeedKeys: Send + Sync {
    /// The key (or ring) name, for `Debug`.
    fn describe(&self) -> String;
    /// Seals a seed record of `user`.
    fn seal(
        &self,
        user: &str,
        context: &EncryptionContext,
        record: &[u8],
    ) -> Result<Vec<u8>, MfaError>;
    /// Opens a sealed seed record of `user`.
    fn open(
        &self,
        user: &str,
        context: &EncryptionContext,
        sealed: &[u8],
    ) -> Result<SecretBytes, MfaError>;
}

/// Seeds sealed directly under a KEK (a `&dyn Kek` or an `Arc<dyn Kek>`).
pub(crate) struct KekSeeds<K>(pub(crate) K);

impl<K: AsKek> SeedKeys for KekSeeds<K> {
    fn describe(&self) -> String {
        self.0.kek().key_id().to_string()
    }

    fn seal(
        &self,
        _user: &str,
        context: &EncryptionContext,
        record: &[u8],
    ) -> Result<Vec<u8>, MfaError> {
        envelope::seal(self.0.kek(), context, record).map_err(MfaError::Seal)
    }

    fn open(
        &self,
        _user: &str,
        context: &EncryptionContext,
        sealed: &[u8],
    ) -> Result<SecretBytes, MfaError> {
        envelope::open(self.0.kek(), context, sealed).map_err(MfaError::Seal)
    }
}

/// A handle to a KEK.
pub(crate) trait AsKek: Send + Sync {
    fn kek(&self) -> &dyn Kek;
}

impl AsKek for &dyn Kek {
    fn kek(&self) -> &dyn Kek {
        *self
    }
}

impl AsKek for std::sync::Arc<dyn Kek> {
    fn kek(&self) -> &dyn Kek {
        self.as_ref()
    }
}

pub(crate) fn seal_seed_with(
    keys: &dyn SeedKeys,
    user: &str,
    factor: &str,
    key: &TotpKey,
) -> Result<Vec<u8>, MfaError> {
    let params = key.params();
    let seed = key.secret().expose_secret();
    let mut record = Zeroizing::new(Vec::with_capacity(HEADER_LEN + seed.len()));
    record.push(SEED_RECORD_VERSION);
    record.push(params.algorithm().format_id());
    record.push(params.digits().get());
    record.extend_from_slice(&params.period().get().to_be_bytes());
    record.extend_from_slice(seed);
    keys.seal(user, &seed_context(user, factor)?, &record)
}

pub(crate) fn open_seed_with(
    keys: &dyn SeedKeys,
    user: &str,
    factor: &str,
    sealed: &[u8],
) -> Result<TotpKey, MfaError> {
    let record = keys.open(user, &seed_context(user, factor)?, sealed)?;
    parse_record(record.expose_secret())
}

fn parse_record(record: &[u8]) -> Result<TotpKey, MfaError> {
    let corrupt = MfaError::CorruptRecord;
    let (header, seed) = record
        .split_at_checked(HEADER_LEN)
        .ok_or(corrupt("seed record shorter than its header"))?;
    let [version, algorithm, digits, period @ ..] = header else {
        return Err(corrupt("seed record header"));
    };
    if *version != SEED_RECORD_VERSION {
        return Err(corrupt("unknown seed record version"));
    }
    let algorithm =
        Algorithm::from_format_id(*algorithm).ok_or(corrupt("unknown algorithm in seed record"))?;
    let period: [u8; 8] = period
        .try_into()
        .map_err(|_| corrupt("seed record period"))?;
    let params = TotpParams::new(algorithm, *digits, u64::from_be_bytes(period))
        .map_err(|_| corrupt("digits or period out of range in seed record"))?;
    if seed.len() < MIN_LEGACY_SECRET_LEN || seed.len() > MAX_SECRET_LEN {
        return Err(corrupt("seed length out of range in seed record"));
    }
    // The minimum was enforced when the factor was created (legacy imports allow 80 bits).
    let secret = OtpSecret::import_legacy_bytes(SecretBytes::new(seed.to_vec()));
    Ok(TotpKey::new(secret, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{EnvelopeError, StaticKek};

    #[test]
    fn round_trip_and_binding() {
        let kek = StaticKek::generate("mfa", 1).unwrap();
        let key = TotpKey::new(
            OtpSecret::generate_with_len(32).unwrap(),
            TotpParams::new(Algorithm::Sha256, 8, 60).unwrap(),
        );
        let sealed = seal_seed(&kek, "u1", "phone", &key).unwrap();
        let opened = open_seed(&kek, "u1", "phone", &sealed).unwrap();
        assert_eq!(opened.params(), key.params());
        assert_eq!(
            opened.secret().expose_secret(),
            key.secret().expose_secret()
        );
        for (user, factor) in [("u2", "phone"), ("u1", "laptop")] {
            assert!(matches!(
                open_seed(&kek, user, factor, &sealed),
                Err(MfaError::Seal(EnvelopeError::Decrypt))
            ));
        }
        let other_kek = StaticKek::generate("mfa", 1).unwrap();
        assert!(open_seed(&other_kek, "u1", "phone", &sealed).is_err());
    }

    #[test]
    fn record_layout_is_as_documented() {
        let key = TotpKey::new(
            OtpSecret::from_bytes(SecretBytes::new(b"12345678901234567890".to_vec())).unwrap(),
            TotpParams::PORTABLE,
        );
        let kek = StaticKek::generate("mfa", 1).unwrap();
        let sealed = seal_seed(&kek, "u1", "phone", &key).unwrap();
        let context = seed_context("u1", "phone").unwrap();
        let record = envelope::open(&kek, &context, &sealed).unwrap();
        let mut expected = vec![1u8, 1, 6, 0, 0, 0, 0, 0, 0, 0, 30];
        expected.extend_from_slice(b"12345678901234567890");
        assert_eq!(record.expose_secret(), expected.as_slice());
    }

    #[test]
    fn malformed_records_are_refused() {
        let seed = [7u8; 20];
        let good = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut r = vec![1u8, 1, 6, 0, 0, 0, 0, 0, 0, 0, 30];
            r.extend_from_slice(&seed);
            f(&mut r);
            parse_record(&r)
        };
        assert!(good(&|_| {}).is_ok());
        assert!(good(&|r| r[0] = 2).is_err());
        assert!(good(&|r| r[1] = 4).is_err());
        assert!(good(&|r| r[2] = 9).is_err());
        assert!(good(&|r| r[10] = 0).is_err());
        assert!(good(&|r| r.truncate(11 + 9)).is_err());
        assert!(good(&|r| r.truncate(5)).is_err());
    }
}
