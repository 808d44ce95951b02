//! Integrity of the key store at rest: HMAC-SHA256 over every row, and the byte strings bound into
//! root and subject-key wraps. The exact inputs are specified in `docs/KEYSTORE.md`.

use super::KeyError;
use super::store::{MAC_LEN, RingRecord, RingRows, SubjectRecord, VersionDigest, VersionRecord};
use crate::secret::SecretKey;
use core::fmt;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Meta-table key of the root-wrapped integrity key.
pub(crate) const INTEGRITY_KEY_META: &str = "integrity_key";
/// Associated data of the integrity key's root wrap.
pub(crate) const INTEGRITY_KEY_AAD: &[u8] = b"custodian/v1/integrity-key";

/// Canonical, unambiguous encoding of MAC and AAD inputs: fixed-width big-endian integers,
/// length-prefixed strings and optional values with a presence byte.
#[derive(Default)]
pub(crate) struct Encoder(Vec<u8>);

impl Encoder {
    pub(crate) fn label(label: &str) -> Self {
        let mut e = Self(Vec::with_capacity(128));
        e.str(label);
        e
    }

    /// `be16(len) || bytes`; every string encoded here is at most 128 bytes.
    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        // INVARIANT: labels, ring names (<= 64 bytes) and subject ids (<= 128 bytes) are short.
        self.0
            .extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }

    /// `0x00` for `None`; `0x01 || be32(len) || bytes` for `Some`.
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(bytes) => {
                self.u8(1);
                // INVARIANT: wrapped keys are under 100 bytes.
                self.u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                self.raw(bytes)
            }
        }
    }

    /// `0x00` for `None`; `0x01 || be64(v)` for `Some`.
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => self.u8(1).u64(v),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The store-integrity key: a random HMAC-SHA256 key, wrapped by the root key in the meta table.
pub(crate) struct Integrity {
    key: SecretKey,
}

impl Integrity {
    pub(crate) fn new(key: SecretKey) -> Self {
        Self { key }
    }

    /// The key itself, to wrap it again (the ledger migration re-wraps it under a new label).
    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }

    pub(crate) fn mac_of(&self, input: &Encoder) -> [u8; MAC_LEN] {
        self.mac(input)
    }

    pub(crate) fn mac_eq(&self, a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
        ct_eq(a, b)
    }

    fn mac(&self, input: &Encoder) -> [u8; MAC_LEN] {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret()) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length; this arm is unreachable.
            Err(_) => return [0u8; MAC_LEN],
        };
        mac.update(input.bytes());
        mac.finalize().into_bytes().into()
    }

    /// A public identifier of the store (the same for every manager of it, unlike any other store).
    pub(crate) fn store_id(&self) -> [u8; MAC_LEN] {
        self.mac(&Encoder::label("custodian/v1/store-id"))
    }

    pub(crate) fn version_mac(&self, v: &VersionRecord) -> [u8; MAC_LEN] {
        let mut e = Encoder::label("custodian/v1/mac/version");
        e.str(&v.ring)
            .u32(v.version)
            .u8(v.state.code())
            .opt_bytes(v.wrapped_key.as_deref())
            .u64(v.created_at)
            .opt_u64(v.superseded_at)
            .u64(v.usage_reserved);
        self.mac(&e)
    }

    pub(crate) fn ring_mac(&self, r: &RingRecord) -> [u8; MAC_LEN] {
        let mut e = Encoder::label("custodian/v1/mac/ring");
        e.str(&r.name)
            .u64(r.generation)
            .u8(r.suite.id())
            .u32(r.primary_version)
            .u32(r.min_encryption_version)
            .u32(r.min_decryption_version)
            .opt_u64(r.policy.max_age_secs)
            .u64(r.policy.max_encryptions)
            .u64(r.policy.propagation_secs)
            .u64(r.created_at)
            // INVARIANT: at most u32::MAX versions exist.
            .u32(u32::try_from(r.versions.len()).unwrap_or(u32::MAX));
        for d in &r.versions {
            e.u32(d.version).u8(d.state.code()).raw(&d.mac);
        }
        self.mac(&e)
    }

    pub(crate) fn subject_mac(&self, s: &SubjectRecord) -> [u8; MAC_LEN] {
        let mut e = Encoder::label("custodian/v1/mac/subject");
        e.str(&s.ring)
            .str(&s.subject)
            .u64(s.generation)
            .u32(s.wrapped_by)
            .opt_bytes(s.wrapped_key.as_deref())
            .u64(s.created_at)
            .opt_u64(s.erased_at);
        self.mac(&e)
    }

    /// Sets the MAC of a version row.
    pub(crate) fn seal_version(&self, v: &mut VersionRecord) {
        v.mac = self.version_mac(v);
    }

    /// Sets the version digests and the MAC of a ring row from its (already sealed) version rows.
    pub(crate) fn seal_ring(&self, ring: &mut RingRecord, versions: &[VersionRecord]) {
        ring.versions = versions
            .iter()
            .map(|v| VersionDigest {
                version: v.version,
                state: v.state,
                mac: v.mac,
            })
            .collect();
        ring.mac = self.ring_mac(ring);
    }

    pub(crate) fn seal_subject(&self, s: &mut SubjectRecord) {
        s.mac = self.subject_mac(s);
    }

    /// Checks every MAC of a ring and that the version rows are exactly those the ring row lists.
    pub(crate) fn verify_ring(&self, rows: &RingRows) -> Result<(), KeyError> {
        let ring = &rows.ring;
        let name = ring.name.as_str();
        if !ct_eq(&self.ring_mac(ring), &ring.mac) {
            return Err(KeyError::tampered("ring row fails its MAC", name, None));
        }
        for v in &rows.versions {
            if v.ring != ring.name {
                return Err(KeyError::tampered(
                    "version row of another ring",
                    name,
                    Some(v.version),
                ));
            }
            if !ct_eq(&self.version_mac(v), &v.mac) {
                return Err(KeyError::tampered(
                    "version row fails its MAC (edited state, usage or material)",
                    name,
                    Some(v.version),
                ));
            }
        }
        for (index, digest) in ring.versions.iter().enumerate() {
            let row = rows.versions.iter().find(|v| v.version == digest.version);
            match row {
                None => {
                    return Err(KeyError::tampered(
                        "version row listed by the ring is missing",
                        name,
                        Some(digest.version),
                    ));
                }
                Some(row) => {
                    if row.state != digest.state || !ct_eq(&row.mac, &digest.mac) {
                        return Err(KeyError::tampered(
                            "version row differs from the ring's record of it (rolled back or replaced)",
                            name,
                            Some(digest.version),
                        ));
                    }
                }
            }
            if ring
                .versions
                .iter()
                .take(index)
                .any(|d| d.version == digest.version)
            {
                return Err(KeyError::tampered(
                    "ring lists a version twice",
                    name,
                    Some(digest.version),
                ));
            }
        }
        if let Some(extra) = rows
            .versions
            .iter()
            .find(|v| !ring.versions.iter().any(|d| d.version == v.version))
        {
            return Err(KeyError::tampered(
                "version row not listed by the ring (added or rolled back)",
                name,
                Some(extra.version),
            ));
        }
        Ok(())
    }

    pub(crate) fn verify_subject(&self, s: &SubjectRecord) -> Result<(), KeyError> {
        if ct_eq(&self.subject_mac(s), &s.mac) {
            Ok(())
        } else {
            Err(KeyError::tampered(
                "subject key row fails its MAC",
                &s.ring,
                Some(s.wrapped_by),
            ))
        }
    }
}

fn ct_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    bool::from(a.ct_eq(b))
}

impl fmt::Debug for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Integrity([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ring::VersionState;

    /// The MAC input layout documented in docs/KEYSTORE.md, written out byte by byte.
    #[test]
    fn version_mac_matches_the_documented_layout() {
        let key = SecretKey::from_bytes([3; 32]);
        let row = VersionRecord {
            ring: "customers".into(),
            version: 2,
            state: VersionState::DecryptOnly,
            wrapped_key: Some(vec![0xAA; 3]),
            created_at: 1_700_000_000,
            superseded_at: None,
            usage_reserved: 65_536,
            mac: [0; 32],
        };
        let label = b"custodian/v1/mac/version";
        let mut input = Vec::new();
        input.extend_from_slice(&(label.len() as u16).to_be_bytes());
        input.extend_from_slice(label);
        input.extend_from_slice(&[0, 9]);
        input.extend_from_slice(b"customers");
        input.extend_from_slice(&[0, 0, 0, 2]);
        input.push(2);
        input.extend_from_slice(&[1, 0, 0, 0, 3, 0xAA, 0xAA, 0xAA]);
        input.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        input.push(0);
        input.extend_from_slice(&65_536u64.to_be_bytes());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[3; 32]).unwrap();
        mac.update(&input);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(Integrity::new(key).version_mac(&row), expected);
    }
}
