//! The record layer: typed encrypted fields, blind indexes for equality search on encrypted columns and their normalizers.

mod blind_index;
pub(crate) mod encrypted;
mod error;
mod normalize;
#[cfg(any(feature = "sqlite", feature = "sqlx-sqlite", feature = "postgres"))]
mod sql;

pub use blind_index::{
    BlindIndex, DEFAULT_TOKEN_LEN, IndexKey, IndexKeySource, IndexScope, IndexToken,
    MAX_TENANT_LEN, MAX_TOKEN_LEN, MIN_TOKEN_LEN,
};
pub use encrypted::Encrypted;
pub use error::RecordError;
pub use normalize::Normalizer;
