//! Load-time warnings: names that look alike, and allow rules that a deny-unless rule blocks
//! for good. A policy with warnings still loads; see [`PolicyWarningKind`].

use std::collections::{BTreeSet, HashMap};

use super::condition::{Comparison, Condition};
use super::fold::fold;
use super::model::PolicyFile;
use super::validate::{DocPath, RoleDef, RuleDef, RuleKind, TypeDef};
use super::warning::PolicyWarningKind;

type Warnings = Vec<(DocPath, PolicyWarningKind)>;

/// Names of one kind that collide after normalization and case folding, each pair reported
/// once, at the name read second (TOML tables are read in key order, lists in document order).
pub(crate) fn lookalike_names(
    file: &PolicyFile,
    principal_kinds: &[String],
    root: &DocPath,
) -> Warnings {
    let mut warnings = Vec::new();
    let mut report = |what: &'static str, names: Vec<(&str, DocPath)>| {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for (name, path) in names {
            match seen.get(&fold(name)) {
                Some(other) if *other != name => warnings.push((
                    path,
                    PolicyWarningKind::LookalikeNames {
                        what,
                        name: name.to_owned(),
                        other: (*other).to_owned(),
                    },
                )),
                Some(_) => {}
                None => {
                    seen.insert(fold(name), name);
                }
            }
        }
    };
    let kinds_path = root.key("principal_kinds");
    report(
        "principal kind",
        principal_kinds
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), kinds_path.index(i)))
            .collect(),
    );
    let types_path = root.key("resource_types");
    report(
        "resource type",
        file.resource_types
            .0
            .iter()
            .map(|(name, _)| (name.as_str(), types_path.key_name(name)))
            .collect(),
    );
    for (type_name, decl) in &file.resource_types.0 {
        let actions_path = types_path.key(type_name).key("actions");
        report(
            "action",
            decl.actions
                .iter()
                .enumerate()
                .map(|(i, a)| (a.as_str(), actions_path.index(i)))
                .collect(),
        );
    }
    let roles_path = root.key("roles");
    report(
        "role",
        file.roles
            .0
            .iter()
            .map(|(name, _)| (name.as_str(), roles_path.key_name(name)))
            .collect(),
    );
    let rules_path = root.key("rules");
    report(
        "rule",
        file.rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), rules_path.index(i).key("name")))
            .collect(),
    );
    warnings
}

/// Allow rules that can never allow a permission: a deny rule with `unless` (and no `when`)
/// covers that permission for every principal the allow rule names, none of them is exempt
/// from it by a role they all hold, and one of its `unless` conditions contradicts one of the
/// allow rule's conditions. (A principal who also holds another role that the deny rule
/// excepts is exempt; that depends on the request, so it is not held against the rule.)
pub(crate) fn never_allowing_rules(
    rules: &[RuleDef],
    roles: &[RoleDef],
    types: &[TypeDef],
    role_order: &[usize],
    root: &DocPath,
) -> Warnings {
    // Deny rules with `unless` and no `when` are few; listing them first keeps this linear in
    // the number of allow rules for large policies.
    let deny_unless: Vec<&RuleDef> = rules
        .iter()
        .filter(|d| d.kind == RuleKind::Deny && !d.unless.is_empty() && d.conditions.is_empty())
        .collect();
    if deny_unless.is_empty() {
        return Vec::new();
    }
    let closures = closures(roles, role_order);
    let mut warnings = Vec::new();
    for (index, allow) in rules.iter().enumerate() {
        if allow.kind != RuleKind::Allow {
            continue;
        }
        for deny in &deny_unless {
            if !binds_every_holder(deny, allow, &closures) {
                continue;
            }
            let Some(permission) = first_shared_permission(allow, deny, types) else {
                continue;
            };
            let contradiction = deny
                .unless
                .iter()
                .find_map(|u| ruled_out(&allow.conditions, u).map(|a| (u, a)));
            if let Some((unless, allow_condition)) = contradiction {
                warnings.push((
                    root.key("rules").index(index).key("name"),
                    PolicyWarningKind::AllowNeverApplies {
                        rule: allow.name.clone(),
                        permission,
                        deny_rule: deny.name.clone(),
                        unless: unless.describe(),
                        allow_condition,
                    },
                ));
            }
        }
    }
    warnings
}

/// For each role, itself and every role it inherits from.
fn closures(roles: &[RoleDef], role_order: &[usize]) -> Vec<BTreeSet<usize>> {
    let mut closures: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); roles.len()];
    for &role in role_order {
        let mut closure = BTreeSet::from([role]);
        for parent in roles.get(role).map(|r| r.parents.as_slice()).unwrap_or(&[]) {
            closure.extend(closures.get(*parent).into_iter().flatten().copied());
        }
        if let Some(slot) = closures.get_mut(role) {
            *slot = closure;
        }
    }
    closures
}

/// Whether `deny` applies to every holder of every role `allow` names, with no exemption that
/// those roles bring with them.
fn binds_every_holder(deny: &RuleDef, allow: &RuleDef, closures: &[BTreeSet<usize>]) -> bool {
    let Some(allow_roles) = &allow.roles else {
        // `roles = ["*"]` reaches principals without roles: only a "*" deny rule binds them all.
        return deny.roles.is_none() && deny.except.is_empty();
    };
    allow_roles.iter().all(|role| {
        let Some(closure) = closures.get(*role) else {
            return false;
        };
        let named = deny
            .roles
            .as_ref()
            .is_none_or(|denied| denied.iter().any(|d| closure.contains(d)));
        let exempt = deny.except.iter().any(|e| closure.contains(e));
        named && !exempt
    })
}

/// The first (type, action) both rules cover, as `type:action`.
fn first_shared_permission(allow: &RuleDef, deny: &RuleDef, types: &[TypeDef]) -> Option<String> {
    allow.targets.iter().find_map(|a| {
        deny.targets
            .iter()
            .any(|d| d.type_index == a.type_index && d.action_index == a.action_index)
            .then(|| {
                let t = types.get(a.type_index)?;
                Some(format!("{}:{}", t.name, t.actions.get(a.action_index)?))
            })
            .flatten()
    })
}

/// If `allow`'s conditions, all true, make `unless` false, the allow conditions that do.
fn ruled_out(allow: &[Condition], unless: &Condition) -> Option<String> {
    match unless {
        Condition::Limit { attribute, .. } => {
            let limits: Vec<&Condition> = allow
                .iter()
                .filter(|c| matches!(c, Condition::Limit { attribute: a, .. } if a == attribute))
                .collect();
            let (low, high) = limits
                .iter()
                .filter_map(|c| interval(c))
                .fold((i128::MIN, i128::MAX), |(lo, hi), (l, h)| {
                    (lo.max(l), hi.min(h))
                });
            let (unless_low, unless_high) = interval(unless)?;
            (!limits.is_empty() && (high < unless_low || low > unless_high)).then(|| {
                limits
                    .iter()
                    .map(|c| c.describe())
                    .collect::<Vec<_>>()
                    .join(" and ")
            })
        }
        Condition::ValidUntil { until } => allow.iter().find_map(|c| match c {
            Condition::ValidFrom { from } if from >= until => Some(c.describe()),
            _ => None,
        }),
        Condition::ValidFrom { from } => allow.iter().find_map(|c| match c {
            Condition::ValidUntil { until } if until <= from => Some(c.describe()),
            _ => None,
        }),
        // Nothing an allow rule can require rules out a step-up, a justification or the
        // principal being named.
        Condition::MfaWithin { .. }
        | Condition::AnyJustification
        | Condition::JustificationNamesResource
        | Condition::PrincipalIs { .. } => None,
    }
}

/// The values a limit accepts, as an inclusive range.
fn interval(condition: &Condition) -> Option<(i128, i128)> {
    let Condition::Limit {
        comparison, bound, ..
    } = condition
    else {
        return None;
    };
    let bound = i128::from(*bound);
    Some(match comparison {
        Comparison::Below => (i128::MIN, bound - 1),
        Comparison::AtMost => (i128::MIN, bound),
        Comparison::AtLeast => (bound, i128::MAX),
        Comparison::Above => (bound + 1, i128::MAX),
    })
}
