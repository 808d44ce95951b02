//! The associated data of a key wrap and of a payload, built on the stack when it fits.
//!
//! Every seal and open binds the key header and the context into the wrap, and the context into the
//! payload (docs/FORMAT.md). Building that in a fresh vector cost an allocation per operation, a
//! measurable part of a 256-byte open; it is public data, so nothing needs wiping.

use super::EncryptionContext;
use super::format::PAYLOAD_AAD_PREFIX_LEN;

/// Bytes kept inline. A key header is at most 207 bytes (a 64-byte name, a 128-byte subject) and a
/// shop's context a few dozen, so nearly every AAD fits; a longer one goes to the heap.
const INLINE_LEN: usize = 384;

/// An AAD, inline or on the heap.
#[expect(
    clippy::large_enum_variant,
    reason = "the inline variant is the point: it lives on the caller's stack for one operation"
)]
pub(super) enum Aad {
    Inline { bytes: [u8; INLINE_LEN], len: usize },
    Heap(Vec<u8>),
}

impl Aad {
    /// The wrap AAD: key header || context encoding.
    pub(super) fn for_wrap(key_header: &[u8], context: &EncryptionContext) -> Aad {
        let encoded = context.encoded();
        let len = key_header.len() + encoded.len();
        let mut bytes = [0u8; INLINE_LEN];
        if let Some(dest) = bytes.get_mut(..len) {
            let (header_part, context_part) = dest.split_at_mut(key_header.len());
            header_part.copy_from_slice(key_header);
            context_part.copy_from_slice(encoded);
            return Aad::Inline { bytes, len };
        }
        let mut heap = Vec::with_capacity(len);
        heap.extend_from_slice(key_header);
        heap.extend_from_slice(encoded);
        Aad::Heap(heap)
    }

    /// Turns the wrap AAD into the payload AAD, magic || version || suite || context encoding, in
    /// place: the payload AAD leaves out the key id and the wrap, so that a rewrap does not touch
    /// the payload. `key_header_len` is the length of the key header this AAD was built from.
    pub(super) fn cut_to_payload(&mut self, key_header_len: usize) {
        let removed = PAYLOAD_AAD_PREFIX_LEN..key_header_len;
        match self {
            Aad::Inline { bytes, len } => {
                if removed.start <= removed.end && removed.end <= *len {
                    bytes.copy_within(removed.end..*len, removed.start);
                    *len -= removed.end - removed.start;
                }
            }
            Aad::Heap(heap) => {
                if removed.start <= removed.end && removed.end <= heap.len() {
                    heap.drain(removed);
                }
            }
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            Aad::Inline { bytes, len } => bytes.get(..*len).unwrap_or_default(),
            Aad::Heap(heap) => heap,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context_of(value_len: usize) -> EncryptionContext {
        EncryptionContext::new()
            .with("table", "customers")
            .and_then(|c| c.with("note", "x".repeat(value_len)))
            .unwrap()
    }

    /// Inline and heap AADs hold the same bytes as the plain concatenation, before and after the
    /// key id is cut out, on both sides of the inline limit.
    #[test]
    fn inline_and_heap_aads_match_the_concatenation() {
        let key_header: Vec<u8> = (0u8..40).collect();
        for value_len in [0, 10, INLINE_LEN - 80, INLINE_LEN - 40, INLINE_LEN, 5000] {
            let context = context_of(value_len);
            let mut expected = key_header.clone();
            expected.extend_from_slice(context.encoded());
            let mut aad = Aad::for_wrap(&key_header, &context);
            assert_eq!(
                matches!(aad, Aad::Inline { .. }),
                expected.len() <= INLINE_LEN,
                "{value_len}"
            );
            assert_eq!(aad.as_slice(), expected.as_slice(), "{value_len}");
            aad.cut_to_payload(key_header.len());
            expected.drain(PAYLOAD_AAD_PREFIX_LEN..key_header.len());
            assert_eq!(aad.as_slice(), expected.as_slice(), "{value_len}");
        }
    }
}
