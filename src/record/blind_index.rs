//! Blind indexes: equality search on encrypted columns.
//!
//! A blind index stores, next to the ciphertext, a keyed hash of the normalized value:
//! `HMAC-SHA-256(column key, normalized value)`, truncated. Looking up `jane@example.com` means
//! computing the same token and searching the index column for it; the database never sees the
//! value. Each column has its own key (derived by the key store from a dedicated index key ring),
//! so tokens of two columns cannot be compared.
//!
//! Index keys are derived per column, or per column and tenant: see [`IndexScope`].
//!
//! # Choosing the token length
//!
//! With `n` indexed rows and tokens of `b` bits, a lookup returns about `n / 2^b` unrelated rows
//! (false positives, which the caller discards after decrypting), and two different values share a
//! token with probability `2^-b`. Long tokens are exact but make every row's token a unique
//! fingerprint of its value; short tokens blur equal-looking rows together, so a token says less.
//!
//! | bytes | bits | false positives per lookup, 1 M rows | per lookup, 100 M rows |
//! |---|---|---|---|
//! | 4 | 32 | 2.3 x 10^-4 | 0.023 |
//! | 8 (default) | 64 | 5.4 x 10^-14 | 5.4 x 10^-12 |
//! | 16 | 128 | about 3 x 10^-33 | about 3 x 10^-31 |
//!
//! Shorter than 4 bytes is refused (lookups would return crowds); longer than 32 is impossible.
//!
//! # What a blind index reveals
//!
//! Equal values have equal tokens, so anyone with the table sees which rows share an e-mail address
//! and how often each value occurs. Someone who also holds the index key can test a guessed value.
//! Tokens of an erased customer remain linkable to a guessed value as long as the key lives:
//! **delete the index tokens together with the row** when erasing a customer.

use super::RecordError;
use super::normalize::Normalizer;
use crate::secret::SecretKey;
use arc_swap::ArcSwap;
use core::fmt;
use data_encoding::BASE64URL_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;

/// Default token length in bytes (64 bits).
pub const DEFAULT_TOKEN_LEN: usize = 8;
/// Shortest token length accepted.
pub const MIN_TOKEN_LEN: usize = 4;
/// Longest token length (all of HMAC-SHA-256).
pub const MAX_TOKEN_LEN: usize = 32;

/// A searchable token: the index key version and the truncated keyed hash.
///
/// Its text form, `bi1:<version>:<base64url>`, is what goes into the index column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexToken {
    version: u32,
    tag: Vec<u8>,
}

impl IndexToken {
    /// The index key version that made this token.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The truncated hash.
    pub fn as_bytes(&self) -> &[u8] {
        &self.tag
    }

    /// Parses the text form.
    pub fn parse(text: &str) -> Result<IndexToken, RecordError> {
        let malformed = || RecordError::MalformedToken(text.chars().take(64).collect());
        let rest = text.strip_prefix("bi1:").ok_or_else(malformed)?;
        let (version, tag) = rest.split_once(':').ok_or_else(malformed)?;
        let version: u32 = version.parse().map_err(|_| malformed())?;
        let tag = BASE64URL_NOPAD
            .decode(tag.as_bytes())
            .map_err(|_| malformed())?;
        if version == 0 || !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&tag.len()) {
            return Err(malformed());
        }
        Ok(IndexToken { version, tag })
    }
}

impl fmt::Display for IndexToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bi1:{}:{}",
            self.version,
            BASE64URL_NOPAD.encode(&self.tag)
        )
    }
}

/// Which values an index's tokens can be compared across: a whole column, or one tenant's rows of
/// it.
///
/// # Key derivation and tenant scope
///
/// The index keys come from the key store's blind-index ring ([`crate::Custodian`] uses the ring
/// `blind-index` by default), one per live version, through
/// [`KeyManager::derive_key`](crate::keys::KeyManager::derive_key) (docs/KEYSTORE.md, "Derived
/// keys") with an `info` that names the index ([`IndexScope::key_info`]):
///
/// | scope | `info` |
/// |---|---|
/// | [`IndexScope::Column`] | `"custodian/v1/blind-index/"` ‖ column |
/// | [`IndexScope::Tenant`] | `"custodian/v1/tenant-blind-index/"` ‖ be32(byte length of column) ‖ column ‖ tenant |
///
/// The two prefixes differ in their 14th byte, and the column's length prefix makes the tenant the
/// unambiguous tail, so no column key equals any tenant key, and no two (column, tenant) pairs share
/// a key. Strings are their UTF-8 bytes, taken as given (no normalization: `Shop-1` and `shop-1` are
/// two tenants).
///
/// **Column scope** gives one key per column: the same e-mail address has the same token in every
/// row of the table, whichever tenant (shop) the row belongs to. Anyone who can read the table sees
/// that the customer of shop A and the customer of shop B are one person, and whoever can compute
/// tokens for one shop (a shop's staff searching their own customers) can search every other shop's
/// rows with them.
///
/// **Tenant scope** gives one key per (column, tenant): the same address has unrelated tokens in two
/// shops, so rows of different tenants cannot be linked by their tokens, and a lookup finds only the
/// tenant's own rows. Use it whenever one database holds several tenants whose customers must not be
/// linkable across tenants (a platform hosting many shops; per-tenant data-protection agreements).
/// Keep column scope only where a lookup must span tenants, such as a platform-wide sign-in by
/// e-mail when the tenant is not yet known. Build a tenant's index with
/// [`Custodian::tenant_blind_index`](crate::Custodian::tenant_blind_index) and keep it per tenant (a
/// build derives one key per live index-key version). Index-key rotation, re-indexing and erasure
/// work the same in both scopes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IndexScope {
    /// One key per column: equal values have equal tokens in every tenant.
    Column,
    /// One key per column and tenant: equal values in two tenants have unrelated tokens.
    Tenant(String),
}

/// Longest tenant id accepted, in bytes.
pub const MAX_TENANT_LEN: usize = 255;

impl IndexScope {
    /// The scope of one tenant: 1 to [`MAX_TENANT_LEN`] bytes of UTF-8 without control characters.
    pub fn tenant(tenant: impl Into<String>) -> Result<Self, RecordError> {
        let tenant = tenant.into();
        if tenant.is_empty() || tenant.len() > MAX_TENANT_LEN {
            return Err(RecordError::InvalidIndex(format!(
                "tenant id must be 1 to {MAX_TENANT_LEN} bytes, got {}",
                tenant.len()
            )));
        }
        if tenant.chars().any(char::is_control) {
            return Err(RecordError::InvalidIndex(format!(
                "tenant id `{}` contains a control character",
                tenant.escape_debug()
            )));
        }
        Ok(IndexScope::Tenant(tenant))
    }

    /// The tenant, for a tenant-scoped index.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            IndexScope::Column => None,
            IndexScope::Tenant(tenant) => Some(tenant),
        }
    }

    /// The HKDF `info` from which the index key of `column` in this scope is derived (the `info` of
    /// [`KeyManager::derive_key`](crate::keys::KeyManager::derive_key)); the layout is above.
    pub fn key_info(&self, column: &str) -> Vec<u8> {
        match self {
            IndexScope::Column => {
                let mut info = b"custodian/v1/blind-index/".to_vec();
                info.extend_from_slice(column.as_bytes());
                info
            }
            IndexScope::Tenant(tenant) => {
                let mut info = b"custodian/v1/tenant-blind-index/".to_vec();
                // INVARIANT: a column name longer than 4 GiB cannot exist in memory next to this.
                let column_len = u32::try_from(column.len()).unwrap_or(u32::MAX);
                info.extend_from_slice(&column_len.to_be_bytes());
                info.extend_from_slice(column.as_bytes());
                info.extend_from_slice(tenant.as_bytes());
                info
            }
        }
    }
}

/// One version of a column's index key.
pub struct IndexKey {
    version: u32,
    mac: Hmac<Sha256>,
}

impl IndexKey {
    /// A column key (already derived for this column) at `version`.
    pub fn new(version: u32, key: &SecretKey) -> Result<Self, RecordError> {
        if version == 0 {
            return Err(RecordError::InvalidIndex(
                "index key version must be at least 1".into(),
            ));
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
            .map_err(|_| RecordError::InvalidIndex("index key rejected by HMAC".into()))?;
        Ok(Self { version, mac })
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IndexKey(v{}, [REDACTED])", self.version)
    }
}

/// Where a blind index takes its keys when they may change under it: an index-key rotation made
/// by any server. The facade's indexes follow the index ring this way.
pub trait IndexKeySource: Send + Sync + fmt::Debug {
    /// A number that changes whenever the live key versions change; read on every token, so it
    /// must be cheap (an atomic load).
    fn epoch(&self) -> u64;

    /// Every live key, primary first, derived for this index. Called when the epoch moved.
    fn keys(&self) -> Result<Vec<IndexKey>, RecordError>;
}

/// The keys of an index as of one epoch of its source.
#[derive(Debug)]
struct KeySet {
    epoch: u64,
    /// Every live key version; the first is the primary one, used for new tokens.
    keys: Vec<IndexKey>,
}

/// The blind index of one column, with every live version of its key.
#[derive(Debug)]
pub struct BlindIndex {
    column: String,
    scope: IndexScope,
    normalizer: Normalizer,
    token_len: usize,
    keys: ArcSwap<KeySet>,
    /// Set for indexes that follow rotations; `None` for fixed keys.
    source: Option<Arc<dyn IndexKeySource>>,
}

impl BlindIndex {
    /// An index for `column` (column scope). `keys` holds every live version, primary first.
    pub fn new(
        column: impl Into<String>,
        normalizer: Normalizer,
        token_len: usize,
        keys: Vec<IndexKey>,
    ) -> Result<Self, RecordError> {
        Self::new_scoped(column, IndexScope::Column, normalizer, token_len, keys)
    }

    /// An index for `column` in `scope`. `keys` holds every live version, primary first, each
    /// derived with [`IndexScope::key_info`] of this scope and column.
    pub fn new_scoped(
        column: impl Into<String>,
        scope: IndexScope,
        normalizer: Normalizer,
        token_len: usize,
        keys: Vec<IndexKey>,
    ) -> Result<Self, RecordError> {
        Self::build(column.into(), scope, normalizer, token_len, (0, keys), None)
    }

    /// An index for `column` in `scope` whose keys come from `source` and follow it: when the
    /// source's epoch moves (an index-key rotation, seen by this process through the key store's
    /// change feed), the next call takes the new keys, without rebuilding the index.
    pub fn following(
        column: impl Into<String>,
        scope: IndexScope,
        normalizer: Normalizer,
        token_len: usize,
        source: Arc<dyn IndexKeySource>,
    ) -> Result<Self, RecordError> {
        let keys = (source.epoch(), source.keys()?);
        Self::build(
            column.into(),
            scope,
            normalizer,
            token_len,
            keys,
            Some(source),
        )
    }

    fn build(
        column: String,
        scope: IndexScope,
        normalizer: Normalizer,
        token_len: usize,
        (epoch, keys): (u64, Vec<IndexKey>),
        source: Option<Arc<dyn IndexKeySource>>,
    ) -> Result<Self, RecordError> {
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token_len) {
            return Err(RecordError::InvalidIndex(format!(
                "token length for `{column}` must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} bytes, got {token_len}"
            )));
        }
        if keys.is_empty() {
            return Err(RecordError::InvalidIndex(format!(
                "index `{column}` has no key"
            )));
        }
        Ok(Self {
            column,
            scope,
            normalizer,
            token_len,
            keys: ArcSwap::from_pointee(KeySet { epoch, keys }),
            source,
        })
    }

    /// The current keys: those of the source's newest epoch, if it moved and its keys can be
    /// derived; otherwise the ones already held (tokens under them stay searchable).
    fn current(&self) -> Arc<KeySet> {
        let held = self.keys.load_full();
        let Some(source) = &self.source else {
            return held;
        };
        let epoch = source.epoch();
        if epoch == held.epoch {
            return held;
        }
        match source.keys() {
            Ok(keys) if !keys.is_empty() => {
                let fresh = Arc::new(KeySet { epoch, keys });
                self.keys.store(Arc::clone(&fresh));
                fresh
            }
            _ => held,
        }
    }

    /// The column this index serves.
    pub fn column(&self) -> &str {
        &self.column
    }

    /// Whether tokens compare across the whole column or within one tenant.
    pub fn scope(&self) -> &IndexScope {
        &self.scope
    }

    /// The token to store for `value` (primary key version).
    pub fn token(&self, value: &str) -> Result<IndexToken, RecordError> {
        let normalized = self.normalize(value)?;
        let keys = self.current();
        let primary = keys
            .keys
            .first()
            .ok_or(RecordError::InvalidIndex("no key".into()))?;
        Ok(self.token_with(primary, &normalized))
    }

    /// Every token under which `value` may be stored: one per live key version, so lookups keep
    /// finding rows while an index key rotation is under way.
    pub fn search_tokens(&self, value: &str) -> Result<Vec<IndexToken>, RecordError> {
        let normalized = self.normalize(value)?;
        Ok(self
            .current()
            .keys
            .iter()
            .map(|key| self.token_with(key, &normalized))
            .collect())
    }

    /// Whether `token` was made under the primary key (otherwise the row should be re-indexed).
    pub fn is_current(&self, token: &IndexToken) -> bool {
        self.current()
            .keys
            .first()
            .is_some_and(|key| key.version == token.version)
    }

    /// The key version new tokens are made under.
    pub fn primary_version(&self) -> u32 {
        self.current().keys.first().map_or(0, |key| key.version)
    }

    fn normalize(&self, value: &str) -> Result<zeroize::Zeroizing<String>, RecordError> {
        self.normalizer
            .apply(value)
            .map(zeroize::Zeroizing::new)
            .map_err(|e| match e {
                RecordError::Normalize(why) => {
                    RecordError::Normalize(format!("column `{}`: {why}", self.column))
                }
                other => other,
            })
    }

    fn token_with(&self, key: &IndexKey, normalized: &str) -> IndexToken {
        let mut mac = key.mac.clone();
        mac.update(normalized.as_bytes());
        let full = mac.finalize().into_bytes();
        let tag = full.get(..self.token_len).unwrap_or(&full[..]).to_vec();
        IndexToken {
            version: key.version,
            tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(versions: &[(u32, u8)]) -> BlindIndex {
        let keys = versions
            .iter()
            .map(|&(v, byte)| IndexKey::new(v, &SecretKey::from_bytes([byte; 32])).unwrap())
            .collect();
        BlindIndex::new(
            "customers.email",
            Normalizer::Email,
            DEFAULT_TOKEN_LEN,
            keys,
        )
        .unwrap()
    }

    #[test]
    fn equal_after_normalizing_means_equal_tokens() {
        let idx = index(&[(1, 1)]);
        assert_eq!(
            idx.token(" Jane@Example.com").unwrap(),
            idx.token("jane@example.com").unwrap()
        );
        assert_ne!(
            idx.token("jane@example.com").unwrap(),
            idx.token("john@example.com").unwrap()
        );
        assert_eq!(idx.token("jane@example.com").unwrap().as_bytes().len(), 8);
    }

    #[test]
    fn tokens_are_the_truncated_hmac_sha256() {
        // RFC 4231 test case 2 key ("Jefe") is not 32 bytes; use our own key and check against a
        // direct HMAC computation instead.
        let key = SecretKey::from_bytes([7; 32]);
        let idx = BlindIndex::new(
            "c",
            Normalizer::Trim,
            32,
            vec![IndexKey::new(3, &key).unwrap()],
        )
        .unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[7; 32]).unwrap();
        mac.update(b"value");
        assert_eq!(
            idx.token(" value ").unwrap().as_bytes(),
            &mac.finalize().into_bytes()[..]
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_findable() {
        let before = index(&[(1, 1)]);
        let stored = before.token("jane@example.com").unwrap();
        let during = index(&[(2, 2), (1, 1)]);
        let search = during.search_tokens("JANE@example.com").unwrap();
        assert_eq!(search.len(), 2);
        assert!(search.contains(&stored));
        assert!(!during.is_current(&stored));
        assert!(during.is_current(&during.token("jane@example.com").unwrap()));
    }

    #[test]
    fn token_text_round_trips_and_rejects_garbage() {
        let token = index(&[(12, 1)]).token("jane@example.com").unwrap();
        let text = token.to_string();
        assert!(text.starts_with("bi1:12:"));
        assert_eq!(IndexToken::parse(&text).unwrap(), token);
        for bad in [
            "",
            "bi1:",
            "bi1:0:AAAAAAAAAAA",
            "bi1:x:AAAA",
            "bi2:1:AAAAAAAAAAA",
            "bi1:1:AA",
            "bi1:1:***",
        ] {
            assert!(IndexToken::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scope_key_infos_are_the_documented_bytes_and_never_collide() {
        assert_eq!(
            IndexScope::Column.key_info("customers.email"),
            b"custodian/v1/blind-index/customers.email"
        );
        let mut expected = b"custodian/v1/tenant-blind-index/".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 15]);
        expected.extend_from_slice(b"customers.email");
        expected.extend_from_slice(b"shop-1");
        assert_eq!(
            IndexScope::tenant("shop-1")
                .unwrap()
                .key_info("customers.email"),
            expected
        );
        // Splitting one string differently between column and tenant changes the info.
        let mut infos = std::collections::HashSet::new();
        for (column, tenant) in [("ab", "c"), ("a", "bc"), ("abc", "d"), ("ab", "cd")] {
            assert!(infos.insert(IndexScope::tenant(tenant).unwrap().key_info(column)));
        }
        for column in ["ab", "a", "abc", "tenant-blind-index/x"] {
            assert!(infos.insert(IndexScope::Column.key_info(column)));
        }
        assert!(IndexScope::tenant("").is_err());
        assert!(IndexScope::tenant("a\nb").is_err());
        assert!(IndexScope::tenant("x".repeat(MAX_TENANT_LEN + 1)).is_err());
        assert!(IndexScope::tenant("x".repeat(MAX_TENANT_LEN)).is_ok());
        assert_eq!(IndexScope::tenant("s").unwrap().tenant_id(), Some("s"));
        assert_eq!(IndexScope::Column.tenant_id(), None);
    }

    #[test]
    fn bad_configuration_is_refused_and_keys_do_not_print() {
        let key = || vec![IndexKey::new(1, &SecretKey::from_bytes([9; 32])).unwrap()];
        assert!(BlindIndex::new("c", Normalizer::Trim, 3, key()).is_err());
        assert!(BlindIndex::new("c", Normalizer::Trim, 33, key()).is_err());
        assert!(BlindIndex::new("c", Normalizer::Trim, 8, vec![]).is_err());
        assert!(IndexKey::new(0, &SecretKey::from_bytes([9; 32])).is_err());
        let shown = format!("{:?}", index(&[(1, 0xAB)]));
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab, "),
            "{shown}"
        );
        let err = index(&[(1, 1)]).token("not-an-email").unwrap_err();
        assert!(err.to_string().contains("customers.email"), "{err}");
    }
}
