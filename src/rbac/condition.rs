//! The closed set of rule conditions, and their three-valued evaluation.
//!
//! A condition is true, false, or unknown when its input is missing (an attribute not set, of
//! the wrong type, no MFA time, no justification). An allow rule applies only when all its
//! conditions are true; a deny rule applies unless one of them is false. So an unknown never
//! grants and never lifts a prohibition (Cedar #2428 skipped forbid policies that errored).
//!
//! A deny rule's `unless` conditions work the other way round: the rule applies unless every one
//! of them is true, so an unknown there (no MFA time) also makes the deny apply.
//!
//! Two conditions are the caller's to meet by asking again: a recent MFA step-up and a
//! justification. When only those stand between a request and an allow, the evaluator says so
//! (see [`Needs`]) instead of a bare "no".

use super::request::{AttributeValue, Principal, RequestContext, Resource};

/// A condition's value for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Truth {
    True,
    False,
    Unknown,
}

impl From<bool> for Truth {
    fn from(value: bool) -> Self {
        if value { Truth::True } else { Truth::False }
    }
}

/// How a numeric limit compares the attribute with its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    /// `attribute < bound`
    Below,
    /// `attribute <= bound`
    AtMost,
    /// `attribute >= bound`
    AtLeast,
    /// `attribute > bound`
    Above,
}

/// One typed condition, checked against the resource type when the policy loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The attribute names the principal: an entity of kind `kind` with the principal's id.
    /// `implicit` says that `kind` is the policy's only principal kind, so a principal given
    /// without a kind is of that kind.
    PrincipalIs {
        attribute: Box<str>,
        kind: Box<str>,
        implicit: bool,
    },
    /// An `integer` attribute compared with a bound.
    Limit {
        attribute: Box<str>,
        comparison: Comparison,
        bound: i64,
    },
    /// The last MFA verification is at most this many seconds old.
    MfaWithin { seconds: u64 },
    /// A justification is present.
    AnyJustification,
    /// A justification naming this resource is present.
    JustificationNamesResource,
    /// `now >= from` (break-glass grant starts).
    ValidFrom { from: u64 },
    /// `now < until` (break-glass grant ends).
    ValidUntil { until: u64 },
}

impl Condition {
    pub(crate) fn evaluate(
        &self,
        principal: &Principal,
        resource: &Resource,
        context: &RequestContext,
    ) -> Truth {
        match self {
            Condition::PrincipalIs {
                attribute,
                kind,
                implicit,
            } => {
                let named = match resource.attribute(attribute) {
                    // A plain id is of the kind the attribute is declared to name.
                    Some(AttributeValue::Id(id)) => id.as_str(),
                    Some(AttributeValue::Ref(entity)) if entity.kind() == &**kind => entity.id(),
                    // Missing, a number, or a reference to another kind than declared.
                    _ => return Truth::Unknown,
                };
                let same_kind = match principal.kind() {
                    Some(principal_kind) => principal_kind == &**kind,
                    None if *implicit => true,
                    // A principal without a kind, in a policy with several kinds of principal.
                    None => return Truth::Unknown,
                };
                Truth::from(same_kind && named == principal.id())
            }
            Condition::Limit {
                attribute,
                comparison,
                bound,
            } => match resource.attribute(attribute) {
                Some(AttributeValue::Integer(value)) => Truth::from(match comparison {
                    Comparison::Below => value < bound,
                    Comparison::AtMost => value <= bound,
                    Comparison::AtLeast => value >= bound,
                    Comparison::Above => value > bound,
                }),
                _ => Truth::Unknown,
            },
            Condition::MfaWithin { seconds } => match context.mfa_verified_at() {
                Some(at) if at <= context.now() => Truth::from(context.now() - at <= *seconds),
                // Never verified, or verified "in the future" (a skewed or forged clock).
                _ => Truth::Unknown,
            },
            Condition::AnyJustification => match context.justification() {
                Some(_) => Truth::True,
                None => Truth::Unknown,
            },
            Condition::JustificationNamesResource => match context.justification() {
                Some(justification) => Truth::from(justification.names(resource)),
                None => Truth::Unknown,
            },
            Condition::ValidFrom { from } => Truth::from(context.now() >= *from),
            Condition::ValidUntil { until } => Truth::from(context.now() < *until),
        }
    }
}

impl Comparison {
    /// The policy key that writes this comparison.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Comparison::Below => "below",
            Comparison::AtMost => "at_most",
            Comparison::AtLeast => "at_least",
            Comparison::Above => "above",
        }
    }
}

impl Condition {
    /// The condition as the policy file writes it, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Condition::PrincipalIs { attribute, .. } => format!("`principal_is = \"{attribute}\"`"),
            Condition::Limit {
                attribute,
                comparison,
                bound,
            } => format!("`{} = {{ {attribute} = {bound} }}`", comparison.key()),
            Condition::MfaWithin { seconds } => format!("`mfa_within = {seconds}`"),
            Condition::AnyJustification => "`justification = \"any\"`".to_owned(),
            Condition::JustificationNamesResource => {
                "`justification = \"names_resource\"`".to_owned()
            }
            Condition::ValidFrom { from } => format!("`valid_from = {from}`"),
            Condition::ValidUntil { until } => format!("`valid_until = {until}`"),
        }
    }

    /// What the caller can supply to make this condition true, for the two conditions that are
    /// the caller's to meet: an MFA step-up and a justification. `None` for conditions on the
    /// resource, the principal or the time, which asking again cannot change.
    pub(crate) fn remedy(&self) -> Option<Needs> {
        match self {
            Condition::MfaWithin { seconds } => Some(Needs {
                mfa_within: Some(*seconds),
                justification: None,
            }),
            Condition::AnyJustification => Some(Needs {
                mfa_within: None,
                justification: Some(false),
            }),
            Condition::JustificationNamesResource => Some(Needs {
                mfa_within: None,
                justification: Some(true),
            }),
            Condition::PrincipalIs { .. }
            | Condition::Limit { .. }
            | Condition::ValidFrom { .. }
            | Condition::ValidUntil { .. } => None,
        }
    }
}

/// What a request lacks that its caller can supply: a fresh MFA step-up, a justification.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Needs {
    /// An MFA verification at most this many seconds old.
    pub mfa_within: Option<u64>,
    /// A justification; `true` when it must name the resource.
    pub justification: Option<bool>,
}

impl Needs {
    /// Both sets of needs at once: the tighter MFA window, the stricter justification.
    pub(crate) fn and(self, other: Needs) -> Needs {
        Needs {
            mfa_within: match (self.mfa_within, other.mfa_within) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            justification: match (self.justification, other.justification) {
                (Some(a), Some(b)) => Some(a || b),
                (a, b) => a.or(b),
            },
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.mfa_within.is_none() && self.justification.is_none()
    }
}

/// What an allow rule's conditions say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowCheck {
    /// Every condition is true: the rule grants.
    Applies,
    /// Every condition that is not true is the caller's to meet: these.
    Needs(Needs),
    /// Some condition the caller cannot change is not true.
    No,
}

/// Evaluates an allow rule's conditions: it grants only if every condition is true.
pub(crate) fn allow_check(
    conditions: &[Condition],
    principal: &Principal,
    resource: &Resource,
    context: &RequestContext,
) -> AllowCheck {
    let mut needs = Needs::default();
    for condition in conditions {
        if condition.evaluate(principal, resource, context) != Truth::True {
            match condition.remedy() {
                Some(more) => needs = needs.and(more),
                None => return AllowCheck::No,
            }
        }
    }
    if needs.is_empty() {
        AllowCheck::Applies
    } else {
        AllowCheck::Needs(needs)
    }
}

/// Whether an allow rule with these conditions grants: every condition must be true.
#[cfg(test)]
pub(crate) fn allow_applies(
    conditions: &[Condition],
    principal: &Principal,
    resource: &Resource,
    context: &RequestContext,
) -> bool {
    allow_check(conditions, principal, resource, context) == AllowCheck::Applies
}

/// What a deny rule (or field restriction) says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenyCheck {
    /// The rule does not apply.
    NotApplies,
    /// The rule applies, and the caller cannot lift it by asking again.
    Applies,
    /// The rule applies only because these `unless` conditions are not met, and the caller
    /// can meet them (a step-up, a justification).
    Liftable(Needs),
}

/// Evaluates a deny rule: it applies when no `when` condition is false (unknown counts as met)
/// and, if it has `unless` conditions, not all of them are true (unknown counts as not met).
/// Either way a missing input makes the rule apply.
pub(crate) fn deny_check(
    when: &[Condition],
    unless: &[Condition],
    principal: &Principal,
    resource: &Resource,
    context: &RequestContext,
) -> DenyCheck {
    if !deny_applies(when, principal, resource, context) {
        return DenyCheck::NotApplies;
    }
    if unless.is_empty() {
        return DenyCheck::Applies;
    }
    let mut needs = Needs::default();
    let mut beyond_the_caller = false;
    for condition in unless {
        if condition.evaluate(principal, resource, context) != Truth::True {
            match condition.remedy() {
                Some(more) => needs = needs.and(more),
                None => beyond_the_caller = true,
            }
        }
    }
    if beyond_the_caller {
        DenyCheck::Applies
    } else if needs.is_empty() {
        DenyCheck::NotApplies
    } else {
        DenyCheck::Liftable(needs)
    }
}

/// Whether a deny rule with these conditions forbids: no condition may be false. An unknown
/// condition counts as met, so a deny rule fails closed.
pub(crate) fn deny_applies(
    conditions: &[Condition],
    principal: &Principal,
    resource: &Resource,
    context: &RequestContext,
) -> bool {
    conditions
        .iter()
        .all(|c| c.evaluate(principal, resource, context) != Truth::False)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::Justification;

    fn order() -> Resource {
        Resource::new("order", "ord-1", "store-1")
            .with("assigned_agent", "emp-1")
            .with("total", 9_999)
    }

    #[test]
    fn principal_is_compares_ids() {
        let c = Condition::PrincipalIs {
            attribute: "assigned_agent".into(),
            kind: "employee".into(),
            implicit: true,
        };
        let ctx = RequestContext::at(0);
        assert_eq!(
            c.evaluate(&Principal::new("emp-1", "s"), &order(), &ctx),
            Truth::True
        );
        assert_eq!(
            c.evaluate(&Principal::new("emp-2", "s"), &order(), &ctx),
            Truth::False
        );
        let unassigned = Resource::new("order", "ord-2", "store-1");
        assert_eq!(
            c.evaluate(&Principal::new("emp-1", "s"), &unassigned, &ctx),
            Truth::Unknown
        );
        let wrong_type = Resource::new("order", "o", "s").with("assigned_agent", 1);
        assert_eq!(
            c.evaluate(&Principal::new("1", "s"), &wrong_type, &ctx),
            Truth::Unknown
        );
    }

    #[test]
    fn limits_compare_integers() {
        let p = Principal::new("emp-1", "s");
        let ctx = RequestContext::at(0);
        let limit = |comparison, bound| Condition::Limit {
            attribute: "total".into(),
            comparison,
            bound,
        };
        assert_eq!(
            limit(Comparison::Below, 10_000).evaluate(&p, &order(), &ctx),
            Truth::True
        );
        assert_eq!(
            limit(Comparison::Below, 9_999).evaluate(&p, &order(), &ctx),
            Truth::False
        );
        assert_eq!(
            limit(Comparison::AtMost, 9_999).evaluate(&p, &order(), &ctx),
            Truth::True
        );
        assert_eq!(
            limit(Comparison::AtLeast, 10_000).evaluate(&p, &order(), &ctx),
            Truth::False
        );
        assert_eq!(
            limit(Comparison::Above, 9_998).evaluate(&p, &order(), &ctx),
            Truth::True
        );
        let text_total = Resource::new("order", "o", "s").with("total", "9999");
        assert_eq!(
            limit(Comparison::Below, 10_000).evaluate(&p, &text_total, &ctx),
            Truth::Unknown
        );
    }

    #[test]
    fn mfa_window_and_future_times() {
        let p = Principal::new("emp-1", "s");
        let c = Condition::MfaWithin { seconds: 300 };
        let at = |now, verified| RequestContext::at(now).with_mfa_verified_at(verified);
        assert_eq!(c.evaluate(&p, &order(), &at(1_000, 700)), Truth::True);
        assert_eq!(c.evaluate(&p, &order(), &at(1_000, 699)), Truth::False);
        assert_eq!(c.evaluate(&p, &order(), &at(1_000, 1_001)), Truth::Unknown);
        assert_eq!(
            c.evaluate(&p, &order(), &RequestContext::at(1_000)),
            Truth::Unknown
        );
    }

    #[test]
    fn justification_must_name_this_resource() {
        let p = Principal::new("emp-1", "s");
        let c = Condition::JustificationNamesResource;
        let with = |j| RequestContext::at(0).with_justification(j);
        let right = Justification::ticket("T-1").naming("order", "ord-1");
        let other_id = Justification::ticket("T-1").naming("order", "ord-2");
        let other_type = Justification::ticket("T-1").naming("customer", "ord-1");
        assert_eq!(c.evaluate(&p, &order(), &with(right.clone())), Truth::True);
        assert_eq!(c.evaluate(&p, &order(), &with(other_id)), Truth::False);
        assert_eq!(c.evaluate(&p, &order(), &with(other_type)), Truth::False);
        assert_eq!(
            c.evaluate(&p, &order(), &RequestContext::at(0)),
            Truth::Unknown
        );
        assert_eq!(
            Condition::AnyJustification.evaluate(&p, &order(), &with(right)),
            Truth::True
        );
    }

    #[test]
    fn time_box_is_half_open() {
        let p = Principal::new("emp-1", "s");
        let from = Condition::ValidFrom { from: 100 };
        let until = Condition::ValidUntil { until: 200 };
        let at = RequestContext::at;
        assert_eq!(from.evaluate(&p, &order(), &at(99)), Truth::False);
        assert_eq!(from.evaluate(&p, &order(), &at(100)), Truth::True);
        assert_eq!(until.evaluate(&p, &order(), &at(199)), Truth::True);
        assert_eq!(until.evaluate(&p, &order(), &at(200)), Truth::False);
    }

    #[test]
    fn unknown_blocks_allow_and_triggers_deny() {
        let p = Principal::new("emp-1", "s");
        let unassigned = Resource::new("order", "ord-2", "store-1");
        let conditions = [Condition::PrincipalIs {
            attribute: "assigned_agent".into(),
            kind: "employee".into(),
            implicit: true,
        }];
        let ctx = RequestContext::at(0);
        assert!(!allow_applies(&conditions, &p, &unassigned, &ctx));
        assert!(deny_applies(&conditions, &p, &unassigned, &ctx));
        assert!(allow_applies(&conditions, &p, &order(), &ctx));
        assert!(deny_applies(&conditions, &p, &order(), &ctx));
        let other = Principal::new("emp-9", "s");
        assert!(!deny_applies(&conditions, &other, &order(), &ctx));
    }

    #[test]
    fn unless_counts_unknown_as_not_met_and_says_what_lifts_it() {
        let p = Principal::new("emp-1", "s");
        let mfa = [Condition::MfaWithin { seconds: 60 }];
        let at = RequestContext::at;
        let check = |context: &RequestContext| deny_check(&[], &mfa, &p, &order(), context);
        let lift = DenyCheck::Liftable(Needs {
            mfa_within: Some(60),
            justification: None,
        });
        assert_eq!(
            check(&at(1_000).with_mfa_verified_at(950)),
            DenyCheck::NotApplies
        );
        assert_eq!(check(&at(1_000).with_mfa_verified_at(900)), lift);
        assert_eq!(check(&at(1_000)), lift);
        assert_eq!(check(&at(1_000).with_mfa_verified_at(2_000)), lift);
        // A condition the caller cannot meet makes the deny final.
        let limit = [
            Condition::MfaWithin { seconds: 60 },
            Condition::Limit {
                attribute: "total".into(),
                comparison: Comparison::Below,
                bound: 100,
            },
        ];
        assert_eq!(
            deny_check(&[], &limit, &p, &order(), &at(1_000)),
            DenyCheck::Applies
        );
        // `when` false: the rule does not apply, whatever `unless` says.
        let when = [Condition::ValidFrom { from: 5_000 }];
        assert_eq!(
            deny_check(&when, &mfa, &p, &order(), &at(1_000)),
            DenyCheck::NotApplies
        );
    }

    #[test]
    fn allow_check_separates_what_the_caller_can_supply() {
        let p = Principal::new("emp-1", "s");
        let ctx = RequestContext::at(1_000);
        let both = [
            Condition::MfaWithin { seconds: 300 },
            Condition::JustificationNamesResource,
        ];
        assert_eq!(
            allow_check(&both, &p, &order(), &ctx),
            AllowCheck::Needs(Needs {
                mfa_within: Some(300),
                justification: Some(true),
            })
        );
        let with_limit = [
            Condition::MfaWithin { seconds: 300 },
            Condition::Limit {
                attribute: "total".into(),
                comparison: Comparison::Above,
                bound: 10_000,
            },
        ];
        assert_eq!(allow_check(&with_limit, &p, &order(), &ctx), AllowCheck::No);
        assert_eq!(
            Needs {
                mfa_within: Some(300),
                justification: Some(false)
            }
            .and(Needs {
                mfa_within: Some(60),
                justification: Some(true)
            }),
            Needs {
                mfa_within: Some(60),
                justification: Some(true)
            }
        );
    }

    #[test]
    fn principal_is_compares_kinds() {
        use crate::rbac::EntityRef;
        let c = Condition::PrincipalIs {
            attribute: "assigned_agent".into(),
            kind: "employee".into(),
            implicit: false,
        };
        let ctx = RequestContext::at(0);
        let assigned = |value: crate::rbac::AttributeValue| {
            Resource::new("order", "o", "s").with("assigned_agent", value)
        };
        let employee = Principal::new("e1", "s").with_kind("employee");
        let customer = Principal::new("e1", "s").with_kind("customer");
        let kindless = Principal::new("e1", "s");
        let to_employee = assigned(EntityRef::new("employee", "e1").into());
        let to_customer = assigned(EntityRef::new("customer", "e1").into());
        assert_eq!(c.evaluate(&employee, &to_employee, &ctx), Truth::True);
        assert_eq!(
            c.evaluate(&employee, &assigned("e1".into()), &ctx),
            Truth::True
        );
        assert_eq!(c.evaluate(&customer, &to_employee, &ctx), Truth::False);
        assert_eq!(c.evaluate(&employee, &to_customer, &ctx), Truth::Unknown);
        assert_eq!(c.evaluate(&kindless, &to_employee, &ctx), Truth::Unknown);
    }
}
