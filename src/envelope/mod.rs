//! Envelope encryption, ciphertext format v1.
//!
//! Every message gets a fresh random data key (DEK). The payload is encrypted under the DEK; the DEK
//! is wrapped by a key-encryption key ([`Kek`]) named in the header by a [`KeyId`] (key-ring name,
//! version, optional subject). The [`EncryptionContext`] is bound into both the wrap and the payload
//! encryption, so a ciphertext copied into another row or field no longer opens.
//!
//! The byte layout is specified in `docs/FORMAT.md`; [`Header::parse`] reads the key id without any
//! key, for "which rows still use version 3?" scans.

mod aad;
mod context;
mod error;
mod format;
mod kek;
mod seal;
mod text;
#[cfg(test)]
mod worked_example;

pub use context::EncryptionContext;
pub use error::EnvelopeError;
pub(crate) use format::HeaderRef;
pub use format::{Header, MAX_PAYLOAD_LEN};
pub use kek::{Kek, KeyId, StaticKek};
pub use seal::{open, open_into, reencrypt, rewrap, rewrap_in_place, seal, seal_into, seal_many};
pub(crate) use seal::{open_parsed, open_ref};
pub use text::{TEXT_PREFIX, decode_text, encode_text, open_text, seal_text};
