//! The closed set of rule conditions, and their three-valued evaluation.
//!
//! A condition is true, false, or unknown when its input is missing (an attribute not set, of
//! the wrong type, no MFA time, no justification). An allow rule applies only when all its
//! conditions are true; a deny rule applies unless one of them is false. So an unknown never
//! grants and never lifts a prohibition (Cedar #2428 skipped forbid policies that errored).

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
    /// The `id` attribute equals the principal's id (`assigned_agent`).
    PrincipalIs { attribute: Box<str> },
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
            Condition::PrincipalIs { attribute } => match resource.attribute(attribute) {
                Some(AttributeValue::Id(id)) => Truth::from(id == principal.id()),
                _ => Truth::Unknown,
            },
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

/// Whether an allow rule with these conditions grants: every condition must be true.
pub(crate) fn allow_applies(
    conditions: &[Condition],
    principal: &Principal,
    resource: &Resource,
    context: &RequestContext,
) -> bool {
    conditions
        .iter()
        .all(|c| c.evaluate(principal, resource, context) == Truth::True)
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
        }];
        let ctx = RequestContext::at(0);
        assert!(!allow_applies(&conditions, &p, &unassigned, &ctx));
        assert!(deny_applies(&conditions, &p, &unassigned, &ctx));
        assert!(allow_applies(&conditions, &p, &order(), &ctx));
        assert!(deny_applies(&conditions, &p, &order(), &ctx));
        let other = Principal::new("emp-9", "s");
        assert!(!deny_applies(&conditions, &other, &order(), &ctx));
    }
}
