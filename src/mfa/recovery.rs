//! Recovery codes: single-use look-up secrets for when the authenticator is lost.
//!
//! A set has 10 codes of 80 random bits each, written as 16 Crockford base32 symbols in groups of
//! four (`7K3M-Q9ZD-A1XR-5TWE`): no `I`, `L`, `O` or `U`, and typing is forgiving (lowercase,
//! missing or extra hyphens and spaces, `O` for `0`, `I`/`L` for `1`).
//!
//! Only salted hashes are stored (NIST SP 800-63B 5.1.2): HMAC-SHA-256 keyed with a fresh random
//! 128-bit salt per code over the user id and the code. A slow password hash is not needed: with
//! 80 bits of entropy, even 10^12 guesses per second would need thousands of years to find one
//! code by brute force from a leaked hash. The user id in the MAC stops a hash copied to another
//! account from working there. Checking compares against every stored hash in constant time and
//! never stops at the first match. The byte format is in docs/MFA.md.

use super::error::{MfaError, RejectReason};
use super::secret::SecretText;
use super::step_up::{RECOVERY_CODE_FACTOR, StepUp, StepUpMethod};
use core::fmt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

/// Codes in a newly generated set.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Random bytes per code (80 bits).
const CODE_BYTES: usize = 10;
/// Crockford symbols per code (80 bits / 5).
const CODE_SYMBOLS: usize = 16;
/// Version byte of [`RecoveryCodeHash::to_bytes`].
pub const RECOVERY_HASH_VERSION: u8 = 1;
/// Length of [`RecoveryCodeHash::to_bytes`]: version, 16-byte salt, 32-byte MAC.
pub const RECOVERY_HASH_LEN: usize = 1 + 16 + 32;
/// Domain separation for the MAC input (docs/MFA.md).
const MAC_LABEL: &[u8] = b"custodian-mfa-recovery-code-v1";

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// One recovery code in display form. Show it once, at generation; it is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(SecretText);

impl RecoveryCode {
    /// The code as `XXXX-XXXX-XXXX-XXXX`.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode([REDACTED])")
    }
}

/// The stored form of one code: salt and MAC.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCodeHash {
    salt: [u8; 16],
    mac: [u8; 32],
}

impl RecoveryCodeHash {
    /// Version 1 bytes: `0x01 || salt (16) || HMAC-SHA-256 (32)`.
    pub fn to_bytes(&self) -> [u8; RECOVERY_HASH_LEN] {
        let mut out = [0u8; RECOVERY_HASH_LEN];
        let (version, rest) = out.split_at_mut(1);
        let (salt, mac) = rest.split_at_mut(16);
        version.copy_from_slice(&[RECOVERY_HASH_VERSION]);
        salt.copy_from_slice(&self.salt);
        mac.copy_from_slice(&self.mac);
        out
    }

    /// Parses [`RecoveryCodeHash::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MfaError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or(MfaError::CorruptRecord("empty recovery code hash"))?;
        if version != RECOVERY_HASH_VERSION {
            return Err(MfaError::CorruptRecord(
                "unknown recovery code hash version",
            ));
        }
        if rest.len() != RECOVERY_HASH_LEN - 1 {
            return Err(MfaError::CorruptRecord(
                "recovery code hash has the wrong length",
            ));
        }
        let (salt, mac) = rest.split_at(16);
        let salt = salt
            .try_into()
            .map_err(|_| MfaError::CorruptRecord("recovery code salt"))?;
        let mac = mac
            .try_into()
            .map_err(|_| MfaError::CorruptRecord("recovery code hash"))?;
        Ok(Self { salt, mac })
    }

    fn compute(salt: [u8; 16], user: &str, normalized: &[u8]) -> Result<Self, MfaError> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&salt)
            .map_err(|_| MfaError::CorruptRecord("recovery code salt"))?;
        mac.update(MAC_LABEL);
        mac.update(&[0]);
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(normalized);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        Ok(Self { salt, mac: out })
    }
}

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCodeHash(v1)")
    }
}

/// A user's unused recovery codes, as salted hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCodeSet {
    user: String,
    entries: Vec<RecoveryCodeHash>,
}

impl RecoveryCodeSet {
    /// A fresh set of 10 codes for `user`: the set to store (replacing, and so revoking, any
    /// older set) and the codes to show the user once.
    pub fn generate(user: &str) -> Result<(Self, Vec<RecoveryCode>), MfaError> {
        super::enrollment::check_id("user id", user)?;
        let mut entries = Vec::with_capacity(RECOVERY_CODE_COUNT);
        let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
        for _ in 0..RECOVERY_CODE_COUNT {
            let mut raw = Zeroizing::new([0u8; CODE_BYTES]);
            crate::crypto::fill_random(raw.as_mut())?;
            let symbols = to_symbols(&raw);
            let mut salt = [0u8; 16];
            crate::crypto::fill_random(&mut salt)?;
            entries.push(RecoveryCodeHash::compute(salt, user, symbols.as_ref())?);
            codes.push(RecoveryCode(group(&symbols)));
        }
        Ok((
            Self {
                user: user.to_owned(),
                entries,
            },
            codes,
        ))
    }

    /// Rebuilds a stored set.
    pub fn from_entries(user: &str, entries: Vec<RecoveryCodeHash>) -> Result<Self, MfaError> {
        super::enrollment::check_id("user id", user)?;
        Ok(Self {
            user: user.to_owned(),
            entries,
        })
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The stored hashes.
    pub fn entries(&self) -> &[RecoveryCodeHash] {
        &self.entries
    }

    /// Codes left.
    pub fn remaining(&self) -> usize {
        self.entries.len()
    }

    /// The index of the entry that `code` matches, checking every entry in constant time.
    pub fn find(&self, code: &str) -> Option<usize> {
        let normalized = normalize(code)?;
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, entry) in self.entries.iter().enumerate() {
            let Ok(candidate) =
                RecoveryCodeHash::compute(entry.salt, &self.user, normalized.as_ref())
            else {
                continue;
            };
            let hit = candidate.mac.ct_eq(&entry.mac) & !found;
            index.conditional_assign(&(i as u64), hit);
            found |= hit;
        }
        bool::from(found).then_some(index as usize)
    }

    /// Uses a code: returns the set without it (persist it with compare-and-set, as the SQLite
    /// store does) and a [`StepUp`] of method [`StepUpMethod::RecoveryCode`].
    pub fn consume(&self, code: &str, now: u64) -> Result<(Self, StepUp), MfaError> {
        let index = self
            .find(code)
            .ok_or(MfaError::Rejected(RejectReason::UnknownRecoveryCode))?;
        let mut entries = self.entries.clone();
        if index < entries.len() {
            entries.remove(index);
        }
        let step_up = StepUp::new(
            &self.user,
            RECOVERY_CODE_FACTOR,
            StepUpMethod::RecoveryCode,
            now,
        );
        Ok((
            Self {
                user: self.user.clone(),
                entries,
            },
            step_up,
        ))
    }
}

/// 10 bytes to 16 Crockford symbols (exactly 80 bits, no leftover).
fn to_symbols(raw: &[u8; CODE_BYTES]) -> Zeroizing<[u8; CODE_SYMBOLS]> {
    let mut out = Zeroizing::new([b'0'; CODE_SYMBOLS]);
    let mut value = Zeroizing::new(0u128);
    for &b in raw {
        *value = (*value << 8) | u128::from(b);
    }
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (CODE_SYMBOLS - 1 - i);
        let index = ((*value >> shift) & 0x1f) as usize;
        *slot = CROCKFORD.get(index).copied().unwrap_or(b'0');
    }
    out
}

/// `XXXXXXXXXXXXXXXX` to `XXXX-XXXX-XXXX-XXXX`.
fn group(symbols: &[u8; CODE_SYMBOLS]) -> SecretText {
    let mut out = String::with_capacity(CODE_SYMBOLS + 3);
    for (i, &c) in symbols.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(char::from(c));
    }
    SecretText::new(out)
}

/// Typed input to the 16 canonical symbols, or `None` when it cannot be a code.
fn normalize(input: &str) -> Option<Zeroizing<[u8; CODE_SYMBOLS]>> {
    let mut out = Zeroizing::new([0u8; CODE_SYMBOLS]);
    let mut len = 0;
    for c in input.bytes() {
        let symbol = match c.to_ascii_uppercase() {
            b'-' | b' ' => continue,
            b'O' => b'0',
            b'I' | b'L' => b'1',
            c if CROCKFORD.contains(&c) => c,
            _ => return None,
        };
        *out.get_mut(len)? = symbol;
        len += 1;
    }
    (len == CODE_SYMBOLS).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_crockford_with_80_bits() {
        let (set, codes) = RecoveryCodeSet::generate("u1").unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert_eq!(set.remaining(), RECOVERY_CODE_COUNT);
        for code in &codes {
            let text = code.expose_secret();
            assert_eq!(text.len(), 19, "{text}");
            let groups: Vec<&str> = text.split('-').collect();
            assert_eq!(groups.len(), 4);
            assert!(groups.iter().all(|g| g.len() == 4));
            assert!(text.bytes().all(|c| c == b'-' || CROCKFORD.contains(&c)));
        }
        let mut unique: Vec<&str> = codes.iter().map(RecoveryCode::expose_secret).collect();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), RECOVERY_CODE_COUNT);
    }

    #[test]
    fn symbols_encode_all_80_bits() {
        assert_eq!(to_symbols(&[0; 10]).as_ref(), b"0000000000000000");
        assert_eq!(to_symbols(&[0xff; 10]).as_ref(), b"ZZZZZZZZZZZZZZZZ");
        // 0x01 in the last byte is the last symbol's value 1.
        let mut raw = [0u8; 10];
        raw[9] = 1;
        assert_eq!(to_symbols(&raw).as_ref(), b"0000000000000001");
        raw[0] = 0x80;
        assert_eq!(to_symbols(&raw).as_ref(), b"G000000000000001");
    }

    #[test]
    fn typing_is_forgiving_but_exact_in_content() {
        let (set, codes) = RecoveryCodeSet::generate("u1").unwrap();
        let code = codes[3].expose_secret().to_owned();
        assert_eq!(set.find(&code), Some(3));
        assert_eq!(set.find(&code.to_lowercase()), Some(3));
        assert_eq!(set.find(&code.replace('-', "")), Some(3));
        assert_eq!(set.find(&code.replace('-', " ")), Some(3));
        let confusable = code.replace('0', "o").replace('1', "l");
        assert_eq!(set.find(&confusable), Some(3));
        assert_eq!(set.find(&code[..18]), None);
        assert_eq!(set.find(&format!("{code}0")), None);
        assert_eq!(set.find("UUUU-UUUU-UUUU-UUUU"), None);
        // Flip one symbol.
        let mut flipped = code.into_bytes();
        flipped[0] = if flipped[0] == b'2' { b'3' } else { b'2' };
        assert_eq!(set.find(std::str::from_utf8(&flipped).unwrap()), None);
    }

    #[test]
    fn single_use_and_bound_to_the_user() {
        let (set, codes) = RecoveryCodeSet::generate("u1").unwrap();
        let (after, step_up) = set.consume(codes[0].expose_secret(), 500).unwrap();
        assert_eq!(after.remaining(), RECOVERY_CODE_COUNT - 1);
        assert_eq!(step_up.method(), StepUpMethod::RecoveryCode);
        assert_eq!(step_up.user(), "u1");
        assert_eq!(step_up.verified_at(), 500);
        assert!(matches!(
            after.consume(codes[0].expose_secret(), 501),
            Err(MfaError::Rejected(RejectReason::UnknownRecoveryCode))
        ));
        assert!(after.consume(codes[1].expose_secret(), 502).is_ok());
        // The same hashes under another user id match nothing.
        let stolen = RecoveryCodeSet::from_entries("u2", set.entries().to_vec()).unwrap();
        assert_eq!(stolen.find(codes[1].expose_secret()), None);
    }

    #[test]
    fn regenerating_revokes_the_old_codes() {
        let (_, old_codes) = RecoveryCodeSet::generate("u1").unwrap();
        let (new_set, _) = RecoveryCodeSet::generate("u1").unwrap();
        for code in &old_codes {
            assert_eq!(new_set.find(code.expose_secret()), None);
        }
    }

    #[test]
    fn hash_bytes_round_trip_and_are_versioned() {
        let (set, codes) = RecoveryCodeSet::generate("u1").unwrap();
        let bytes: Vec<[u8; RECOVERY_HASH_LEN]> =
            set.entries().iter().map(|e| e.to_bytes()).collect();
        assert!(bytes.iter().all(|b| b[0] == RECOVERY_HASH_VERSION));
        let parsed = bytes
            .iter()
            .map(|b| RecoveryCodeHash::from_bytes(b))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let again = RecoveryCodeSet::from_entries("u1", parsed).unwrap();
        assert_eq!(again.find(codes[9].expose_secret()), Some(9));
        let mut bad = bytes[0];
        bad[0] = 2;
        assert!(RecoveryCodeHash::from_bytes(&bad).is_err());
        assert!(RecoveryCodeHash::from_bytes(&bytes[0][..48]).is_err());
        assert!(RecoveryCodeHash::from_bytes(&[]).is_err());
    }

    #[test]
    fn independent_hash_recomputation() {
        // The documented format, recomputed here from its parts (docs/MFA.md).
        let salt = [7u8; 16];
        let hash = RecoveryCodeHash::compute(salt, "u1", b"0123456789ABCDEF").unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&salt).unwrap();
        mac.update(b"custodian-mfa-recovery-code-v1\x00u1\x000123456789ABCDEF");
        assert_eq!(hash.mac.as_slice(), mac.finalize().into_bytes().as_slice());
        // The worked example of docs/MFA.md, computed there with Python's hmac module.
        let documented = "fc91e10afeca04aae6bf823dfb83f291082a49617d1ebe5924646393d55464c7";
        let hex: String = hash.mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, documented);
        let bytes = hash.to_bytes();
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..17], &salt);
        assert_eq!(&bytes[17..], &hash.mac);
    }

    #[test]
    fn debug_is_redacted() {
        let (set, codes) = RecoveryCodeSet::generate("u1").unwrap();
        let shown = format!("{:?} {:?}", codes[0], set);
        assert!(!shown.contains(codes[0].expose_secret()), "{shown}");
        assert!(!shown.contains(&codes[0].expose_secret()[..4]), "{shown}");
        assert_eq!(format!("{:?}", codes[0]), "RecoveryCode([REDACTED])");
    }
}
