//! `Policy::check`: the hot path. A few hash lookups, then only the rules indexed under the
//! principal's roles for this (resource type, action). No locks, no allocation.

use super::compile::{Candidate, Policy};
use super::condition::{AllowCheck, Condition, DenyCheck, Needs, allow_check, deny_check};
use super::decision::{Decision, Outcome};
use super::request::{Principal, RequestContext, Resource};
use super::validate::RuleKind;
use super::view::FieldView;

/// What the applicable rules add up to so far. Rule numbers are file positions; the lowest
/// applicable one decides, so the answer does not depend on lookup order.
#[derive(Debug, Default)]
struct Tally {
    /// The first applicable deny rule.
    deny: Option<usize>,
    /// The first applicable deny rule that the caller cannot lift by asking again.
    hard_deny: Option<usize>,
    /// What the liftable deny rules ask for, and the first of them asking for each part.
    lift: Needs,
    lift_mfa_rule: Option<usize>,
    lift_justification_rule: Option<usize>,
    allow: Option<usize>,
    /// The first allow rule kept from applying only by what the caller can supply.
    near: Option<(usize, Needs)>,
    restrict: Option<usize>,
    full: u64,
    masked: u64,
    hide: u64,
    mask: u64,
}

fn lowest(current: Option<usize>, rule: usize) -> Option<usize> {
    Some(current.map_or(rule, |c| c.min(rule)))
}

impl Tally {
    /// The denial's outcome when only liftable deny rules (if any) apply: what the caller must
    /// supply, and the first rule asking for it.
    fn requirement(&self, near: Option<(usize, Needs)>) -> Outcome {
        let (mut needs, mut mfa_rule, mut justification_rule) =
            (self.lift, self.lift_mfa_rule, self.lift_justification_rule);
        if let Some((rule, more)) = near {
            needs = needs.and(more);
            if more.mfa_within.is_some() {
                mfa_rule = lowest(mfa_rule, rule);
            }
            if more.justification.is_some() {
                justification_rule = lowest(justification_rule, rule);
            }
        }
        match (needs, mfa_rule, justification_rule) {
            (
                Needs {
                    mfa_within: Some(within_secs),
                    ..
                },
                Some(rule),
                _,
            ) => Outcome::StepUpRequired { within_secs, rule },
            (
                Needs {
                    justification: Some(names_resource),
                    ..
                },
                _,
                Some(rule),
            ) => Outcome::JustificationRequired {
                names_resource,
                rule,
            },
            // Not reached: a liftable rule or a near allow always asks for something.
            _ => Outcome::NoRuleAllowed,
        }
    }
}

impl Policy {
    /// Decides whether `principal` may do `action` on `resource` in `context`.
    ///
    /// Never fails: anything unknown (resource type, action, role, attribute) leads to a denial
    /// or to a deny rule applying, never to an allow. Deny rules win over allow rules; with no
    /// applicable allow rule the answer is deny. Allow rules apply only within the principal's
    /// own tenant unless they say `cross_tenant = true`.
    ///
    /// A denial that an MFA step-up or a justification would turn into an allow says so
    /// ([`Reason::StepUpRequired`](super::Reason::StepUpRequired),
    /// [`Reason::JustificationRequired`](super::Reason::JustificationRequired)); it is still a
    /// denial.
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
            return decide(
                Outcome::UnknownResourceType,
                FieldView::hidden(&self.no_fields),
                None,
            );
        };
        let fields = &resource_type.fields;
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

        let denied = |outcome| decide(outcome, FieldView::hidden(fields), None);
        if let Some(rule) = tally.hard_deny {
            // A deny rule the caller cannot lift wins, and is reported as such.
            return denied(Outcome::ForbiddenBy(rule));
        }
        match (tally.deny, tally.allow, tally.near) {
            // Only liftable deny rules apply: say what lifts them, if an allow rule applies
            // (or would, with what the caller can supply too).
            (Some(_), Some(_), _) => denied(tally.requirement(None)),
            (Some(_), None, Some(near)) => denied(tally.requirement(Some(near))),
            (Some(rule), None, None) => denied(Outcome::ForbiddenBy(rule)),
            (None, Some(rule), _) => {
                let full = tally.full & !tally.hide & !tally.mask;
                let visible = (tally.full | tally.masked) & !tally.hide;
                let view = FieldView::new(fields, full, visible & !full);
                decide(Outcome::AllowedBy(rule), view, tally.restrict)
            }
            (None, None, Some(near)) => denied(tally.requirement(Some(near))),
            (None, None, None) => denied(Outcome::NoRuleAllowed),
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
            // Conditions and exceptions live in the rule; plain rules need none of them.
            let (conditions, unless, except): (&[Condition], &[Condition], &[usize]) =
                if candidate.plain {
                    (&[], &[], &[])
                } else {
                    match self.rules.get(candidate.rule) {
                        Some(rule) => (&rule.conditions, &rule.unless, &rule.except),
                        None => continue,
                    }
                };
            if !except.is_empty() && self.holds_any(principal, except) {
                continue;
            }
            match candidate.kind {
                RuleKind::Deny => {
                    // Once a deny rule the caller cannot lift applies, only an earlier one can
                    // change the answer (by being the one reported).
                    if tally.hard_deny.is_some_and(|d| d < candidate.rule) {
                        continue;
                    }
                    match deny_check(conditions, unless, principal, resource, context) {
                        DenyCheck::NotApplies => {}
                        DenyCheck::Applies => {
                            tally.deny = lowest(tally.deny, candidate.rule);
                            tally.hard_deny = lowest(tally.hard_deny, candidate.rule);
                        }
                        DenyCheck::Liftable(needs) => {
                            tally.deny = lowest(tally.deny, candidate.rule);
                            tally.lift = tally.lift.and(needs);
                            if needs.mfa_within.is_some() {
                                tally.lift_mfa_rule = lowest(tally.lift_mfa_rule, candidate.rule);
                            }
                            if needs.justification.is_some() {
                                tally.lift_justification_rule =
                                    lowest(tally.lift_justification_rule, candidate.rule);
                            }
                        }
                    }
                }
                // Once denied for good, allow rules and field restrictions cannot change the
                // answer.
                _ if tally.hard_deny.is_some() => {}
                RuleKind::Restrict => {
                    let check = deny_check(conditions, unless, principal, resource, context);
                    if check != DenyCheck::NotApplies {
                        tally.restrict = lowest(tally.restrict, candidate.rule);
                        tally.hide |= candidate.first_mask;
                        tally.mask |= candidate.second_mask;
                    }
                }
                RuleKind::Allow => {
                    if !(candidate.cross_tenant || same_tenant) {
                        continue;
                    }
                    match allow_check(conditions, principal, resource, context) {
                        AllowCheck::Applies => {
                            tally.allow = lowest(tally.allow, candidate.rule);
                            tally.full |= candidate.first_mask;
                            tally.masked |= candidate.second_mask;
                        }
                        AllowCheck::Needs(needs) => {
                            if tally.near.is_none_or(|(r, _)| candidate.rule < r) {
                                tally.near = Some((candidate.rule, needs));
                            }
                        }
                        AllowCheck::No => {}
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
