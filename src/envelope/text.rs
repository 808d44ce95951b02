//! The text form for text columns: `cst1:` followed by the binary ciphertext in unpadded base64url.

use super::{EncryptionContext, EnvelopeError, Header, Kek, open, seal};
use crate::secret::SecretBytes;
use data_encoding::BASE64URL_NOPAD;

/// Prefix of every text ciphertext; the digit is the format version.
pub const TEXT_PREFIX: &str = "cst1:";

/// [`seal`], returning the text form.
pub fn seal_text(
    kek: &dyn Kek,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    Ok(encode_text(&seal(kek, context, plaintext)?))
}

/// The text form of a binary ciphertext: `cst1:` + unpadded base64url.
pub fn encode_text(ciphertext: &[u8]) -> String {
    let mut text =
        String::with_capacity(TEXT_PREFIX.len() + BASE64URL_NOPAD.encode_len(ciphertext.len()));
    text.push_str(TEXT_PREFIX);
    BASE64URL_NOPAD.encode_append(ciphertext, &mut text);
    text
}

/// [`open`] for the text form.
pub fn open_text(
    kek: &dyn Kek,
    context: &EncryptionContext,
    text: &str,
) -> Result<SecretBytes, EnvelopeError> {
    open(kek, context, &decode_text(text)?)
}

/// Decodes the text form to the binary ciphertext (no key needed).
pub fn decode_text(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    let body = text
        .strip_prefix(TEXT_PREFIX)
        .ok_or(EnvelopeError::MalformedText("missing `cst1:` prefix"))?;
    BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| EnvelopeError::MalformedText("not unpadded base64url after the prefix"))
}

impl Header {
    /// Parses the header of a text ciphertext (no key needed).
    pub fn parse_text(text: &str) -> Result<Header, EnvelopeError> {
        Header::parse(&decode_text(text)?)
    }
}
