//! The three inputs of a check besides the action: who asks, about what, and in which context.

/// Who asks: an employee (or service) with an id, the tenant (store) they work for, and roles.
///
/// Role names the policy does not declare grant nothing (and are reported nowhere: a role
/// retired from the policy simply stops granting).
///
/// A principal is an entity of a kind the policy declares in `principal_kinds` (`employee`
/// unless it says otherwise). A principal made without [`with_kind`](Principal::with_kind) is of
/// the policy's only principal kind; in a policy with several, its kind is unknown, so
/// `principal_is` conditions about it are unknown too (an allow does not apply, a deny does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    kind: Option<String>,
    id: String,
    tenant: String,
    roles: Vec<String>,
}

impl Principal {
    /// A principal without roles. An empty `tenant` matches no store.
    pub fn new(id: impl Into<String>, tenant: impl Into<String>) -> Self {
        Self {
            kind: None,
            id: id.into(),
            tenant: tenant.into(),
            roles: Vec::new(),
        }
    }

    /// Says which kind of principal this is (`employee`, `service`): needed when the policy
    /// declares several `principal_kinds`.
    #[must_use]
    pub fn with_kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// The principal's kind, if one was given.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// Adds a role.
    #[must_use]
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// The principal's id, which `principal_is` conditions compare (with its kind) with resource
    /// attributes.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant (store) the principal belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The roles as given.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
}

/// The value of a resource attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// An identifier of the kind the attribute is declared to name (`id` or `ref:<kind>`).
    Id(String),
    /// A whole number, for attributes declared `integer` (amounts in minor units).
    Integer(i64),
    /// A reference to an entity of a stated kind. For an attribute declared `ref:employee`,
    /// a reference to a `customer` is the wrong type: conditions on it are unknown.
    Ref(EntityRef),
}

/// A typed reference to an entity: its kind and its id. `employee:e1` is not `customer:e1`.
///
/// ```
/// # use custodian::rbac::{EntityRef, Resource};
/// let order = Resource::new("order", "ord-7", "store-1")
///     .with("assigned_agent", EntityRef::new("employee", "emp-3"));
/// assert_eq!(EntityRef::new("employee", "emp-3").to_string(), "employee:emp-3");
/// # assert!(order.attribute("assigned_agent").is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityRef {
    kind: String,
    id: String,
}

impl EntityRef {
    /// A reference to the entity of `kind` (a principal kind or a resource type) with `id`.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            id: id.into(),
        }
    }

    /// The entity's kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The entity's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Display for EntityRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.id)
    }
}

impl From<EntityRef> for AttributeValue {
    fn from(value: EntityRef) -> Self {
        AttributeValue::Ref(value)
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::Id(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::Id(value)
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        AttributeValue::Integer(value)
    }
}

impl From<i32> for AttributeValue {
    fn from(value: i32) -> Self {
        AttributeValue::Integer(i64::from(value))
    }
}

impl From<u32> for AttributeValue {
    fn from(value: u32) -> Self {
        AttributeValue::Integer(i64::from(value))
    }
}

/// What the principal asks about: a resource of a declared type, with an id, the tenant it
/// belongs to, and the attributes that conditions test.
///
/// An attribute that is missing, or of the wrong type, makes conditions on it unknown: an allow
/// rule then does not apply, and a deny rule does (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    type_name: String,
    id: String,
    tenant: String,
    attributes: Vec<(String, AttributeValue)>,
}

impl Resource {
    /// A resource without attributes. An empty `tenant` matches no principal's store.
    pub fn new(
        type_name: impl Into<String>,
        id: impl Into<String>,
        tenant: impl Into<String>,
    ) -> Self {
        Self {
            type_name: type_name.into(),
            id: id.into(),
            tenant: tenant.into(),
            attributes: Vec::new(),
        }
    }

    /// Sets an attribute, replacing an earlier value of the same name.
    ///
    /// ```
    /// # use custodian::rbac::Resource;
    /// let order = Resource::new("order", "ord-7", "store-1")
    ///     .with("assigned_agent", "emp-3")
    ///     .with("total", 4_250); // minor units: 42.50
    /// # assert!(order.attribute("total").is_some());
    /// ```
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        let name = name.into();
        let value = value.into();
        match self.attributes.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.attributes.push((name, value)),
        }
        self
    }

    /// The resource type's name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The resource's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tenant (store) the resource belongs to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// An attribute's value, if set.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }
}

/// Why a person needs access, such as a support ticket, and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Justification {
    reference: String,
    subject: Option<(String, String)>,
}

impl Justification {
    /// A justification by a ticket (or case, or incident) reference.
    pub fn ticket(reference: impl Into<String>) -> Self {
        Self {
            reference: reference.into(),
            subject: None,
        }
    }

    /// States which resource the ticket is about, for `justification = "names_resource"`.
    #[must_use]
    pub fn naming(mut self, resource_type: impl Into<String>, id: impl Into<String>) -> Self {
        self.subject = Some((resource_type.into(), id.into()));
        self
    }

    /// The ticket reference.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Whether the ticket names exactly this resource.
    pub fn names(&self, resource: &Resource) -> bool {
        self.subject
            .as_ref()
            .is_some_and(|(type_name, id)| *type_name == resource.type_name && *id == resource.id)
    }
}

/// The circumstances of a request: the time, the last MFA step-up, a justification.
///
/// The time is given, never read from the system clock, so decisions are reproducible and
/// testable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    now: u64,
    mfa_verified_at: Option<u64>,
    justification: Option<Justification>,
}

impl RequestContext {
    /// A context at `now`, in seconds since the Unix epoch, with no MFA and no justification.
    pub fn at(now: u64) -> Self {
        Self {
            now,
            mfa_verified_at: None,
            justification: None,
        }
    }

    /// Records the time (Unix seconds) of the principal's last successful MFA verification.
    /// A time after `now` is treated as unknown, not as fresh.
    #[must_use]
    pub fn with_mfa_verified_at(mut self, verified_at: u64) -> Self {
        self.mfa_verified_at = Some(verified_at);
        self
    }

    /// Records an MFA step-up from [`crate::mfa`], but only if it was made by `principal`: a
    /// step-up of another user leaves the context without MFA (fail closed).
    #[must_use]
    pub fn with_step_up(self, principal: &Principal, step_up: &crate::mfa::StepUp) -> Self {
        if step_up.user() == principal.id() {
            self.with_mfa_verified_at(step_up.verified_at())
        } else {
            self
        }
    }

    /// Attaches a justification.
    #[must_use]
    pub fn with_justification(mut self, justification: Justification) -> Self {
        self.justification = Some(justification);
        self
    }

    /// The request time, Unix seconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The last MFA verification, Unix seconds.
    pub fn mfa_verified_at(&self) -> Option<u64> {
        self.mfa_verified_at
    }

    /// The justification, if any.
    pub fn justification(&self) -> Option<&Justification> {
        self.justification.as_ref()
    }
}
