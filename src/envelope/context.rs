use super::EnvelopeError;

/// Longest context key, in bytes.
pub const MAX_KEY_LEN: usize = 255;
/// Longest context value, in bytes.
pub const MAX_VALUE_LEN: usize = 65_535;
/// Most entries a context may hold.
pub const MAX_ENTRIES: usize = 64;

/// Where a value belongs (for example `table=customers`, `record=42`, `field=email`).
///
/// The context is not secret and not stored in the ciphertext: the caller supplies the same context
/// to open, usually rebuilt from the row being read. It is bound into both the key wrap and the
/// payload as associated data, so a value moved to another record or field fails to open.
///
/// Entries are kept sorted by key, so two contexts with the same entries encode identically no matter
/// the insertion order. A key may appear only once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EncryptionContext {
    entries: Vec<(String, String)>,
    /// The canonical encoding of `entries`, kept up to date by `insert` (a context is built once
    /// and then bound into every seal and open that uses it).
    encoded: Vec<u8>,
}

impl Default for EncryptionContext {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            encoded: vec![0, 0],
        }
    }
}

impl EncryptionContext {
    /// An empty context. Prefer binding at least the table, record and field.
    pub fn new() -> Self {
        Self::default()
    }

    /// The usual context of a database field: `table`, `record` (the row id) and `field` (the column).
    pub fn for_field(
        table: impl Into<String>,
        record: impl Into<String>,
        field: impl Into<String>,
    ) -> Result<Self, EnvelopeError> {
        Self::new()
            .with("table", table)?
            .with("record", record)?
            .with("field", field)
    }

    /// Adds `key=value`, returning the context for chaining.
    ///
    /// Fails on an empty or over-long key, an over-long value, a repeated key, or too many entries.
    pub fn with(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, EnvelopeError> {
        self.insert(key, value)?;
        Ok(self)
    }

    /// Adds `key=value` in place.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), EnvelopeError> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() {
            return Err(EnvelopeError::InvalidContext("empty key".into()));
        }
        if key.len() > MAX_KEY_LEN {
            return Err(EnvelopeError::InvalidContext(format!(
                "key of {} bytes exceeds {MAX_KEY_LEN}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(EnvelopeError::InvalidContext(format!(
                "value of key `{key}` is {} bytes, more than {MAX_VALUE_LEN}",
                value.len()
            )));
        }
        if self.entries.len() >= MAX_ENTRIES {
            return Err(EnvelopeError::InvalidContext(format!(
                "more than {MAX_ENTRIES} entries"
            )));
        }
        match self
            .entries
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
        {
            Ok(_) => Err(EnvelopeError::InvalidContext(format!(
                "key `{key}` appears twice"
            ))),
            Err(at) => {
                self.entries.insert(at, (key, value));
                self.encoded = self.encode_entries();
                Ok(())
            }
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
            .ok()
            .and_then(|at| self.entries.get(at))
            .map(|(_, v)| v.as_str())
    }

    /// Entries in canonical (byte-wise key) order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the context has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the canonical encoding (docs/FORMAT.md, "Context encoding") to `out`:
    /// `u16 count`, then per entry in key order `u16 key_len, key, u32 value_len, value` (big-endian).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encoded);
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.encoded.clone()
    }

    /// The canonical encoding, borrowed.
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// Length of the canonical encoding in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    fn encode_entries(&self) -> Vec<u8> {
        let len = 2 + self
            .entries
            .iter()
            .map(|(k, v)| 6 + k.len() + v.len())
            .sum::<usize>();
        let mut out = Vec::with_capacity(len);
        // INVARIANT: `insert` caps the count at 64, keys at 255 bytes and values at 65,535 bytes,
        // so these conversions never saturate.
        out.extend_from_slice(
            &u16::try_from(self.entries.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        for (key, value) in &self.entries {
            out.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_order_independent_and_length_prefixed() {
        let a = EncryptionContext::new()
            .with("table", "customers")
            .unwrap()
            .with("field", "email")
            .unwrap();
        let b = EncryptionContext::new()
            .with("field", "email")
            .unwrap()
            .with("table", "customers")
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.encode(), b.encode());
        let expected: Vec<u8> = [
            &[0, 2][..],
            &[0, 5],
            b"field",
            &[0, 0, 0, 5],
            b"email",
            &[0, 5],
            b"table",
            &[0, 0, 0, 9],
            b"customers",
        ]
        .concat();
        assert_eq!(a.encode(), expected);
    }

    #[test]
    fn for_field_binds_table_record_and_field() {
        let ctx = EncryptionContext::for_field("customers", "42", "email").unwrap();
        assert_eq!(ctx.get("table"), Some("customers"));
        assert_eq!(ctx.get("record"), Some("42"));
        assert_eq!(ctx.get("field"), Some("email"));
        assert_eq!(ctx.len(), 3);
    }

    #[test]
    fn ambiguous_splits_encode_differently() {
        let a = EncryptionContext::new().with("ab", "c").unwrap();
        let b = EncryptionContext::new().with("a", "bc").unwrap();
        assert_ne!(a.encode(), b.encode());
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(EncryptionContext::new().with("", "x").is_err());
        assert!(EncryptionContext::new().with("k".repeat(256), "x").is_err());
        assert!(
            EncryptionContext::new()
                .with("k", "v".repeat(65_536))
                .is_err()
        );
        let dup = EncryptionContext::new()
            .with("k", "1")
            .unwrap()
            .with("k", "2");
        assert_eq!(
            dup,
            Err(EnvelopeError::InvalidContext(
                "key `k` appears twice".into()
            ))
        );
        let mut many = EncryptionContext::new();
        for i in 0..MAX_ENTRIES {
            many.insert(format!("k{i}"), "v").unwrap();
        }
        assert!(many.insert("one-more", "v").is_err());
        assert_eq!(many.get("k7"), Some("v"));
    }
}
