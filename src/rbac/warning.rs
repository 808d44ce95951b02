//! Load-time warnings: a policy that loads, but says something its author probably did not mean.
//!
//! They are returned with the policy ([`Policy::warnings`](super::Policy::warnings)), not only
//! logged, so a deployment pipeline can refuse a policy that has any.

use std::fmt;

use thiserror::Error;

use super::error::Location;

/// One warning about a loaded policy, with where it points.
///
/// Its `Display` reads like a compiler diagnostic:
///
/// ```text
/// shop.toml:31:8 (at `roles.support`): warning: role `support` and role `Support` are the same name after Unicode normalization and case folding; rename one
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWarning {
    location: Location,
    kind: PolicyWarningKind,
}

impl PolicyWarning {
    pub(crate) fn new(location: Location, kind: PolicyWarningKind) -> Self {
        Self { location, kind }
    }

    /// Where the questionable entry is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// What is questionable about it.
    pub fn kind(&self) -> &PolicyWarningKind {
        &self.kind
    }
}

impl fmt::Display for PolicyWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: warning: {}", self.location, self.kind)
    }
}

/// What a [`PolicyWarning`] is about.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyWarningKind {
    /// Two names of the same kind (roles, rules, resource types, actions of one resource type,
    /// principal kinds) differ only by case, width, compatibility form or invisible characters:
    /// they are distinct to the policy but look alike to the people who read it.
    #[error(
        "{what} `{name}` and {what} `{other}` are the same name after Unicode normalization and case folding; rename one"
    )]
    LookalikeNames {
        /// What kind of name.
        what: &'static str,
        /// The name the warning points at.
        name: String,
        /// The name it collides with, met before it (tables are read in key order).
        other: String,
    },
    /// An allow rule grants a permission that a deny-unless rule forbids to all its principals
    /// unless a condition holds that the allow rule's own conditions rule out: it can never
    /// allow that permission.
    #[error(
        "allow rule `{rule}` can never allow `{permission}`: deny rule `{deny_rule}` forbids it unless {unless}, and `{rule}` applies only when {allow_condition}"
    )]
    AllowNeverApplies {
        /// The allow rule.
        rule: String,
        /// The first permission (`type:action`) it can never grant.
        permission: String,
        /// The deny-unless rule that blocks it.
        deny_rule: String,
        /// The deny rule's condition that cannot hold (`` `below = { total = 10000 }` ``).
        unless: String,
        /// The allow rule's condition that rules it out.
        allow_condition: String,
    },
}
