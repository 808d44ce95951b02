//! Role-based access control for staff access to customer data: roles with inheritance, allow
//! and deny rules over `resource_type:action` permissions, typed conditions, tenant scope, and
//! field-level views (full, masked, hidden).
//!
//! The rules, in short (docs/RBAC.md has the whole file format):
//!
//! - **Default deny.** Nothing is allowed unless an allow rule applies.
//! - **Deny wins.** If any deny rule applies, the answer is deny, whatever allows it.
//! - **Tenant scope.** An allow rule applies only when the resource belongs to the principal's
//!   own tenant (store), unless it opts out with `cross_tenant = true`.
//! - **Fail closed.** A condition that cannot be evaluated (a missing attribute, no MFA time, no
//!   justification) keeps an allow rule from applying and makes a deny rule apply. A deny rule
//!   may say `unless = { mfa_within = 300 }`: it forbids unless the condition is met, and a
//!   missing input is not met.
//! - **Typed references.** `principal_is` compares an entity's kind as well as its id, so a
//!   customer `e1` is never taken for employee `e1`.
//! - **Actionable denials.** A denial that an MFA step-up or a justification would lift says so
//!   ([`Reason::StepUpRequired`], [`Reason::JustificationRequired`]); a forbid the caller cannot
//!   lift still wins.
//! - **Checked at load.** Every role, action, resource type, attribute and field a rule names
//!   must be declared; the loader says where a mistake is and suggests a fix.
//! - **Compiled.** Role inheritance is flattened and rules are indexed by role, resource type and
//!   action, so a check costs the same with ten rules or a hundred thousand, takes no lock, and
//!   does not allocate.
//!
//! ```
//! use custodian::rbac::{Justification, Policy, Principal, RequestContext, Resource, Visibility};
//!
//! let policy = Policy::from_toml(r#"
//!     version = 1
//!
//!     [resource_types.customer]
//!     actions = ["view", "delete"]
//!     fields = { name = "text", email = "email" }
//!
//!     [roles.support]
//!     [roles.admin]
//!     inherits = ["support"]
//!
//!     [[rules]]
//!     name = "support-views-customers"
//!     effect = "allow"
//!     roles = ["support"]
//!     permissions = ["customer:view"]
//!     fields = { name = "full", email = "masked" }
//!
//!     [[rules]]
//!     name = "support-sees-pii-with-ticket"
//!     effect = "allow"
//!     roles = ["support"]
//!     permissions = ["customer:view"]
//!     fields = { "*" = "full" }
//!     when = { justification = "names_resource" }
//! "#, "inline.toml")?;
//!
//! let agent = Principal::new("emp-7", "store-1").with_role("support");
//! let customer = Resource::new("customer", "cust-42", "store-1");
//! let now = 1_700_000_000;
//!
//! let no_ticket = RequestContext::at(now);
//! let plain = policy.check(&agent, "view", &customer, &no_ticket);
//! assert_eq!(plain.view().visibility("email"), Visibility::Masked);
//!
//! let ticket = Justification::ticket("SUP-1234").naming("customer", "cust-42");
//! let context = RequestContext::at(now).with_justification(ticket);
//! let with_ticket = policy.check(&agent, "view", &customer, &context);
//! assert_eq!(with_ticket.view().visibility("email"), Visibility::Full);
//!
//! assert!(!policy.check(&agent, "delete", &customer, &context).is_allowed());
//! # Ok::<(), custodian::rbac::PolicyError>(())
//! ```

mod compile;
mod condition;
mod decision;
mod error;
mod evaluate;
mod fold;
mod handle;
mod hash;
mod lint;
mod load;
mod model;
mod request;
mod request_spec;
mod step_up;
mod suggest;
mod testing;
mod validate;
mod view;
mod warning;

pub use compile::Policy;
pub use decision::{AuditRecord, Decision, FieldAccess, OwnedDecision, Reason, ReasonKind};
pub use error::{Location, PolicyError, PolicyErrorKind};
pub use handle::{PolicyHandle, PolicySnapshot};
pub use request::{AttributeValue, EntityRef, Justification, Principal, RequestContext, Resource};
pub use request_spec::RequestSpec;
pub use step_up::{StepUpEffect, StepUpRule};
pub use testing::{PolicyTestFailure, PolicyTestReport};
pub use view::{FieldKind, FieldView, OwnedFieldView, Visibility};
pub use warning::{PolicyWarning, PolicyWarningKind};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_and_handle_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Policy>();
        assert_send_sync::<PolicyHandle>();
        assert_send_sync::<Decision<'static>>();
    }

    #[test]
    fn owned_decisions_are_send_sync_and_static() {
        fn assert_owned<T: Send + Sync + 'static>() {}
        assert_owned::<OwnedDecision>();
        assert_owned::<OwnedFieldView>();
        assert_owned::<PolicyWarning>();
    }
}
