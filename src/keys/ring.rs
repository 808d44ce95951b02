//! Key rings: versions, their lifecycle states, the rotation policy, and the rules that change them.
//!
//! The semantics follow Vault's transit engine. [`KeyManager::rotate`](super::KeyManager::rotate)
//! adds version n+1 and makes it the primary (the version new data is sealed under). Two
//! thresholds, `min_encryption_version <= primary` and `min_decryption_version <=
//! min_encryption_version`, give every version its [`VersionState`]; destroying a version (only
//! below `min_decryption_version`) deletes its material for good.
//!
//! The functions here are pure: they take the stored rows of a ring and return the rows of the
//! next state, or say why the change is refused. The manager seals them (MACs) and commits them with
//! a compare-and-set on the ring's generation.

use super::KeyError;
use super::integrity::Encoder;
use super::store::{RingRecord, RingRows, VersionRecord};
use crate::crypto::{AeadAlgorithm, AeadKey, Suite, default_provider};
use crate::envelope::{Kek, KeyId};
use crate::secret::SecretKey;
use core::fmt;

/// AES-GCM with random 96-bit nonces: at most 2^32 encryptions under one key (NIST SP 800-38D,
/// section 8.3). Applied to every suite for simplicity.
pub const MAX_ENCRYPTIONS_PER_VERSION: u64 = 1 << 32;

/// Lifecycle state of a key-ring version, derived from the ring's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionState {
    /// At or above `min_encryption_version`: decrypts, and the newest one (the primary) encrypts.
    Active,
    /// Below `min_encryption_version`: decrypts only. Data under it should be rewrapped.
    DecryptOnly,
    /// Below `min_decryption_version`: refuses to decrypt; material kept, so lowering
    /// `min_decryption_version` re-enables it.
    Disabled,
    /// Material deleted. Irreversible: data still under this version is lost.
    Destroyed,
}

impl VersionState {
    /// The stored code (column `state`).
    pub const fn code(self) -> u8 {
        match self {
            VersionState::Active => 1,
            VersionState::DecryptOnly => 2,
            VersionState::Disabled => 3,
            VersionState::Destroyed => 4,
        }
    }

    /// The state with stored code `code`.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(VersionState::Active),
            2 => Some(VersionState::DecryptOnly),
            3 => Some(VersionState::Disabled),
            4 => Some(VersionState::Destroyed),
            _ => None,
        }
    }

    /// Whether ciphertexts under a version in this state may be opened.
    pub const fn can_decrypt(self) -> bool {
        matches!(self, VersionState::Active | VersionState::DecryptOnly)
    }

    /// The state a version must have given the ring's thresholds.
    pub(crate) fn expected(
        version: u32,
        min_encryption_version: u32,
        min_decryption_version: u32,
        destroyed: bool,
    ) -> Self {
        if destroyed {
            VersionState::Destroyed
        } else if version < min_decryption_version {
            VersionState::Disabled
        } else if version < min_encryption_version {
            VersionState::DecryptOnly
        } else {
            VersionState::Active
        }
    }
}

/// When a ring rotates, and how long a change takes to reach every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate once the primary version is this old (seconds); `None`: no age limit.
    pub max_age_secs: Option<u64>,
    /// Rotate once this many encryptions were done under the primary version; 1 to 2^32. Every
    /// AEAD encryption under the version's key or a key derived from it counts: ring-level seals,
    /// seals for subjects, rewraps to this version, and subject-key wraps.
    pub max_encryptions: u64,
    /// Upper bound on how long any process may keep using a stale view of this ring (the manager
    /// reloads a ring after half of it) plus clock skew between servers. A superseded version
    /// cannot be disabled until this long after it was superseded, so no process is still sealing
    /// under it.
    pub propagation_secs: u64,
}

impl Default for RotationPolicy {
    /// No age limit, the 2^32 hard limit, two minutes of propagation.
    fn default() -> Self {
        Self {
            max_age_secs: None,
            max_encryptions: MAX_ENCRYPTIONS_PER_VERSION,
            propagation_secs: 120,
        }
    }
}

impl RotationPolicy {
    /// Checks the ranges, with a message that says what is allowed.
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.max_encryptions == 0 || self.max_encryptions > MAX_ENCRYPTIONS_PER_VERSION {
            return Err(KeyError::InvalidPolicy(format!(
                "max_encryptions must be 1 to {MAX_ENCRYPTIONS_PER_VERSION} (2^32, the AES-GCM limit), got {}",
                self.max_encryptions
            )));
        }
        if self.max_age_secs == Some(0) {
            return Err(KeyError::InvalidPolicy(
                "max_age_secs must be at least 1 second, or None for no age limit".into(),
            ));
        }
        if i64::try_from(self.propagation_secs).is_err() {
            return Err(KeyError::InvalidPolicy(format!(
                "propagation_secs `{}` is out of range",
                self.propagation_secs
            )));
        }
        Ok(())
    }
}

/// A ring as an administrator sees it (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingInfo {
    /// Ring name.
    pub name: String,
    /// AEAD suite.
    pub suite: Suite,
    /// The version new data is sealed under.
    pub primary_version: u32,
    /// Versions below are decrypt-only.
    pub min_encryption_version: u32,
    /// Versions below cannot decrypt.
    pub min_decryption_version: u32,
    /// Rotation policy.
    pub policy: RotationPolicy,
    /// Every version, ascending.
    pub versions: Vec<VersionInfo>,
    /// Change counter of the stored ring.
    pub generation: u64,
}

/// One version of a ring, as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// Lifecycle state.
    pub state: VersionState,
    /// Creation time.
    pub created_at: u64,
    /// When it stopped being primary.
    pub superseded_at: Option<u64>,
    /// Encryptions reserved under it so far (an upper bound of those done).
    pub usage_reserved: u64,
}

impl RingInfo {
    pub(crate) fn from_rows(rows: &RingRows) -> Self {
        let r = &rows.ring;
        Self {
            name: r.name.clone(),
            suite: r.suite,
            primary_version: r.primary_version,
            min_encryption_version: r.min_encryption_version,
            min_decryption_version: r.min_decryption_version,
            policy: r.policy,
            generation: r.generation,
            versions: rows
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    state: v.state,
                    created_at: v.created_at,
                    superseded_at: v.superseded_at,
                    usage_reserved: v.usage_reserved,
                })
                .collect(),
        }
    }

    /// Versions that can still decrypt, ascending (for blind-index lookups across a rotation).
    pub fn live_versions(&self) -> Vec<u32> {
        self.versions
            .iter()
            .filter(|v| v.state.can_decrypt())
            .map(|v| v.version)
            .collect()
    }

    /// Whether the primary version is due for rotation at `now` (age or usage).
    pub fn rotation_due(&self, now: u64) -> bool {
        let Some(primary) = self
            .versions
            .iter()
            .find(|v| v.version == self.primary_version)
        else {
            return true;
        };
        let too_old = self
            .policy
            .max_age_secs
            .is_some_and(|max| now >= primary.created_at.saturating_add(max));
        too_old || primary.usage_reserved >= self.policy.max_encryptions
    }
}

/// Associated data of a ring version's root wrap.
pub(crate) fn version_wrap_aad(ring: &str, version: u32, suite: Suite) -> Encoder {
    let mut e = Encoder::label("custodian/v1/root-wrap/ring-version");
    e.str(ring).u32(version).u8(suite.id());
    e
}

/// A ring version's key, unwrapped: the envelope KEK for ring-level data, and the input of the
/// subject-KEK and index-key derivations.
pub(crate) struct RingKek {
    id: KeyId,
    algorithm: &'static dyn AeadAlgorithm,
    key: SecretKey,
    expanded: Box<dyn AeadKey>,
}

impl RingKek {
    pub(crate) fn new(id: KeyId, suite: Suite, key: SecretKey) -> Self {
        let algorithm = default_provider().aead(suite);
        let expanded = algorithm.key(&key);
        Self {
            id,
            algorithm,
            key,
            expanded,
        }
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.key
    }

    /// HKDF-SHA256(ikm = version key, salt = `custodian/v1/derived-key`,
    /// info = ring || 0x00 || be32(version) || `info`): a key for another purpose (blind indexes)
    /// that reveals nothing about the version key.
    pub(crate) fn derive_key(&self, info: &[u8]) -> SecretKey {
        let mut label = Vec::with_capacity(self.id.name().len() + 5 + info.len());
        label.extend_from_slice(self.id.name().as_bytes());
        label.push(0);
        label.extend_from_slice(&self.id.version().to_be_bytes());
        label.extend_from_slice(info);
        hkdf_sha256(
            DERIVED_KEY_SALT,
            &[self.key.expose_secret().as_slice()],
            &label,
        )
    }
}

/// HKDF salt of [`RingKek::derive_key`].
pub(crate) const DERIVED_KEY_SALT: &[u8] = b"custodian/v1/derived-key";

/// HKDF-SHA256 with the input keying material given in parts (concatenated), 32 bytes of output.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[&[u8]], info: &[u8]) -> SecretKey {
    let mut extract = hkdf::HkdfExtract::<sha2::Sha256>::new(Some(salt));
    for part in ikm {
        extract.input_ikm(part);
    }
    let (_, hkdf) = extract.finalize();
    let mut out = zeroize::Zeroizing::new([0u8; crate::secret::KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    let _ = hkdf.expand(info, out.as_mut_slice());
    SecretKey::from_bytes(*out)
}

impl Kek for RingKek {
    fn key_id(&self) -> &KeyId {
        &self.id
    }

    fn algorithm(&self) -> &'static dyn AeadAlgorithm {
        self.algorithm
    }

    fn wrapping_key(&self) -> &dyn AeadKey {
        self.expanded.as_ref()
    }
}

impl fmt::Debug for RingKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKek")
            .field("id", &self.id)
            .field("suite", &self.algorithm.suite().name())
            .finish_non_exhaustive()
    }
}

// ---- The rules. Each returns the next rows (MACs not yet recomputed) or a refusal. ----

/// The rows of a new ring whose version 1 holds `wrapped_key`.
pub(crate) fn new_ring(
    name: &str,
    suite: Suite,
    policy: RotationPolicy,
    wrapped_key: Vec<u8>,
    now: u64,
) -> RingRows {
    RingRows {
        ring: RingRecord {
            name: name.to_owned(),
            generation: 1,
            suite,
            primary_version: 1,
            min_encryption_version: 1,
            min_decryption_version: 1,
            policy,
            created_at: now,
            versions: Vec::new(),
            mac: [0; 32],
        },
        versions: vec![VersionRecord {
            ring: name.to_owned(),
            version: 1,
            state: VersionState::Active,
            wrapped_key: Some(wrapped_key),
            created_at: now,
            superseded_at: None,
            usage_reserved: 0,
            mac: [0; 32],
        }],
    }
}

fn next_generation(rows: &RingRows) -> Result<RingRows, KeyError> {
    let mut next = rows.clone();
    next.ring.generation = rows
        .ring
        .generation
        .checked_add(1)
        .ok_or_else(|| KeyError::Refused("ring generation overflow".into()))?;
    Ok(next)
}

/// Recomputes every version's state from the thresholds.
fn normalize_states(rows: &mut RingRows) {
    let (min_enc, min_dec) = (
        rows.ring.min_encryption_version,
        rows.ring.min_decryption_version,
    );
    for v in &mut rows.versions {
        v.state = VersionState::expected(
            v.version,
            min_enc,
            min_dec,
            v.state == VersionState::Destroyed,
        );
    }
}

/// Adds version `primary + 1` (material `wrapped_key`, wrapped for that version) as the primary.
pub(crate) fn rotate(
    rows: &RingRows,
    wrapped_key: Vec<u8>,
    now: u64,
) -> Result<RingRows, KeyError> {
    let mut next = next_generation(rows)?;
    let old = rows.ring.primary_version;
    let new = old.checked_add(1).ok_or_else(|| {
        KeyError::Refused(format!(
            "key ring `{}` has reached the last version number",
            rows.ring.name
        ))
    })?;
    for v in &mut next.versions {
        if v.version == old {
            v.superseded_at = Some(now);
        }
    }
    next.versions.push(VersionRecord {
        ring: rows.ring.name.clone(),
        version: new,
        state: VersionState::Active,
        wrapped_key: Some(wrapped_key),
        created_at: now,
        superseded_at: None,
        usage_reserved: 0,
        mac: [0; 32],
    });
    next.ring.primary_version = new;
    normalize_states(&mut next);
    Ok(next)
}

/// The version number the next rotation will create.
pub(crate) fn next_version(rows: &RingRows) -> Result<u32, KeyError> {
    rows.ring.primary_version.checked_add(1).ok_or_else(|| {
        KeyError::Refused(format!(
            "key ring `{}` has reached the last version number",
            rows.ring.name
        ))
    })
}

pub(crate) fn set_min_encryption_version(rows: &RingRows, min: u32) -> Result<RingRows, KeyError> {
    let r = &rows.ring;
    if min < r.min_decryption_version || min > r.primary_version {
        return Err(KeyError::Refused(format!(
            "min_encryption_version of key ring `{}` must be between min_decryption_version {} and the primary version {}, got {min}",
            r.name, r.min_decryption_version, r.primary_version
        )));
    }
    let mut next = next_generation(rows)?;
    next.ring.min_encryption_version = min;
    normalize_states(&mut next);
    Ok(next)
}

pub(crate) fn set_min_decryption_version(
    rows: &RingRows,
    min: u32,
    now: u64,
) -> Result<RingRows, KeyError> {
    let r = &rows.ring;
    if min == 0 || min > r.min_encryption_version {
        return Err(KeyError::Refused(format!(
            "min_decryption_version of key ring `{}` must be between 1 and min_encryption_version {}, got {min}; raise min_encryption_version first",
            r.name, r.min_encryption_version
        )));
    }
    if let Some(destroyed) = rows
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Destroyed)
        .map(|v| v.version)
        .max()
        && min <= destroyed
    {
        return Err(KeyError::Refused(format!(
            "version {destroyed} of key ring `{}` is destroyed and cannot be re-enabled; min_decryption_version must stay above it",
            r.name
        )));
    }
    for v in rows
        .versions
        .iter()
        .filter(|v| v.version < min && v.state.can_decrypt())
    {
        let ready_at = v
            .superseded_at
            .map(|at| at.saturating_add(r.policy.propagation_secs));
        match ready_at {
            Some(at) if now >= at => {}
            _ => {
                return Err(KeyError::Refused(format!(
                    "version {} of key ring `{}` may still be in use for sealing by other processes until {} (superseded at {:?} + propagation_secs {}); retry then",
                    v.version,
                    r.name,
                    ready_at.map_or("it is superseded".to_owned(), |at| at.to_string()),
                    v.superseded_at,
                    r.policy.propagation_secs
                )));
            }
        }
    }
    let mut next = next_generation(rows)?;
    next.ring.min_decryption_version = min;
    normalize_states(&mut next);
    Ok(next)
}

/// Deletes the material of `version`; `Ok(None)` if it was already destroyed.
pub(crate) fn destroy_version(rows: &RingRows, version: u32) -> Result<Option<RingRows>, KeyError> {
    let r = &rows.ring;
    let row = rows
        .versions
        .iter()
        .find(|v| v.version == version)
        .ok_or_else(|| KeyError::UnknownVersion {
            ring: r.name.clone(),
            version,
        })?;
    if row.state == VersionState::Destroyed {
        return Ok(None);
    }
    if version >= r.min_decryption_version {
        return Err(KeyError::Refused(format!(
            "version {version} of key ring `{}` can still decrypt; raise min_decryption_version above it (to {}) before destroying it",
            r.name,
            version.saturating_add(1)
        )));
    }
    let mut next = next_generation(rows)?;
    for v in &mut next.versions {
        if v.version == version {
            v.state = VersionState::Destroyed;
            v.wrapped_key = None;
        }
    }
    normalize_states(&mut next);
    Ok(Some(next))
}

pub(crate) fn set_policy(rows: &RingRows, policy: RotationPolicy) -> Result<RingRows, KeyError> {
    policy.validate()?;
    let mut next = next_generation(rows)?;
    next.ring.policy = policy;
    Ok(next)
}

/// Reserves up to `block` encryptions under the primary version. Returns the next rows and the
/// reserved range `[start, end)`, or `Ok(None)` when the primary has exhausted its budget (the
/// caller rotates).
pub(crate) fn reserve_usage(
    rows: &RingRows,
    block: u64,
) -> Result<Option<(RingRows, u64, u64)>, KeyError> {
    let r = &rows.ring;
    let primary = rows
        .versions
        .iter()
        .find(|v| v.version == r.primary_version)
        .ok_or_else(|| KeyError::tampered("primary version row missing", &r.name, None))?;
    let cap = r.policy.max_encryptions.min(MAX_ENCRYPTIONS_PER_VERSION);
    let start = primary.usage_reserved;
    if start >= cap {
        return Ok(None);
    }
    let end = start.saturating_add(block.max(1)).min(cap);
    let mut next = next_generation(rows)?;
    for v in &mut next.versions {
        if v.version == r.primary_version {
            v.usage_reserved = end;
        }
    }
    Ok(Some((next, start, end)))
}

/// Checks the invariants a verified ring must satisfy. A violation means the rows were produced by
/// someone holding the integrity key but not following these rules, so it is reported as tampering.
pub(crate) fn check_consistency(rows: &RingRows) -> Result<(), KeyError> {
    let r = &rows.ring;
    let bad = |what: &'static str, version: Option<u32>| KeyError::tampered(what, &r.name, version);
    if rows.versions.is_empty() {
        return Err(bad("ring has no versions", None));
    }
    for (index, v) in rows.versions.iter().enumerate() {
        if u32::try_from(index + 1).ok() != Some(v.version) {
            return Err(bad("version numbers are not 1, 2, 3, ...", Some(v.version)));
        }
        let destroyed = v.state == VersionState::Destroyed;
        if destroyed != v.wrapped_key.is_none() {
            return Err(bad(
                "destroyed state and missing material disagree",
                Some(v.version),
            ));
        }
        let expected = VersionState::expected(
            v.version,
            r.min_encryption_version,
            r.min_decryption_version,
            destroyed,
        );
        if v.state != expected {
            return Err(bad(
                "version state disagrees with the ring thresholds",
                Some(v.version),
            ));
        }
        if (v.version == r.primary_version) != v.superseded_at.is_none() {
            return Err(bad(
                "only the primary version may lack a superseded time",
                Some(v.version),
            ));
        }
    }
    let newest = rows.versions.last().map_or(0, |v| v.version);
    if r.primary_version != newest
        || r.min_decryption_version == 0
        || r.min_decryption_version > r.min_encryption_version
        || r.min_encryption_version > r.primary_version
    {
        return Err(bad("ring thresholds are inconsistent", None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> RingRows {
        new_ring(
            "customers",
            Suite::Aes256Gcm,
            RotationPolicy {
                propagation_secs: 10,
                ..RotationPolicy::default()
            },
            vec![1; 61],
            100,
        )
    }

    #[test]
    fn rotation_adds_a_primary_and_thresholds_set_states() {
        let r = rotate(&ring(), vec![2; 61], 200).unwrap();
        let r = rotate(&r, vec![3; 61], 300).unwrap();
        check_consistency(&r).unwrap();
        assert_eq!(r.ring.primary_version, 3);
        assert_eq!(r.ring.generation, 3);
        let r = set_min_encryption_version(&r, 3).unwrap();
        let states: Vec<_> = r.versions.iter().map(|v| v.state).collect();
        assert_eq!(
            states,
            [
                VersionState::DecryptOnly,
                VersionState::DecryptOnly,
                VersionState::Active
            ]
        );
        // Version 2 was superseded at 300: with 10 s of propagation it cannot be disabled before 310.
        assert!(set_min_decryption_version(&r, 3, 309).is_err());
        let r = set_min_decryption_version(&r, 3, 310).unwrap();
        check_consistency(&r).unwrap();
        assert_eq!(r.versions[0].state, VersionState::Disabled);
        assert!(destroy_version(&r, 3).is_err());
        let r = destroy_version(&r, 1).unwrap().unwrap();
        assert!(destroy_version(&r, 1).unwrap().is_none());
        assert_eq!(r.versions[0].state, VersionState::Destroyed);
        assert!(r.versions[0].wrapped_key.is_none());
        check_consistency(&r).unwrap();
        // Re-enabling a destroyed version is refused; re-enabling a disabled one is not.
        assert!(set_min_decryption_version(&r, 1, 400).is_err());
        let r = set_min_decryption_version(&r, 2, 400).unwrap();
        assert_eq!(r.versions[1].state, VersionState::DecryptOnly);
        assert!(set_min_encryption_version(&r, 4).is_err());
        assert!(set_min_encryption_version(&r, 1).is_err());
    }

    #[test]
    fn usage_reservations_stop_at_the_cap() {
        let mut r = ring();
        r.ring.policy.max_encryptions = 10;
        let (r, start, end) = reserve_usage(&r, 4).unwrap().unwrap();
        assert_eq!((start, end), (0, 4));
        let (r, start, end) = reserve_usage(&r, 4).unwrap().unwrap();
        assert_eq!((start, end), (4, 8));
        let (r, start, end) = reserve_usage(&r, 4).unwrap().unwrap();
        assert_eq!((start, end), (8, 10));
        assert!(reserve_usage(&r, 4).unwrap().is_none());
        let info = RingInfo::from_rows(&r);
        assert!(info.rotation_due(0));
    }

    #[test]
    fn policy_validation_explains_the_range() {
        let mut p = RotationPolicy::default();
        p.validate().unwrap();
        p.max_encryptions = MAX_ENCRYPTIONS_PER_VERSION + 1;
        assert!(p.validate().unwrap_err().to_string().contains("2^32"));
        p.max_encryptions = 5;
        p.max_age_secs = Some(0);
        assert!(p.validate().is_err());
    }

    #[test]
    fn consistency_catches_a_state_that_disagrees_with_thresholds() {
        let mut r = rotate(&ring(), vec![2; 61], 200).unwrap();
        r.versions[0].state = VersionState::Disabled;
        assert!(matches!(
            check_consistency(&r),
            Err(KeyError::Tampered {
                version: Some(1),
                ..
            })
        ));
    }
}
