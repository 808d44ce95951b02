//! [`RecordFields`]: one record of one customer, so that the table, the record id and the owner
//! are given once, not on every call.

use crate::Error;
use crate::envelope::EncryptionContext;
use crate::facade::Custodian;
use crate::record::Encrypted;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The fields of record `record` of `table`, owned by customer `subject`: each field is sealed for
/// the subject under the context `table`, `record`, `field`
/// ([`EncryptionContext::for_field`]). Get one with [`Custodian::record`].
///
/// ```
/// # use custodian::keys::{LocalRootKey, MemoryKeyStore};
/// # use custodian::Custodian;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let custodian = Custodian::builder()
/// #     .key_store(MemoryKeyStore::new())
/// #     .root_key(LocalRootKey::random()?)
/// #     .build()?;
/// let jane = custodian.record("customers", "42", "cus_42");
/// let email = jane.seal("email", "jane@example.com")?; // Encrypted<String>
/// assert_eq!(jane.open("email", &email)?, "jane@example.com");
/// // The same ciphertext is not the phone number of record 42, nor the e-mail of record 43.
/// assert!(jane.open("phone", &email).is_err());
/// assert!(custodian.record("customers", "43", "cus_43").open("email", &email).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RecordFields<'c> {
    custodian: &'c Custodian,
    table: String,
    record: String,
    subject: String,
}

impl<'c> RecordFields<'c> {
    pub(crate) fn new(custodian: &'c Custodian, table: &str, record: &str, subject: &str) -> Self {
        Self {
            custodian,
            table: table.to_owned(),
            record: record.to_owned(),
            subject: subject.to_owned(),
        }
    }

    /// The owner (the customer's subject id).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The context `field` is sealed under.
    pub fn context(&self, field: &str) -> Result<EncryptionContext, Error> {
        Ok(EncryptionContext::for_field(
            self.table.as_str(),
            self.record.as_str(),
            field,
        )?)
    }

    /// [`Custodian::seal`] of `field`.
    pub fn seal<T>(&self, field: &str, value: &T) -> Result<Encrypted<T::Owned>, Error>
    where
        T: Serialize + ToOwned + ?Sized,
        T::Owned: DeserializeOwned,
    {
        self.custodian
            .seal(&self.subject, &self.context(field)?, value)
    }

    /// [`Custodian::open`] of `field`.
    pub fn open<T: DeserializeOwned>(&self, field: &str, value: &Encrypted<T>) -> Result<T, Error> {
        self.custodian.open(value, &self.context(field)?)
    }

    /// [`Custodian::rewrap_field`] of `field`: `None` when already current.
    pub fn rewrap<T>(
        &self,
        field: &str,
        value: &Encrypted<T>,
    ) -> Result<Option<Encrypted<T>>, Error> {
        self.custodian.rewrap_field(&self.context(field)?, value)
    }
}
