//! Model-based property test: a naive reference evaluator, written straight from the semantics
//! in docs/RBAC.md and knowing nothing of the compiled index, must agree with `Policy::check` on
//! every decision (allowed or not, the deciding rule, the field view, the field restriction) for
//! random policies and random requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::fmt::Write as _;

use custodian::rbac::{
    AttributeValue, EntityRef, Justification, Policy, Principal, Reason, RequestContext, Resource,
    Visibility,
};
use proptest::prelude::*;

// ---- the fixed schema ------------------------------------------------------------------------

/// (type, actions, fields). Both types declare `owner` (id) and `amount` (integer).
const TYPES: [(&str, &[&str], &[&str]); 2] = [
    ("doc", &["read", "edit", "drop"], &["a", "b", "c"]),
    ("note", &["read", "pin"], &["a", "b"]),
];
const PERMISSIONS: [&str; 8] = [
    "doc:read",
    "doc:edit",
    "doc:*",
    "note:read",
    "note:pin",
    "note:*",
    "*:read",
    "*:*",
];

// ---- the reference model ---------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
    Restrict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Below,
    AtMost,
    AtLeast,
    Above,
}

#[derive(Debug, Clone)]
struct Rule {
    effect: Effect,
    any_role: bool,
    roles: Vec<usize>,
    except: Vec<usize>,
    permissions: Vec<usize>,
    /// Allow: field grants, `*` allowed. Restrict: (hide, mask) lists.
    grants: Vec<(&'static str, Visibility)>,
    hide: Vec<&'static str>,
    mask: Vec<&'static str>,
    cross_tenant: bool,
    when: Conditions,
    /// Deny and restrict rules only: the rule applies unless all of these are true.
    unless: Option<Conditions>,
}

/// A `when` or `unless` table.
#[derive(Debug, Clone, Default)]
struct Conditions {
    /// `principal_is`: `owner`, or (typed schema only) `agent`.
    principal_is: Option<&'static str>,
    limit: Option<(Limit, i64)>,
    mfa_within: Option<u64>,
    justification: Option<bool>, // Some(false) = any, Some(true) = names_resource
    valid_from: Option<u64>,
    valid_until: Option<u64>,
}

impl Conditions {
    fn is_empty(&self) -> bool {
        self.principal_is.is_none()
            && self.limit.is_none()
            && self.mfa_within.is_none()
            && self.justification.is_none()
            && self.valid_from.is_none()
            && self.valid_until.is_none()
    }
}

#[derive(Debug, Clone)]
struct Model {
    /// For each role, the roles it inherits from (all lower-numbered, so no cycles).
    inherits: Vec<Vec<usize>>,
    rules: Vec<Rule>,
    /// Untyped schema: no `principal_kinds` (so `employee`), `owner = "id"`. Typed schema:
    /// `principal_kinds = ["user", "bot"]`, `owner = "ref:user"`, `agent = "ref:bot"`.
    typed: bool,
}

/// What the caller could supply: (MFA window, justification naming the resource?).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Needs {
    mfa: Option<u64>,
    justification: Option<bool>,
}

impl Needs {
    fn and(self, other: Needs) -> Needs {
        Needs {
            mfa: match (self.mfa, other.mfa) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            justification: match (self.justification, other.justification) {
                (Some(a), Some(b)) => Some(a || b),
                (a, b) => a.or(b),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    True,
    False,
    Unknown,
}

fn truth(b: bool) -> Truth {
    if b { Truth::True } else { Truth::False }
}

#[derive(Debug, Clone)]
struct Request {
    principal: Principal,
    action: &'static str,
    resource: Resource,
    context: RequestContext,
}

/// What both evaluators must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    allowed: bool,
    reason: String,
    fields: Vec<(String, Visibility)>,
    restricted_by: Option<String>,
}

impl Model {
    fn effective_roles(&self, principal: &Principal) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = principal
            .roles()
            .iter()
            .filter_map(|name| name.strip_prefix("role").and_then(|n| n.parse().ok()))
            .filter(|n: &usize| *n < self.inherits.len())
            .collect();
        while let Some(role) = stack.pop() {
            if seen.insert(role) {
                stack.extend(&self.inherits[role]);
            }
        }
        seen
    }

    /// The declared kind of a `principal_is` attribute, and whether a principal without a kind
    /// is of that kind (the policy has a single principal kind).
    fn attribute_kind(&self, attribute: &str) -> (&'static str, bool) {
        match (self.typed, attribute) {
            (false, _) => ("employee", true),
            (true, "owner") => ("user", false),
            (true, _) => ("bot", false),
        }
    }

    /// Each condition's truth, with the remedy the caller has for it (MFA, justification).
    fn conditions(&self, c: &Conditions, r: &Request) -> Vec<(Truth, Option<Needs>)> {
        let mut out = Vec::new();
        if let Some(attribute) = c.principal_is {
            let (kind, implicit) = self.attribute_kind(attribute);
            let named = match r.resource.attribute(attribute) {
                Some(AttributeValue::Id(id)) => Some(id.as_str()),
                Some(AttributeValue::Ref(e)) if e.kind() == kind => Some(e.id()),
                _ => None,
            };
            let same_kind = match r.principal.kind() {
                Some(k) => Some(k == kind),
                None if implicit => Some(true),
                None => None,
            };
            out.push((
                match (named, same_kind) {
                    (Some(id), Some(same)) => truth(same && id == r.principal.id()),
                    _ => Truth::Unknown,
                },
                None,
            ));
        }
        if let Some((limit, bound)) = c.limit {
            out.push((
                match r.resource.attribute("amount") {
                    Some(AttributeValue::Integer(v)) => truth(match limit {
                        Limit::Below => *v < bound,
                        Limit::AtMost => *v <= bound,
                        Limit::AtLeast => *v >= bound,
                        Limit::Above => *v > bound,
                    }),
                    _ => Truth::Unknown,
                },
                None,
            ));
        }
        let now = r.context.now();
        if let Some(window) = c.mfa_within {
            out.push((
                match r.context.mfa_verified_at() {
                    Some(at) if at <= now => truth(now - at <= window),
                    _ => Truth::Unknown,
                },
                Some(Needs {
                    mfa: Some(window),
                    justification: None,
                }),
            ));
        }
        if let Some(names_resource) = c.justification {
            out.push((
                match r.context.justification() {
                    None => Truth::Unknown,
                    Some(_) if !names_resource => Truth::True,
                    Some(j) => truth(j.names(&r.resource)),
                },
                Some(Needs {
                    mfa: None,
                    justification: Some(names_resource),
                }),
            ));
        }
        if let Some(from) = c.valid_from {
            out.push((truth(now >= from), None));
        }
        if let Some(until) = c.valid_until {
            out.push((truth(now < until), None));
        }
        out
    }

    /// The remedies for every condition that is not true, or `None` if one of them has none.
    fn unmet(conditions: &[(Truth, Option<Needs>)]) -> Option<Needs> {
        conditions
            .iter()
            .filter(|(t, _)| *t != Truth::True)
            .try_fold(Needs::default(), |needs, (_, remedy)| {
                remedy.map(|more| needs.and(more))
            })
    }

    fn covers(rule: &Rule, type_name: &str, action: &str) -> bool {
        rule.permissions.iter().any(|p| {
            let (t, a) = PERMISSIONS[*p].split_once(':').unwrap();
            (t == "*" || t == type_name) && (a == "*" || a == action)
        })
    }

    fn evaluate(&self, r: &Request) -> Outcome {
        let denied = |reason: String, fields: &[&str]| Outcome {
            allowed: false,
            reason,
            fields: fields
                .iter()
                .map(|f| (f.to_string(), Visibility::Hidden))
                .collect(),
            restricted_by: None,
        };
        let Some((type_name, actions, fields)) =
            TYPES.iter().find(|(t, _, _)| *t == r.resource.type_name())
        else {
            return denied(
                format!(
                    "the policy has no resource type `{}`",
                    r.resource.type_name()
                ),
                &[],
            );
        };
        if !actions.contains(&r.action) {
            return denied(
                format!("the resource type has no action `{}`", r.action),
                fields,
            );
        }
        let roles = self.effective_roles(&r.principal);
        let same_tenant =
            !r.principal.tenant().is_empty() && r.principal.tenant() == r.resource.tenant();

        let mut first_allow = None;
        let mut first_restrict = None;
        let mut first_deny = None;
        let mut first_hard_deny = None;
        // Liftable deny rules: what they ask for, and the first asking for MFA / justification.
        let mut lift = Needs::default();
        let mut lift_mfa_rule: Option<usize> = None;
        let mut lift_justification_rule: Option<usize> = None;
        let mut near: Option<(usize, Needs)> = None;
        let mut granted = vec![Visibility::Hidden; fields.len()];
        let mut hidden = vec![false; fields.len()];
        let mut masked = vec![false; fields.len()];
        for (index, rule) in self.rules.iter().enumerate() {
            let named = rule.any_role || rule.roles.iter().any(|x| roles.contains(x));
            let excepted = rule.except.iter().any(|x| roles.contains(x));
            if !named || excepted || !Self::covers(rule, type_name, r.action) {
                continue;
            }
            let when = self.conditions(&rule.when, r);
            // Deny and restrict: `when` holds unless some condition is false; `unless` is met
            // only if all its conditions are true.
            let deny = if when.iter().all(|(t, _)| *t != Truth::False) {
                match &rule.unless {
                    None => Some(None),
                    Some(unless) => {
                        let unless = self.conditions(unless, r);
                        if unless.iter().all(|(t, _)| *t == Truth::True) {
                            None
                        } else {
                            Some(Self::unmet(&unless))
                        }
                    }
                }
            } else {
                None
            };
            match rule.effect {
                Effect::Deny => match deny {
                    None => {}
                    Some(None) => {
                        first_deny.get_or_insert(index);
                        first_hard_deny.get_or_insert(index);
                    }
                    Some(Some(needs)) => {
                        first_deny.get_or_insert(index);
                        lift = lift.and(needs);
                        if needs.mfa.is_some() {
                            lift_mfa_rule.get_or_insert(index);
                        }
                        if needs.justification.is_some() {
                            lift_justification_rule.get_or_insert(index);
                        }
                    }
                },
                Effect::Restrict => {
                    if deny.is_some() {
                        first_restrict.get_or_insert(index);
                        for (i, f) in fields.iter().enumerate() {
                            hidden[i] |= rule.hide.iter().any(|h| *h == "*" || h == f);
                            masked[i] |= rule.mask.iter().any(|m| *m == "*" || m == f);
                        }
                    }
                }
                Effect::Allow => {
                    if !(rule.cross_tenant || same_tenant) {
                        continue;
                    }
                    if when.iter().all(|(t, _)| *t == Truth::True) {
                        first_allow.get_or_insert(index);
                        let default = rule
                            .grants
                            .iter()
                            .find(|(f, _)| *f == "*")
                            .map_or(Visibility::Hidden, |(_, v)| *v);
                        for (i, f) in fields.iter().enumerate() {
                            let v = rule
                                .grants
                                .iter()
                                .find(|(g, _)| g == f)
                                .map_or(default, |(_, v)| *v);
                            granted[i] = granted[i].max(v);
                        }
                    } else if near.is_none()
                        && let Some(needs) = Self::unmet(&when)
                    {
                        near = Some((index, needs));
                    }
                }
            }
        }
        // What the caller must supply, reported as the docs say: step-up first, naming the
        // first rule (in file order) that asks for it.
        let requirement = |near: Option<(usize, Needs)>| {
            let (mut needs, mut mfa_rule, mut justification_rule) =
                (lift, lift_mfa_rule, lift_justification_rule);
            if let Some((rule, more)) = near {
                needs = needs.and(more);
                if more.mfa.is_some() {
                    mfa_rule = Some(mfa_rule.map_or(rule, |r| r.min(rule)));
                }
                if more.justification.is_some() {
                    justification_rule = Some(justification_rule.map_or(rule, |r| r.min(rule)));
                }
            }
            if let Some(window) = needs.mfa {
                format!(
                    "an MFA step-up within {window} s is required (rule `rule{}`)",
                    mfa_rule.unwrap()
                )
            } else {
                let naming = if needs.justification.unwrap() {
                    " naming this resource"
                } else {
                    ""
                };
                format!(
                    "a justification{naming} is required (rule `rule{}`)",
                    justification_rule.unwrap()
                )
            }
        };
        // A deny rule the caller cannot lift: forbidden, by the first such rule.
        if let Some(deny) = first_hard_deny {
            return denied(format!("forbidden by rule `rule{deny}`"), fields);
        }
        // Only liftable deny rules: say what lifts them if an allow rule would then apply.
        if let Some(deny) = first_deny {
            return match (first_allow, near) {
                (None, None) => denied(format!("forbidden by rule `rule{deny}`"), fields),
                (Some(_), _) => denied(requirement(None), fields),
                (None, Some(near)) => denied(requirement(Some(near)), fields),
            };
        }
        if first_allow.is_none()
            && let Some(near) = near
        {
            return denied(requirement(Some(near)), fields);
        }
        let Some(allow) = first_allow else {
            return denied("no rule allowed it".to_owned(), fields);
        };
        let view = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let v = if hidden[i] {
                    Visibility::Hidden
                } else if masked[i] {
                    granted[i].min(Visibility::Masked)
                } else {
                    granted[i]
                };
                (f.to_string(), v)
            })
            .collect();
        Outcome {
            allowed: true,
            reason: format!("allowed by rule `rule{allow}`"),
            fields: view,
            restricted_by: first_restrict.map(|i| format!("rule{i}")),
        }
    }

    fn to_toml(&self) -> String {
        let mut t = String::from("version = 1\n");
        let attributes = if self.typed {
            t.push_str("principal_kinds = [\"user\", \"bot\"]\n");
            "owner = \"ref:user\", agent = \"ref:bot\", amount = \"integer\""
        } else {
            "owner = \"id\", amount = \"integer\""
        };
        for (name, actions, fields) in TYPES {
            let actions: Vec<String> = actions.iter().map(|a| format!("\"{a}\"")).collect();
            let fields: Vec<String> = fields.iter().map(|f| format!("{f} = \"text\"")).collect();
            writeln!(
                t,
                "[resource_types.{name}]\nactions = [{}]\nattributes = {{ {attributes} }}\nfields = {{ {} }}",
                actions.join(", "),
                fields.join(", ")
            )
            .unwrap();
        }
        for (role, parents) in self.inherits.iter().enumerate() {
            let parents: Vec<String> = parents.iter().map(|p| format!("\"role{p}\"")).collect();
            writeln!(t, "[roles.role{role}]\ninherits = [{}]", parents.join(", ")).unwrap();
        }
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        for (index, rule) in self.rules.iter().enumerate() {
            let roles = if rule.any_role {
                vec!["\"*\"".to_owned()]
            } else {
                rule.roles.iter().map(|r| format!("\"role{r}\"")).collect()
            };
            writeln!(t, "[[rules]]\nname = \"rule{index}\"").unwrap();
            let effect = if rule.effect == Effect::Allow {
                "allow"
            } else {
                "deny"
            };
            writeln!(t, "effect = \"{effect}\"\nroles = {}", list(roles)).unwrap();
            let except = rule.except.iter().map(|r| format!("\"role{r}\"")).collect();
            writeln!(t, "except_roles = {}", list(except)).unwrap();
            let permissions = rule
                .permissions
                .iter()
                .map(|p| format!("\"{}\"", PERMISSIONS[*p]))
                .collect();
            writeln!(t, "permissions = {}", list(permissions)).unwrap();
            match rule.effect {
                Effect::Allow => {
                    let grants: Vec<String> = rule
                        .grants
                        .iter()
                        .map(|(f, v)| format!("\"{f}\" = \"{v}\""))
                        .collect();
                    writeln!(t, "fields = {{ {} }}", grants.join(", ")).unwrap();
                    writeln!(t, "cross_tenant = {}", rule.cross_tenant).unwrap();
                }
                Effect::Restrict => {
                    let quoted = |l: &[&str]| l.iter().map(|f| format!("\"{f}\"")).collect();
                    writeln!(t, "hide_fields = {}", list(quoted(&rule.hide))).unwrap();
                    writeln!(t, "mask_fields = {}", list(quoted(&rule.mask))).unwrap();
                }
                Effect::Deny => {}
            }
            write_conditions(&mut t, "when", &rule.when);
            if let Some(unless) = &rule.unless {
                write_conditions(&mut t, "unless", unless);
            }
        }
        t
    }
}

fn write_conditions(t: &mut String, table: &str, c: &Conditions) {
    writeln!(t, "[rules.{table}]").unwrap();
    if let Some(attribute) = c.principal_is {
        writeln!(t, "principal_is = \"{attribute}\"").unwrap();
    }
    if let Some((limit, bound)) = c.limit {
        let key = match limit {
            Limit::Below => "below",
            Limit::AtMost => "at_most",
            Limit::AtLeast => "at_least",
            Limit::Above => "above",
        };
        writeln!(t, "{key} = {{ amount = {bound} }}").unwrap();
    }
    if let Some(window) = c.mfa_within {
        writeln!(t, "mfa_within = {window}").unwrap();
    }
    if let Some(names) = c.justification {
        let value = if names { "names_resource" } else { "any" };
        writeln!(t, "justification = \"{value}\"").unwrap();
    }
    if let Some(from) = c.valid_from {
        writeln!(t, "valid_from = {from}").unwrap();
    }
    if let Some(until) = c.valid_until {
        writeln!(t, "valid_until = {until}").unwrap();
    }
}

fn compiled(policy: &Policy, r: &Request) -> Outcome {
    let d = policy.check(&r.principal, r.action, &r.resource, &r.context);
    let mut fields: Vec<(String, Visibility)> =
        d.view().iter().map(|(f, _, v)| (f.to_owned(), v)).collect();
    // The reference lists fields in declaration order; the loader may order them otherwise.
    let order = |f: &str| {
        TYPES
            .iter()
            .flat_map(|(_, _, fs)| fs.iter())
            .position(|x| *x == f)
    };
    fields.sort_by_key(|(f, _)| order(f));
    let reason = d.reason();
    if let Reason::AllowedBy { .. } = reason {
        assert!(d.is_allowed());
    }
    Outcome {
        allowed: d.is_allowed(),
        reason: reason.to_string(),
        fields,
        restricted_by: d.restricted_by().map(str::to_owned),
    }
}

// ---- generators ------------------------------------------------------------------------------

const ROLES_MAX: usize = 5;

fn role_subset(n: usize, max: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::btree_set(0..n, 0..=max).prop_map(|s| s.into_iter().collect())
}

fn visibility() -> impl Strategy<Value = Visibility> {
    prop_oneof![
        Just(Visibility::Hidden),
        Just(Visibility::Masked),
        Just(Visibility::Full)
    ]
}

fn conditions(typed: bool) -> impl Strategy<Value = Conditions> {
    let limit = prop_oneof![
        Just(Limit::Below),
        Just(Limit::AtMost),
        Just(Limit::AtLeast),
        Just(Limit::Above)
    ];
    let attribute = if typed {
        prop_oneof![Just("owner"), Just("agent")].boxed()
    } else {
        Just("owner").boxed()
    };
    (
        proptest::option::weighted(0.3, attribute),
        proptest::option::weighted(0.3, (limit, -3i64..=3)),
        proptest::option::weighted(0.2, prop_oneof![Just(5u64), Just(50)]),
        proptest::option::weighted(0.2, any::<bool>()),
        proptest::option::weighted(0.15, 0u64..60),
        proptest::option::weighted(0.15, 40u64..100),
    )
        .prop_map(
            |(principal_is, limit, mfa_within, justification, valid_from, mut valid_until)| {
                if let (Some(from), Some(until)) = (valid_from, valid_until)
                    && from >= until
                {
                    valid_until = Some(from + 1);
                }
                Conditions {
                    principal_is,
                    limit,
                    mfa_within,
                    justification,
                    valid_from,
                    valid_until,
                }
            },
        )
}

fn rule(roles: usize, typed: bool) -> impl Strategy<Value = Rule> {
    // Only fields every type declares (`a`, `b`), so any rule may name them.
    let field_name = prop_oneof![Just("a"), Just("b"), Just("*")];
    let who = (
        any::<bool>(),
        role_subset(roles, 2).prop_filter("roles", |r| !r.is_empty()),
        role_subset(roles, 1),
    );
    let what = (
        prop_oneof![3 => Just(Effect::Allow), 2 => Just(Effect::Deny), 1 => Just(Effect::Restrict)],
        proptest::collection::btree_set(0..PERMISSIONS.len(), 1..=2),
        proptest::collection::btree_map(field_name.clone(), visibility(), 0..=3),
        proptest::collection::btree_set(field_name.clone(), 0..=2),
        proptest::collection::btree_set(field_name, 0..=2),
        proptest::bool::weighted(0.2),
    );
    let when = (
        conditions(typed),
        proptest::option::weighted(0.4, conditions(typed)),
    );
    (who, what, when).prop_map(
        |(
            (any_role, roles, except),
            (effect, permissions, grants, hide, mask, cross),
            (when, unless),
        )| {
            let (hide, mask): (Vec<_>, Vec<_>) =
                (hide.into_iter().collect(), mask.into_iter().collect());
            let (hide, mask) = if effect == Effect::Restrict && hide.is_empty() && mask.is_empty() {
                (vec!["a"], mask)
            } else {
                (hide, mask)
            };
            // `unless` only on deny rules and field restrictions, and never empty.
            let unless = unless.filter(|_| effect != Effect::Allow).map(|mut u| {
                if u.is_empty() {
                    u.mfa_within = Some(50);
                }
                u
            });
            Rule {
                effect,
                any_role,
                roles,
                except,
                permissions: permissions.into_iter().collect(),
                grants: grants.into_iter().collect(),
                hide,
                mask,
                cross_tenant: cross,
                when,
                unless,
            }
        },
    )
}

fn model() -> impl Strategy<Value = Model> {
    (1..=ROLES_MAX, any::<bool>()).prop_flat_map(|(n, typed)| {
        let inherits = (0..n)
            .map(|i| {
                role_subset(i.max(1), 2)
                    .prop_map(move |s| s.into_iter().filter(|p| *p < i).collect::<Vec<_>>())
            })
            .collect::<Vec<_>>();
        (inherits, proptest::collection::vec(rule(n, typed), 0..=10)).prop_map(
            move |(inherits, rules)| Model {
                inherits,
                rules,
                typed,
            },
        )
    })
}

/// An entity-naming attribute value: plain ids, typed references of each kind, or a number.
fn entity_value() -> impl Strategy<Value = Option<AttributeValue>> {
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(AttributeValue::Id("u0".to_owned()))),
        1 => Just(Some(AttributeValue::Id("u1".to_owned()))),
        1 => Just(Some(EntityRef::new("user", "u0").into())),
        1 => Just(Some(EntityRef::new("bot", "u0").into())),
        1 => Just(Some(EntityRef::new("employee", "u1").into())),
        1 => Just(Some(EntityRef::new("customer", "u0").into())),
        1 => Just(Some(AttributeValue::Integer(7))),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let principal = (
        prop_oneof![Just("u0"), Just("u1")],
        prop_oneof![4 => Just("s0"), 1 => Just("s1"), 1 => Just("")],
        proptest::collection::vec(0..=ROLES_MAX + 1, 0..=2),
        prop_oneof![3 => Just(None), 1 => Just(Some("employee")), 1 => Just(Some("user")), 1 => Just(Some("bot"))],
    )
        .prop_map(|(id, tenant, roles, kind)| {
            let p = roles.into_iter().fold(Principal::new(id, tenant), |p, r| {
                p.with_role(if r > ROLES_MAX {
                    "ghost".to_owned()
                } else {
                    format!("role{r}")
                })
            });
            match kind {
                Some(kind) => p.with_kind(kind),
                None => p,
            }
        });
    let resource = (
        prop_oneof![4 => Just("doc"), 4 => Just("note"), 1 => Just("page")],
        prop_oneof![Just("r0"), Just("r1")],
        prop_oneof![4 => Just("s0"), 1 => Just("s1"), 1 => Just("")],
        entity_value(),
        entity_value(),
        proptest::option::weighted(0.8, -4i64..=4),
    )
        .prop_map(|(type_name, id, tenant, owner, agent, amount)| {
            let mut r = Resource::new(type_name, id, tenant);
            if let Some(owner) = owner {
                r = r.with("owner", owner);
            }
            if let Some(agent) = agent {
                r = r.with("agent", agent);
            }
            if let Some(amount) = amount {
                r = r.with("amount", amount);
            }
            r
        });
    let context = (
        0u64..110,
        proptest::option::of(0u64..120),
        prop_oneof![
            Just(None),
            Just(Some(Justification::ticket("T-1"))),
            Just(Some(Justification::ticket("T-2").naming("doc", "r0"))),
            Just(Some(Justification::ticket("T-3").naming("note", "r1"))),
        ],
    )
        .prop_map(|(now, mfa, justification)| {
            let mut c = RequestContext::at(now);
            if let Some(at) = mfa {
                c = c.with_mfa_verified_at(at);
            }
            if let Some(j) = justification {
                c = c.with_justification(j);
            }
            c
        });
    let action = prop_oneof![
        Just("read"),
        Just("edit"),
        Just("drop"),
        Just("pin"),
        Just("fly")
    ];
    (principal, action, resource, context).prop_map(|(principal, action, resource, context)| {
        Request {
            principal,
            action,
            resource,
            context,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn compiled_evaluator_agrees_with_the_reference(
        model in model(),
        requests in proptest::collection::vec(request(), 64),
    ) {
        let text = model.to_toml();
        let policy = Policy::from_toml(&text, "model.toml")
            .unwrap_or_else(|e| panic!("generated policy did not load: {e}\n{text}"));
        for r in &requests {
            let expected = model.evaluate(r);
            let actual = compiled(&policy, r);
            prop_assert_eq!(&actual, &expected, "request {:?}\npolicy:\n{}", r, text);
        }
    }

    /// `Policy::step_up_rules` misses no step-up: whenever a request is denied with
    /// `StepUpRequired`, the deciding rule is listed for the principal's roles, the request's
    /// resource type and action, at the request's time.
    #[test]
    fn step_up_rules_list_every_rule_that_asks_for_a_step_up(
        model in model(),
        requests in proptest::collection::vec(request(), 64),
    ) {
        let text = model.to_toml();
        let policy = Policy::from_toml(&text, "model.toml")
            .unwrap_or_else(|e| panic!("generated policy did not load: {e}\n{text}"));
        for r in &requests {
            let decision = policy.check(&r.principal, r.action, &r.resource, &r.context);
            if let Reason::StepUpRequired { rule, .. } = decision.reason() {
                let roles: Vec<&str> = r.principal.roles().iter().map(String::as_str).collect();
                let listed = policy.step_up_rules(&roles, r.context.now());
                prop_assert!(
                    listed.iter().any(|s| s.rule == rule
                        && s.resource_type == r.resource.type_name()
                        && s.action == r.action),
                    "rule `{}` asked for a step-up but is not listed: {:?}\nrequest {:?}\npolicy:\n{}",
                    rule, listed, r, text
                );
            }
        }
    }
}

#[test]
fn reference_agrees_on_a_hand_written_case() {
    // Guards the oracle itself: one known answer computed by hand.
    let model = Model {
        inherits: vec![vec![], vec![0]],
        rules: vec![Rule {
            effect: Effect::Allow,
            any_role: false,
            roles: vec![0],
            except: vec![],
            permissions: vec![0],
            grants: vec![("a", Visibility::Masked)],
            hide: vec![],
            mask: vec![],
            cross_tenant: false,
            when: Conditions {
                principal_is: Some("owner"),
                ..Conditions::default()
            },
            unless: None,
        }],
        typed: false,
    };
    let request = Request {
        principal: Principal::new("u0", "s0").with_role("role1"),
        action: "read",
        resource: Resource::new("doc", "r0", "s0").with("owner", "u0"),
        context: RequestContext::at(0),
    };
    let expected = model.evaluate(&request);
    assert!(expected.allowed);
    assert_eq!(expected.reason, "allowed by rule `rule0`");
    assert_eq!(expected.fields[0], ("a".to_owned(), Visibility::Masked));
    assert_eq!(expected.fields[1], ("b".to_owned(), Visibility::Hidden));
    let policy = Policy::from_toml(&model.to_toml(), "model.toml").unwrap();
    assert_eq!(compiled(&policy, &request), expected);
}

#[test]
fn reference_agrees_on_a_hand_written_deny_unless_case() {
    // Guards the oracle's deny-unless and step-up logic: rule0 allows role0 to read docs;
    // rule1 forbids every read unless MFA is at most 5 s old.
    let allow = Rule {
        effect: Effect::Allow,
        any_role: false,
        roles: vec![0],
        except: vec![],
        permissions: vec![0],
        grants: vec![("*", Visibility::Full)],
        hide: vec![],
        mask: vec![],
        cross_tenant: false,
        when: Conditions::default(),
        unless: None,
    };
    let deny_unless = Rule {
        effect: Effect::Deny,
        any_role: true,
        permissions: vec![6],
        grants: vec![],
        unless: Some(Conditions {
            mfa_within: Some(5),
            ..Conditions::default()
        }),
        ..allow.clone()
    };
    let model = Model {
        inherits: vec![vec![]],
        rules: vec![allow, deny_unless],
        typed: false,
    };
    let reader = Principal::new("u0", "s0").with_role("role0");
    let request = |context: RequestContext, principal: &Principal| Request {
        principal: principal.clone(),
        action: "read",
        resource: Resource::new("doc", "r0", "s0"),
        context,
    };
    let policy = Policy::from_toml(&model.to_toml(), "model.toml").unwrap();
    let fresh = request(RequestContext::at(10).with_mfa_verified_at(6), &reader);
    let stale = request(RequestContext::at(10).with_mfa_verified_at(4), &reader);
    let stranger = request(RequestContext::at(10), &Principal::new("u1", "s0"));
    for (r, allowed, reason) in [
        (&fresh, true, "allowed by rule `rule0`"),
        (
            &stale,
            false,
            "an MFA step-up within 5 s is required (rule `rule1`)",
        ),
        (&stranger, false, "forbidden by rule `rule1`"),
    ] {
        let expected = model.evaluate(r);
        assert_eq!(expected.allowed, allowed);
        assert_eq!(expected.reason, reason);
        assert_eq!(compiled(&policy, r), expected);
    }
}

#[test]
fn reference_agrees_on_typed_references() {
    // `owner = "ref:user"`: a bot, or a reference to a bot, with the same id is not the owner.
    let model = Model {
        inherits: vec![vec![]],
        rules: vec![Rule {
            effect: Effect::Allow,
            any_role: false,
            roles: vec![0],
            except: vec![],
            permissions: vec![0],
            grants: vec![],
            hide: vec![],
            mask: vec![],
            cross_tenant: false,
            when: Conditions {
                principal_is: Some("owner"),
                ..Conditions::default()
            },
            unless: None,
        }],
        typed: true,
    };
    let policy = Policy::from_toml(&model.to_toml(), "model.toml").unwrap();
    let doc = |owner: AttributeValue| Resource::new("doc", "r0", "s0").with("owner", owner);
    let user = Principal::new("u0", "s0")
        .with_role("role0")
        .with_kind("user");
    let bot = Principal::new("u0", "s0")
        .with_role("role0")
        .with_kind("bot");
    let kindless = Principal::new("u0", "s0").with_role("role0");
    for (principal, owner, allowed) in [
        (&user, EntityRef::new("user", "u0").into(), true),
        (&user, AttributeValue::Id("u0".to_owned()), true),
        (&user, EntityRef::new("bot", "u0").into(), false),
        (&bot, EntityRef::new("user", "u0").into(), false),
        (&bot, AttributeValue::Id("u0".to_owned()), false),
        // Two principal kinds: a principal without one cannot be the owner.
        (&kindless, EntityRef::new("user", "u0").into(), false),
    ] {
        let r = Request {
            principal: principal.clone(),
            action: "read",
            resource: doc(owner),
            context: RequestContext::at(0),
        };
        let expected = model.evaluate(&r);
        assert_eq!(expected.allowed, allowed, "{r:?}");
        assert_eq!(compiled(&policy, &r), expected);
    }
}

#[test]
fn generators_reach_every_kind_of_answer() {
    // The property test is only as good as its inputs: check (deterministically) that random
    // policies and requests produce each kind of reason, typed and untyped schemas alike.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..300 {
        let model = model().new_tree(&mut runner).unwrap().current();
        for _ in 0..32 {
            let r = request().new_tree(&mut runner).unwrap().current();
            let outcome = model.evaluate(&r);
            let kind = outcome
                .reason
                .split(' ')
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            seen.insert((model.typed, kind));
        }
    }
    for typed in [false, true] {
        for kind in [
            "allowed by",
            "forbidden by",
            "no rule",
            "an MFA",
            "a justification",
        ] {
            assert!(
                seen.contains(&(typed, kind.to_owned())),
                "never saw `{kind}` (typed: {typed}); saw {seen:?}"
            );
        }
    }
}
