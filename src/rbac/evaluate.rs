//! `Policy::check`: the hot path. A few hash lookups, then only the rules indexed under the
//! principal's roles for this (resource type, action). No locks, no allocation.

use super::compile::{Candidate, Policy};
use super::condition::{Condition, allow_applies, deny_applies};
use super::decision::{Decision, Outcome};
use super::request::{Principal, RequestContext, Resource};
use super::validate::RuleKind;
use super::view::FieldView;

/// What the applicable rules add up to so far. Rule numbers are file positions; the lowest
/// applicable one decides, so the answer does not depend on lookup order.
#[derive(Debug, Default)]
struct Tally {
    deny: Option<usize>,
    allow: Option<usize>,
    restrict: Option<usize>,
    full: u64,
    masked: u64,
    hide: u64,
    mask: u64,
}

fn lowest(current: Option<usize>, rule: usize) -> Option<usize> {
    Some(current.map_or(rule, |c| c.min(rule)))
}

impl Policy {
    /// Decides whether `principal` may do `action` on `resource` in `context`.
    ///
    /// Never fails: anything unknown (resource type, action, role, attribute) leads to a denial
    /// or to a deny rule applying, never to an allow. Deny rules win over allow rules; with no
    /// applicable allow rule the answer is deny. Allow rules apply only within the principal's
    /// own tenant unless they say `cross_tenant = true`.
    ///
    /// ```
    /// use custodian::rbac::{Policy, Principal, Reason, RequestContext, Resource};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     version = 1
    ///     [resource_types.order]
    ///     actions = ["view", "refund"]
    ///     attributes = { total = "integer" }
    ///     [roles.support]
    ///     [[rules]]
    ///     name = "support-refunds-small-orders"
    ///     effect = "allow"
    ///     roles = ["support"]
    ///     permissions = ["order:refund"]
    ///     when = { below = { total = 10000 } }
    /// "#, "inline.toml")?;
    ///
    /// let agent = Principal::new("emp-1", "store-1").with_role("support");
    /// let now = RequestContext::at(1_700_000_000);
    /// let small = Resource::new("order", "ord-1", "store-1").with("total", 4_200);
    /// let large = Resource::new("order", "ord-2", "store-1").with("total", 25_000);
    /// let elsewhere = Resource::new("order", "ord-3", "store-2").with("total", 4_200);
    ///
    /// let decision = policy.check(&agent, "refund", &small, &now);
    /// assert!(decision.is_allowed());
    /// assert_eq!(decision.reason(), Reason::AllowedBy { rule: "support-refunds-small-orders" });
    /// assert_eq!(policy.check(&agent, "refund", &large, &now).reason(), Reason::NoRuleAllowed);
    /// assert!(!policy.check(&agent, "refund", &elsewhere, &now).is_allowed());
    /// # Ok::<(), custodian::rbac::PolicyError>(())
    /// ```
    pub fn check<'a>(
        &'a self,
        principal: &'a Principal,
        action: &'a str,
        resource: &'a Resource,
        context: &'a RequestContext,
    ) -> Decision<'a> {
        let decide = |outcome, view, restricted_by| {
            Decision::new(
                self,
                principal,
                action,
                resource,
                context,
                outcome,
                view,
                restricted_by,
            )
        };
        let Some(resource_type) = self
            .type_ids
            .get(resource.type_name())
            .and_then(|id| self.types.get(*id))
        else {
            return decide(Outcome::UnknownResourceType, FieldView::hidden(&[]), None);
        };
        let fields = &*resource_type.fields;
        let Some(&slot) = resource_type.actions.get(action) else {
            return decide(Outcome::UnknownAction, FieldView::hidden(fields), None);
        };

        let mut tally = Tally::default();
        if let Some(candidates) = self.any_role.get(slot) {
            self.consider(candidates, principal, resource, context, &mut tally);
        }
        for role in principal.roles() {
            let candidates = self
                .role_ids
                .get(role.as_str())
                .and_then(|role| self.candidates_for(role, slot));
            if let Some(candidates) = candidates {
                self.consider(candidates, principal, resource, context, &mut tally);
            }
        }

        match (tally.deny, tally.allow) {
            (Some(rule), _) => decide(Outcome::ForbiddenBy(rule), FieldView::hidden(fields), None),
            (None, Some(rule)) => {
                let full = tally.full & !tally.hide & !tally.mask;
                let visible = (tally.full | tally.masked) & !tally.hide;
                let view = FieldView::new(fields, full, visible & !full);
                decide(Outcome::AllowedBy(rule), view, tally.restrict)
            }
            (None, None) => decide(Outcome::NoRuleAllowed, FieldView::hidden(fields), None),
        }
    }

    fn consider(
        &self,
        candidates: &[Candidate],
        principal: &Principal,
        resource: &Resource,
        context: &RequestContext,
        tally: &mut Tally,
    ) {
        let same_tenant = !principal.tenant().is_empty() && principal.tenant() == resource.tenant();
        for candidate in candidates {
            // Conditions and exceptions live in the rule; plain rules need neither.
            let (conditions, except): (&[Condition], &[usize]) = if candidate.plain {
                (&[], &[])
            } else {
                match self.rules.get(candidate.rule) {
                    Some(rule) => (&rule.conditions, &rule.except),
                    None => continue,
                }
            };
            if !except.is_empty() && self.holds_any(principal, except) {
                continue;
            }
            match candidate.kind {
                RuleKind::Deny => {
                    if tally.deny.is_none_or(|d| candidate.rule < d)
                        && deny_applies(conditions, principal, resource, context)
                    {
                        tally.deny = Some(candidate.rule);
                    }
                }
                // Once denied, allow rules and field restrictions cannot change the answer.
                _ if tally.deny.is_some() => {}
                RuleKind::Restrict => {
                    if deny_applies(conditions, principal, resource, context) {
                        tally.restrict = lowest(tally.restrict, candidate.rule);
                        tally.hide |= candidate.first_mask;
                        tally.mask |= candidate.second_mask;
                    }
                }
                RuleKind::Allow => {
                    if (candidate.cross_tenant || same_tenant)
                        && allow_applies(conditions, principal, resource, context)
                    {
                        tally.allow = lowest(tally.allow, candidate.rule);
                        tally.full |= candidate.first_mask;
                        tally.masked |= candidate.second_mask;
                    }
                }
            }
        }
    }

    /// Whether the principal holds, directly or by inheritance, any of `roles`.
    fn holds_any(&self, principal: &Principal, roles: &[usize]) -> bool {
        principal.roles().iter().any(|name| {
            self.role_ids
                .get(name.as_str())
                .and_then(|role| self.closures.get(role.id))
                .is_some_and(|closure| roles.iter().any(|r| closure.binary_search(r).is_ok()))
        })
    }
}
