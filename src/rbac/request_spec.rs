//! [`RequestSpec`]: a request written down as data (a principal, an action, a resource and a
//! context), the shape a policy test states its request in (docs/RBAC.md, "Policy tests") and the
//! shape `custodian policy explain` reads from a JSON file. One definition, so that the two cannot
//! drift apart.

use serde::Deserialize;

use super::model::Entries;
use super::request::{
    AttributeValue, EntityRef, Justification, Principal, RequestContext, Resource,
};

/// A request as data, deserialized from TOML or JSON (unknown keys are errors):
///
/// ```json
/// {"principal": {"id": "emp-7", "tenant": "store-1", "roles": ["support"]},
///  "action": "view",
///  "resource": {"type": "customer", "id": "42", "tenant": "store-1", "attributes": {"total": 5}},
///  "context": {"now": 1700000000, "mfa_verified_at": 1699999990,
///              "justification": {"ticket": "SUP-1", "names": ["customer", "42"]}}}
/// ```
///
/// `principal.kind`, `principal.roles`, `resource.attributes` and `context` (and each of its keys)
/// are optional. An attribute value is an integer, a string (a plain id) or `{kind, id}` (an
/// [`EntityRef`]).
///
/// ```
/// use custodian::rbac::{Policy, RequestSpec};
///
/// let policy = Policy::from_toml(r#"
///     version = 1
///     [resource_types.customer]
///     actions = ["view"]
///     [roles.support]
///     [[rules]]
///     name = "support-views"
///     effect = "allow"
///     roles = ["support"]
///     permissions = ["customer:view"]
/// "#, "inline.toml")?;
/// let spec: RequestSpec = serde_json::from_str(r#"{
///     "principal": {"id": "emp-7", "tenant": "store-1", "roles": ["support"]},
///     "action": "view",
///     "resource": {"type": "customer", "id": "42", "tenant": "store-1"}
/// }"#).unwrap();
/// let (principal, resource) = (spec.principal(), spec.resource());
/// let context = spec.context(1_700_000_000);
/// let decision = policy.check(&principal, spec.action(), &resource, &context);
/// assert!(decision.is_allowed());
/// # Ok::<(), custodian::rbac::PolicyError>(())
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    #[serde(default)]
    context: ContextSpec,
}

impl RequestSpec {
    /// The principal, with its kind and roles.
    pub fn principal(&self) -> Principal {
        self.principal.to_principal()
    }

    /// The action.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The resource, with its attributes.
    pub fn resource(&self) -> Resource {
        self.resource.to_resource()
    }

    /// The request time the spec gives (`context.now`), if any.
    pub fn now(&self) -> Option<u64> {
        self.context.now
    }

    /// The context, at the spec's `context.now`, or at `default_now` when it gives none.
    pub fn context(&self, default_now: u64) -> RequestContext {
        self.context.to_context(default_now)
    }
}

/// `principal = { id, tenant, kind?, roles? }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrincipalSpec {
    id: String,
    #[serde(default)]
    kind: Option<String>,
    tenant: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl PrincipalSpec {
    pub(crate) fn to_principal(&self) -> Principal {
        let mut principal = Principal::new(self.id.as_str(), self.tenant.as_str());
        if let Some(kind) = &self.kind {
            principal = principal.with_kind(kind.as_str());
        }
        for role in &self.roles {
            principal = principal.with_role(role.as_str());
        }
        principal
    }
}

/// `resource = { type, id, tenant, attributes? }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceSpec {
    #[serde(rename = "type")]
    type_name: String,
    id: String,
    tenant: String,
    #[serde(default)]
    attributes: Entries<AttributeSpec>,
}

impl ResourceSpec {
    pub(crate) fn to_resource(&self) -> Resource {
        let mut resource = Resource::new(
            self.type_name.as_str(),
            self.id.as_str(),
            self.tenant.as_str(),
        );
        for (name, value) in &self.attributes.0 {
            let value = match value {
                AttributeSpec::Integer(n) => AttributeValue::Integer(*n),
                AttributeSpec::Id(id) => AttributeValue::Id(id.clone()),
                AttributeSpec::Ref { kind, id } => {
                    AttributeValue::Ref(EntityRef::new(kind.as_str(), id.as_str()))
                }
            };
            resource = resource.with(name.as_str(), value);
        }
        resource
    }
}

/// An attribute value: a number, a plain id, or `{ kind = "employee", id = "emp-1" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AttributeSpec {
    Integer(i64),
    Id(String),
    Ref { kind: String, id: String },
}

/// `context = { now?, mfa_verified_at?, justification? }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextSpec {
    #[serde(default)]
    now: Option<u64>,
    #[serde(default)]
    mfa_verified_at: Option<u64>,
    #[serde(default)]
    justification: Option<JustificationSpec>,
}

impl ContextSpec {
    pub(crate) fn to_context(&self, default_now: u64) -> RequestContext {
        let mut context = RequestContext::at(self.now.unwrap_or(default_now));
        if let Some(at) = self.mfa_verified_at {
            context = context.with_mfa_verified_at(at);
        }
        if let Some(j) = &self.justification {
            let mut justification = Justification::ticket(j.ticket.as_str());
            if let Some((type_name, id)) = &j.names {
                justification = justification.naming(type_name.as_str(), id.as_str());
            }
            context = context.with_justification(justification);
        }
        context
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JustificationSpec {
    ticket: String,
    /// `[resource_type, id]` the ticket is about.
    #[serde(default)]
    names: Option<(String, String)>,
}
