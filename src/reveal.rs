//! The inputs and the answer of [`Custodian::reveal`](crate::Custodian::reveal): access check,
//! field view, decryption of exactly the fields the view shows, and the audit entry saying who saw
//! which fields of which record, in one call.
//!
//! The types are made to be hard to misuse:
//!
//! - the request names the principal, action and resource with the RBAC types; the time is the
//!   facade's clock, and MFA comes only as a [`StepUp`] (made by a verification, and counted only
//!   if it is the principal's own), never as a bare timestamp;
//! - a [`SealedRecord`] gives ciphertexts by field name only: each is opened with the context
//!   `EncryptionContext::for_field(table, resource id, field)`, so a ciphertext of another record
//!   or another field does not open, and the record checked is the record decrypted;
//! - a hidden field is never decrypted (nor even parsed), a masked one is decrypted and masked
//!   before it leaves;
//! - [`Revealed`] zeroizes its values on drop and prints none of them in `Debug`; serializing it
//!   is the disclosure the audit entry records.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

use crate::mfa::StepUp;
use crate::rbac::{Justification, OwnedDecision, Principal, Reason, Resource, Visibility};
use crate::record::Encrypted;

/// Who asks to see which resource, for what action, with which proof of a recent MFA step-up and
/// which justification.
///
/// ```
/// use custodian::RevealRequest;
/// use custodian::rbac::{Justification, Principal, Resource};
///
/// let agent = Principal::new("emp-17", "store-3").with_role("support");
/// let customer = Resource::new("customer", "42", "store-3");
/// let request = RevealRequest::new(&agent, "view", &customer)
///     .with_justification(Justification::ticket("SUP-5521").naming("customer", "42"));
/// # let _ = request;
/// ```
#[derive(Debug, Clone)]
pub struct RevealRequest<'a> {
    pub(crate) principal: &'a Principal,
    pub(crate) action: &'a str,
    pub(crate) resource: &'a Resource,
    pub(crate) step_up: Option<&'a StepUp>,
    pub(crate) justification: Option<Justification>,
}

impl<'a> RevealRequest<'a> {
    /// `principal` asks to `action` (for example `view`) `resource`, whose id is the record id the
    /// fields were sealed under.
    pub fn new(principal: &'a Principal, action: &'a str, resource: &'a Resource) -> Self {
        Self {
            principal,
            action,
            resource,
            step_up: None,
            justification: None,
        }
    }

    /// The principal's last MFA verification, if any (`&StepUp` or `Option<&StepUp>`). A step-up
    /// of another user is ignored (fail closed); whether it is recent enough is the policy's
    /// `mfa_within`, against the facade's clock.
    #[must_use]
    pub fn with_step_up(mut self, step_up: impl Into<Option<&'a StepUp>>) -> Self {
        self.step_up = step_up.into();
        self
    }

    /// Why the principal needs the data (a ticket), for rules with a `justification` condition.
    #[must_use]
    pub fn with_justification(mut self, justification: Justification) -> Self {
        self.justification = Some(justification);
        self
    }
}

/// A [`RevealRequest`] that owns its parts, to move to another thread (the async facade).
#[cfg(feature = "tokio")]
pub(crate) struct OwnedRevealRequest {
    principal: Principal,
    action: String,
    resource: Resource,
    step_up: Option<StepUp>,
    justification: Option<Justification>,
}

#[cfg(feature = "tokio")]
impl OwnedRevealRequest {
    pub(crate) fn new(request: &RevealRequest<'_>) -> Self {
        Self {
            principal: request.principal.clone(),
            action: request.action.to_owned(),
            resource: request.resource.clone(),
            step_up: request.step_up.cloned(),
            justification: request.justification.clone(),
        }
    }

    pub(crate) fn request(&self) -> RevealRequest<'_> {
        RevealRequest {
            principal: &self.principal,
            action: &self.action,
            resource: &self.resource,
            step_up: self.step_up.as_ref(),
            justification: self.justification.clone(),
        }
    }
}

/// The encrypted fields of one record as stored: a table name and, per field, either an
/// [`Encrypted<String>`] made by [`Custodian::seal`](crate::Custodian::seal) (or
/// [`Custodian::record`](crate::Custodian::record)) or the binary ciphertext of UTF-8 text made by
/// [`Custodian::encrypt`](crate::Custodian::encrypt) (or `encrypt_many`), each with
/// `EncryptionContext::for_field(table, record id, field)`.
///
/// Give every field the row has: which of them are opened is the policy's decision, not the
/// caller's. Fields the policy does not declare are hidden, so never opened.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRecord<'a> {
    pub(crate) table: String,
    pub(crate) fields: Vec<(String, SealedField<'a>)>,
}

/// One field's ciphertext and how its plaintext encodes the text: made from an
/// [`Encrypted<String>`] (a JSON string, as [`Custodian::seal`](crate::Custodian::seal) writes it)
/// or from bytes (the UTF-8 text itself, as [`Custodian::encrypt`](crate::Custodian::encrypt) of
/// `text.as_bytes()` writes it).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedField<'a> {
    pub(crate) ciphertext: Cow<'a, [u8]>,
    pub(crate) typed: bool,
}

impl<'a> From<&'a [u8]> for SealedField<'a> {
    fn from(ciphertext: &'a [u8]) -> Self {
        Self {
            ciphertext: Cow::Borrowed(ciphertext),
            typed: false,
        }
    }
}

impl<'a> From<&'a Vec<u8>> for SealedField<'a> {
    fn from(ciphertext: &'a Vec<u8>) -> Self {
        Self::from(ciphertext.as_slice())
    }
}

impl From<Vec<u8>> for SealedField<'static> {
    fn from(ciphertext: Vec<u8>) -> Self {
        Self {
            ciphertext: Cow::Owned(ciphertext),
            typed: false,
        }
    }
}

impl<'a> From<Cow<'a, [u8]>> for SealedField<'a> {
    fn from(ciphertext: Cow<'a, [u8]>) -> Self {
        Self {
            ciphertext,
            typed: false,
        }
    }
}

impl<'a> From<&'a Encrypted<String>> for SealedField<'a> {
    fn from(value: &'a Encrypted<String>) -> Self {
        Self {
            ciphertext: Cow::Borrowed(value.as_bytes()),
            typed: true,
        }
    }
}

impl From<Encrypted<String>> for SealedField<'static> {
    fn from(value: Encrypted<String>) -> Self {
        Self {
            ciphertext: Cow::Owned(value.as_bytes().to_vec()),
            typed: true,
        }
    }
}

impl<'a> SealedRecord<'a> {
    /// A record of `table` (the `table` of the fields' encryption context, such as `customers`).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            fields: Vec::new(),
        }
    }

    /// Adds the ciphertext of `field`: an `&Encrypted<String>` or bytes (borrowed or owned; see
    /// [`SealedField`]).
    #[must_use]
    pub fn field(
        mut self,
        field: impl Into<String>,
        ciphertext: impl Into<SealedField<'a>>,
    ) -> Self {
        self.fields.push((field.into(), ciphertext.into()));
        self
    }

    /// The table.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The field names, in the order given.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(name, _)| name.as_str())
    }

    /// The same record owning its ciphertexts, to move to another thread or task.
    pub fn into_owned(self) -> SealedRecord<'static> {
        SealedRecord {
            table: self.table,
            fields: self
                .fields
                .into_iter()
                .map(|(name, field)| {
                    let owned = SealedField {
                        ciphertext: Cow::Owned(field.ciphertext.into_owned()),
                        typed: field.typed,
                    };
                    (name, owned)
                })
                .collect(),
        }
    }
}

impl fmt::Debug for SealedRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRecord")
            .field("table", &self.table)
            .field("fields", &self.field_names().collect::<Vec<_>>())
            .finish()
    }
}

/// What a principal may see of a record, after the audit entry saying so was written.
///
/// JSON: `{"record":"customers/42","fields":[{"name":"name","visibility":"full","value":"Jane
/// Doe"},{"name":"email","visibility":"masked","value":"j***@example.com"}],"audit_entries":
/// {"start":7,"end":9}}`. Hidden fields are absent. The values zeroize on drop and `Debug`
/// redacts them.
#[derive(Serialize)]
pub struct Revealed {
    pub(crate) record: String,
    pub(crate) fields: Vec<RevealedField>,
    pub(crate) audit_entries: Range<u64>,
}

impl Revealed {
    /// The audit resource of the record: `table/record id`.
    pub fn record(&self) -> &str {
        &self.record
    }

    /// The fields shown, in the order of the [`SealedRecord`].
    pub fn fields(&self) -> &[RevealedField] {
        &self.fields
    }

    /// One shown field, or `None` if it is hidden (or was not in the record).
    pub fn field(&self, name: &str) -> Option<&RevealedField> {
        self.fields.iter().find(|field| field.name == name)
    }

    /// The indexes of the audit entries this reveal wrote: the access decision, then (if any field
    /// is shown) the fields revealed.
    pub fn audit_entries(&self) -> Range<u64> {
        self.audit_entries.clone()
    }
}

impl fmt::Debug for Revealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revealed")
            .field("record", &self.record)
            .field("fields", &self.fields)
            .field("audit_entries", &self.audit_entries)
            .finish()
    }
}

/// One shown field: its name, whether it is shown in full or masked, and the value as shown.
#[derive(Serialize)]
pub struct RevealedField {
    pub(crate) name: String,
    pub(crate) visibility: Visibility,
    #[serde(rename = "value", serialize_with = "serialize_exposed")]
    pub(crate) value: Zeroizing<String>,
}

impl RevealedField {
    /// The field name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// [`Visibility::Full`] or [`Visibility::Masked`] (hidden fields are not in a [`Revealed`]).
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }

    /// The value as the principal may see it: the plaintext, or its mask.
    pub fn expose_secret(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for RevealedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealedField")
            .field("name", &self.name)
            .field("visibility", &self.visibility)
            .field("value", &"[REDACTED]")
            .finish()
    }
}

fn serialize_exposed<S: Serializer>(value: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value)
}

/// An action [`Custodian::authorize`](crate::Custodian::authorize) allowed, after recording the
/// decision (entry [`audit_entry`](Authorized::audit_entry)).
#[derive(Debug, Clone)]
pub struct Authorized {
    pub(crate) decision: OwnedDecision,
    pub(crate) audit_entry: u64,
}

impl Authorized {
    /// The allowing decision: its rule and field view.
    pub fn decision(&self) -> &OwnedDecision {
        &self.decision
    }

    /// The index of the `access_decision` entry that records it.
    pub fn audit_entry(&self) -> u64 {
        self.audit_entry
    }
}

/// A reveal the policy denied. The denial is in the audit log (entry
/// [`audit_entry`](Denied::audit_entry)); nothing was decrypted.
#[derive(Debug, Clone)]
pub struct Denied {
    pub(crate) decision: OwnedDecision,
    pub(crate) audit_entry: u64,
}

impl Denied {
    /// Why, as the policy said.
    pub fn reason(&self) -> Reason<'_> {
        self.decision.reason()
    }

    /// `Some(seconds)` when an MFA step-up at most that old would lift the denial (an HTTP service
    /// answers 401 and asks for a code), `None` otherwise.
    pub fn step_up_required(&self) -> Option<u64> {
        match self.decision.reason() {
            Reason::StepUpRequired { within_secs, .. } => Some(within_secs),
            _ => None,
        }
    }

    /// The whole decision, with its RBAC audit record.
    pub fn decision(&self) -> &OwnedDecision {
        &self.decision
    }

    /// The index of the `access_decision` entry that records the denial.
    pub fn audit_entry(&self) -> u64 {
        self.audit_entry
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "access denied: {}", self.reason())
    }
}
