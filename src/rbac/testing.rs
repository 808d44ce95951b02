//! Policy tests: a file of requests and the decisions the policy must give them, run by
//! [`Policy::run_tests`], so that a policy is kept under test like code (as OPA's `opa test` and
//! Cedar's CLI do for theirs). docs/RBAC.md describes the file format.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::compile::Policy;
use super::decision::ReasonKind;
use super::error::{Location, PolicyError, PolicyErrorKind};
use super::load::{line_column, with_suggestion};
use super::model::Entries;
use super::request_spec::{ContextSpec, PrincipalSpec, ResourceSpec};
use super::suggest::closest;
use super::view::Visibility;

/// A policy test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The request time of every test that does not give its own.
    #[serde(default)]
    now: Option<u64>,
    #[serde(default, rename = "test")]
    tests: Vec<Spanned<TestCase>>,
}

/// One `[[test]]`: a request and what the policy must answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: String,
    // The request, as a `RequestSpec` states it (kept as separate keys: serde cannot flatten a
    // struct into one that refuses unknown keys).
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    #[serde(default)]
    context: ContextSpec,
    expect: Expect,
    #[serde(default)]
    rule: Option<Spanned<String>>,
    #[serde(default)]
    reason: Option<ReasonKind>,
    #[serde(default)]
    fields: Option<Entries<Visibility>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

/// The outcome of [`Policy::run_tests`]: how many tests passed, and each that failed.
///
/// Its `Display` is a report for people:
///
/// ```text
/// shop.tests.toml: 23 passed, 1 failed
/// shop.tests.toml:41: test `support refunds a small order`: expected allow by rule `support-refunds-assigned-small-orders`; got deny (no rule allowed it)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTestReport {
    source: String,
    passed: usize,
    failures: Vec<PolicyTestFailure>,
}

impl PolicyTestReport {
    /// Whether every test passed (and there was at least one).
    pub fn all_passed(&self) -> bool {
        self.failures.is_empty() && self.passed > 0
    }

    /// How many tests passed.
    pub fn passed(&self) -> usize {
        self.passed
    }

    /// The tests that failed, in file order.
    pub fn failures(&self) -> &[PolicyTestFailure] {
        &self.failures
    }
}

impl fmt::Display for PolicyTestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} passed, {} failed",
            self.source,
            self.passed,
            self.failures.len()
        )?;
        if self.passed == 0 && self.failures.is_empty() {
            f.write_str(" (the file has no tests)")?;
        }
        for failure in &self.failures {
            write!(f, "\n{}:{}: {failure}", self.source, failure.line)?;
        }
        Ok(())
    }
}

/// One failed policy test: what it expected and what the policy answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTestFailure {
    /// The test's name.
    pub name: String,
    /// The line of the test's `[[test]]` table.
    pub line: usize,
    /// Every expectation that did not hold, like ``expected allow, got deny``.
    pub mismatches: Vec<String>,
    /// The policy's answer, in words (`forbidden by rule `x``).
    pub actual: String,
}

impl fmt::Display for PolicyTestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "test `{}`: {}; the policy said: {}",
            self.name,
            self.mismatches.join("; "),
            self.actual
        )
    }
}

impl Policy {
    /// Runs the policy tests in the TOML file at `path` against this policy.
    ///
    /// ```
    /// # use custodian::rbac::Policy;
    /// let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies");
    /// let policy = Policy::from_path(format!("{dir}/shop.toml"))?;
    /// let report = policy.run_tests(format!("{dir}/shop.tests.toml"))?;
    /// assert!(report.all_passed(), "{report}");
    /// # Ok::<(), custodian::rbac::PolicyError>(())
    /// ```
    ///
    /// # Errors
    /// A [`PolicyError`] located in the test file (line and column) if it cannot be read or is
    /// malformed: a syntax error, an unknown key, a `rule` the policy does not have. Tests that
    /// run and fail are not errors: they are in the report.
    pub fn run_tests(&self, path: impl AsRef<Path>) -> Result<PolicyTestReport, PolicyError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyError::new(
                at(&source, None, ""),
                PolicyErrorKind::Io {
                    message: e.to_string(),
                },
            )
        })?;
        self.run_tests_toml(&text, &source)
    }

    /// Runs policy tests given as TOML text; `source` names the text in errors and the report.
    ///
    /// # Errors
    /// As [`Policy::run_tests`].
    pub fn run_tests_toml(
        &self,
        text: &str,
        source: &str,
    ) -> Result<PolicyTestReport, PolicyError> {
        let file: TestFile = toml::from_str(text).map_err(|error| {
            let position = error.span().map(|span| line_column(text, span.start));
            PolicyError::new(
                at(source, position, ""),
                PolicyErrorKind::Syntax {
                    message: with_suggestion(error.message().trim_end()),
                },
            )
        })?;
        // Every expected rule must exist, before anything runs: a typo is a broken test file,
        // not a failing test.
        for (index, case) in file.tests.iter().enumerate() {
            if let Some(rule) = &case.get_ref().rule
                && !self.rule_names().any(|name| name == rule.get_ref())
            {
                return Err(PolicyError::new(
                    at(
                        source,
                        Some(line_column(text, rule.span().start)),
                        &format!("test[{index}].rule"),
                    ),
                    PolicyErrorKind::UnknownRule {
                        name: rule.get_ref().clone(),
                        suggestion: closest(rule.get_ref(), self.rule_names()),
                    },
                ));
            }
        }
        let mut report = PolicyTestReport {
            source: source.to_owned(),
            passed: 0,
            failures: Vec::new(),
        };
        for case in &file.tests {
            let line = line_column(text, case.span().start).0;
            match self.run_case(case.get_ref(), file.now) {
                None => report.passed = report.passed.saturating_add(1),
                Some((mismatches, actual)) => report.failures.push(PolicyTestFailure {
                    name: case.get_ref().name.clone(),
                    line,
                    mismatches,
                    actual,
                }),
            }
        }
        Ok(report)
    }

    /// Checks one case: `None` if it passes, else what did not match and what the policy said.
    fn run_case(&self, case: &TestCase, default_now: Option<u64>) -> Option<(Vec<String>, String)> {
        let principal = case.principal.to_principal();
        let resource = case.resource.to_resource();
        let context = case.context.to_context(default_now.unwrap_or(0));
        let decision = self.check(&principal, &case.action, &resource, &context);
        let reason = decision.reason();
        let mut mismatches = Vec::new();
        let word = |allowed: bool| if allowed { "allow" } else { "deny" };
        let expected_allow = case.expect == Expect::Allow;
        if decision.is_allowed() != expected_allow {
            mismatches.push(format!(
                "expected {}, got {}",
                word(expected_allow),
                word(decision.is_allowed())
            ));
        }
        if let Some(rule) = &case.rule
            && reason.rule() != Some(rule.get_ref().as_str())
        {
            mismatches.push(format!(
                "expected the deciding rule `{}`, got {}",
                rule.get_ref(),
                reason
                    .rule()
                    .map_or_else(|| "none".to_owned(), |r| format!("`{r}`"))
            ));
        }
        if let Some(kind) = case.reason
            && reason.kind() != kind
        {
            mismatches.push(format!(
                "expected reason `{}`, got `{}`",
                reason_name(kind),
                reason_name(reason.kind())
            ));
        }
        for (field, expected) in case.fields.iter().flat_map(|f| f.0.iter()) {
            let actual = decision.view().visibility(field);
            if actual != *expected {
                mismatches.push(format!("expected field `{field}` {expected}, got {actual}"));
            }
        }
        (!mismatches.is_empty()).then(|| (mismatches, reason.to_string()))
    }
}

/// A reason kind as the test file writes it.
fn reason_name(kind: ReasonKind) -> &'static str {
    match kind {
        ReasonKind::AllowedByRule => "allowed_by_rule",
        ReasonKind::ForbiddenByRule => "forbidden_by_rule",
        ReasonKind::NoRuleAllowed => "no_rule_allowed",
        ReasonKind::StepUpRequired => "step_up_required",
        ReasonKind::JustificationRequired => "justification_required",
        ReasonKind::UnknownResourceType => "unknown_resource_type",
        ReasonKind::UnknownAction => "unknown_action",
    }
}

fn at(source: &str, position: Option<(usize, usize)>, path: &str) -> Location {
    let (line, column) = position.unzip();
    Location {
        source: source.to_owned(),
        line,
        column,
        path: path.to_owned(),
    }
}
