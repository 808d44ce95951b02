//! Sealing, opening and rewrapping v1 ciphertexts.

use super::aad::Aad;
use super::format::{
    Header, HeaderRef, Layout, check_payload_len, key_header_len, write_key_header,
};
use super::{EncryptionContext, EnvelopeError, Kek};
use crate::crypto::{TAG_LEN, Tag, fill_random};
use crate::secret::{KEY_LEN, SecretBytes, SecretKey};
use zeroize::{Zeroize, Zeroizing};

/// Longest nonce of any suite (XChaCha20-Poly1305).
const MAX_NONCE_LEN: usize = 24;

/// Seals `plaintext` under a fresh data key wrapped by `kek`, bound to `context`.
pub fn seal(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    seal_into(kek, context, plaintext, &mut out)?;
    Ok(out)
}

/// [`seal`], appending the ciphertext to `out` instead of allocating a new vector: a caller that
/// seals many messages can reuse one buffer (`out.clear()` between them). On error `out` keeps its
/// previous length.
pub fn seal_into(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let nonce_len = kek.algorithm().suite().nonce_len();
    // One call to the generator for the data key and both nonces.
    let mut random = Zeroizing::new([0u8; KEY_LEN + 2 * MAX_NONCE_LEN]);
    let random = random
        .get_mut(..KEY_LEN + 2 * nonce_len)
        .ok_or(EnvelopeError::Random)?;
    fill_random(random).map_err(EnvelopeError::from_crypto)?;
    seal_with_random(kek, context, plaintext, random, out)
}

/// Seals several values under one KEK, drawing the randomness for all of them (a fresh data key and
/// fresh nonces for each) in one call to the generator. Equivalent to calling [`seal`] for each
/// item, but faster for a record with several encrypted fields.
pub fn seal_many(
    kek: &dyn Kek,
    items: &[(&EncryptionContext, &[u8])],
) -> Result<Vec<Vec<u8>>, EnvelopeError> {
    let per_item = KEY_LEN + 2 * kek.algorithm().suite().nonce_len();
    let mut random = Zeroizing::new(vec![0u8; per_item * items.len()]);
    fill_random(&mut random).map_err(EnvelopeError::from_crypto)?;
    items
        .iter()
        .zip(random.chunks_exact(per_item))
        .map(|((context, plaintext), random)| {
            let mut out = Vec::new();
            seal_with_random(kek, context, plaintext, random, &mut out)?;
            Ok(out)
        })
        .collect()
}

/// Seals with fresh randomness laid out as data key || wrap nonce || data nonce.
fn seal_with_random(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
    random: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let (dek, nonces) = random
        .split_at_checked(KEY_LEN)
        .ok_or(EnvelopeError::Random)?;
    let (wrap_nonce, data_nonce) = nonces.split_at(nonces.len() / 2);
    let dek = SecretKey::from_slice(dek).ok_or(EnvelopeError::Random)?;
    let start = out.len();
    let sealed = append_sealed(kek, context, plaintext, &dek, wrap_nonce, data_nonce, out);
    if sealed.is_err() {
        out.truncate(start);
    }
    sealed
}

/// Seals with caller-chosen data key and nonces. Only for the format's worked example and tests:
/// reusing a nonce under a key destroys confidentiality and authenticity.
#[cfg(test)]
pub(crate) fn seal_with(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
    dek: &SecretKey,
    wrap_nonce: &[u8],
    data_nonce: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    append_sealed(
        kek, context, plaintext, dek, wrap_nonce, data_nonce, &mut out,
    )?;
    Ok(out)
}

/// Appends the ciphertext sealed with the given data key and nonces to `out`. On error, `out` may
/// hold a partial ciphertext after its previous end (the callers truncate it).
fn append_sealed(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
    dek: &SecretKey,
    wrap_nonce: &[u8],
    data_nonce: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let algorithm = kek.algorithm();
    let suite = algorithm.suite();
    check_payload_len(plaintext.len())?;
    let layout = Layout::new(
        key_header_len(kek.key_id()),
        suite.nonce_len(),
        plaintext.len(),
    );

    let base = out.len();
    out.reserve(layout.total);
    write_key_header(out, suite, kek.key_id(), plaintext.len());
    let key_header = out.get(base..).ok_or(EnvelopeError::Random)?;
    let mut aad = Aad::for_wrap(key_header, context);
    let wrap = wrap_dek(kek, aad.as_slice(), dek, wrap_nonce)?;
    out.extend_from_slice(wrap_nonce);
    out.extend_from_slice(&wrap);
    out.extend_from_slice(data_nonce);

    aad.cut_to_payload(layout.key_header_end);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let payload = out.get_mut(start..).ok_or(EnvelopeError::Random)?;
    let tag = algorithm
        .seal_once(dek, data_nonce, aad.as_slice(), payload)
        .map_err(EnvelopeError::from_crypto)?;
    out.extend_from_slice(&tag);
    debug_assert_eq!(out.len() - base, layout.total);
    Ok(())
}

/// Opens a ciphertext sealed by [`seal`] with the same key and context.
pub fn open(
    kek: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
) -> Result<SecretBytes, EnvelopeError> {
    open_ref(kek, context, ciphertext, HeaderRef::parse(ciphertext)?)
}

/// [`open`] for a ciphertext whose header the caller has already parsed from these same bytes.
pub(crate) fn open_parsed(
    kek: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
    header: &Header,
) -> Result<SecretBytes, EnvelopeError> {
    check_key(header, kek)?;
    open_checked(kek, context, ciphertext, header.layout())
}

/// [`open`] with a borrowed header the caller has already parsed from these same bytes.
pub(crate) fn open_ref(
    kek: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
    header: HeaderRef<'_>,
) -> Result<SecretBytes, EnvelopeError> {
    check_key_ref(header, kek)?;
    open_checked(kek, context, ciphertext, header.layout())
}

/// Opens a ciphertext of `layout` whose key id and suite were checked against `kek`.
fn open_checked(
    kek: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
    layout: Layout,
) -> Result<SecretBytes, EnvelopeError> {
    let sealed = Unwrapped::new(kek, context, ciphertext, layout)?;
    let mut plaintext = SecretBytes::new(sealed.payload.to_vec());
    sealed.open_in_place(kek, plaintext.expose_secret_mut())?;
    Ok(plaintext)
}

/// Opens into a buffer the caller owns, without allocating: for large messages, and for callers
/// that reuse one buffer for many messages.
///
/// `out` must be at least [`Header::payload_len`] bytes long; the plaintext is written to its
/// start and that part is returned. The caller owns the plaintext, so wiping it is the caller's
/// job (for example with `zeroize::Zeroize` on the buffer, or by reusing the buffer). If the
/// payload fails to authenticate, the bytes written to `out` are zeroed again, so no
/// unauthenticated plaintext is left in it; on any earlier error `out` is not written.
///
/// ```
/// use custodian::envelope::{self, EncryptionContext, Header, StaticKek};
///
/// let kek = StaticKek::generate("documents", 1)?;
/// let context = EncryptionContext::for_field("documents", "42", "body")?;
/// let sealed = envelope::seal(&kek, &context, b"a large document")?;
///
/// let mut buffer = vec![0u8; Header::parse(&sealed)?.payload_len()];
/// let plaintext = envelope::open_into(&kek, &context, &sealed, &mut buffer)?;
/// assert_eq!(plaintext, b"a large document");
/// # Ok::<(), custodian::envelope::EnvelopeError>(())
/// ```
pub fn open_into<'a>(
    kek: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
    out: &'a mut [u8],
) -> Result<&'a mut [u8], EnvelopeError> {
    let header = HeaderRef::parse(ciphertext)?;
    let given = out.len();
    let out = out
        .get_mut(..header.payload_len())
        .ok_or(EnvelopeError::BufferTooSmall {
            needed: header.payload_len(),
            given,
        })?;
    check_key_ref(header, kek)?;
    let sealed = Unwrapped::new(kek, context, ciphertext, header.layout())?;
    if sealed.payload.len() != out.len() {
        // Both lengths come from the parsed header.
        return Err(EnvelopeError::Decrypt);
    }
    out.copy_from_slice(sealed.payload);
    sealed.open_in_place(kek, out)?;
    Ok(out)
}

/// A parsed ciphertext whose data key is unwrapped: what is left is the payload decryption.
struct Unwrapped<'c> {
    dek: SecretKey,
    payload_aad: Aad,
    data_nonce: &'c [u8],
    payload: &'c [u8],
    tag: Tag,
}

impl<'c> Unwrapped<'c> {
    /// `kek` must have been checked against the header (`check_key`, `check_key_ref`).
    fn new(
        kek: &dyn Kek,
        context: &EncryptionContext,
        ciphertext: &'c [u8],
        layout: Layout,
    ) -> Result<Self, EnvelopeError> {
        let key_header = ciphertext
            .get(..layout.key_header_end)
            .ok_or(EnvelopeError::Decrypt)?;
        let mut aad = Aad::for_wrap(key_header, context);
        let dek = unwrap_dek(kek, ciphertext, &layout, aad.as_slice())?;
        aad.cut_to_payload(layout.key_header_end);

        let part = |from: usize, to: usize| part_of(ciphertext, from, to);
        Ok(Self {
            dek,
            payload_aad: aad,
            data_nonce: part(layout.wrapped_dek_end, layout.data_nonce_end)?,
            payload: part(layout.data_nonce_end, layout.payload_end)?,
            tag: part(layout.payload_end, layout.total)?
                .try_into()
                .map_err(|_| EnvelopeError::Decrypt)?,
        })
    }

    /// Decrypts `in_out`, a copy of the payload, in place; zeroes it on failure.
    fn open_in_place(&self, kek: &dyn Kek, in_out: &mut [u8]) -> Result<(), EnvelopeError> {
        let opened = kek.algorithm().open_once(
            &self.dek,
            self.data_nonce,
            self.payload_aad.as_slice(),
            in_out,
            &self.tag,
        );
        if opened.is_err() {
            in_out.zeroize();
            return Err(EnvelopeError::Decrypt);
        }
        Ok(())
    }
}

/// Rewraps a ciphertext's data key from `from` to `to` without touching the payload.
///
/// The cost does not depend on the payload size beyond one copy; [`rewrap_in_place`] avoids even
/// that. Rewrapping a ciphertext that is already under `to` is harmless (it gets a fresh wrap).
pub fn rewrap(
    from: &dyn Kek,
    to: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = ciphertext.to_vec();
    rewrap_in_place(from, to, context, &mut out)?;
    Ok(out)
}

/// Like [`rewrap`], rewriting only the header bytes of `ciphertext`. On error it is left unchanged.
pub fn rewrap_in_place(
    from: &dyn Kek,
    to: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    let header = Header::parse(ciphertext)?;
    check_key(&header, from)?;
    let suite = header.suite();
    if to.algorithm().suite() != suite {
        return Err(EnvelopeError::wrong_suite(suite, to.algorithm().suite()));
    }
    let layout = header.layout();
    let key_header = ciphertext
        .get(..layout.key_header_end)
        .ok_or(EnvelopeError::Decrypt)?;
    let dek = unwrap_dek(
        from,
        ciphertext,
        &layout,
        Aad::for_wrap(key_header, context).as_slice(),
    )?;

    let new_header = header.with_key_id(to.key_id().clone());
    let mut prefix = Vec::with_capacity(new_header.layout().wrapped_dek_end);
    new_header.write_key_header(&mut prefix);
    let mut wrap_nonce = [0u8; MAX_NONCE_LEN];
    let wrap_nonce = wrap_nonce
        .get_mut(..suite.nonce_len())
        .ok_or(EnvelopeError::Random)?;
    fill_random(wrap_nonce).map_err(EnvelopeError::from_crypto)?;
    let wrap = wrap_dek(
        to,
        Aad::for_wrap(&prefix, context).as_slice(),
        &dek,
        wrap_nonce,
    )?;
    prefix.extend_from_slice(wrap_nonce);
    prefix.extend_from_slice(&wrap);

    // Nothing below can fail: the caller's bytes change only once the new prefix is complete.
    ciphertext.splice(..layout.wrapped_dek_end, prefix);
    Ok(())
}

/// Opens with `from` and seals again under `to` with a fresh data key (after a suspected data-key
/// leak, or to change suite). Costs a full decryption and encryption.
pub fn reencrypt(
    from: &dyn Kek,
    to: &dyn Kek,
    context: &EncryptionContext,
    ciphertext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let plaintext = open(from, context, ciphertext)?;
    seal(to, context, plaintext.expose_secret())
}

fn check_key(header: &Header, kek: &dyn Kek) -> Result<(), EnvelopeError> {
    if header.key_id() != kek.key_id() {
        return Err(EnvelopeError::WrongKey {
            found: header.key_id().clone(),
            given: kek.key_id().clone(),
        });
    }
    let given = kek.algorithm().suite();
    if header.suite() != given {
        return Err(EnvelopeError::wrong_suite(header.suite(), given));
    }
    Ok(())
}

/// [`check_key`] for a borrowed header: the [`KeyId`](super::KeyId) is built only for the error.
fn check_key_ref(header: HeaderRef<'_>, kek: &dyn Kek) -> Result<(), EnvelopeError> {
    if !header.names(kek.key_id()) {
        return check_key(&header.to_header(), kek);
    }
    let given = kek.algorithm().suite();
    if header.suite() != given {
        return Err(EnvelopeError::wrong_suite(header.suite(), given));
    }
    Ok(())
}

/// Encrypts the data key under the KEK with the wrap AAD.
fn wrap_dek(
    kek: &dyn Kek,
    aad: &[u8],
    dek: &SecretKey,
    nonce: &[u8],
) -> Result<[u8; KEY_LEN + TAG_LEN], EnvelopeError> {
    let mut wrapped = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
    let (key_part, tag_part) = wrapped.split_at_mut(KEY_LEN);
    key_part.copy_from_slice(dek.expose_secret());
    let tag = kek
        .wrapping_key()
        .seal_in_place(nonce, aad, key_part)
        .map_err(EnvelopeError::from_crypto)?;
    tag_part.copy_from_slice(&tag);
    Ok(*wrapped)
}

/// Decrypts the wrapped data key with the wrap AAD.
fn unwrap_dek(
    kek: &dyn Kek,
    ciphertext: &[u8],
    layout: &Layout,
    aad: &[u8],
) -> Result<SecretKey, EnvelopeError> {
    let part = |from: usize, to: usize| part_of(ciphertext, from, to);
    let nonce = part(layout.key_header_end, layout.wrap_nonce_end)?;
    let wrapped = part(layout.wrap_nonce_end, layout.wrapped_dek_end)?;
    let (encrypted_key, tag) = wrapped
        .split_at_checked(KEY_LEN)
        .ok_or(EnvelopeError::Decrypt)?;
    let tag: Tag = tag.try_into().map_err(|_| EnvelopeError::Decrypt)?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(encrypted_key);
    kek.wrapping_key()
        .open_in_place(nonce, aad, key.as_mut_slice(), &tag)
        .map_err(|_| EnvelopeError::Decrypt)?;
    Ok(SecretKey::from_bytes(*key))
}

/// `ciphertext[from..to]`; the layout was checked by `Header::parse`, so failure means a bug, and is
/// reported as a decryption failure. (The error is built only on that branch.)
fn part_of(ciphertext: &[u8], from: usize, to: usize) -> Result<&[u8], EnvelopeError> {
    match ciphertext.get(from..to) {
        Some(part) => Ok(part),
        None => Err(EnvelopeError::Decrypt),
    }
}
