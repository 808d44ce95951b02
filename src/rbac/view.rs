//! Field views: which fields of a resource a principal may see in full, masked, or not at all.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::mask;

/// How much of one field a principal may see. Ordered: `Hidden < Masked < Full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Not shown; the field is left out of a redacted record.
    Hidden,
    /// Shown through the field's mask (`j***@example.com`).
    Masked,
    /// Shown as stored.
    Full,
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Visibility::Hidden => "hidden",
            Visibility::Masked => "masked",
            Visibility::Full => "full",
        })
    }
}

/// What a field holds, which decides how it is masked. Declared per field in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// Free text (a name, an address): masked to its first character, see [`mask::text`].
    Text,
    /// An email address, see [`mask::email`].
    Email,
    /// A phone number, see [`mask::phone`].
    Phone,
    /// A payment card number, see [`mask::card_number`].
    Card,
}

impl FieldKind {
    /// Masks `value` as this kind of field.
    pub fn mask(self, value: &str) -> String {
        match self {
            FieldKind::Text => mask::text(value),
            FieldKind::Email => mask::email(value),
            FieldKind::Phone => mask::phone(value),
            FieldKind::Card => mask::card_number(value),
        }
    }
}

/// A declared field of a resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldDef {
    pub name: Box<str>,
    pub kind: FieldKind,
}

/// Most fields a resource type may declare: a view is two 64-bit masks, so that computing one
/// never allocates.
pub(crate) const MAX_FIELDS: usize = 64;

/// The bit of field number `index` (0 when out of range, which the loader prevents).
pub(crate) fn field_bit(index: usize) -> u64 {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

/// For each field of a resource type: full, masked or hidden, for one principal and action.
///
/// Borrowed from the [`Policy`](super::Policy) that decided it. A denied decision hides every field.
/// [`into_owned`](FieldView::into_owned) makes an [`OwnedFieldView`] to keep or send elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldView<'a> {
    fields: &'a Arc<[FieldDef]>,
    full: u64,
    masked: u64,
}

impl<'a> FieldView<'a> {
    pub(crate) fn new(fields: &'a Arc<[FieldDef]>, full: u64, masked: u64) -> Self {
        Self {
            fields,
            full,
            masked: masked & !full,
        }
    }

    /// A view that hides every field of the type.
    pub(crate) fn hidden(fields: &'a Arc<[FieldDef]>) -> Self {
        Self::new(fields, 0, 0)
    }

    fn bits(&self) -> Bits<'a> {
        Bits {
            fields: self.fields,
            full: self.full,
            masked: self.masked,
        }
    }

    /// How much of `field` may be seen. Fields the resource type does not declare are hidden.
    pub fn visibility(&self, field: &str) -> Visibility {
        self.bits().visibility(field)
    }

    /// Every declared field with its kind and visibility, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, FieldKind, Visibility)> + '_ {
        self.bits().iter()
    }

    /// `value` of `field` as this view allows it to be shown: as is, masked, or `None`.
    pub fn show<'v>(&self, field: &str, value: &'v str) -> Option<Cow<'v, str>> {
        self.bits().show(field, value)
    }

    /// Applies the view to a record given as `(field, value)` pairs: full fields are kept,
    /// masked fields are masked, hidden and undeclared fields are left out.
    ///
    /// ```
    /// # use custodian::rbac::{Policy, Principal, Resource, RequestContext};
    /// # let policy = Policy::from_toml(r#"
    /// # version = 1
    /// # [resource_types.customer]
    /// # actions = ["view"]
    /// # fields = { name = "text", email = "email", phone = "phone" }
    /// # [roles.support]
    /// # [[rules]]
    /// # name = "support-views-customers"
    /// # effect = "allow"
    /// # roles = ["support"]
    /// # permissions = ["customer:view"]
    /// # fields = { name = "full", email = "masked" }
    /// # "#, "inline.toml").unwrap();
    /// let agent = Principal::new("emp-1", "store-1").with_role("support");
    /// let customer = Resource::new("customer", "cust-42", "store-1");
    /// let context = RequestContext::at(1_700_000_000);
    /// let decision = policy.check(&agent, "view", &customer, &context);
    /// let shown = decision.view().redact([
    ///     ("name", "Jane Doe"),
    ///     ("email", "jane@example.com"),
    ///     ("phone", "+1 555 123 4567"),
    /// ]);
    /// assert_eq!(shown, vec![("name", "Jane Doe".into()), ("email", "j***@example.com".into())]);
    /// ```
    pub fn redact<'r, I>(&self, record: I) -> Vec<(&'r str, Cow<'r, str>)>
    where
        I: IntoIterator<Item = (&'r str, &'r str)>,
    {
        self.bits().redact(record)
    }

    /// Whether any field may be seen at all.
    pub fn is_empty(&self) -> bool {
        self.bits().is_empty()
    }

    /// The same view, owning its field list (shared with the policy, not copied): `Send`,
    /// `Sync` and `'static`, to return from a helper or move to another task.
    pub fn into_owned(self) -> OwnedFieldView {
        OwnedFieldView {
            fields: Arc::clone(self.fields),
            full: self.full,
            masked: self.masked,
        }
    }
}

/// A [`FieldView`] that owns its field list: the same methods, no borrow of the policy.
///
/// ```
/// # use custodian::rbac::{OwnedFieldView, Policy, Principal, Resource, RequestContext, Visibility};
/// # let policy = Policy::from_toml(r#"
/// # version = 1
/// # [resource_types.customer]
/// # actions = ["view"]
/// # fields = { name = "text", email = "email" }
/// # [roles.support]
/// # [[rules]]
/// # name = "support-views-customers"
/// # effect = "allow"
/// # roles = ["support"]
/// # permissions = ["customer:view"]
/// # fields = { name = "full", email = "masked" }
/// # "#, "inline.toml").unwrap();
/// fn view_for(policy: &Policy, agent: &Principal, customer: &Resource) -> OwnedFieldView {
///     let context = RequestContext::at(1_700_000_000);
///     policy.check(agent, "view", customer, &context).view().into_owned()
/// }
/// let agent = Principal::new("emp-1", "store-1").with_role("support");
/// let view = view_for(&policy, &agent, &Resource::new("customer", "cust-42", "store-1"));
/// assert_eq!(view.show("email", "jane@example.com").as_deref(), Some("j***@example.com"));
/// assert_eq!(view.visibility("name"), Visibility::Full);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFieldView {
    fields: Arc<[FieldDef]>,
    full: u64,
    masked: u64,
}

impl OwnedFieldView {
    fn bits(&self) -> Bits<'_> {
        Bits {
            fields: &self.fields,
            full: self.full,
            masked: self.masked,
        }
    }

    /// How much of `field` may be seen. Fields the resource type does not declare are hidden.
    pub fn visibility(&self, field: &str) -> Visibility {
        self.bits().visibility(field)
    }

    /// Every declared field with its kind and visibility, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, FieldKind, Visibility)> + '_ {
        self.bits().iter()
    }

    /// `value` of `field` as this view allows it to be shown: as is, masked, or `None`.
    pub fn show<'v>(&self, field: &str, value: &'v str) -> Option<Cow<'v, str>> {
        self.bits().show(field, value)
    }

    /// Applies the view to a record given as `(field, value)` pairs, like
    /// [`FieldView::redact`].
    pub fn redact<'r, I>(&self, record: I) -> Vec<(&'r str, Cow<'r, str>)>
    where
        I: IntoIterator<Item = (&'r str, &'r str)>,
    {
        self.bits().redact(record)
    }

    /// Whether any field may be seen at all.
    pub fn is_empty(&self) -> bool {
        self.bits().is_empty()
    }
}

/// The one implementation behind both views.
#[derive(Clone, Copy)]
struct Bits<'f> {
    fields: &'f [FieldDef],
    full: u64,
    masked: u64,
}

impl<'f> Bits<'f> {
    fn visibility(self, field: &str) -> Visibility {
        self.iter()
            .find(|(name, _, _)| *name == field)
            .map_or(Visibility::Hidden, |(_, _, visibility)| visibility)
    }

    fn iter(self) -> impl Iterator<Item = (&'f str, FieldKind, Visibility)> {
        self.fields.iter().enumerate().map(move |(index, field)| {
            let bit = field_bit(index);
            let visibility = if self.full & bit != 0 {
                Visibility::Full
            } else if self.masked & bit != 0 {
                Visibility::Masked
            } else {
                Visibility::Hidden
            };
            (&*field.name, field.kind, visibility)
        })
    }

    fn show<'v>(self, field: &str, value: &'v str) -> Option<Cow<'v, str>> {
        let (_, kind, visibility) = self.iter().find(|(name, _, _)| *name == field)?;
        match visibility {
            Visibility::Full => Some(Cow::Borrowed(value)),
            Visibility::Masked => Some(Cow::Owned(kind.mask(value))),
            Visibility::Hidden => None,
        }
    }

    fn redact<'r, I>(self, record: I) -> Vec<(&'r str, Cow<'r, str>)>
    where
        I: IntoIterator<Item = (&'r str, &'r str)>,
    {
        record
            .into_iter()
            .filter_map(|(field, value)| self.show(field, value).map(|shown| (field, shown)))
            .collect()
    }

    fn is_empty(self) -> bool {
        (self.full | self.masked) == 0
    }
}
