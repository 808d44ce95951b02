//! Policy load errors: precise on purpose. They say which file, line and column, which entry of
//! the document, what is wrong, and what would fix it.

use std::fmt;

use thiserror::Error;

use super::suggest::did_you_mean;

/// A policy file could not be loaded. Loading stops at the first problem found.
///
/// Its `Display` reads like a compiler diagnostic:
///
/// ```text
/// shop.toml:41:10 (at `rules[2].roles[0]`): unknown role `suport`; did you mean `support`?
/// ```
///
/// Boxed inside, so `Result<Policy, PolicyError>` stays small.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{}: {}", .0.0, .0.1)]
pub struct PolicyError(Box<(Location, PolicyErrorKind)>);

impl PolicyError {
    pub(crate) fn new(location: Location, kind: PolicyErrorKind) -> Self {
        Self(Box::new((location, kind)))
    }

    /// Where the problem is.
    pub fn location(&self) -> &Location {
        &self.0.0
    }

    /// What the problem is.
    pub fn kind(&self) -> &PolicyErrorKind {
        &self.0.1
    }
}

/// Where in a policy document a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or the name the caller gave the text).
    pub source: String,
    /// 1-based line, when known. TOML errors always have one; JSON has one for syntax errors only.
    pub line: Option<usize>,
    /// 1-based column in characters, when known.
    pub column: Option<usize>,
    /// The entry in the document, like `rules[2].roles[0]`; empty for the document itself.
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, " (at `{}`)", self.path)?;
        }
        Ok(())
    }
}

/// What is wrong with a policy document.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The file could not be read.
    #[error("cannot read the policy file: {message}")]
    Io {
        /// The operating system's message.
        message: String,
    },
    /// The file name does not end in `.toml` or `.json`.
    #[error("unknown policy file format; name the file `*.toml` or `*.json`")]
    UnknownFormat,
    /// The text is not valid TOML or JSON, or does not have the policy's shape (an unknown key, a
    /// value of the wrong type, a missing key).
    #[error("{message}")]
    Syntax {
        /// The parser's message, with a suggestion where one applies.
        message: String,
    },
    /// The `version` key has a value this library does not know.
    #[error("unsupported policy version `{found}`; this library reads version 1")]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
    },
    /// A name is empty, contains whitespace, `:` or `*`, or is otherwise unusable.
    #[error("invalid {what} name `{name}`: {reason}")]
    InvalidName {
        /// What kind of name (role, rule, resource type, action, attribute, field).
        what: &'static str,
        /// The name as written.
        name: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// Two entries of the same kind have the same name.
    #[error("duplicate {what} `{name}`")]
    DuplicateName {
        /// What kind of name.
        what: &'static str,
        /// The repeated name.
        name: String,
    },
    /// A list that must not be empty is empty.
    #[error("`{key}` must not be empty")]
    EmptyList {
        /// The key of the empty list.
        key: &'static str,
    },
    /// A role that is not declared under `[roles]`.
    #[error("unknown role `{name}`{}", did_you_mean(.suggestion))]
    UnknownRole {
        /// The name as written.
        name: String,
        /// The closest declared role, if any is close.
        suggestion: Option<String>,
    },
    /// Role inheritance loops back on itself. The list starts and ends with the same role.
    #[error("role inheritance cycle: {}", cycle_text(.cycle))]
    RoleCycle {
        /// The roles of the cycle in inheritance order, first repeated at the end.
        cycle: Vec<String>,
    },
    /// A permission is not written `resource_type:action`.
    #[error(
        "invalid permission `{permission}`: write `resource_type:action`, like `order:view` or `order:*`"
    )]
    InvalidPermission {
        /// The permission as written.
        permission: String,
    },
    /// A resource type that is not declared under `[resource_types]`.
    #[error("unknown resource type `{name}`{}", did_you_mean(.suggestion))]
    UnknownResourceType {
        /// The name as written.
        name: String,
        /// The closest declared resource type, if any is close.
        suggestion: Option<String>,
    },
    /// An action that the resource type does not declare.
    #[error("resource type `{resource_type}` has no action `{action}`{}", did_you_mean(.suggestion))]
    UnknownAction {
        /// The resource type.
        resource_type: String,
        /// The action as written.
        action: String,
        /// The closest declared action, if any is close.
        suggestion: Option<String>,
    },
    /// A condition names an attribute that a resource type the rule covers does not declare.
    #[error("resource type `{resource_type}` has no attribute `{attribute}`{}", did_you_mean(.suggestion))]
    UnknownAttribute {
        /// The resource type lacking the attribute.
        resource_type: String,
        /// The attribute as written.
        attribute: String,
        /// The closest declared attribute, if any is close.
        suggestion: Option<String>,
    },
    /// A condition needs an attribute of another type (a limit on an `id`, say).
    #[error(
        "attribute `{attribute}` of resource type `{resource_type}` is declared `{declared}`, but this condition needs `{needed}`"
    )]
    AttributeType {
        /// The resource type.
        resource_type: String,
        /// The attribute.
        attribute: String,
        /// Its declared type (`id`, `integer`, `ref:<kind>`).
        declared: String,
        /// The type the condition needs.
        needed: String,
    },
    /// A `ref:<kind>` attribute names a kind that is neither a principal kind nor a resource
    /// type.
    #[error("unknown entity kind `{name}`: declare it in `principal_kinds` or as a resource type{}", did_you_mean(.suggestion))]
    UnknownEntityKind {
        /// The kind as written.
        name: String,
        /// The closest declared kind, if any is close.
        suggestion: Option<String>,
    },
    /// A `principal_is` condition tests an attribute declared plain `id` in a policy with several
    /// principal kinds, so which kind it names is ambiguous.
    #[error(
        "rule `{rule}`: `principal_is` tests attribute `{attribute}` of resource type `{resource_type}`, declared `id`, but principals may be {}; declare which kind it names, like `{attribute} = \"ref:{}\"`",
        kinds_text(.principal_kinds),
        .principal_kinds.first().map_or("employee", String::as_str)
    )]
    AmbiguousEntityKind {
        /// The rule.
        rule: String,
        /// The resource type declaring the attribute.
        resource_type: String,
        /// The attribute.
        attribute: String,
        /// The policy's principal kinds.
        principal_kinds: Vec<String>,
    },
    /// A `principal_is` condition tests an attribute that names entities of a kind no principal
    /// has, so it could never be true.
    #[error(
        "rule `{rule}`: `principal_is` tests attribute `{attribute}` of resource type `{resource_type}`, which names a `{kind}`, and principals are {}; test an attribute declared `ref:{}`",
        kinds_text(.principal_kinds),
        .principal_kinds.first().map_or("employee", String::as_str)
    )]
    NotAPrincipalKind {
        /// The rule.
        rule: String,
        /// The resource type declaring the attribute.
        resource_type: String,
        /// The attribute.
        attribute: String,
        /// The kind the attribute names.
        kind: String,
        /// The policy's principal kinds.
        principal_kinds: Vec<String>,
    },
    /// A policy test names a rule the policy does not have.
    #[error("unknown rule `{name}`{}", did_you_mean(.suggestion))]
    UnknownRule {
        /// The name as written.
        name: String,
        /// The closest rule name, if any is close.
        suggestion: Option<String>,
    },
    /// A rule names a field that a resource type it covers does not declare.
    #[error("resource type `{resource_type}` has no field `{field}`{}", did_you_mean(.suggestion))]
    UnknownField {
        /// The resource type lacking the field.
        resource_type: String,
        /// The field as written.
        field: String,
        /// The closest declared field, if any is close.
        suggestion: Option<String>,
    },
    /// A resource type declares more fields than a field view can hold.
    #[error("resource type `{resource_type}` declares {count} fields; at most {max} are supported")]
    TooManyFields {
        /// The resource type.
        resource_type: String,
        /// How many fields it declares.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A rule key that has no meaning for the rule's effect.
    #[error("`{key}` has no meaning in a{} {effect} rule; {help}", if *.effect == "allow" { "n" } else { "" })]
    KeyNotForEffect {
        /// The key.
        key: &'static str,
        /// `allow` or `deny`.
        effect: &'static str,
        /// What to write instead.
        help: &'static str,
    },
    /// A value is out of its allowed range.
    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// What is allowed.
        reason: String,
    },
}

fn kinds_text(kinds: &[String]) -> String {
    let quoted: Vec<String> = kinds.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

fn cycle_text(cycle: &[String]) -> String {
    cycle
        .iter()
        .map(|role| format!("`{role}`"))
        .collect::<Vec<_>>()
        .join(" inherits ")
}
