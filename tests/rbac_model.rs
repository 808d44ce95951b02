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
    Justification, Policy, Principal, Reason, RequestContext, Resource, Visibility,
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
    owner: bool,
    limit: Option<(Limit, i64)>,
    mfa_within: Option<u64>,
    justification: Option<bool>, // Some(false) = any, Some(true) = names_resource
    valid_from: Option<u64>,
    valid_until: Option<u64>,
}

#[derive(Debug, Clone)]
struct Model {
    /// For each role, the roles it inherits from (all lower-numbered, so no cycles).
    inherits: Vec<Vec<usize>>,
    rules: Vec<Rule>,
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

    fn conditions(&self, rule: &Rule, r: &Request) -> Vec<Truth> {
        let mut out = Vec::new();
        if rule.owner {
            out.push(match r.resource.attribute("owner") {
                Some(custodian::rbac::AttributeValue::Id(id)) => truth(id == r.principal.id()),
                _ => Truth::Unknown,
            });
        }
        if let Some((limit, bound)) = rule.limit {
            out.push(match r.resource.attribute("amount") {
                Some(custodian::rbac::AttributeValue::Integer(v)) => truth(match limit {
                    Limit::Below => *v < bound,
                    Limit::AtMost => *v <= bound,
                    Limit::AtLeast => *v >= bound,
                    Limit::Above => *v > bound,
                }),
                _ => Truth::Unknown,
            });
        }
        let now = r.context.now();
        if let Some(window) = rule.mfa_within {
            out.push(match r.context.mfa_verified_at() {
                Some(at) if at <= now => truth(now - at <= window),
                _ => Truth::Unknown,
            });
        }
        if let Some(names_resource) = rule.justification {
            out.push(match r.context.justification() {
                None => Truth::Unknown,
                Some(_) if !names_resource => Truth::True,
                Some(j) => truth(j.names(&r.resource)),
            });
        }
        if let Some(from) = rule.valid_from {
            out.push(truth(now >= from));
        }
        if let Some(until) = rule.valid_until {
            out.push(truth(now < until));
        }
        out
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
        let mut granted = vec![Visibility::Hidden; fields.len()];
        let mut hidden = vec![false; fields.len()];
        let mut masked = vec![false; fields.len()];
        for (index, rule) in self.rules.iter().enumerate() {
            let named = rule.any_role || rule.roles.iter().any(|x| roles.contains(x));
            let excepted = rule.except.iter().any(|x| roles.contains(x));
            if !named || excepted || !Self::covers(rule, type_name, r.action) {
                continue;
            }
            let conditions = self.conditions(rule, r);
            match rule.effect {
                Effect::Deny => {
                    if conditions.iter().all(|t| *t != Truth::False) {
                        return denied(format!("forbidden by rule `rule{index}`"), fields);
                    }
                }
                Effect::Restrict => {
                    if conditions.iter().all(|t| *t != Truth::False) {
                        first_restrict.get_or_insert(index);
                        for (i, f) in fields.iter().enumerate() {
                            hidden[i] |= rule.hide.iter().any(|h| *h == "*" || h == f);
                            masked[i] |= rule.mask.iter().any(|m| *m == "*" || m == f);
                        }
                    }
                }
                Effect::Allow => {
                    if (rule.cross_tenant || same_tenant)
                        && conditions.iter().all(|t| *t == Truth::True)
                    {
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
                    }
                }
            }
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
        for (name, actions, fields) in TYPES {
            let actions: Vec<String> = actions.iter().map(|a| format!("\"{a}\"")).collect();
            let fields: Vec<String> = fields.iter().map(|f| format!("{f} = \"text\"")).collect();
            writeln!(
                t,
                "[resource_types.{name}]\nactions = [{}]\nattributes = {{ owner = \"id\", amount = \"integer\" }}\nfields = {{ {} }}",
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
            writeln!(t, "[rules.when]").unwrap();
            if rule.owner {
                writeln!(t, "principal_is = \"owner\"").unwrap();
            }
            if let Some((limit, bound)) = rule.limit {
                let key = match limit {
                    Limit::Below => "below",
                    Limit::AtMost => "at_most",
                    Limit::AtLeast => "at_least",
                    Limit::Above => "above",
                };
                writeln!(t, "{key} = {{ amount = {bound} }}").unwrap();
            }
            if let Some(window) = rule.mfa_within {
                writeln!(t, "mfa_within = {window}").unwrap();
            }
            if let Some(names) = rule.justification {
                let value = if names { "names_resource" } else { "any" };
                writeln!(t, "justification = \"{value}\"").unwrap();
            }
            if let Some(from) = rule.valid_from {
                writeln!(t, "valid_from = {from}").unwrap();
            }
            if let Some(until) = rule.valid_until {
                writeln!(t, "valid_until = {until}").unwrap();
            }
        }
        t
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

fn rule(roles: usize) -> impl Strategy<Value = Rule> {
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
    let limit = prop_oneof![
        Just(Limit::Below),
        Just(Limit::AtMost),
        Just(Limit::AtLeast),
        Just(Limit::Above)
    ];
    let when = (
        proptest::bool::weighted(0.3),
        proptest::option::weighted(0.3, (limit, -3i64..=3)),
        proptest::option::weighted(0.2, prop_oneof![Just(5u64), Just(50)]),
        proptest::option::weighted(0.2, any::<bool>()),
        proptest::option::weighted(0.15, 0u64..60),
        proptest::option::weighted(0.15, 40u64..100),
    );
    (who, what, when).prop_map(
        |((any_role, roles, except), (effect, permissions, grants, hide, mask, cross), when)| {
            let (owner, limit, mfa_within, justification, valid_from, mut valid_until) = when;
            if let (Some(from), Some(until)) = (valid_from, valid_until)
                && from >= until
            {
                valid_until = Some(from + 1);
            }
            let (hide, mask): (Vec<_>, Vec<_>) =
                (hide.into_iter().collect(), mask.into_iter().collect());
            let (hide, mask) = if effect == Effect::Restrict && hide.is_empty() && mask.is_empty() {
                (vec!["a"], mask)
            } else {
                (hide, mask)
            };
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
                owner,
                limit,
                mfa_within,
                justification,
                valid_from,
                valid_until,
            }
        },
    )
}

fn model() -> impl Strategy<Value = Model> {
    (1..=ROLES_MAX).prop_flat_map(|n| {
        let inherits = (0..n)
            .map(|i| {
                role_subset(i.max(1), 2)
                    .prop_map(move |s| s.into_iter().filter(|p| *p < i).collect::<Vec<_>>())
            })
            .collect::<Vec<_>>();
        (inherits, proptest::collection::vec(rule(n), 0..=10))
            .prop_map(|(inherits, rules)| Model { inherits, rules })
    })
}

fn request() -> impl Strategy<Value = Request> {
    let principal = (
        prop_oneof![Just("u0"), Just("u1")],
        prop_oneof![4 => Just("s0"), 1 => Just("s1"), 1 => Just("")],
        proptest::collection::vec(0..=ROLES_MAX + 1, 0..=2),
    )
        .prop_map(|(id, tenant, roles)| {
            roles.into_iter().fold(Principal::new(id, tenant), |p, r| {
                p.with_role(if r > ROLES_MAX {
                    "ghost".to_owned()
                } else {
                    format!("role{r}")
                })
            })
        });
    let resource = (
        prop_oneof![4 => Just("doc"), 4 => Just("note"), 1 => Just("page")],
        prop_oneof![Just("r0"), Just("r1")],
        prop_oneof![4 => Just("s0"), 1 => Just("s1"), 1 => Just("")],
        prop_oneof![2 => Just(None), 2 => Just(Some("u0")), 2 => Just(Some("u1")), 1 => Just(Some("7"))],
        proptest::option::weighted(0.8, -4i64..=4),
        any::<bool>(),
    )
        .prop_map(|(type_name, id, tenant, owner, amount, int_owner)| {
            let mut r = Resource::new(type_name, id, tenant);
            if let Some(owner) = owner {
                r = if owner == "7" && int_owner { r.with("owner", 7) } else { r.with("owner", owner) };
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
            owner: true,
            limit: None,
            mfa_within: None,
            justification: None,
            valid_from: None,
            valid_until: None,
        }],
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
