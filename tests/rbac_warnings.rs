//! Load-time warnings: returned with the policy, located, and only for real problems.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::rbac::{Policy, PolicyWarningKind};

fn load(text: &str) -> Policy {
    Policy::from_toml(text, "p.toml").unwrap()
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn lookalike_names_of_each_kind() {
    let text = "version = 1
[resource_types.order]
actions = [\"view\", \"View\", \"re\u{fb01}ne\"]
[resource_types.Order]
actions = [\"refine\"]
[roles.support]
[roles.SUPPORT]
[roles.\"ad\u{200d}min\"]
[roles.admin]
[roles.\"\u{ff46}inance\"]
[roles.finance]
[[rules]]
name = \"stra\u{df}e\"
effect = \"allow\"
roles = [\"support\"]
permissions = [\"order:view\"]
[[rules]]
name = \"STRASSE\"
effect = \"allow\"
roles = [\"support\"]
permissions = [\"order:view\"]
";
    let policy = load(text);
    // Each pair once, as an unordered pair, located at the name the warning points at.
    let mut found: Vec<(String, [String; 2])> = Vec::new();
    for warning in policy.warnings() {
        let PolicyWarningKind::LookalikeNames { what, name, other } = warning.kind() else {
            panic!("unexpected warning {warning}");
        };
        let needle = match *what {
            "action" => format!("\"{name}\""),
            "rule" => format!("name = \"{name}\""),
            "role" if name.is_ascii() => format!("[roles.{name}]"),
            "role" => format!("[roles.\"{name}\"]"),
            _ => format!("[resource_types.{name}]"),
        };
        assert_eq!(
            warning.location().line,
            Some(line_of(text, &needle)),
            "{warning}"
        );
        let mut pair = [name.clone(), other.clone()];
        pair.sort();
        found.push(((*what).to_owned(), pair));
    }
    found.sort();
    let pair = |what: &str, a: &str, b: &str| {
        let mut pair = [a.to_owned(), b.to_owned()];
        pair.sort();
        (what.to_owned(), pair)
    };
    let mut expected = vec![
        pair("resource type", "Order", "order"),
        pair("action", "View", "view"),
        pair("role", "SUPPORT", "support"),
        pair("role", "admin", "ad\u{200d}min"),
        pair("role", "finance", "\u{ff46}inance"),
        pair("rule", "STRASSE", "stra\u{df}e"),
    ];
    expected.sort();
    assert_eq!(found, expected);
    // `refine` under another type is not a collision: actions are per resource type.
    let role = policy
        .warnings()
        .iter()
        .find(|w| w.location().path == "roles.support")
        .unwrap();
    assert_eq!(
        role.to_string(),
        format!(
            "p.toml:{}:8 (at `roles.support`): warning: role `support` and role `SUPPORT` are the same name after Unicode normalization and case folding; rename one",
            line_of(text, "[roles.support]")
        )
    );
}

#[test]
fn distinct_names_and_the_shop_policy_have_no_warnings() {
    let policy = load(
        "version = 1\n[resource_types.order]\nactions = [\"view\", \"review\"]\n[roles.support]\n[roles.supporter]\n",
    );
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
}

const ORDERS: &str = r#"version = 1
[resource_types.order]
actions = ["view", "refund"]
attributes = { total = "integer" }
[roles.support]
[roles.lead]
inherits = ["support"]
[roles.admin]
"#;

#[test]
fn an_allow_rule_that_a_deny_unless_rule_always_blocks() {
    let text = format!(
        "{ORDERS}{}",
        r#"
[[rules]]
name = "refunds-below-100-only"
effect = "deny"
roles = ["support"]
permissions = ["order:refund"]
unless = { below = { total = 10000 } }

[[rules]]
name = "lead-refunds-large-orders"
effect = "allow"
roles = ["lead"]
permissions = ["order:*"]
when = { at_least = { total = 20000 } }

[[rules]]
name = "support-refunds"
effect = "allow"
roles = ["support"]
permissions = ["order:refund"]
when = { below = { total = 5000 } }
"#
    );
    let policy = load(&text);
    assert_eq!(policy.warnings().len(), 1, "{:?}", policy.warnings());
    let warning = &policy.warnings()[0];
    assert_eq!(
        warning.kind(),
        &PolicyWarningKind::AllowNeverApplies {
            rule: "lead-refunds-large-orders".to_owned(),
            permission: "order:refund".to_owned(),
            deny_rule: "refunds-below-100-only".to_owned(),
            unless: "`below = { total = 10000 }`".to_owned(),
            allow_condition: "`at_least = { total = 20000 }`".to_owned(),
        }
    );
    assert_eq!(
        warning.location().line,
        Some(line_of(&text, "name = \"lead-refunds-large-orders\""))
    );
    assert_eq!(warning.location().path, "rules[1].name");
    // The rule still loads and still grants what the deny rule does not cover.
    use custodian::rbac::{Principal, RequestContext, Resource};
    let lead = Principal::new("e", "s").with_role("lead");
    let big = Resource::new("order", "o", "s").with("total", 30_000);
    let now = RequestContext::at(0);
    assert!(policy.check(&lead, "view", &big, &now).is_allowed());
    assert!(!policy.check(&lead, "refund", &big, &now).is_allowed());
}

#[test]
fn time_windows_that_never_overlap() {
    let text = format!(
        "{ORDERS}{}",
        r#"
[[rules]]
name = "refunds-until-june"
effect = "deny"
roles = ["*"]
permissions = ["order:refund"]
unless = { valid_until = 2025-06-01T00:00:00Z }

[[rules]]
name = "summer-refunds"
effect = "allow"
roles = ["support"]
permissions = ["order:refund"]
when = { valid_from = 2025-07-01T00:00:00Z }
"#
    );
    let policy = load(&text);
    assert!(matches!(
        policy.warnings(),
        [w] if matches!(w.kind(), PolicyWarningKind::AllowNeverApplies { rule, .. } if rule == "summer-refunds")
    ));
}

#[test]
fn no_warning_where_the_allow_rule_can_still_apply() {
    for (deny, allow) in [
        // The allow rule's range overlaps the deny rule's.
        (
            "unless = { below = { total = 10000 } }",
            "when = { at_least = { total = 5000 } }",
        ),
        // MFA is the caller's to supply: the allow rule need not repeat it.
        ("unless = { mfa_within = 300 }", ""),
        // A deny rule with `when` does not always apply.
        (
            "when = { at_least = { total = 0 } }\nunless = { below = { total = 10 } }",
            "when = { at_least = { total = 20 } }",
        ),
    ] {
        let text = format!(
            "{ORDERS}\n[[rules]]\nname = \"d\"\neffect = \"deny\"\nroles = [\"*\"]\npermissions = [\"order:refund\"]\n{deny}\n\n[[rules]]\nname = \"a\"\neffect = \"allow\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\n{allow}\n"
        );
        assert!(load(&text).warnings().is_empty(), "{text}");
    }
    // A deny rule that excepts a role the allow rule's holders have, or names other roles.
    for (roles, except) in [("[\"*\"]", "[\"lead\"]"), ("[\"admin\"]", "[]")] {
        let text = format!(
            "{ORDERS}\n[[rules]]\nname = \"d\"\neffect = \"deny\"\nroles = {roles}\nexcept_roles = {except}\npermissions = [\"order:refund\"]\nunless = {{ below = {{ total = 10 }} }}\n\n[[rules]]\nname = \"a\"\neffect = \"allow\"\nroles = [\"lead\"]\npermissions = [\"order:refund\"]\nwhen = {{ above = {{ total = 100 }} }}\n"
        );
        assert!(load(&text).warnings().is_empty(), "{text}");
    }
    // ... but a deny rule on a role the allow rule's role inherits binds it.
    let text = format!(
        "{ORDERS}\n[[rules]]\nname = \"d\"\neffect = \"deny\"\nroles = [\"support\"]\npermissions = [\"order:refund\"]\nunless = {{ below = {{ total = 10 }} }}\n\n[[rules]]\nname = \"a\"\neffect = \"allow\"\nroles = [\"lead\"]\npermissions = [\"order:refund\"]\nwhen = {{ above = {{ total = 100 }} }}\n"
    );
    assert_eq!(load(&text).warnings().len(), 1);
}
