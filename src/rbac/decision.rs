//! What a check answers: allowed or denied, why, which fields may be seen; and the audit record.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::compile::Policy;
use super::request::{Principal, RequestContext, Resource};
use super::view::{FieldView, OwnedFieldView, Visibility};

/// The internal outcome of a check; rule numbers index the policy's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    AllowedBy(usize),
    ForbiddenBy(usize),
    NoRuleAllowed,
    StepUpRequired { within_secs: u64, rule: usize },
    JustificationRequired { names_resource: bool, rule: usize },
    UnknownResourceType,
    UnknownAction,
}

/// Why a request was allowed or denied.
///
/// "Nothing allowed it" and "rule X forbade it" are different answers (Cedar #1850 and
/// casbin-rs #141 users could not tell them apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason<'a> {
    /// Allowed by this allow rule (the first applicable one in file order).
    AllowedBy {
        /// The rule's name.
        rule: &'a str,
    },
    /// Denied by this deny rule (the first applicable one in file order). Deny always wins.
    ForbiddenBy {
        /// The rule's name.
        rule: &'a str,
    },
    /// Denied because no allow rule applied: the default is deny.
    NoRuleAllowed,
    /// Denied, but an MFA step-up would change that: with an MFA verification at most
    /// `within_secs` old, an allow rule would apply and no deny rule would. (A justification may
    /// still be needed after the step-up: the next check says.) An HTTP service answers 401
    /// "step-up required" rather than 403.
    StepUpRequired {
        /// The tightest MFA window among the rules that ask for one, in seconds.
        within_secs: u64,
        /// The first rule (in file order) that asks for the step-up: a deny rule's `unless`
        /// or an allow rule's `when`.
        rule: &'a str,
    },
    /// Denied, but a justification would change that: with one (naming this resource, if
    /// `names_resource`) an allow rule would apply and no deny rule would.
    JustificationRequired {
        /// Whether the justification must name this resource.
        names_resource: bool,
        /// The first rule (in file order) that asks for the justification.
        rule: &'a str,
    },
    /// Denied because the policy declares no such resource type.
    UnknownResourceType {
        /// The resource type asked about.
        resource_type: &'a str,
    },
    /// Denied because the resource type declares no such action.
    UnknownAction {
        /// The action asked for.
        action: &'a str,
    },
}

impl<'a> Reason<'a> {
    /// The kind of reason, without names.
    pub fn kind(&self) -> ReasonKind {
        match self {
            Reason::AllowedBy { .. } => ReasonKind::AllowedByRule,
            Reason::ForbiddenBy { .. } => ReasonKind::ForbiddenByRule,
            Reason::NoRuleAllowed => ReasonKind::NoRuleAllowed,
            Reason::StepUpRequired { .. } => ReasonKind::StepUpRequired,
            Reason::JustificationRequired { .. } => ReasonKind::JustificationRequired,
            Reason::UnknownResourceType { .. } => ReasonKind::UnknownResourceType,
            Reason::UnknownAction { .. } => ReasonKind::UnknownAction,
        }
    }

    /// The deciding rule, for the reasons that have one.
    pub fn rule(&self) -> Option<&'a str> {
        match *self {
            Reason::AllowedBy { rule }
            | Reason::ForbiddenBy { rule }
            | Reason::StepUpRequired { rule, .. }
            | Reason::JustificationRequired { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Whether the caller can turn this denial into an allow by asking again with more: an MFA
    /// step-up or a justification.
    pub fn is_actionable(&self) -> bool {
        matches!(
            self,
            Reason::StepUpRequired { .. } | Reason::JustificationRequired { .. }
        )
    }
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::AllowedBy { rule } => write!(f, "allowed by rule `{rule}`"),
            Reason::ForbiddenBy { rule } => write!(f, "forbidden by rule `{rule}`"),
            Reason::NoRuleAllowed => f.write_str("no rule allowed it"),
            Reason::StepUpRequired { within_secs, rule } => write!(
                f,
                "an MFA step-up within {within_secs} s is required (rule `{rule}`)"
            ),
            Reason::JustificationRequired {
                names_resource,
                rule,
            } => {
                let naming = if *names_resource {
                    " naming this resource"
                } else {
                    ""
                };
                write!(f, "a justification{naming} is required (rule `{rule}`)")
            }
            Reason::UnknownResourceType { resource_type } => {
                write!(f, "the policy has no resource type `{resource_type}`")
            }
            Reason::UnknownAction { action } => {
                write!(f, "the resource type has no action `{action}`")
            }
        }
    }
}

/// The kind of a [`Reason`], as stored in audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// See [`Reason::AllowedBy`].
    AllowedByRule,
    /// See [`Reason::ForbiddenBy`].
    ForbiddenByRule,
    /// See [`Reason::NoRuleAllowed`].
    NoRuleAllowed,
    /// See [`Reason::StepUpRequired`].
    StepUpRequired,
    /// See [`Reason::JustificationRequired`].
    JustificationRequired,
    /// See [`Reason::UnknownResourceType`].
    UnknownResourceType,
    /// See [`Reason::UnknownAction`].
    UnknownAction,
}

/// The answer to one check.
///
/// It borrows the policy and the request it answers (so making one never allocates, and its
/// [`audit_record`](Decision::audit_record) cannot describe another request). Bind the request's
/// parts to variables: `&RequestContext::at(now)` written inline is a temporary that ends with
/// the statement.
#[derive(Debug, Clone, Copy)]
#[must_use = "a decision must be acted on: check `is_allowed()`"]
pub struct Decision<'a> {
    policy: &'a Policy,
    principal: &'a Principal,
    action: &'a str,
    resource: &'a Resource,
    context: &'a RequestContext,
    outcome: Outcome,
    view: FieldView<'a>,
    restricted_by: Option<usize>,
}

impl<'a> Decision<'a> {
    #[expect(
        clippy::too_many_arguments,
        reason = "internal constructor mirroring the fields"
    )]
    pub(crate) fn new(
        policy: &'a Policy,
        principal: &'a Principal,
        action: &'a str,
        resource: &'a Resource,
        context: &'a RequestContext,
        outcome: Outcome,
        view: FieldView<'a>,
        restricted_by: Option<usize>,
    ) -> Self {
        Self {
            policy,
            principal,
            action,
            resource,
            context,
            outcome,
            view,
            restricted_by,
        }
    }

    /// Whether the action is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::AllowedBy(_))
    }

    /// Why.
    pub fn reason(&self) -> Reason<'a> {
        match self.outcome {
            Outcome::AllowedBy(rule) => Reason::AllowedBy {
                rule: self.rule_name(rule),
            },
            Outcome::ForbiddenBy(rule) => Reason::ForbiddenBy {
                rule: self.rule_name(rule),
            },
            Outcome::NoRuleAllowed => Reason::NoRuleAllowed,
            Outcome::StepUpRequired { within_secs, rule } => Reason::StepUpRequired {
                within_secs,
                rule: self.rule_name(rule),
            },
            Outcome::JustificationRequired {
                names_resource,
                rule,
            } => Reason::JustificationRequired {
                names_resource,
                rule: self.rule_name(rule),
            },
            Outcome::UnknownResourceType => Reason::UnknownResourceType {
                resource_type: self.resource.type_name(),
            },
            Outcome::UnknownAction => Reason::UnknownAction {
                action: self.action,
            },
        }
    }

    /// Which fields of the resource may be seen, and how. Every field is hidden when denied.
    pub fn view(&self) -> &FieldView<'a> {
        &self.view
    }

    /// The first deny rule (in file order) that hid or masked fields of an allowed request.
    pub fn restricted_by(&self) -> Option<&'a str> {
        self.restricted_by.map(|rule| self.rule_name(rule))
    }

    fn rule_name(&self, rule: usize) -> &'a str {
        let policy: &'a Policy = self.policy;
        policy.rules.get(rule).map_or("", |r| &*r.name)
    }

    /// A plain, owned, serializable record of this decision for the audit log.
    pub fn audit_record(&self) -> AuditRecord {
        let reason = self.reason();
        AuditRecord {
            at: self.context.now(),
            allowed: self.is_allowed(),
            reason: reason.kind(),
            rule: reason.rule().map(str::to_owned),
            explanation: reason.to_string(),
            principal: self.principal.id().to_owned(),
            principal_tenant: self.principal.tenant().to_owned(),
            roles: self.principal.roles().to_vec(),
            action: self.action.to_owned(),
            resource_type: self.resource.type_name().to_owned(),
            resource_id: self.resource.id().to_owned(),
            resource_tenant: self.resource.tenant().to_owned(),
            mfa_verified_at: self.context.mfa_verified_at(),
            justification: self
                .context
                .justification()
                .map(|j| j.reference().to_owned()),
            fields: self
                .view
                .iter()
                .filter(|(_, _, v)| *v != Visibility::Hidden)
                .map(|(name, _, visibility)| FieldAccess {
                    field: name.to_owned(),
                    visibility,
                })
                .collect(),
            restricted_by: self.restricted_by().map(str::to_owned),
            policy: self.policy.source().to_owned(),
            policy_digest: self.policy.digest().to_owned(),
        }
    }

    /// The same decision, owning everything it needs: `Send`, `Sync` and `'static`, with the
    /// same [`reason`](OwnedDecision::reason), [`view`](OwnedDecision::view) (and its
    /// `show`/`redact`) and [`audit_record`](OwnedDecision::audit_record). It copies the
    /// request's names (one audit record's worth of allocation); the field list is shared with
    /// the policy.
    ///
    /// ```
    /// # use custodian::rbac::{OwnedDecision, Policy, Principal, Resource, RequestContext};
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
    /// fn may_view(policy: &Policy, agent: &Principal, customer_id: &str) -> OwnedDecision {
    ///     let customer = Resource::new("customer", customer_id, agent.tenant());
    ///     let context = RequestContext::at(1_700_000_000);
    ///     policy.check(agent, "view", &customer, &context).into_owned()
    /// }
    /// let agent = Principal::new("emp-1", "store-1").with_role("support");
    /// let decision = may_view(&policy, &agent, "cust-42");
    /// assert!(decision.is_allowed());
    /// assert_eq!(decision.reason().rule(), Some("support-views-customers"));
    /// let shown = decision.view().redact([("email", "jane@example.com")]);
    /// assert_eq!(shown[0].1, "j***@example.com");
    /// assert_eq!(decision.audit_record().resource_id, "cust-42");
    /// ```
    pub fn into_owned(self) -> OwnedDecision {
        OwnedDecision {
            outcome: self.outcome,
            rule: self.reason().rule().map(str::to_owned),
            view: self.view.into_owned(),
            record: self.audit_record(),
        }
    }
}

/// A [`Decision`] that owns its parts, from [`Decision::into_owned`]: to return from a helper,
/// keep, or move to another thread or task.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a decision must be acted on: check `is_allowed()`"]
pub struct OwnedDecision {
    outcome: Outcome,
    rule: Option<String>,
    view: OwnedFieldView,
    record: AuditRecord,
}

impl OwnedDecision {
    /// Whether the action is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::AllowedBy(_))
    }

    /// Why, exactly as [`Decision::reason`] said.
    pub fn reason(&self) -> Reason<'_> {
        let rule = self.rule.as_deref().unwrap_or("");
        match self.outcome {
            Outcome::AllowedBy(_) => Reason::AllowedBy { rule },
            Outcome::ForbiddenBy(_) => Reason::ForbiddenBy { rule },
            Outcome::NoRuleAllowed => Reason::NoRuleAllowed,
            Outcome::StepUpRequired { within_secs, .. } => {
                Reason::StepUpRequired { within_secs, rule }
            }
            Outcome::JustificationRequired { names_resource, .. } => {
                Reason::JustificationRequired {
                    names_resource,
                    rule,
                }
            }
            Outcome::UnknownResourceType => Reason::UnknownResourceType {
                resource_type: &self.record.resource_type,
            },
            Outcome::UnknownAction => Reason::UnknownAction {
                action: &self.record.action,
            },
        }
    }

    /// Which fields of the resource may be seen, and how. Every field is hidden when denied.
    pub fn view(&self) -> &OwnedFieldView {
        &self.view
    }

    /// The first deny rule (in file order) that hid or masked fields of an allowed request.
    pub fn restricted_by(&self) -> Option<&str> {
        self.record.restricted_by.as_deref()
    }

    /// The audit record, the same as [`Decision::audit_record`] gives.
    pub fn audit_record(&self) -> AuditRecord {
        self.record.clone()
    }
}

/// One decision as the audit log stores it: who asked what about which resource, when, with
/// what outcome and why, and under which policy (by digest). It holds ids and names, never
/// field values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Request time, Unix seconds.
    pub at: u64,
    /// Whether the action was allowed.
    pub allowed: bool,
    /// Why, as a kind.
    pub reason: ReasonKind,
    /// The deciding rule, if a rule decided.
    pub rule: Option<String>,
    /// Why, in words (`forbidden by rule `x``).
    pub explanation: String,
    /// The principal's id.
    pub principal: String,
    /// The principal's tenant.
    pub principal_tenant: String,
    /// The principal's roles as presented.
    pub roles: Vec<String>,
    /// The action asked for.
    pub action: String,
    /// The resource's type.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: String,
    /// The resource's tenant.
    pub resource_tenant: String,
    /// The last MFA verification presented, Unix seconds.
    pub mfa_verified_at: Option<u64>,
    /// The justification's reference (ticket), if one was presented.
    pub justification: Option<String>,
    /// The fields the principal may see, and how; hidden fields are left out.
    pub fields: Vec<FieldAccess>,
    /// The first deny rule that hid or masked fields, if any.
    pub restricted_by: Option<String>,
    /// The policy's source name.
    pub policy: String,
    /// The policy's SHA-256, hex.
    pub policy_digest: String,
}

/// One visible field in an [`AuditRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldAccess {
    /// The field's name.
    pub field: String,
    /// Full or masked.
    pub visibility: Visibility,
}
