//! The compiled policy: names interned to numbers, role inheritance flattened, and rules indexed
//! by (role, resource type, action), so that a check touches only the rules that can apply to it.

use std::sync::Arc;

use super::condition::Condition;
use super::hash::FxMap;
use super::validate::{Resolved, RuleKind};
use super::view::FieldDef;
use super::warning::PolicyWarning;

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
    pub(crate) role_ids: FxMap<Box<str>, RoleEntry>,
    /// For each role, the sorted roles whose rules apply to it: itself and every role it
    /// inherits from, directly or not.
    pub(crate) closures: Box<[Box<[usize]>]>,
    pub(crate) rules: Box<[CompiledRule]>,
    /// The index: for each role, the slots some rule covers for it (inherited rules included),
    /// grouped by role and sorted by slot; a role's entries are `RoleEntry::slots`.
    pub(crate) slot_keys: Box<[usize]>,
    /// Parallel to `slot_keys`: the range of `candidates` filed under that (role, slot).
    pub(crate) slot_ranges: Box<[(usize, usize)]>,
    /// Candidates of every (role, slot), each group sorted by rule position.
    pub(crate) candidates: Box<[Candidate]>,
    /// Rules for `roles = ["*"]`, indexed by slot.
    pub(crate) any_role: Box<[Box<[Candidate]>]>,
    /// The field list of a resource type the policy does not declare: empty.
    pub(crate) no_fields: Arc<[FieldDef]>,
    pub(crate) warnings: Box<[PolicyWarning]>,
    pub(crate) principal_kinds: Box<[Box<str>]>,
}

/// A declared role: its number, and where its part of the index is. Looking a role up by
/// name yields both at once, so that a check's first access to the index lands on the role's
/// own few slots rather than on a table keyed by every (role, slot) pair; that keeps the check
/// time nearly flat as the number of roles grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoleEntry {
    pub id: usize,
    pub slots_start: usize,
    pub slots_end: usize,
}

/// A resource type: its actions (each mapped to a global permission slot) and fields.
#[derive(Debug)]
pub(crate) struct CompiledType {
    pub name: Box<str>,
    pub actions: FxMap<Box<str>, usize>,
    /// Shared with owned field views, which keep it alive without copying it.
    pub fields: Arc<[FieldDef]>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub name: Box<str>,
    pub except: Box<[usize]>,
    pub conditions: Box<[Condition]>,
    /// A deny rule's `unless` conditions; empty if it has none.
    pub unless: Box<[Condition]>,
}

/// A rule that may apply to a request, with its field masks for the request's resource type.
///
/// The rule's kind and tenant scope are copied here, and `plain` says it has no conditions (of
/// either sort) and no excepted roles: such a rule is decided without reading the rule itself, which saves a
/// cache miss per candidate on large policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub rule: usize,
    pub first_mask: u64,
    pub second_mask: u64,
    pub kind: RuleKind,
    pub cross_tenant: bool,
    pub plain: bool,
}

impl Policy {
    pub(crate) fn compile(
        resolved: Resolved,
        source: &str,
        digest: String,
        warnings: Vec<PolicyWarning>,
    ) -> Self {
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
                fields: t.fields.clone().into(),
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
                    kind: rule.kind,
                    cross_tenant: rule.cross_tenant,
                    plain: rule.conditions.is_empty()
                        && rule.unless.is_empty()
                        && rule.except.is_empty(),
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
        let mut slot_keys = Vec::new();
        let mut slot_ranges = Vec::new();
        let mut candidates = Vec::new();
        let mut role_slots = Vec::with_capacity(closures.len());
        for closure in &closures {
            let mut by_slot: std::collections::BTreeMap<usize, Vec<Candidate>> =
                std::collections::BTreeMap::new();
            for ancestor in closure {
                for (slot, candidate) in named.get(*ancestor).into_iter().flatten() {
                    by_slot.entry(*slot).or_default().push(*candidate);
                }
            }
            let start = slot_keys.len();
            for (slot, mut group) in by_slot {
                group.sort_unstable_by_key(|c| c.rule);
                group.dedup_by_key(|c| c.rule);
                slot_keys.push(slot);
                slot_ranges.push((
                    candidates.len(),
                    candidates.len().saturating_add(group.len()),
                ));
                candidates.extend(group);
            }
            role_slots.push((start, slot_keys.len()));
        }

        let role_names: Box<[Box<str>]> = resolved
            .roles
            .iter()
            .map(|r| r.name.as_str().into())
            .collect();
        let role_ids = role_names
            .iter()
            .zip(&role_slots)
            .enumerate()
            .map(|(id, (name, &(slots_start, slots_end)))| {
                let entry = RoleEntry {
                    id,
                    slots_start,
                    slots_end,
                };
                (name.clone(), entry)
            })
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
                    except: r.except.into_boxed_slice(),
                    conditions: r.conditions.into_boxed_slice(),
                    unless: r.unless.into_boxed_slice(),
                })
                .collect(),
            slot_keys: slot_keys.into_boxed_slice(),
            slot_ranges: slot_ranges.into_boxed_slice(),
            candidates: candidates.into_boxed_slice(),
            any_role: any_role.into_iter().map(Vec::into_boxed_slice).collect(),
            no_fields: Arc::from(Vec::new()),
            principal_kinds: resolved
                .principal_kinds
                .iter()
                .map(|k| k.as_str().into())
                .collect(),
            warnings: warnings.into_boxed_slice(),
        }
    }

    /// What the loader found questionable but loaded anyway: names that look alike, allow
    /// rules that a deny-unless rule blocks for good. Empty for a clean policy.
    ///
    /// ```
    /// # use custodian::rbac::{Policy, PolicyWarningKind};
    /// let policy = Policy::from_toml(r#"
    ///     version = 1
    ///     [resource_types.order]
    ///     actions = ["view"]
    ///     [roles.support]
    ///     [roles.Support]
    /// "#, "inline.toml")?;
    /// assert!(matches!(
    ///     policy.warnings()[0].kind(),
    ///     PolicyWarningKind::LookalikeNames { what: "role", .. }
    /// ));
    /// # Ok::<(), custodian::rbac::PolicyError>(())
    /// ```
    pub fn warnings(&self) -> &[PolicyWarning] {
        &self.warnings
    }

    /// The name the policy was loaded under (usually its file path).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The SHA-256 of the policy text, in hex: audit records name the exact policy that decided.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The kinds of principal the policy knows (`principal_kinds`, or `employee`).
    pub fn principal_kinds(&self) -> impl Iterator<Item = &str> {
        self.principal_kinds.iter().map(|k| &**k)
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
            .and_then(|role| self.closures.get(role.id))
            .into_iter()
            .flatten()
            .filter_map(|id| self.role_names.get(*id).map(|n| &**n))
            .collect()
    }

    /// The candidates filed under `role` for `slot`: one binary search in the role's slots.
    pub(crate) fn candidates_for(&self, role: &RoleEntry, slot: usize) -> Option<&[Candidate]> {
        let keys = self.slot_keys.get(role.slots_start..role.slots_end)?;
        let index = keys.binary_search(&slot).ok()?;
        let (start, end) = *self.slot_ranges.get(role.slots_start.checked_add(index)?)?;
        self.candidates.get(start..end)
    }

    /// The rule names, in file order.
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }
}
