//! RFC 9162 §2.1.1 Merkle hashing: SHA-256 with one domain-separation byte for leaves and another
//! for interior nodes, so that no interior node can pass as a leaf (and two different lists never
//! share a root the way a Bitcoin-style tree that repeats its odd last node lets them).

use core::fmt;

use data_encoding::HEXLOWER;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Length of a SHA-256 hash in bytes.
pub const HASH_LEN: usize = 32;

/// Prefix of a leaf hash: `SHA-256(0x00 || entry bytes)`.
const LEAF_PREFIX: u8 = 0x00;
/// Prefix of an interior node hash: `SHA-256(0x01 || left || right)`.
const NODE_PREFIX: u8 = 0x01;

/// A SHA-256 hash: a leaf, an interior node, a tree root or a digest named in an audit entry.
///
/// Not secret, so it prints: `Debug` and `Display` show lowercase hex, and serde uses the same hex
/// string (JSON receipts and exports stay readable).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash([u8; HASH_LEN]);

impl Hash {
    /// Wraps 32 hash bytes.
    pub const fn from_bytes(bytes: [u8; HASH_LEN]) -> Self {
        Self(bytes)
    }

    /// Copies a hash from a slice, or returns `None` unless it is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }

    /// Parses 64 lowercase hex digits (the form [`Display`](fmt::Display) writes).
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 2 * HASH_LEN {
            return None;
        }
        let bytes = HEXLOWER.decode(hex.as_bytes()).ok()?;
        Self::from_slice(&bytes)
    }

    /// SHA-256 of arbitrary bytes (for example the text of a policy, to name it in an entry).
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    /// The hash bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&HEXLOWER.encode(&self.0))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lowercase hex digits"))
    }
}

/// The root of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// The hash of one leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    Hash(hasher.finalize().into())
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, Hash::digest(b""));
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        let mut joined = a.as_bytes().to_vec();
        joined.extend_from_slice(b.as_bytes());
        // The same 64 bytes hashed as a leaf and as a node differ.
        assert_ne!(leaf_hash(&joined), node_hash(&a, &b));
        assert_ne!(node_hash(&a, &b), node_hash(&b, &a));
    }

    #[test]
    fn hex_round_trip_and_refusals() {
        let h = leaf_hash(b"x");
        assert_eq!(Hash::from_hex(&h.to_string()), Some(h));
        assert_eq!(Hash::from_hex(&h.to_string().to_uppercase()), None);
        assert_eq!(Hash::from_hex("00"), None);
        assert_eq!(Hash::from_hex(&"zz".repeat(32)), None);
        assert_eq!(format!("{h:?}"), format!("Hash({h})"));
    }
}
