//! Checks a policy document's meaning and resolves its names to numbers.
//!
//! Every name must be declared, every condition must fit the attributes of every resource type
//! its rule covers, roles must not inherit in a cycle. A problem is reported with the path of
//! the entry (`rules[2].roles[0]`), which `load.rs` turns into a line and column.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::condition::{Comparison, Condition};
use super::error::PolicyErrorKind;
use super::lint::{lookalike_names, never_allowing_rules};
use super::model::{
    AttributeType, ConditionsDecl, EffectDecl, Entries, JustificationDecl, PolicyFile, RuleDecl,
};
use super::suggest::closest;
use super::view::{FieldDef, MAX_FIELDS, Visibility, field_bit};
use super::warning::PolicyWarningKind;

/// The only policy format version so far.
const VERSION: u32 = 1;

/// Longest name accepted, to keep error messages and audit records readable.
const MAX_NAME_CHARS: usize = 128;

/// The principal kinds of a policy that does not declare `principal_kinds`.
const DEFAULT_PRINCIPAL_KIND: &str = "employee";

/// One step into a policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// The value under a table key.
    Key(String),
    /// An array element.
    Index(usize),
    /// A table key itself (to point at a misspelt key rather than its value).
    KeyName(String),
}

/// Where an entry is in a policy document, like `rules[2].roles[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DocPath(pub Vec<Segment>);

impl DocPath {
    pub(crate) fn key(&self, key: &str) -> Self {
        self.with(Segment::Key(key.to_owned()))
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        self.with(Segment::Index(index))
    }

    pub(crate) fn key_name(&self, key: &str) -> Self {
        self.with(Segment::KeyName(key.to_owned()))
    }

    fn with(&self, segment: Segment) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment);
        Self(segments)
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) | Segment::KeyName(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A problem found by validation, before it is given a line and column.
#[derive(Debug)]
pub(crate) struct Issue {
    pub path: DocPath,
    /// Boxed: the error kinds are large, and results carrying them are passed up a deep call chain.
    pub kind: Box<PolicyErrorKind>,
}

fn issue(path: DocPath, kind: PolicyErrorKind) -> Issue {
    Issue {
        path,
        kind: Box::new(kind),
    }
}

/// A validated policy with names resolved to indices, ready to compile.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub types: Vec<TypeDef>,
    pub roles: Vec<RoleDef>,
    /// Role indices with every role after the roles it inherits from.
    pub role_order: Vec<usize>,
    pub rules: Vec<RuleDef>,
    pub principal_kinds: Vec<String>,
    /// Things that load but are probably mistakes, in document order.
    pub warnings: Vec<(DocPath, PolicyWarningKind)>,
}

#[derive(Debug)]
pub(crate) struct TypeDef {
    pub name: String,
    pub actions: Vec<String>,
    pub attributes: Vec<(String, AttributeType)>,
    pub fields: Vec<FieldDef>,
}

#[derive(Debug)]
pub(crate) struct RoleDef {
    pub name: String,
    pub parents: Vec<usize>,
}

/// What a rule does when it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// Grants the action and the fields in its masks.
    Allow,
    /// Forbids the action.
    Deny,
    /// Hides or masks fields without forbidding the action.
    Restrict,
}

/// One (resource type, action) a rule covers, with the rule's field masks for that type:
/// for `Allow`, fields granted (full, masked); for `Restrict`, fields (hidden, masked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub type_index: usize,
    pub action_index: usize,
    pub first_mask: u64,
    pub second_mask: u64,
}

#[derive(Debug)]
pub(crate) struct RuleDef {
    pub name: String,
    pub kind: RuleKind,
    /// `None` for `roles = ["*"]`: every principal.
    pub roles: Option<Vec<usize>>,
    pub except: Vec<usize>,
    pub targets: Vec<Target>,
    pub cross_tenant: bool,
    pub conditions: Vec<Condition>,
    /// Deny rules: the rule applies unless all of these hold. Empty for "no `unless`".
    pub unless: Vec<Condition>,
}

/// Validates a parsed document.
pub(crate) fn validate(file: &PolicyFile) -> Result<Resolved, Issue> {
    let root = DocPath::default();
    if file.version != VERSION {
        return Err(issue(
            root.key("version"),
            PolicyErrorKind::UnsupportedVersion {
                found: file.version,
            },
        ));
    }
    let principal_kinds = resolve_principal_kinds(file, &root)?;
    let types = resolve_types(file, &root)?;
    check_entity_kinds(&types, &principal_kinds, &root)?;
    let (roles, role_ids) = resolve_roles(file, &root)?;
    let role_order = order_roles(&roles, &root)?;
    let mut rules = Vec::with_capacity(file.rules.len());
    let mut rule_names: HashMap<&str, usize> = HashMap::new();
    for (index, rule) in file.rules.iter().enumerate() {
        let path = root.key("rules").index(index);
        check_name("rule", &rule.name, &path.key("name"), false)?;
        if rule_names.insert(&rule.name, index).is_some() {
            return Err(issue(
                path.key("name"),
                PolicyErrorKind::DuplicateName {
                    what: "rule",
                    name: rule.name.clone(),
                },
            ));
        }
        rules.push(resolve_rule(
            rule,
            &path,
            &types,
            &role_ids,
            &principal_kinds,
        )?);
    }
    let mut warnings = lookalike_names(file, &principal_kinds, &root);
    warnings.extend(never_allowing_rules(
        &rules,
        &roles,
        &types,
        &role_order,
        &root,
    ));
    Ok(Resolved {
        types,
        roles,
        role_order,
        rules,
        principal_kinds,
        warnings,
    })
}

/// The declared principal kinds, or `["employee"]`.
fn resolve_principal_kinds(file: &PolicyFile, root: &DocPath) -> Result<Vec<String>, Issue> {
    let Some(kinds) = &file.principal_kinds else {
        return Ok(vec![DEFAULT_PRINCIPAL_KIND.to_owned()]);
    };
    let path = root.key("principal_kinds");
    if kinds.is_empty() {
        return Err(issue(
            path,
            PolicyErrorKind::EmptyList {
                key: "principal_kinds",
            },
        ));
    }
    let mut seen: Vec<String> = Vec::with_capacity(kinds.len());
    for (index, kind) in kinds.iter().enumerate() {
        check_name("principal kind", kind, &path.index(index), true)?;
        if seen.contains(kind) {
            return Err(issue(
                path.index(index),
                PolicyErrorKind::DuplicateName {
                    what: "principal kind",
                    name: kind.clone(),
                },
            ));
        }
        seen.push(kind.clone());
    }
    Ok(seen)
}

/// Every `ref:<kind>` attribute names a principal kind or a resource type.
fn check_entity_kinds(
    types: &[TypeDef],
    principal_kinds: &[String],
    root: &DocPath,
) -> Result<(), Issue> {
    let known = || {
        principal_kinds
            .iter()
            .map(String::as_str)
            .chain(types.iter().map(|t| t.name.as_str()))
    };
    for t in types {
        for (attribute, declared) in &t.attributes {
            let AttributeType::Ref(kind) = declared else {
                continue;
            };
            let path = root
                .key("resource_types")
                .key(&t.name)
                .key("attributes")
                .key(attribute);
            check_name("entity kind", kind, &path, true)?;
            if !known().any(|k| k == kind) {
                return Err(issue(
                    path,
                    PolicyErrorKind::UnknownEntityKind {
                        name: kind.clone(),
                        suggestion: closest(kind, known()),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Checks that a name can be used unambiguously in permissions and messages.
fn check_name(what: &'static str, name: &str, path: &DocPath, strict: bool) -> Result<(), Issue> {
    let reason = if name.is_empty() {
        Some("a name must not be empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("a name must be at most 128 characters")
    } else if name.chars().any(char::is_control) {
        Some("a name must not contain control characters")
    } else if strict && name.chars().any(char::is_whitespace) {
        Some("a name must not contain whitespace")
    } else if strict && name.contains(':') {
        Some("`:` separates a resource type from an action")
    } else if strict && name.contains('*') {
        Some("`*` is the wildcard")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(issue(
            path.clone(),
            PolicyErrorKind::InvalidName {
                what,
                name: name.to_owned(),
                reason,
            },
        )),
        None => Ok(()),
    }
}

/// Checks the names of a table's entries: valid and not repeated (JSON can repeat keys).
fn check_entries<V>(what: &'static str, entries: &Entries<V>, path: &DocPath) -> Result<(), Issue> {
    let mut seen = BTreeSet::new();
    for (name, _) in &entries.0 {
        check_name(what, name, &path.key_name(name), true)?;
        if !seen.insert(name.as_str()) {
            return Err(issue(
                path.key_name(name),
                PolicyErrorKind::DuplicateName {
                    what,
                    name: name.clone(),
                },
            ));
        }
    }
    Ok(())
}

fn resolve_types(file: &PolicyFile, root: &DocPath) -> Result<Vec<TypeDef>, Issue> {
    let path = root.key("resource_types");
    check_entries("resource type", &file.resource_types, &path)?;
    let mut types = Vec::with_capacity(file.resource_types.0.len());
    for (name, decl) in &file.resource_types.0 {
        let type_path = path.key(name);
        if decl.actions.is_empty() {
            return Err(issue(
                type_path.key("actions"),
                PolicyErrorKind::EmptyList { key: "actions" },
            ));
        }
        let mut actions: Vec<String> = Vec::with_capacity(decl.actions.len());
        for (index, action) in decl.actions.iter().enumerate() {
            let action_path = type_path.key("actions").index(index);
            check_name("action", action, &action_path, true)?;
            if actions.contains(action) {
                return Err(issue(
                    action_path,
                    PolicyErrorKind::DuplicateName {
                        what: "action",
                        name: action.clone(),
                    },
                ));
            }
            actions.push(action.clone());
        }
        check_entries("attribute", &decl.attributes, &type_path.key("attributes"))?;
        check_entries("field", &decl.fields, &type_path.key("fields"))?;
        if decl.fields.0.len() > MAX_FIELDS {
            return Err(issue(
                type_path.key("fields"),
                PolicyErrorKind::TooManyFields {
                    resource_type: name.clone(),
                    count: decl.fields.0.len(),
                    max: MAX_FIELDS,
                },
            ));
        }
        types.push(TypeDef {
            name: name.clone(),
            actions,
            attributes: decl.attributes.0.clone(),
            fields: decl
                .fields
                .0
                .iter()
                .map(|(name, kind)| FieldDef {
                    name: name.as_str().into(),
                    kind: *kind,
                })
                .collect(),
        });
    }
    Ok(types)
}

fn resolve_roles(
    file: &PolicyFile,
    root: &DocPath,
) -> Result<(Vec<RoleDef>, HashMap<String, usize>), Issue> {
    let path = root.key("roles");
    check_entries("role", &file.roles, &path)?;
    let ids: HashMap<String, usize> = file
        .roles
        .0
        .iter()
        .enumerate()
        .map(|(index, (name, _))| (name.clone(), index))
        .collect();
    let mut roles = Vec::with_capacity(file.roles.0.len());
    for (name, decl) in &file.roles.0 {
        let mut parents = Vec::with_capacity(decl.inherits.len());
        for (index, parent) in decl.inherits.iter().enumerate() {
            let parent_path = path.key(name).key("inherits").index(index);
            let id = lookup_role(parent, &ids, &parent_path)?;
            if parents.contains(&id) {
                return Err(issue(
                    parent_path,
                    PolicyErrorKind::DuplicateName {
                        what: "inherited role",
                        name: parent.clone(),
                    },
                ));
            }
            parents.push(id);
        }
        roles.push(RoleDef {
            name: name.clone(),
            parents,
        });
    }
    Ok((roles, ids))
}

fn lookup_role(name: &str, ids: &HashMap<String, usize>, path: &DocPath) -> Result<usize, Issue> {
    ids.get(name).copied().ok_or_else(|| {
        issue(
            path.clone(),
            PolicyErrorKind::UnknownRole {
                name: name.to_owned(),
                suggestion: closest(name, ids.keys().map(String::as_str)),
            },
        )
    })
}

/// Orders roles so that each comes after the roles it inherits from, or reports a cycle at
/// the `inherits` entry that closes it. Iterative, so deep hierarchies cannot overflow the stack.
fn order_roles(roles: &[RoleDef], root: &DocPath) -> Result<Vec<usize>, Issue> {
    const NEW: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; roles.len()];
    let mut order = Vec::with_capacity(roles.len());
    for start in 0..roles.len() {
        if state.get(start) != Some(&NEW) {
            continue;
        }
        // The current inheritance path: (role, index of the next parent to visit).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(s) = state.get_mut(start) {
            *s = ON_PATH;
        }
        while let Some((role, next)) = path.last().copied() {
            let parent = roles.get(role).and_then(|r| r.parents.get(next)).copied();
            let Some(parent) = parent else {
                if let Some(s) = state.get_mut(role) {
                    *s = DONE;
                }
                order.push(role);
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 = next.saturating_add(1);
            }
            match state.get(parent).copied() {
                Some(NEW) => {
                    if let Some(s) = state.get_mut(parent) {
                        *s = ON_PATH;
                    }
                    path.push((parent, 0));
                }
                Some(ON_PATH) => {
                    let mut cycle: Vec<String> = path
                        .iter()
                        .skip_while(|(r, _)| *r != parent)
                        .filter_map(|(r, _)| roles.get(*r).map(|d| d.name.clone()))
                        .collect();
                    if let Some(first) = cycle.first().cloned() {
                        cycle.push(first);
                    }
                    let name = roles.get(role).map_or("", |r| r.name.as_str());
                    return Err(issue(
                        root.key("roles").key(name).key("inherits").index(next),
                        PolicyErrorKind::RoleCycle { cycle },
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(order)
}

fn resolve_rule(
    rule: &RuleDecl,
    path: &DocPath,
    types: &[TypeDef],
    role_ids: &HashMap<String, usize>,
    principal_kinds: &[String],
) -> Result<RuleDef, Issue> {
    let kind = match (rule.effect, &rule.hide_fields, &rule.mask_fields) {
        (EffectDecl::Allow, _, _) => RuleKind::Allow,
        (EffectDecl::Deny, None, None) => RuleKind::Deny,
        (EffectDecl::Deny, _, _) => RuleKind::Restrict,
    };
    check_effect_keys(rule, kind, path)?;

    if rule.roles.is_empty() {
        return Err(issue(
            path.key("roles"),
            PolicyErrorKind::EmptyList { key: "roles" },
        ));
    }
    let mut roles = Some(Vec::with_capacity(rule.roles.len()));
    for (index, name) in rule.roles.iter().enumerate() {
        let role_path = path.key("roles").index(index);
        if name == "*" {
            roles = None;
        } else {
            let id = lookup_role(name, role_ids, &role_path)?;
            if let Some(ids) = roles.as_mut().filter(|ids| !ids.contains(&id)) {
                ids.push(id);
            }
        }
    }
    let mut except = Vec::with_capacity(rule.except_roles.len());
    for (index, name) in rule.except_roles.iter().enumerate() {
        let except_path = path.key("except_roles").index(index);
        if name == "*" {
            return Err(issue(
                except_path,
                PolicyErrorKind::InvalidName {
                    what: "excepted role",
                    name: name.clone(),
                    reason: "`*` would except everyone; remove the rule instead",
                },
            ));
        }
        except.push(lookup_role(name, role_ids, &except_path)?);
    }

    if rule.permissions.is_empty() {
        return Err(issue(
            path.key("permissions"),
            PolicyErrorKind::EmptyList { key: "permissions" },
        ));
    }
    let mut pairs = BTreeSet::new();
    for (index, permission) in rule.permissions.iter().enumerate() {
        let permission_path = path.key("permissions").index(index);
        pairs.extend(
            resolve_permission(permission, types).map_err(|kind| issue(permission_path, kind))?,
        );
    }
    let covered: Vec<&TypeDef> = pairs
        .iter()
        .map(|(t, _)| *t)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|t| types.get(t))
        .collect();

    let masks = field_masks(rule, kind, path, &covered)?;
    let targets = pairs
        .iter()
        .map(|&(type_index, action_index)| {
            let (first_mask, second_mask) = types
                .get(type_index)
                .and_then(|t| masks.iter().find(|(name, _)| *name == t.name))
                .map_or((0, 0), |(_, m)| *m);
            Target {
                type_index,
                action_index,
                first_mask,
                second_mask,
            }
        })
        .collect();

    let scope = ConditionScope {
        rule: &rule.name,
        covered: &covered,
        principal_kinds,
    };
    let conditions = resolve_conditions(&rule.when, &path.key("when"), &scope)?;
    let unless = match &rule.unless {
        Some(unless) => {
            let resolved = resolve_conditions(unless, &path.key("unless"), &scope)?;
            if resolved.is_empty() {
                return Err(issue(
                    path.key("unless"),
                    PolicyErrorKind::EmptyList { key: "unless" },
                ));
            }
            resolved
        }
        None => Vec::new(),
    };
    Ok(RuleDef {
        name: rule.name.clone(),
        kind,
        roles,
        except,
        targets,
        cross_tenant: rule.cross_tenant.unwrap_or(false),
        conditions,
        unless,
    })
}

fn check_effect_keys(rule: &RuleDecl, kind: RuleKind, path: &DocPath) -> Result<(), Issue> {
    let misplaced = |key: &'static str, effect: &'static str, help: &'static str| {
        Err(issue(
            path.key_name(key),
            PolicyErrorKind::KeyNotForEffect { key, effect, help },
        ))
    };
    match kind {
        RuleKind::Allow => {
            if rule.hide_fields.is_some() {
                return misplaced(
                    "hide_fields",
                    "allow",
                    "an allow rule grants fields with `fields`; hide fields with a deny rule",
                );
            }
            if rule.mask_fields.is_some() {
                return misplaced(
                    "mask_fields",
                    "allow",
                    "an allow rule grants fields with `fields`, like `{ email = \"masked\" }`",
                );
            }
            if rule.unless.is_some() {
                return misplaced(
                    "unless",
                    "allow",
                    "an allow rule's conditions go in `when`; to forbid an action unless a condition holds, write a deny rule with `unless`",
                );
            }
        }
        RuleKind::Deny | RuleKind::Restrict => {
            if rule.fields.is_some() {
                return misplaced(
                    "fields",
                    "deny",
                    "a deny rule restricts fields with `hide_fields` or `mask_fields`",
                );
            }
            if rule.cross_tenant.is_some() {
                return misplaced(
                    "cross_tenant",
                    "deny",
                    "a deny rule applies in every store already",
                );
            }
        }
    }
    if kind == RuleKind::Restrict {
        let hide = rule.hide_fields.as_ref().map_or(0, Vec::len);
        let mask = rule.mask_fields.as_ref().map_or(0, Vec::len);
        if hide == 0 && mask == 0 {
            let key = if rule.hide_fields.is_some() {
                "hide_fields"
            } else {
                "mask_fields"
            };
            return Err(issue(path.key(key), PolicyErrorKind::EmptyList { key }));
        }
    }
    Ok(())
}

/// Expands `type:action` (with `*` in either place) to (type, action) index pairs.
fn resolve_permission(
    permission: &str,
    types: &[TypeDef],
) -> Result<Vec<(usize, usize)>, PolicyErrorKind> {
    let invalid = || PolicyErrorKind::InvalidPermission {
        permission: permission.to_owned(),
    };
    let (type_name, action) = permission.split_once(':').ok_or_else(invalid)?;
    if type_name.is_empty() || action.is_empty() || action.contains(':') {
        return Err(invalid());
    }
    let type_indices: Vec<usize> = if type_name == "*" {
        (0..types.len()).collect()
    } else {
        let index = types
            .iter()
            .position(|t| t.name == type_name)
            .ok_or_else(|| PolicyErrorKind::UnknownResourceType {
                name: type_name.to_owned(),
                suggestion: closest(type_name, types.iter().map(|t| t.name.as_str())),
            })?;
        vec![index]
    };
    let mut pairs = Vec::new();
    for type_index in type_indices {
        let Some(t) = types.get(type_index) else {
            continue;
        };
        if action == "*" {
            pairs.extend((0..t.actions.len()).map(|a| (type_index, a)));
        } else if let Some(a) = t.actions.iter().position(|a| a == action) {
            pairs.push((type_index, a));
        }
    }
    if pairs.is_empty() {
        let all_actions = || -> Vec<&str> {
            types
                .iter()
                .filter(|t| type_name == "*" || t.name == type_name)
                .flat_map(|t| t.actions.iter().map(String::as_str))
                .collect()
        };
        return Err(PolicyErrorKind::UnknownAction {
            resource_type: type_name.to_owned(),
            action: action.to_owned(),
            suggestion: closest(action, all_actions()),
        });
    }
    Ok(pairs)
}

/// Finds `field` in every covered type, or reports the first type lacking it.
fn field_index(
    field: &str,
    covered: &[&TypeDef],
    path: &DocPath,
) -> Result<Vec<(String, usize)>, Issue> {
    let mut found = Vec::with_capacity(covered.len());
    for t in covered {
        match t.fields.iter().position(|f| &*f.name == field) {
            Some(index) => found.push((t.name.clone(), index)),
            None => {
                return Err(issue(
                    path.clone(),
                    PolicyErrorKind::UnknownField {
                        resource_type: t.name.clone(),
                        field: field.to_owned(),
                        suggestion: closest(field, t.fields.iter().map(|f| &*f.name)),
                    },
                ));
            }
        }
    }
    Ok(found)
}

/// A rule's two field masks per resource type name (see [`Target`]).
type TypeMasks = Vec<(String, (u64, u64))>;

/// Computes, per covered type, the rule's two field masks (see [`Target`]).
fn field_masks(
    rule: &RuleDecl,
    kind: RuleKind,
    path: &DocPath,
    covered: &[&TypeDef],
) -> Result<TypeMasks, Issue> {
    let all = |t: &TypeDef| (0..t.fields.len()).fold(0u64, |m, i| m | field_bit(i));
    let mut masks: TypeMasks = covered.iter().map(|t| (t.name.clone(), (0, 0))).collect();
    let mut set = |type_name: &str, bits: (u64, u64)| {
        if let Some((_, m)) = masks.iter_mut().find(|(n, _)| n == type_name) {
            m.0 |= bits.0;
            m.1 |= bits.1;
        }
    };
    match kind {
        RuleKind::Deny => {}
        RuleKind::Allow => {
            let Some(fields) = &rule.fields else {
                return Ok(masks);
            };
            let fields_path = path.key("fields");
            let mut seen = BTreeSet::new();
            for (field, _) in &fields.0 {
                if !seen.insert(field.as_str()) {
                    return Err(issue(
                        fields_path.key_name(field),
                        PolicyErrorKind::DuplicateName {
                            what: "field",
                            name: field.clone(),
                        },
                    ));
                }
            }
            let default = fields
                .0
                .iter()
                .find(|(f, _)| f == "*")
                .map_or(Visibility::Hidden, |(_, v)| *v);
            let bits = |v: Visibility, m: u64| match v {
                Visibility::Full => (m, 0),
                Visibility::Masked => (0, m),
                Visibility::Hidden => (0, 0),
            };
            let mut explicit = vec![0u64; covered.len()];
            for (field, visibility) in fields.0.iter().filter(|(f, _)| f != "*") {
                for (type_name, index) in field_index(field, covered, &fields_path.key_name(field))?
                {
                    let bit = field_bit(index);
                    set(&type_name, bits(*visibility, bit));
                    if let Some(position) = covered.iter().position(|t| t.name == type_name)
                        && let Some(e) = explicit.get_mut(position)
                    {
                        *e |= bit;
                    }
                }
            }
            for (position, t) in covered.iter().enumerate() {
                let listed = explicit.get(position).copied().unwrap_or(0);
                set(&t.name, bits(default, all(t) & !listed));
            }
        }
        RuleKind::Restrict => {
            for (key, list, is_hide) in [
                ("hide_fields", &rule.hide_fields, true),
                ("mask_fields", &rule.mask_fields, false),
            ] {
                for (index, field) in list.iter().flatten().enumerate() {
                    let field_path = path.key(key).index(index);
                    let located: Vec<(String, u64)> = if field == "*" {
                        covered.iter().map(|t| (t.name.clone(), all(t))).collect()
                    } else {
                        field_index(field, covered, &field_path)?
                            .into_iter()
                            .map(|(n, i)| (n, field_bit(i)))
                            .collect()
                    };
                    for (type_name, bit) in located {
                        set(&type_name, if is_hide { (bit, 0) } else { (0, bit) });
                    }
                }
            }
        }
    }
    Ok(masks)
}

/// Finds `attribute` in every covered type, and returns its declared types in that order.
fn find_attribute<'t>(
    attribute: &str,
    covered: &[&'t TypeDef],
    path: &DocPath,
) -> Result<Vec<(&'t str, &'t AttributeType)>, Issue> {
    let mut found = Vec::with_capacity(covered.len());
    for t in covered {
        match t.attributes.iter().find(|(name, _)| name == attribute) {
            Some((_, declared)) => found.push((t.name.as_str(), declared)),
            None => {
                return Err(issue(
                    path.clone(),
                    PolicyErrorKind::UnknownAttribute {
                        resource_type: t.name.clone(),
                        attribute: attribute.to_owned(),
                        suggestion: closest(
                            attribute,
                            t.attributes.iter().map(|(n, _)| n.as_str()),
                        ),
                    },
                ));
            }
        }
    }
    Ok(found)
}

/// Finds an `integer` attribute in every covered type.
fn check_integer_attribute(
    attribute: &str,
    covered: &[&TypeDef],
    path: &DocPath,
) -> Result<(), Issue> {
    for (type_name, declared) in find_attribute(attribute, covered, path)? {
        if *declared != AttributeType::Integer {
            return Err(issue(
                path.clone(),
                PolicyErrorKind::AttributeType {
                    resource_type: type_name.to_owned(),
                    attribute: attribute.to_owned(),
                    declared: declared.describe(),
                    needed: "integer".to_owned(),
                },
            ));
        }
    }
    Ok(())
}

/// What a rule's conditions are checked against.
struct ConditionScope<'a> {
    rule: &'a str,
    covered: &'a [&'a TypeDef],
    principal_kinds: &'a [String],
}

/// The principal kind that `attribute` names on every covered type, for `principal_is`: a
/// `ref:<kind>` declaration says it; a plain `id` is the policy's principal kind if it has only
/// one, and ambiguous otherwise.
fn principal_attribute_kind(
    attribute: &str,
    scope: &ConditionScope<'_>,
    path: &DocPath,
) -> Result<String, Issue> {
    let mut resolved: Option<String> = None;
    for (type_name, declared) in find_attribute(attribute, scope.covered, path)? {
        let kind = match declared {
            AttributeType::Ref(kind) => {
                if !scope.principal_kinds.contains(kind) {
                    return Err(issue(
                        path.clone(),
                        PolicyErrorKind::NotAPrincipalKind {
                            rule: scope.rule.to_owned(),
                            resource_type: type_name.to_owned(),
                            attribute: attribute.to_owned(),
                            kind: kind.clone(),
                            principal_kinds: scope.principal_kinds.to_vec(),
                        },
                    ));
                }
                kind.clone()
            }
            AttributeType::Id => match scope.principal_kinds {
                [only] => only.clone(),
                _ => {
                    return Err(issue(
                        path.clone(),
                        PolicyErrorKind::AmbiguousEntityKind {
                            rule: scope.rule.to_owned(),
                            resource_type: type_name.to_owned(),
                            attribute: attribute.to_owned(),
                            principal_kinds: scope.principal_kinds.to_vec(),
                        },
                    ));
                }
            },
            AttributeType::Integer => {
                return Err(issue(
                    path.clone(),
                    PolicyErrorKind::AttributeType {
                        resource_type: type_name.to_owned(),
                        attribute: attribute.to_owned(),
                        declared: declared.describe(),
                        needed: scope
                            .principal_kinds
                            .iter()
                            .map(|k| format!("ref:{k}"))
                            .chain(["id".to_owned()])
                            .collect::<Vec<_>>()
                            .join("` or `"),
                    },
                ));
            }
        };
        match &resolved {
            Some(earlier) if *earlier != kind => {
                return Err(issue(
                    path.clone(),
                    PolicyErrorKind::AttributeType {
                        resource_type: type_name.to_owned(),
                        attribute: attribute.to_owned(),
                        declared: declared.describe(),
                        needed: format!("ref:{earlier}"),
                    },
                ));
            }
            _ => resolved = Some(kind),
        }
    }
    Ok(resolved.unwrap_or_default())
}

fn resolve_conditions(
    when: &ConditionsDecl,
    path: &DocPath,
    scope: &ConditionScope<'_>,
) -> Result<Vec<Condition>, Issue> {
    let covered = scope.covered;
    let mut conditions = Vec::new();
    if let Some(attribute) = &when.principal_is {
        let kind = principal_attribute_kind(attribute, scope, &path.key("principal_is"))?;
        let implicit = matches!(scope.principal_kinds, [only] if *only == kind);
        conditions.push(Condition::PrincipalIs {
            attribute: attribute.as_str().into(),
            kind: kind.into(),
            implicit,
        });
    }
    for (key, limits, comparison) in [
        ("below", &when.below, Comparison::Below),
        ("at_most", &when.at_most, Comparison::AtMost),
        ("at_least", &when.at_least, Comparison::AtLeast),
        ("above", &when.above, Comparison::Above),
    ] {
        let mut seen = BTreeSet::new();
        for (attribute, bound) in &limits.0 {
            let attribute_path = path.key(key).key_name(attribute);
            if !seen.insert(attribute.as_str()) {
                return Err(issue(
                    attribute_path,
                    PolicyErrorKind::DuplicateName {
                        what: "limit",
                        name: attribute.clone(),
                    },
                ));
            }
            check_integer_attribute(attribute, covered, &attribute_path)?;
            conditions.push(Condition::Limit {
                attribute: attribute.as_str().into(),
                comparison,
                bound: *bound,
            });
        }
    }
    if let Some(seconds) = when.mfa_within {
        if seconds == 0 {
            return Err(issue(
                path.key("mfa_within"),
                PolicyErrorKind::InvalidValue {
                    key: "mfa_within",
                    reason: "must be at least 1 second, like 300 for five minutes".to_owned(),
                },
            ));
        }
        conditions.push(Condition::MfaWithin { seconds });
    }
    match when.justification {
        Some(JustificationDecl::Any) => conditions.push(Condition::AnyJustification),
        Some(JustificationDecl::NamesResource) => {
            conditions.push(Condition::JustificationNamesResource);
        }
        None => {}
    }
    if let (Some(from), Some(until)) = (when.valid_from, when.valid_until)
        && from.0 >= until.0
    {
        return Err(issue(
            path.key("valid_until"),
            PolicyErrorKind::InvalidValue {
                key: "valid_until",
                reason: format!(
                    "the grant would never be valid: it ends ({}) before it starts ({})",
                    until.0, from.0
                ),
            },
        ));
    }
    if let Some(from) = when.valid_from {
        conditions.push(Condition::ValidFrom { from: from.0 });
    }
    if let Some(until) = when.valid_until {
        conditions.push(Condition::ValidUntil { until: until.0 });
    }
    Ok(conditions)
}
