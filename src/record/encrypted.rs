//! `Encrypted<T>`: a typed encrypted field that serializes as its ciphertext.

use super::RecordError;
use crate::envelope::{self, EncryptionContext, Header, Kek};
use core::fmt;
use core::marker::PhantomData;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

/// An encrypted value of type `T`.
///
/// It serializes as the ciphertext: in human-readable formats (JSON, TOML) as the text form
/// `cst1:...`, in binary formats as bytes. So a struct such as
/// `Customer { id, email: Encrypted<String>, address: Encrypted<Address> }` goes to a database or a
/// JSON API unchanged, and deserializing checks the header (never the key). Opening it needs the key
/// and the same [`EncryptionContext`]. The plaintext inside is the JSON encoding of `T`.
pub struct Encrypted<T> {
    ciphertext: Vec<u8>,
    header: Header,
    _type: PhantomData<fn() -> T>,
}

impl<T> Encrypted<T> {
    /// Wraps a stored binary ciphertext after checking its header.
    pub fn from_ciphertext(ciphertext: Vec<u8>) -> Result<Self, RecordError> {
        let header = Header::parse(&ciphertext)?;
        Ok(Self {
            ciphertext,
            header,
            _type: PhantomData,
        })
    }

    /// Parses a stored text ciphertext (`cst1:...`).
    pub fn from_text(text: &str) -> Result<Self, RecordError> {
        Self::from_ciphertext(envelope::decode_text(text)?)
    }

    /// The binary ciphertext.
    pub fn as_bytes(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The text form, `cst1:` + base64url.
    pub fn to_text(&self) -> String {
        envelope::encode_text(&self.ciphertext)
    }

    /// The public header: key id and suite.
    pub fn header(&self) -> &Header {
        &self.header
    }
}

impl<T: Serialize> Encrypted<T> {
    /// Seals `value` under a `kek` you manage yourself, bound to `context`. With the facade, use
    /// [`Custodian::seal`](crate::Custodian::seal), which picks the key.
    pub fn seal_with_kek(
        kek: &dyn Kek,
        context: &EncryptionContext,
        value: &T,
    ) -> Result<Self, RecordError> {
        let plaintext = to_plaintext(value)?;
        Self::from_ciphertext(envelope::seal(kek, context, &plaintext)?)
    }
}

impl<T: DeserializeOwned> Encrypted<T> {
    /// Opens the value with `kek` and the same `context` it was sealed with. With the facade, use
    /// [`Custodian::open`](crate::Custodian::open).
    pub fn open_with_kek(
        &self,
        kek: &dyn Kek,
        context: &EncryptionContext,
    ) -> Result<T, RecordError> {
        let plaintext = envelope::open(kek, context, &self.ciphertext)?;
        from_plaintext(plaintext.expose_secret())
    }
}

/// The plaintext bytes of a typed value (its JSON encoding), wiped when dropped.
pub(crate) fn to_plaintext<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Zeroizing<Vec<u8>>, RecordError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| RecordError::Serialize(e.to_string()))
}

/// Decodes a typed value from opened plaintext. The plaintext was authenticated, so a failure here
/// means the value was sealed as another type, and saying so is no oracle.
pub(crate) fn from_plaintext<T: DeserializeOwned>(plaintext: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(plaintext).map_err(|_| {
        RecordError::Serialize(format!(
            "the opened value is not a `{}`",
            core::any::type_name::<T>()
        ))
    })
}

impl<T> Clone for Encrypted<T> {
    fn clone(&self) -> Self {
        Self {
            ciphertext: self.ciphertext.clone(),
            header: self.header.clone(),
            _type: PhantomData,
        }
    }
}

impl<T> PartialEq for Encrypted<T> {
    fn eq(&self, other: &Self) -> bool {
        self.ciphertext == other.ciphertext
    }
}

impl<T> Eq for Encrypted<T> {}

impl<T> fmt::Debug for Encrypted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Encrypted<{}>({}, {} bytes)",
            core::any::type_name::<T>(),
            self.header.key_id(),
            self.ciphertext.len()
        )
    }
}

impl<T> Serialize for Encrypted<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_text())
        } else {
            serializer.serialize_bytes(&self.ciphertext)
        }
    }
}

impl<'de, T> Deserialize<'de> for Encrypted<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CiphertextVisitor<T>(PhantomData<fn() -> T>);

        impl<T> Visitor<'_> for CiphertextVisitor<T> {
            type Value = Encrypted<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a custodian ciphertext (`cst1:...` text or bytes)")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Encrypted::from_text(text).map_err(E::custom)
            }

            fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
                Encrypted::from_ciphertext(bytes.to_vec()).map_err(E::custom)
            }

            fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Self::Value, E> {
                Encrypted::from_ciphertext(bytes).map_err(E::custom)
            }
        }

        if deserializer.is_human_readable() {
            deserializer.deserialize_str(CiphertextVisitor(PhantomData))
        } else {
            deserializer.deserialize_bytes(CiphertextVisitor(PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::StaticKek;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Address {
        street: String,
        city: String,
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Customer {
        id: u64,
        email: Encrypted<String>,
        address: Encrypted<Address>,
    }

    fn ctx(field: &str) -> EncryptionContext {
        EncryptionContext::new()
            .with("table", "customers")
            .unwrap()
            .with("record", "7")
            .unwrap()
            .with("field", field)
            .unwrap()
    }

    #[test]
    fn typed_fields_survive_json_and_need_the_right_context() {
        let kek = StaticKek::generate("customers", 1).unwrap();
        let address = Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
        };
        let customer = Customer {
            id: 7,
            email: Encrypted::seal_with_kek(&kek, &ctx("email"), &"jane@example.com".to_string())
                .unwrap(),
            address: Encrypted::seal_with_kek(&kek, &ctx("address"), &address).unwrap(),
        };
        let json = serde_json::to_string(&customer).unwrap();
        assert!(json.contains("\"email\":\"cst1:"), "{json}");
        assert!(!json.contains("jane") && !json.contains("Springfield"));
        let back: Customer = serde_json::from_str(&json).unwrap();
        assert_eq!(back.email, customer.email);
        assert_eq!(
            back.email.open_with_kek(&kek, &ctx("email")).unwrap(),
            "jane@example.com"
        );
        assert_eq!(
            back.address.open_with_kek(&kek, &ctx("address")).unwrap(),
            address
        );
        assert!(back.email.open_with_kek(&kek, &ctx("address")).is_err());
        assert!(
            format!("{:?}", back.email)
                .starts_with("Encrypted<alloc::string::String>(key `customers` v1")
        );
    }

    #[test]
    fn deserializing_garbage_fails_clearly() {
        let err = serde_json::from_str::<Encrypted<String>>("\"hello\"").unwrap_err();
        assert!(err.to_string().contains("cst1:"), "{err}");
        assert!(serde_json::from_str::<Encrypted<String>>("\"cst1:AAAA\"").is_err());
        assert!(serde_json::from_str::<Encrypted<String>>("42").is_err());
    }

    #[test]
    fn opening_as_the_wrong_type_is_an_error_not_a_panic() {
        let kek = StaticKek::generate("customers", 1).unwrap();
        let sealed =
            Encrypted::<String>::seal_with_kek(&kek, &ctx("email"), &"x".to_string()).unwrap();
        let as_number: Encrypted<u64> =
            Encrypted::from_ciphertext(sealed.as_bytes().to_vec()).unwrap();
        assert!(matches!(
            as_number.open_with_kek(&kek, &ctx("email")),
            Err(RecordError::Serialize(_))
        ));
    }
}
