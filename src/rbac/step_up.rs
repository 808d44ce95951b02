//! [`Policy::step_up_rules`]: which rules can ask holders of some roles for an MFA step-up, read
//! from the rules themselves rather than from sample requests, so that a rule whose other
//! conditions depend on resource attributes (`at_least = { total = 1000 }`, `principal_is`) is
//! found too. `custodian doctor` uses it to fail on staff without MFA whose roles need it.

use std::collections::BTreeSet;

use super::compile::{Candidate, Policy};
use super::condition::Condition;
use super::validate::RuleKind;

/// What an MFA step-up gets a holder of the roles from a [`StepUpRule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepUpEffect {
    /// An allow rule with `mfa_within` in `when`: the action is allowed (with the rule's fields)
    /// only after a step-up.
    Allows,
    /// A deny rule with `mfa_within` in `unless`: the action is forbidden without a step-up.
    LiftsDeny,
    /// A field restriction with `mfa_within` in `unless`: fields are hidden or masked without a
    /// step-up.
    LiftsRestriction,
}

/// A rule that can ask holders of some roles for an MFA step-up on one resource type and action
/// ([`Policy::step_up_rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepUpRule<'a> {
    /// The rule's name.
    pub rule: &'a str,
    /// The resource type.
    pub resource_type: &'a str,
    /// The action.
    pub action: &'a str,
    /// The oldest MFA verification the rule accepts, in seconds (its `mfa_within`).
    pub within_secs: u64,
    /// What the step-up gets.
    pub effect: StepUpEffect,
}

impl Policy {
    /// Every rule that can ask a principal holding `roles` (and, by inheritance, what they
    /// inherit) for an MFA step-up at `now` or later, under some resource, attributes and
    /// context: allow rules with `mfa_within` in `when`, and deny rules and field restrictions
    /// with `mfa_within` in `unless`, that apply to one of those roles or to every role (`*`).
    /// Sorted by resource type and action name, then rule position; undeclared roles are ignored.
    ///
    /// The answer comes from the rules, not from requests, so a rule is found whatever its other
    /// conditions ask of the resource: if some request of such a principal is denied with
    /// [`Reason::StepUpRequired`](super::Reason::StepUpRequired), its rule is listed. It
    /// over-approximates on purpose, for a check that must not miss one: a rule is left out only
    /// when it can never apply to these roles (a role in its `except` is held, or its
    /// `valid_until` is not after `now`), and another rule that would allow the request anyway
    /// is not considered. `Policy::check` is unchanged by this method and decides requests.
    ///
    /// ```
    /// use custodian::rbac::{Policy, StepUpEffect};
    ///
    /// let policy = Policy::from_toml(r#"
    ///     version = 1
    ///     [resource_types.order]
    ///     actions = ["view", "refund"]
    ///     attributes = { total = "integer" }
    ///     [roles.support]
    ///     [[rules]]
    ///     name = "support-views-orders"
    ///     effect = "allow"
    ///     roles = ["support"]
    ///     permissions = ["order:view", "order:refund"]
    ///     [[rules]]
    ///     name = "large-refunds-after-mfa"
    ///     effect = "deny"
    ///     roles = ["*"]
    ///     permissions = ["order:refund"]
    ///     when = { at_least = { total = 100000 } }
    ///     unless = { mfa_within = 300 }
    /// "#, "inline.toml")?;
    ///
    /// let rules = policy.step_up_rules(&["support"], 1_700_000_000);
    /// assert_eq!(rules.len(), 1);
    /// assert_eq!((rules[0].rule, rules[0].action), ("large-refunds-after-mfa", "refund"));
    /// assert_eq!(rules[0].effect, StepUpEffect::LiftsDeny);
    /// # Ok::<(), custodian::rbac::PolicyError>(())
    /// ```
    pub fn step_up_rules(&self, roles: &[&str], now: u64) -> Vec<StepUpRule<'_>> {
        let entries: Vec<_> = roles
            .iter()
            .filter_map(|role| self.role_ids.get(*role))
            .collect();
        // Every role a holder of `roles` has, inherited ones included, for `except`.
        let held: BTreeSet<usize> = entries
            .iter()
            .filter_map(|entry| self.closures.get(entry.id))
            .flatten()
            .copied()
            .collect();
        // (slot, candidate) pairs filed for these roles, and for every role.
        let mut filed: Vec<(usize, &Candidate)> = Vec::new();
        for entry in &entries {
            let slots = self
                .slot_keys
                .get(entry.slots_start..entry.slots_end)
                .unwrap_or_default();
            let ranges = self
                .slot_ranges
                .get(entry.slots_start..entry.slots_end)
                .unwrap_or_default();
            for (slot, (start, end)) in slots.iter().zip(ranges) {
                for candidate in self.candidates.get(*start..*end).unwrap_or_default() {
                    filed.push((*slot, candidate));
                }
            }
        }
        for (slot, candidates) in self.any_role.iter().enumerate() {
            filed.extend(candidates.iter().map(|candidate| (slot, candidate)));
        }

        // (resource type, action, rule position, what was found), sorted and deduplicated: a
        // rule filed under several of the roles is listed once.
        let mut found: Vec<(&str, &str, usize, StepUpRule<'_>)> = Vec::new();
        for (slot, candidate) in filed {
            let Some(rule) = self.rules.get(candidate.rule) else {
                continue;
            };
            if rule.except.iter().any(|role| held.contains(role)) {
                continue;
            }
            // A `when` condition that is false from `now` on keeps the rule from applying, for an
            // allow and a deny rule alike (a deny's false condition means "does not apply").
            if rule.conditions.iter().any(|c| expired(c, now)) {
                continue;
            }
            let (conditions, effect) = match candidate.kind {
                RuleKind::Allow => (&rule.conditions, StepUpEffect::Allows),
                RuleKind::Deny => (&rule.unless, StepUpEffect::LiftsDeny),
                RuleKind::Restrict => (&rule.unless, StepUpEffect::LiftsRestriction),
            };
            let within = conditions
                .iter()
                .filter_map(|c| match c {
                    Condition::MfaWithin { seconds } => Some(*seconds),
                    _ => None,
                })
                .min();
            let (Some(within_secs), Some((resource_type, action))) =
                (within, self.slot_names(slot))
            else {
                continue;
            };
            let step_up = StepUpRule {
                rule: &rule.name,
                resource_type,
                action,
                within_secs,
                effect,
            };
            found.push((resource_type, action, candidate.rule, step_up));
        }
        found.sort_unstable_by_key(|(t, a, position, _)| (*t, *a, *position));
        found.dedup_by_key(|(t, a, position, _)| (*t, *a, *position));
        found.into_iter().map(|(.., step_up)| step_up).collect()
    }

    /// The resource type and action of a permission slot.
    fn slot_names(&self, slot: usize) -> Option<(&str, &str)> {
        self.types.iter().find_map(|t| {
            t.actions
                .iter()
                .find(|(_, s)| **s == slot)
                .map(|(action, _)| (t.name.as_ref(), action.as_ref()))
        })
    }
}

/// Whether `condition` is false at `now` and at every later time.
fn expired(condition: &Condition, now: u64) -> bool {
    matches!(condition, Condition::ValidUntil { until } if now >= *until)
}
