//! The v1 byte layout (docs/FORMAT.md): parsed in full, with every length checked, before any
//! cryptography runs.

use super::kek::{MAX_NAME_LEN, MAX_SUBJECT_LEN, name_is_valid, subject_is_valid};
use super::{EnvelopeError, KeyId};
use crate::crypto::{Suite, TAG_LEN};
use crate::secret::KEY_LEN;

/// First three bytes of every binary ciphertext.
pub(crate) const MAGIC: [u8; 3] = *b"CST";
/// The format version this module reads and writes.
pub(crate) const VERSION: u8 = 1;
/// Largest plaintext format v1 accepts (1 GiB): far above any customer field, far below the
/// 64 GiB AES-GCM limit for one nonce.
pub const MAX_PAYLOAD_LEN: usize = 1 << 30;
/// A wrapped data key: the encrypted 32-byte key and its tag.
pub(crate) const WRAPPED_DEK_LEN: usize = KEY_LEN + TAG_LEN;
/// Bytes covered by the payload's associated data: magic, version, suite.
pub(crate) const PAYLOAD_AAD_PREFIX_LEN: usize = 5;

/// The public part of a ciphertext: which key and suite sealed it, and where each part lies.
///
/// Reading a header needs no key, so a store can find every row that still uses an old key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    suite: Suite,
    key_id: KeyId,
    payload_len: usize,
    /// Length of the key header: magic through payload length, the prefix bound into the wrap.
    key_header_len: usize,
}

/// A [`Header`] borrowing its name and subject from the ciphertext: opening a value needs only to
/// compare them with the key's, and this saves the allocations of a [`KeyId`] on every open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeaderRef<'a> {
    suite: Suite,
    name: &'a str,
    version: u32,
    subject: Option<&'a str>,
    payload_len: usize,
    key_header_len: usize,
}

/// Where the parts of a ciphertext lie, as byte offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub key_header_end: usize,
    pub wrap_nonce_end: usize,
    pub wrapped_dek_end: usize,
    pub data_nonce_end: usize,
    pub payload_end: usize,
    pub total: usize,
}

impl Header {
    /// Parses and checks the header of a binary ciphertext, including that the total length matches
    /// the recorded payload length (so truncation and trailing bytes are caught here).
    pub fn parse(bytes: &[u8]) -> Result<Header, EnvelopeError> {
        HeaderRef::parse(bytes).map(HeaderRef::to_header)
    }

    /// The AEAD suite of both the key wrap and the payload.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The key that wrapped the data key.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// Plaintext length in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    /// A copy with another key id (for rewrap: only the key header and the wrap change).
    /// The payload length was checked when this header was parsed, so this cannot fail.
    pub(crate) fn with_key_id(&self, key_id: KeyId) -> Header {
        let key_header_len = key_header_len(&key_id);
        Header {
            suite: self.suite,
            key_id,
            payload_len: self.payload_len,
            key_header_len,
        }
    }

    pub(crate) fn layout(&self) -> Layout {
        Layout::new(
            self.key_header_len,
            self.suite.nonce_len(),
            self.payload_len,
        )
    }

    /// Appends the key header (magic through payload length) to `out`.
    pub(crate) fn write_key_header(&self, out: &mut Vec<u8>) {
        write_key_header(out, self.suite, &self.key_id, self.payload_len);
    }
}

impl<'a> HeaderRef<'a> {
    /// Parses and checks the header of a binary ciphertext, including that the total length matches
    /// the recorded payload length (so truncation and trailing bytes are caught here).
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<HeaderRef<'a>, EnvelopeError> {
        let mut r = Reader(bytes);
        if r.take(3, "truncated before the magic bytes")? != MAGIC {
            return Err(EnvelopeError::Malformed("missing `CST` magic bytes"));
        }
        let version = r.byte("truncated before the version byte")?;
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let suite_id = r.byte("truncated before the suite byte")?;
        let suite = Suite::from_id(suite_id).ok_or(EnvelopeError::UnknownSuite(suite_id))?;
        let name_len = usize::from(r.byte("truncated before the key name length")?);
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(EnvelopeError::Malformed(
                "key name length out of range 1..=64",
            ));
        }
        let name = std::str::from_utf8(r.take(name_len, "truncated inside the key name")?)
            .map_err(|_| EnvelopeError::Malformed("key name is not UTF-8"))?;
        if !name_is_valid(name) {
            return Err(EnvelopeError::Malformed(
                "key name has a forbidden character",
            ));
        }
        let version = r.u32("truncated inside the key version")?;
        if version == 0 {
            return Err(EnvelopeError::Malformed("key version 0"));
        }
        let subject_len = usize::from(r.byte("truncated before the subject length")?);
        if subject_len > MAX_SUBJECT_LEN {
            return Err(EnvelopeError::Malformed("subject length over 128"));
        }
        let subject = if subject_len == 0 {
            None
        } else {
            let s = std::str::from_utf8(r.take(subject_len, "truncated inside the subject")?)
                .map_err(|_| EnvelopeError::Malformed("subject is not UTF-8"))?;
            if !subject_is_valid(s) {
                return Err(EnvelopeError::Malformed("subject has a control character"));
            }
            Some(s)
        };
        let payload_len = usize::try_from(r.u32("truncated inside the payload length")?)
            .map_err(|_| EnvelopeError::Malformed("payload length over 1 GiB"))?;
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(EnvelopeError::Malformed("payload length over 1 GiB"));
        }
        let key_header_len = bytes.len() - r.0.len();
        let header = HeaderRef {
            suite,
            name,
            version,
            subject,
            payload_len,
            key_header_len,
        };
        let total = header.layout().total;
        if bytes.len() < total {
            return Err(EnvelopeError::Malformed(
                "truncated: shorter than its recorded payload length",
            ));
        }
        if bytes.len() > total {
            return Err(EnvelopeError::Malformed(
                "trailing bytes after the payload tag",
            ));
        }
        Ok(header)
    }

    /// Whether this header names `key_id`, compared without building a [`KeyId`].
    pub(crate) fn names(self, key_id: &KeyId) -> bool {
        self.name == key_id.name()
            && self.version == key_id.version()
            && self.subject == key_id.subject()
    }

    pub(crate) fn suite(self) -> Suite {
        self.suite
    }

    /// The key ring's name.
    pub(crate) fn name(self) -> &'a str {
        self.name
    }

    pub(crate) fn version(self) -> u32 {
        self.version
    }

    pub(crate) fn subject(self) -> Option<&'a str> {
        self.subject
    }

    pub(crate) fn payload_len(self) -> usize {
        self.payload_len
    }

    pub(crate) fn layout(self) -> Layout {
        Layout::new(
            self.key_header_len,
            self.suite.nonce_len(),
            self.payload_len,
        )
    }

    pub(crate) fn to_header(self) -> Header {
        Header {
            suite: self.suite,
            // INVARIANT: `parse` checked name, version and subject.
            key_id: KeyId::from_checked_parts(self.name, self.version, self.subject),
            payload_len: self.payload_len,
            key_header_len: self.key_header_len,
        }
    }
}

impl Layout {
    pub(crate) fn new(key_header_len: usize, nonce_len: usize, payload_len: usize) -> Layout {
        let key_header_end = key_header_len;
        let wrap_nonce_end = key_header_end + nonce_len;
        let wrapped_dek_end = wrap_nonce_end + WRAPPED_DEK_LEN;
        let data_nonce_end = wrapped_dek_end + nonce_len;
        let payload_end = data_nonce_end + payload_len;
        Layout {
            key_header_end,
            wrap_nonce_end,
            wrapped_dek_end,
            data_nonce_end,
            payload_end,
            total: payload_end + TAG_LEN,
        }
    }
}

/// Refuses a plaintext longer than format v1 allows.
pub(crate) fn check_payload_len(payload_len: usize) -> Result<(), EnvelopeError> {
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(EnvelopeError::TooLarge(payload_len));
    }
    Ok(())
}

/// Length of the key header for `key_id`.
pub(crate) fn key_header_len(key_id: &KeyId) -> usize {
    let subject_len = key_id.subject().map_or(0, str::len);
    3 + 1 + 1 + 1 + key_id.name().len() + 4 + 1 + subject_len + 4
}

/// Appends the key header (magic through payload length) to `out`. The caller has checked the
/// payload length with [`check_payload_len`].
pub(crate) fn write_key_header(
    out: &mut Vec<u8>,
    suite: Suite,
    key_id: &KeyId,
    payload_len: usize,
) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(suite.id());
    let name = key_id.name().as_bytes();
    let subject = key_id.subject().unwrap_or("").as_bytes();
    // INVARIANT: KeyId validation caps names at 64 and subjects at 128 bytes, and
    // check_payload_len caps the payload at 1 GiB, so none of these conversions saturate.
    out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(name);
    out.extend_from_slice(&key_id.version().to_be_bytes());
    out.push(u8::try_from(subject.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(subject);
    out.extend_from_slice(&u32::try_from(payload_len).unwrap_or(u32::MAX).to_be_bytes());
}

/// A cursor that never indexes out of bounds.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    // The errors are built only on the failure branch: `ok_or(error)` builds and drops one on every
    // successful read, which showed up in profiles of `open`.
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let Some((head, rest)) = self.0.split_at_checked(n) else {
            return Err(EnvelopeError::Malformed(what));
        };
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        let Some((&b, rest)) = self.0.split_first() else {
            return Err(EnvelopeError::Malformed(what));
        };
        self.0 = rest;
        Ok(b)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EnvelopeError> {
        let bytes = self.take(4, what)?;
        let array: [u8; 4] = bytes
            .try_into()
            .map_err(|_| EnvelopeError::Malformed(what))?;
        Ok(u32::from_be_bytes(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::default_provider;
    use crate::envelope::{EncryptionContext, StaticKek, open, rewrap, seal};
    use crate::secret::SecretKey;

    fn kek(id: KeyId, suite: Suite) -> StaticKek {
        StaticKek::with_algorithm(
            id,
            &SecretKey::from_bytes([7; 32]),
            default_provider().aead(suite),
        )
    }

    /// A key header (magic through payload length) written byte by byte, not by the code under test.
    fn hand_built_header(name: &[u8], subject: &[u8], payload_len: u32) -> Vec<u8> {
        let mut out = b"CST\x01\x01".to_vec();
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.push(u8::try_from(subject.len()).unwrap());
        out.extend_from_slice(subject);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out
    }

    /// Everything after a key header: nonces, wrap, payload and tag, for AES-256-GCM.
    fn body(payload_len: usize) -> Vec<u8> {
        vec![0; 12 + WRAPPED_DEK_LEN + 12 + payload_len + TAG_LEN]
    }

    #[test]
    fn the_longest_name_and_subject_seal_and_open() {
        let name = "n".repeat(MAX_NAME_LEN);
        let subject = "\u{e9}".repeat(MAX_SUBJECT_LEN / 2); // 128 bytes of UTF-8, 64 characters
        let context = EncryptionContext::for_field("t", "1", "f").unwrap();
        for suite in [
            Suite::Aes256Gcm,
            Suite::ChaCha20Poly1305,
            Suite::XChaCha20Poly1305,
        ] {
            for id in [
                KeyId::new(name.clone(), 1).unwrap(),
                KeyId::new(name.clone(), u32::MAX)
                    .unwrap()
                    .for_subject(subject.clone())
                    .unwrap(),
            ] {
                let kek = kek(id.clone(), suite);
                let sealed = seal(&kek, &context, b"value").unwrap();
                let header = Header::parse(&sealed).unwrap();
                assert_eq!(header.key_id(), &id);
                assert_eq!(header.suite(), suite);
                assert_eq!(
                    header.layout().key_header_end,
                    3 + 1 + 1 + 1 + 64 + 4 + 1 + id.subject().map_or(0, str::len) + 4
                );
                assert_eq!(
                    open(&kek, &context, &sealed).unwrap().expose_secret(),
                    b"value"
                );
                // A rewrap keeps the longest id intact too.
                let again = rewrap(&kek, &kek, &context, &sealed).unwrap();
                assert_eq!(
                    open(&kek, &context, &again).unwrap().expose_secret(),
                    b"value"
                );
            }
        }
    }

    #[test]
    fn name_and_subject_lengths_are_checked_at_the_limits() {
        let subject = "s".repeat(MAX_SUBJECT_LEN);
        for (name_len, subject_len, ok) in [
            (1, 0, true),
            (64, 0, true),
            (64, 128, true),
            (1, 1, true),
            (0, 0, false),
            (65, 0, false),
            (64, 129, false),
            (255, 0, false),
            (1, 255, false),
        ] {
            let name = "n".repeat(name_len);
            let subject = "s".repeat(subject_len);
            let mut bytes = hand_built_header(name.as_bytes(), subject.as_bytes(), 3);
            bytes.extend_from_slice(&body(3));
            let parsed = Header::parse(&bytes);
            assert_eq!(parsed.is_ok(), ok, "{name_len} {subject_len}: {parsed:?}");
            if let Ok(header) = parsed {
                assert_eq!(header.key_id().name(), name);
                assert_eq!(header.key_id().subject().unwrap_or(""), subject);
                assert_eq!(header.payload_len(), 3);
                // The writer produces the same bytes as the hand-built header.
                let mut written = Vec::new();
                header.write_key_header(&mut written);
                assert_eq!(
                    written,
                    hand_built_header(name.as_bytes(), subject.as_bytes(), 3)
                );
            }
        }
        assert_eq!(subject.len(), 128);
    }

    #[test]
    fn the_payload_limit_is_exactly_one_gib() {
        assert_eq!(MAX_PAYLOAD_LEN, 1 << 30);
        assert_eq!(check_payload_len(MAX_PAYLOAD_LEN), Ok(()));
        assert_eq!(check_payload_len(0), Ok(()));
        assert_eq!(
            check_payload_len(MAX_PAYLOAD_LEN + 1),
            Err(EnvelopeError::TooLarge(MAX_PAYLOAD_LEN + 1))
        );
        // A header announcing exactly 1 GiB passes the limit and then fails only on length (the
        // 1 GiB body is not allocated); one byte more fails on the limit.
        let at_limit = hand_built_header(b"customers", b"", 1 << 30);
        assert_eq!(
            Header::parse(&at_limit),
            Err(EnvelopeError::Malformed(
                "truncated: shorter than its recorded payload length"
            ))
        );
        let over = hand_built_header(b"customers", b"", (1 << 30) + 1);
        assert_eq!(
            Header::parse(&over),
            Err(EnvelopeError::Malformed("payload length over 1 GiB"))
        );
        assert_eq!(
            Header::parse(&hand_built_header(b"customers", b"", u32::MAX)),
            Err(EnvelopeError::Malformed("payload length over 1 GiB"))
        );
        // The layout of a 1 GiB message, and the writer's bytes for it.
        let id = KeyId::new("customers", 1).unwrap();
        let layout = Layout::new(key_header_len(&id), 12, MAX_PAYLOAD_LEN);
        assert_eq!(layout.total, 24 + 12 + 48 + 12 + (1 << 30) + 16);
        let mut written = Vec::new();
        write_key_header(&mut written, Suite::Aes256Gcm, &id, MAX_PAYLOAD_LEN);
        assert_eq!(written, at_limit);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused_at_every_length() {
        let kek = kek(KeyId::new("customers", 1).unwrap(), Suite::Aes256Gcm);
        let context = EncryptionContext::new();
        let sealed = seal(&kek, &context, b"0123456789").unwrap();
        for len in 0..sealed.len() {
            assert!(Header::parse(&sealed[..len]).is_err(), "{len}");
        }
        let mut long = sealed.clone();
        long.push(0);
        assert_eq!(
            Header::parse(&long),
            Err(EnvelopeError::Malformed(
                "trailing bytes after the payload tag"
            ))
        );
    }
}
