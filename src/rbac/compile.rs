//! The compiled policy: names interned to numbers, role inheritance flattened, and rules indexed
//! by (role, resource type, action), so that a check touches only the rules that can apply to it.

use super::condition::Condition;
use super::hash::FxMap;
use super::validate::{Resolved, RuleKind};
use super::view::FieldDef;

/// A loaded, validated and compiled policy. Immutable, so it can be shared between threads
/// freely (`Send + Sync`); see [`PolicyHandle`](super::PolicyHandle) to replace it at run time.
///
/// Load one with [`Policy::from_toml`], [`Policy::from_json`] or [`Policy::from_path`], then ask
/// it with [`Policy::check`].
#[derive(Debug)]
pub struct Policy {
    pub(crate) source: Box<str>,
    pub(crate) digest: Box<str>,
    pub(crate) types: Box<[CompiledType]>,
    pub(crate) type_ids: FxMap<Box<str>, usize>,
    pub(crate) role_names: Box<[Box<str>]>,
    pub(crate) role_ids: FxMap<Box<str>, usize>,
    /// For each role, the sorted roles whose rules apply to it: itself and every role it
    /// inherits from, directly or not.
    pub(crate) closures: Box<[Box<[usize]>]>,
    pub(crate) rules: Box<[CompiledRule]>,
    /// Rules that apply to holders of a role for a permission slot, inherited ones included,
    /// sorted by rule position. Keyed by (role, slot).
    pub(crate) by_role: FxMap<(usize, usize), Box<[Candidate]>>,
    /// Rules for `roles = ["*"]`, indexed by slot.
    pub(crate) any_role: Box<[Box<[Candidate]>]>,
}

/// A resource type: its actions (each mapped to a global permission slot) and fields.
#[derive(Debug)]
pub(crate) struct CompiledType {
    pub name: Box<str>,
    pub actions: FxMap<Box<str>, usize>,
    pub fields: Box<[FieldDef]>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: Box<str>,
    pub kind: RuleKind,
    pub except: Box<[usize]>,
    pub cross_tenant: bool,
    pub conditions: Box<[Condition]>,
}

/// A rule that may apply to a request, with its field masks for the request's resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub rule: usize,
    pub first_mask: u64,
    pub second_mask: u64,
}

impl Policy {
    pub(crate) fn compile(resolved: Resolved, source: &str, digest: String) -> Self {
        // Permission slots: one per (type, action), numbered densely.
        let mut slots: Vec<Vec<usize>> = Vec::with_capacity(resolved.types.len());
        let mut slot_count = 0usize;
        for t in &resolved.types {
            slots.push((slot_count..slot_count.saturating_add(t.actions.len())).collect());
            slot_count = slot_count.saturating_add(t.actions.len());
        }
        let slot_of = |type_index: usize, action_index: usize| {
            slots
                .get(type_index)
                .and_then(|s| s.get(action_index))
                .copied()
        };

        let types: Box<[CompiledType]> = resolved
            .types
            .iter()
            .enumerate()
            .map(|(type_index, t)| CompiledType {
                name: t.name.as_str().into(),
                actions: t
                    .actions
                    .iter()
                    .enumerate()
                    .filter_map(|(a, name)| Some((name.as_str().into(), slot_of(type_index, a)?)))
                    .collect(),
                fields: t.fields.clone().into_boxed_slice(),
            })
            .collect();
        let type_ids = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();

        // Role closures, computed parents first (`role_order`), so each is a union of ready sets.
        let mut closures: Vec<Vec<usize>> = vec![Vec::new(); resolved.roles.len()];
        for &role in &resolved.role_order {
            let mut closure = vec![role];
            if let Some(def) = resolved.roles.get(role) {
                for parent in &def.parents {
                    closure.extend(closures.get(*parent).into_iter().flatten().copied());
                }
            }
            closure.sort_unstable();
            closure.dedup();
            if let Some(slot) = closures.get_mut(role) {
                *slot = closure;
            }
        }

        // Each rule's candidates per slot, filed under the roles it names (or under "any").
        let mut named: Vec<Vec<(usize, Candidate)>> = vec![Vec::new(); resolved.roles.len()];
        let mut any_role: Vec<Vec<Candidate>> = vec![Vec::new(); slot_count];
        for (rule_index, rule) in resolved.rules.iter().enumerate() {
            for target in &rule.targets {
                let Some(slot) = slot_of(target.type_index, target.action_index) else {
                    continue;
                };
                let candidate = Candidate {
                    rule: rule_index,
                    first_mask: target.first_mask,
                    second_mask: target.second_mask,
                };
                match &rule.roles {
                    None => {
                        if let Some(list) = any_role.get_mut(slot) {
                            list.push(candidate);
                        }
                    }
                    Some(roles) => {
                        for role in roles {
                            if let Some(list) = named.get_mut(*role) {
                                list.push((slot, candidate));
                            }
                        }
                    }
                }
            }
        }

        // Flatten inheritance: a role's entry for a slot holds its own rules and its ancestors'.
        let mut by_role: FxMap<(usize, usize), Vec<Candidate>> = FxMap::default();
        for (role, closure) in closures.iter().enumerate() {
            for ancestor in closure {
                for (slot, candidate) in named.get(*ancestor).into_iter().flatten() {
                    by_role.entry((role, *slot)).or_default().push(*candidate);
                }
            }
        }
        let by_role = by_role
            .into_iter()
            .map(|(key, mut candidates)| {
                candidates.sort_unstable_by_key(|c| c.rule);
                candidates.dedup_by_key(|c| c.rule);
                (key, candidates.into_boxed_slice())
            })
            .collect();

        let role_names: Box<[Box<str>]> = resolved
            .roles
            .iter()
            .map(|r| r.name.as_str().into())
            .collect();
        let role_ids = role_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();

        Policy {
            source: source.into(),
            digest: digest.into(),
            types,
            type_ids,
            role_names,
            role_ids,
            closures: closures.into_iter().map(Vec::into_boxed_slice).collect(),
            rules: resolved
                .rules
                .into_iter()
                .map(|r| CompiledRule {
                    name: r.name.into(),
                    kind: r.kind,
                    except: r.except.into_boxed_slice(),
                    cross_tenant: r.cross_tenant,
                    conditions: r.conditions.into_boxed_slice(),
                })
                .collect(),
            by_role,
            any_role: any_role.into_iter().map(Vec::into_boxed_slice).collect(),
        }
    }

    /// The name the policy was loaded under (usually its file path).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SHA-256 of the policy text, in hex: audit records name the exact policy that decided.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The declared roles.
    pub fn roles(&self) -> impl Iterator<Item = &str> {
        self.role_names.iter().map(|r| &**r)
    }

    /// The roles whose rules apply to holders of `role`: itself and all it inherits from.
    /// Empty for an undeclared role.
    pub fn effective_roles(&self, role: &str) -> Vec<&str> {
        self.role_ids
            .get(role)
            .and_then(|id| self.closures.get(*id))
            .into_iter()
            .flatten()
            .filter_map(|id| self.role_names.get(*id).map(|n| &**n))
            .collect()
    }

    /// The rule names, in file order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }
}
