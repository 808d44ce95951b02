//! Database column types for [`Encrypted<T>`] and [`IndexToken`]: rusqlite's `ToSql`/`FromSql`
//! (feature `sqlite`, rusqlite 0.39), and sqlx's `Type`/`Encode`/`Decode` for SQLite (feature
//! `sqlx-sqlite`) and PostgreSQL (feature `postgres`), sqlx 0.9.
//!
//! | value | column type | stored as |
//! |---|---|---|
//! | [`Encrypted<T>`] | `BLOB` (SQLite), `bytea` (PostgreSQL) | the binary ciphertext ([`Encrypted::as_bytes`]) |
//! | [`IndexToken`] | `TEXT` | the text form `bi1:<version>:<base64url>` |
//!
//! A ciphertext's `cst1:` text is a third longer than its binary form, and nothing compares
//! ciphertexts in SQL. Tokens are text so that a lookup is plain SQL on the index column:
//! `WHERE email_idx = ?` with a token, `IN (...)` with the tokens of
//! [`BlindIndex::search_tokens`](super::BlindIndex::search_tokens), or on PostgreSQL
//! `= ANY($1)` with a `Vec<IndexToken>` bound as `text[]`.
//!
//! Decoding checks what can be checked without a key: a ciphertext's header
//! ([`Encrypted::from_ciphertext`]), a token's form ([`IndexToken::parse`]). A malformed value is a
//! [`RecordError`](super::RecordError) wrapped in the driver's error (rusqlite
//! `FromSqlError::Other`, sqlx's boxed decode error); a value of another SQL type (a number, a
//! `NULL` read as a non-`Option`) is the driver's own type error. Neither panics.
//!
//! On SQLite, whose columns take any type, an `Encrypted<T>` also decodes from a `TEXT` value in
//! the `cst1:` form, as an application that stored [`Encrypted::to_text`] (or the serde form of a
//! human-readable format) has written it; it is always written as a `BLOB`. PostgreSQL checks a
//! column's declared type, so there `Encrypted<T>` needs a `bytea` column.
//!
//! Ciphertexts and tokens are public values: nothing here handles a key or a plaintext.

use super::{Encrypted, IndexToken};

#[cfg(feature = "sqlite")]
mod rusqlite_impls {
    use super::{Encrypted, IndexToken};
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    impl<T> ToSql for Encrypted<T> {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::Borrowed(ValueRef::Blob(self.as_bytes())))
        }
    }

    impl<T> FromSql for Encrypted<T> {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            let decoded = match value {
                ValueRef::Blob(bytes) => Encrypted::from_ciphertext(bytes.to_vec()),
                ValueRef::Text(text) => {
                    Encrypted::from_text(str::from_utf8(text).map_err(FromSqlError::Utf8Error)?)
                }
                _ => return Err(FromSqlError::InvalidType),
            };
            decoded.map_err(|e| FromSqlError::Other(Box::new(e)))
        }
    }

    impl ToSql for IndexToken {
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.to_string()))
        }
    }

    impl FromSql for IndexToken {
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            IndexToken::parse(value.as_str()?).map_err(|e| FromSqlError::Other(Box::new(e)))
        }
    }
}

#[cfg(feature = "sqlx-sqlite")]
mod sqlx_sqlite_impls {
    use super::{Encrypted, IndexToken};
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
    use sqlx::{Database, Decode, Encode, Type, ValueRef};

    type Buffer = <Sqlite as Database>::ArgumentBuffer;

    impl<T> Type<Sqlite> for Encrypted<T> {
        fn type_info() -> SqliteTypeInfo {
            <[u8] as Type<Sqlite>>::type_info()
        }

        /// `BLOB`, or `TEXT` holding the `cst1:` form.
        fn compatible(ty: &SqliteTypeInfo) -> bool {
            <[u8] as Type<Sqlite>>::compatible(ty)
        }
    }

    impl<T> Encode<'_, Sqlite> for Encrypted<T> {
        fn encode_by_ref(&self, buf: &mut Buffer) -> Result<IsNull, BoxDynError> {
            <&[u8] as Encode<'_, Sqlite>>::encode(self.as_bytes(), buf)
        }
    }

    impl<'r, T> Decode<'r, Sqlite> for Encrypted<T> {
        fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
            // The value's own type: SQLite columns take any type.
            if *value.type_info() == <str as Type<Sqlite>>::type_info() {
                let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
                return Ok(Encrypted::from_text(text)?);
            }
            let bytes = <&[u8] as Decode<'r, Sqlite>>::decode(value)?;
            Ok(Encrypted::from_ciphertext(bytes.to_vec())?)
        }
    }

    impl Type<Sqlite> for IndexToken {
        fn type_info() -> SqliteTypeInfo {
            <str as Type<Sqlite>>::type_info()
        }

        fn compatible(ty: &SqliteTypeInfo) -> bool {
            <str as Type<Sqlite>>::compatible(ty)
        }
    }

    impl Encode<'_, Sqlite> for IndexToken {
        fn encode_by_ref(&self, buf: &mut Buffer) -> Result<IsNull, BoxDynError> {
            <String as Encode<'_, Sqlite>>::encode(self.to_string(), buf)
        }
    }

    impl<'r> Decode<'r, Sqlite> for IndexToken {
        fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
            Ok(IndexToken::parse(<&str as Decode<'r, Sqlite>>::decode(
                value,
            )?)?)
        }
    }
}

#[cfg(feature = "postgres")]
mod sqlx_postgres_impls {
    use super::{Encrypted, IndexToken};
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::postgres::{PgHasArrayType, PgTypeInfo, PgValueRef, Postgres};
    use sqlx::{Database, Decode, Encode, Type};

    type Buffer = <Postgres as Database>::ArgumentBuffer;

    impl<T> Type<Postgres> for Encrypted<T> {
        fn type_info() -> PgTypeInfo {
            <[u8] as Type<Postgres>>::type_info()
        }

        fn compatible(ty: &PgTypeInfo) -> bool {
            <[u8] as Type<Postgres>>::compatible(ty)
        }
    }

    impl<T> Encode<'_, Postgres> for Encrypted<T> {
        fn encode_by_ref(&self, buf: &mut Buffer) -> Result<IsNull, BoxDynError> {
            <&[u8] as Encode<'_, Postgres>>::encode(self.as_bytes(), buf)
        }
    }

    impl<'r, T> Decode<'r, Postgres> for Encrypted<T> {
        fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
            let bytes = <&[u8] as Decode<'r, Postgres>>::decode(value)?;
            Ok(Encrypted::from_ciphertext(bytes.to_vec())?)
        }
    }

    impl Type<Postgres> for IndexToken {
        fn type_info() -> PgTypeInfo {
            <str as Type<Postgres>>::type_info()
        }

        fn compatible(ty: &PgTypeInfo) -> bool {
            <str as Type<Postgres>>::compatible(ty)
        }
    }

    /// `text[]`, so that `WHERE email_idx = ANY($1)` takes all of
    /// [`BlindIndex::search_tokens`](crate::record::BlindIndex::search_tokens) at once.
    impl PgHasArrayType for IndexToken {
        fn array_type_info() -> PgTypeInfo {
            <&str as PgHasArrayType>::array_type_info()
        }

        fn array_compatible(ty: &PgTypeInfo) -> bool {
            <&str as PgHasArrayType>::array_compatible(ty)
        }
    }

    impl Encode<'_, Postgres> for IndexToken {
        fn encode_by_ref(&self, buf: &mut Buffer) -> Result<IsNull, BoxDynError> {
            <String as Encode<'_, Postgres>>::encode(self.to_string(), buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for IndexToken {
        fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
            Ok(IndexToken::parse(<&str as Decode<'r, Postgres>>::decode(
                value,
            )?)?)
        }
    }
}
