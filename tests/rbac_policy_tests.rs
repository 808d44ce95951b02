//! `Policy::run_tests`: policy test files, their failure reports and their load errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::rbac::{Policy, PolicyErrorKind};

fn policy() -> Policy {
    Policy::from_toml(
        r#"
version = 1
[resource_types.order]
actions = ["view", "refund"]
attributes = { assigned_agent = "ref:employee", total = "integer" }
fields = { items = "text", email = "email" }
[roles.support]
[[rules]]
name = "support-views-orders"
effect = "allow"
roles = ["support"]
permissions = ["order:view"]
fields = { items = "full", email = "masked" }
[[rules]]
name = "support-refunds-own-orders"
effect = "allow"
roles = ["support"]
permissions = ["order:refund"]
when = { principal_is = "assigned_agent", mfa_within = 60 }
"#,
        "orders.toml",
    )
    .unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

const PASSING: &str = r#"
now = 1000

[[test]]
name = "views"
principal = { id = "e1", tenant = "s", roles = ["support"] }
action = "view"
resource = { type = "order", id = "o1", tenant = "s" }
expect = "allow"
rule = "support-views-orders"
reason = "allowed_by_rule"
fields = { items = "full", email = "masked" }

[[test]]
name = "refunds own order after MFA"
principal = { id = "e1", kind = "employee", tenant = "s", roles = ["support"] }
action = "refund"
resource = { type = "order", id = "o1", tenant = "s", attributes = { assigned_agent = { kind = "employee", id = "e1" }, total = 5 } }
context = { mfa_verified_at = 990 }
expect = "allow"

[[test]]
name = "asked to step up"
principal = { id = "e1", tenant = "s", roles = ["support"] }
action = "refund"
resource = { type = "order", id = "o1", tenant = "s", attributes = { assigned_agent = "e1" } }
context = { now = 5000, justification = { ticket = "T-1", names = ["order", "o1"] } }
expect = "deny"
rule = "support-refunds-own-orders"
reason = "step_up_required"
"#;

#[test]
fn a_passing_file() {
    let report = policy()
        .run_tests_toml(PASSING, "orders.tests.toml")
        .unwrap();
    assert!(report.all_passed(), "{report}");
    assert_eq!(report.passed(), 3);
    assert_eq!(report.to_string(), "orders.tests.toml: 3 passed, 0 failed");
}

#[test]
fn each_failing_case_is_reported_with_its_line_and_what_differed() {
    let text = r#"
[[test]]
name = "views"
principal = { id = "e1", tenant = "s", roles = ["support"] }
action = "view"
resource = { type = "order", id = "o1", tenant = "s" }
expect = "allow"
fields = { items = "full", email = "full" }

[[test]]
name = "refunds someone else's order"
principal = { id = "e1", tenant = "s", roles = ["support"] }
action = "refund"
resource = { type = "order", id = "o1", tenant = "s", attributes = { assigned_agent = { kind = "customer", id = "e1" } } }
context = { now = 100, mfa_verified_at = 90 }
expect = "allow"
rule = "support-refunds-own-orders"
reason = "allowed_by_rule"

[[test]]
name = "passes"
principal = { id = "e1", tenant = "s", roles = [] }
action = "view"
resource = { type = "order", id = "o1", tenant = "s" }
expect = "deny"
"#;
    let report = policy().run_tests_toml(text, "t.toml").unwrap();
    assert!(!report.all_passed());
    assert_eq!(report.passed(), 1);
    let failures = report.failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].name, "views");
    assert_eq!(failures[0].line, line_of(text, "name = \"views\"") - 1);
    assert_eq!(
        failures[0].mismatches,
        ["expected field `email` full, got masked"]
    );
    assert_eq!(failures[1].line, line_of(text, "name = \"refunds") - 1);
    assert_eq!(
        failures[1].mismatches,
        [
            "expected allow, got deny",
            "expected the deciding rule `support-refunds-own-orders`, got none",
            "expected reason `allowed_by_rule`, got `no_rule_allowed`",
        ]
    );
    assert_eq!(failures[1].actual, "no rule allowed it");
    let shown = report.to_string();
    assert_eq!(
        shown.lines().next(),
        Some("t.toml: 1 passed, 2 failed"),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "t.toml:{}: test `refunds someone else's order`: expected allow, got deny;",
            failures[1].line
        )),
        "{shown}"
    );
}

#[test]
fn an_empty_file_does_not_count_as_passing() {
    let report = policy().run_tests_toml("now = 5\n", "t.toml").unwrap();
    assert!(!report.all_passed());
    assert!(report.to_string().contains("has no tests"));
}

#[test]
fn malformed_test_files_are_located_errors() {
    let p = policy();
    let case = |extra: &str| {
        format!(
            "[[test]]\nname = \"t\"\nprincipal = {{ id = \"e1\", tenant = \"s\" }}\naction = \"view\"\nresource = {{ type = \"order\", id = \"o1\", tenant = \"s\" }}\nexpect = \"allow\"\n{extra}\n"
        )
    };
    // An expected rule the policy does not have.
    let text = case("rule = \"support-view-orders\"");
    let e = p.run_tests_toml(&text, "t.toml").unwrap_err();
    assert_eq!(
        e.kind(),
        &PolicyErrorKind::UnknownRule {
            name: "support-view-orders".to_owned(),
            suggestion: Some("support-views-orders".to_owned()),
        }
    );
    assert_eq!(e.location().line, Some(line_of(&text, "rule =")));
    assert_eq!(e.location().path, "test[0].rule");
    assert!(
        e.to_string()
            .starts_with("t.toml:7:8 (at `test[0].rule`): unknown rule"),
        "{e}"
    );

    // Unknown keys, wrong values, missing keys, bad syntax: each with its line.
    for (extra, needle, message) in [
        (
            "expected = \"deny\"",
            "expected =",
            "unknown field `expected`",
        ),
        (
            "reason = \"step_up\"",
            "reason =",
            "unknown variant `step_up`",
        ),
        (
            "fields = { items = \"visible\" }",
            "fields =",
            "unknown variant `visible`",
        ),
        ("context = { mfa = 3 }", "context =", "unknown field `mfa`"),
        ("oops", "oops", ""),
    ] {
        let text = case(extra);
        let e = p.run_tests_toml(&text, "t.toml").unwrap_err();
        assert!(matches!(e.kind(), PolicyErrorKind::Syntax { .. }), "{e}");
        assert!(e.to_string().contains(message), "{e}");
        assert_eq!(e.location().line, Some(line_of(&text, needle)), "{e}");
    }
    let text = case("").replace("expect = \"allow\"\n", "expect = \"permit\"\n");
    let e = p.run_tests_toml(&text, "t.toml").unwrap_err();
    assert!(e.to_string().contains("unknown variant `permit`"), "{e}");
    assert_eq!(e.location().line, Some(line_of(&text, "permit")));
    let text = case("").replace("action = \"view\"\n", "");
    let e = p.run_tests_toml(&text, "t.toml").unwrap_err();
    assert!(e.to_string().contains("missing field `action`"), "{e}");
    assert!(e.location().line.is_some(), "{e}");

    let e = p.run_tests("/nonexistent/orders.tests.toml").unwrap_err();
    assert!(matches!(e.kind(), PolicyErrorKind::Io { .. }));
    assert_eq!(e.location().source, "/nonexistent/orders.tests.toml");
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    let text = "[[test]]\nname = \"t\"\nprinciple = { id = \"e1\", tenant = \"s\" }\n";
    let e = policy().run_tests_toml(text, "t.toml").unwrap_err();
    assert!(e.to_string().contains("did you mean `principal`?"), "{e}");
    assert_eq!(e.location().line, Some(3));
}
