//! Evaluation semantics: default deny, deny wins, tenant scope, each condition kind, fail-closed
//! on missing input, field restrictions, wildcards, JSON parity and atomic reload.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use custodian::rbac::{
    AttributeValue, EntityRef, Justification, Policy, PolicyHandle, Principal, Reason, ReasonKind,
    RequestContext, Resource, Visibility,
};

const NOW: u64 = 1_750_000_000;

const HEAD: &str = r#"
version = 1
[resource_types.order]
actions = ["view", "refund", "cancel"]
attributes = { assigned_agent = "id", total = "integer" }
fields = { items = "text", email = "email", phone = "phone" }
[resource_types.ticket]
actions = ["view", "close"]
[roles.agent]
[roles.lead]
inherits = ["agent"]
[roles.auditor]
"#;

fn policy(rules: &str) -> Policy {
    Policy::from_toml(&format!("{HEAD}{rules}"), "test.toml").unwrap()
}

fn agent() -> Principal {
    Principal::new("emp-1", "store-1").with_role("agent")
}

fn order(total: i64) -> Resource {
    Resource::new("order", "ord-1", "store-1")
        .with("assigned_agent", "emp-1")
        .with("total", total)
}

fn ctx() -> RequestContext {
    RequestContext::at(NOW)
}

/// Keeps a test fixture alive for the whole test, so decisions can borrow temporaries.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// The reason as an owned comparable value.
fn reason(
    p: &Policy,
    who: &Principal,
    action: &str,
    what: &Resource,
    c: &RequestContext,
) -> (bool, Option<String>) {
    let d = p.check(who, action, what, c);
    (d.is_allowed(), d.reason().rule().map(str::to_owned))
}

const ALLOW_VIEW: &str = r#"
[[rules]]
name = "agents-view"
effect = "allow"
roles = ["agent"]
permissions = ["order:view"]
fields = { items = "full", email = "masked" }
"#;

#[test]
fn default_deny() {
    let p = policy(ALLOW_VIEW);
    let d = p.check(leak(agent()), "refund", leak(order(1)), leak(ctx()));
    assert!(!d.is_allowed());
    assert_eq!(d.reason(), Reason::NoRuleAllowed);
    assert_eq!(d.reason().to_string(), "no rule allowed it");
    let empty = policy("");
    assert_eq!(
        empty.check(&agent(), "view", &order(1), &ctx()).reason(),
        Reason::NoRuleAllowed
    );
    // A principal without any declared role gets nothing.
    let stranger = Principal::new("x", "store-1").with_role("ghost");
    assert_eq!(
        p.check(&stranger, "view", &order(1), &ctx()).reason(),
        Reason::NoRuleAllowed
    );
}

#[test]
fn unknown_type_and_action_are_denied_with_a_reason() {
    let p = policy(ALLOW_VIEW);
    let parcel = Resource::new("parcel", "p", "store-1");
    let d = p.check(leak(agent()), "view", &parcel, leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::UnknownResourceType {
            resource_type: "parcel"
        }
    );
    assert!(!d.is_allowed());
    let d = p.check(leak(agent()), "fly", leak(order(1)), leak(ctx()));
    assert_eq!(d.reason(), Reason::UnknownAction { action: "fly" });
    assert!(!d.is_allowed());
}

#[test]
fn deny_wins_over_allow_whatever_the_order() {
    let deny = r#"
[[rules]]
name = "no-view"
effect = "deny"
roles = ["agent"]
permissions = ["order:view"]
"#;
    for rules in [format!("{ALLOW_VIEW}{deny}"), format!("{deny}{ALLOW_VIEW}")] {
        let p = policy(&rules);
        let d = p.check(leak(agent()), "view", leak(order(1)), leak(ctx()));
        assert!(!d.is_allowed());
        assert_eq!(d.reason(), Reason::ForbiddenBy { rule: "no-view" });
        assert_eq!(d.reason().to_string(), "forbidden by rule `no-view`");
        assert!(d.view().is_empty());
    }
}

#[test]
fn inheritance_carries_allows_and_denies() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "agents-never-cancel"
effect = "deny"
roles = ["agent"]
permissions = ["order:cancel"]
[[rules]]
name = "leads-cancel"
effect = "allow"
roles = ["lead"]
permissions = ["order:cancel"]
"#
    ));
    let lead = Principal::new("emp-2", "store-1").with_role("lead");
    assert_eq!(
        reason(&p, &lead, "view", &order(1), &ctx()),
        (true, Some("agents-view".into()))
    );
    assert_eq!(
        reason(&p, &lead, "cancel", &order(1), &ctx()),
        (false, Some("agents-never-cancel".into()))
    );
}

#[test]
fn except_roles_exempt_holders_and_their_heirs() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "only-leads-view"
effect = "deny"
roles = ["*"]
except_roles = ["lead"]
permissions = ["order:view"]
"#
    ));
    assert!(!p.check(&agent(), "view", &order(1), &ctx()).is_allowed());
    let lead = Principal::new("emp-2", "store-1").with_role("lead");
    assert!(p.check(&lead, "view", &order(1), &ctx()).is_allowed());
    // An unknown role is not an exception.
    let fake = Principal::new("emp-3", "store-1")
        .with_role("agent")
        .with_role("leader");
    assert!(!p.check(&fake, "view", &order(1), &ctx()).is_allowed());
}

#[test]
fn tenant_scope_is_on_by_default_and_opt_out_is_explicit() {
    let p = policy(ALLOW_VIEW);
    let elsewhere = Resource::new("order", "ord-9", "store-2");
    assert!(!p.check(&agent(), "view", &elsewhere, &ctx()).is_allowed());
    let no_tenant = Principal::new("emp-1", "").with_role("agent");
    let untenanted = Resource::new("order", "ord-9", "");
    assert!(
        !p.check(&no_tenant, "view", &untenanted, &ctx())
            .is_allowed()
    );

    let global = policy(
        r#"
[[rules]]
name = "auditors-view-everywhere"
effect = "allow"
roles = ["auditor"]
permissions = ["order:view"]
cross_tenant = true
[[rules]]
name = "nobody-cancels"
effect = "deny"
roles = ["*"]
permissions = ["order:cancel"]
"#,
    );
    let auditor = Principal::new("aud-1", "hq").with_role("auditor");
    assert!(
        global
            .check(&auditor, "view", &elsewhere, &ctx())
            .is_allowed()
    );
    // Deny rules apply in every store, the principal's or not.
    let d = global.check(&auditor, "cancel", &elsewhere, leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::ForbiddenBy {
            rule: "nobody-cancels"
        }
    );
}

const CONDITIONS: &str = r#"
[[rules]]
name = "own-orders"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
when = { principal_is = "assigned_agent" }
[[rules]]
name = "small-orders"
effect = "allow"
roles = ["agent"]
permissions = ["order:cancel"]
when = { below = { total = 100 }, at_least = { total = 10 } }
[[rules]]
name = "mfa"
effect = "allow"
roles = ["lead"]
permissions = ["order:refund"]
when = { mfa_within = 60 }
[[rules]]
name = "with-ticket"
effect = "allow"
roles = ["auditor"]
permissions = ["order:view"]
when = { justification = "any" }
[[rules]]
name = "break-glass"
effect = "allow"
roles = ["auditor"]
permissions = ["ticket:*"]
[rules.when]
valid_from = 2025-06-15T00:00:00Z
valid_until = 1750100000
"#;

#[test]
fn each_condition_kind() {
    let p = policy(CONDITIONS);
    // principal_is
    assert!(p.check(&agent(), "refund", &order(1), &ctx()).is_allowed());
    let theirs = Resource::new("order", "o", "store-1").with("assigned_agent", "emp-2");
    assert!(!p.check(&agent(), "refund", &theirs, &ctx()).is_allowed());
    // numeric limits: 10 <= total < 100
    for (total, allowed) in [(9, false), (10, true), (99, true), (100, false)] {
        assert_eq!(
            p.check(&agent(), "cancel", &order(total), &ctx())
                .is_allowed(),
            allowed,
            "{total}"
        );
    }
    // MFA within 60 s
    let lead = Principal::new("emp-5", "store-1").with_role("lead");
    let other = Resource::new("order", "o", "store-1").with("assigned_agent", "emp-9");
    assert!(
        p.check(
            &lead,
            "refund",
            &other,
            &ctx().with_mfa_verified_at(NOW - 60)
        )
        .is_allowed()
    );
    assert!(
        !p.check(
            &lead,
            "refund",
            &other,
            &ctx().with_mfa_verified_at(NOW - 61)
        )
        .is_allowed()
    );
    // justification present
    let auditor = Principal::new("aud", "store-1").with_role("auditor");
    assert!(!p.check(&auditor, "view", &order(1), &ctx()).is_allowed());
    let ticketed = ctx().with_justification(Justification::ticket("INC-9"));
    assert!(p.check(&auditor, "view", &order(1), &ticketed).is_allowed());
    // time box: from 2025-06-15T00:00:00Z (1749945600) until 1750100000, exclusive
    let ticket = Resource::new("ticket", "t", "store-1");
    for (now, allowed) in [
        (1_749_945_599, false),
        (1_749_945_600, true),
        (1_750_099_999, true),
        (1_750_100_000, false),
    ] {
        assert_eq!(
            p.check(&auditor, "close", &ticket, &RequestContext::at(now))
                .is_allowed(),
            allowed,
            "{now}"
        );
    }
}

#[test]
fn missing_attributes_fail_closed() {
    let p = policy(&format!(
        "{CONDITIONS}{}",
        r#"
[[rules]]
name = "no-large-refunds"
effect = "deny"
roles = ["*"]
permissions = ["order:refund"]
when = { at_least = { total = 1000 } }
"#
    ));
    let bare = Resource::new("order", "o", "store-1").with("assigned_agent", "emp-1");
    // The allow rule's condition is met, but the deny rule cannot tell the total: it applies.
    let d = p.check(leak(agent()), "refund", &bare, leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::ForbiddenBy {
            rule: "no-large-refunds"
        }
    );
    // A total of the wrong type is as good as missing.
    let text_total = bare.clone().with("total", "12");
    assert!(
        !p.check(&agent(), "refund", &text_total, &ctx())
            .is_allowed()
    );
    assert!(
        p.check(&agent(), "refund", &bare.clone().with("total", 999), &ctx())
            .is_allowed()
    );
    // Missing assignee: the allow rule does not apply.
    let unassigned = Resource::new("order", "o", "store-1").with("total", 5);
    assert_eq!(
        p.check(&agent(), "refund", &unassigned, &ctx()).reason(),
        Reason::NoRuleAllowed
    );
    assert_eq!(
        unassigned.attribute("total"),
        Some(&AttributeValue::Integer(5))
    );
}

#[test]
fn deny_rule_on_missing_context_applies() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "no-view-under-incident"
effect = "deny"
roles = ["agent"]
permissions = ["order:view"]
when = { justification = "names_resource", mfa_within = 30 }
"#
    ));
    // Neither justification nor MFA given: the deny rule cannot be evaluated, so it applies.
    assert!(!p.check(&agent(), "view", &order(1), &ctx()).is_allowed());
    // A justification naming another resource makes one condition false: the deny lifts.
    let other = ctx()
        .with_justification(Justification::ticket("T").naming("order", "ord-2"))
        .with_mfa_verified_at(NOW);
    assert!(p.check(&agent(), "view", &order(1), &other).is_allowed());
}

#[test]
fn field_grants_union_and_restrictions_cap() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "leads-see-phone"
effect = "allow"
roles = ["lead"]
permissions = ["order:view"]
fields = { phone = "masked", email = "full" }
[[rules]]
name = "mask-email-for-big-orders"
effect = "deny"
roles = ["*"]
permissions = ["order:*"]
mask_fields = ["email", "items"]
hide_fields = ["phone"]
when = { at_least = { total = 500 } }
"#
    ));
    let lead = Principal::new("emp-2", "store-1").with_role("lead");
    let d = p.check(&lead, "view", leak(order(10)), leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::AllowedBy {
            rule: "agents-view"
        }
    );
    assert_eq!(d.restricted_by(), None);
    let v: Vec<_> = d.view().iter().map(|(f, _, v)| (f.to_owned(), v)).collect();
    assert_eq!(
        v,
        [
            ("email".to_owned(), Visibility::Full),
            ("items".to_owned(), Visibility::Full),
            ("phone".to_owned(), Visibility::Masked)
        ]
    );
    let big = order(900);
    let d = p.check(&lead, "view", &big, leak(ctx()));
    assert!(d.is_allowed());
    assert_eq!(d.restricted_by(), Some("mask-email-for-big-orders"));
    assert_eq!(d.view().visibility("email"), Visibility::Masked);
    assert_eq!(d.view().visibility("items"), Visibility::Masked);
    assert_eq!(d.view().visibility("phone"), Visibility::Hidden);
    assert_eq!(
        d.view().show("email", "jo@example.com").unwrap(),
        "j***@example.com"
    );
    assert_eq!(d.view().show("phone", "+1 555 0100"), None);
    assert_eq!(d.view().show("undeclared", "x"), None);
    // A restriction without a total cannot be evaluated: it applies (fail closed).
    let no_total = Resource::new("order", "o", "store-1");
    let d = p.check(&lead, "view", &no_total, leak(ctx()));
    assert_eq!(d.view().visibility("phone"), Visibility::Hidden);
}

#[test]
fn wildcards_expand_over_declared_actions_and_types() {
    let p = policy(
        r#"
[[rules]]
name = "auditors-view-all"
effect = "allow"
roles = ["auditor"]
permissions = ["*:view"]
[[rules]]
name = "leads-do-anything-with-tickets"
effect = "allow"
roles = ["lead"]
permissions = ["ticket:*"]
"#,
    );
    let auditor = Principal::new("a", "store-1").with_role("auditor");
    let ticket = Resource::new("ticket", "t", "store-1");
    assert!(p.check(&auditor, "view", &order(1), &ctx()).is_allowed());
    assert!(p.check(&auditor, "view", &ticket, &ctx()).is_allowed());
    assert!(!p.check(&auditor, "close", &ticket, &ctx()).is_allowed());
    let lead = Principal::new("l", "store-1").with_role("lead");
    assert!(p.check(&lead, "close", &ticket, &ctx()).is_allowed());
    assert!(!p.check(&lead, "view", &order(1), &ctx()).is_allowed());
}

#[test]
fn json_and_toml_agree() {
    let toml_text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
    let value: toml::Value = toml::from_str(&toml_text).unwrap();
    let json_text = serde_json::to_string_pretty(&value).unwrap();
    let from_toml = Policy::from_toml(&toml_text, "shop.toml").unwrap();
    let from_json = Policy::from_json(&json_text, "shop.json").unwrap();
    let agent = Principal::new("e", "s")
        .with_role("support")
        .with_role("finance");
    let resources = [
        Resource::new("customer", "c", "s"),
        Resource::new("order", "o", "s")
            .with("assigned_agent", "e")
            .with("total", 50),
        Resource::new("payment_card", "p", "s"),
    ];
    let contexts = [
        ctx(),
        ctx().with_mfa_verified_at(NOW),
        ctx().with_justification(Justification::ticket("t").naming("customer", "c")),
    ];
    for r in &resources {
        for c in &contexts {
            for action in ["view", "refund", "delete", "update_shipping"] {
                let a = from_toml.check(&agent, action, r, c);
                let b = from_json.check(&agent, action, r, c);
                assert_eq!(a.reason(), b.reason());
                assert_eq!(a.view(), b.view());
            }
        }
    }
}

#[test]
fn handle_swaps_atomically_and_keeps_the_old_policy_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, format!("{HEAD}{ALLOW_VIEW}")).unwrap();
    let handle = PolicyHandle::new(Policy::from_path(&path).unwrap());
    let (who, what, c) = (agent(), order(1), ctx());
    assert!(
        handle
            .snapshot()
            .check(&who, "view", &what, &c)
            .is_allowed()
    );

    std::fs::write(&path, format!("{HEAD}[[rules]]\nname = \"broken\"\n")).unwrap();
    assert!(handle.reload_from_path(&path).is_err());
    assert!(
        handle
            .snapshot()
            .check(&who, "view", &what, &c)
            .is_allowed()
    );

    std::fs::write(&path, HEAD).unwrap();
    let old = handle.reload_from_path(&path).unwrap();
    assert!(old.check(&who, "view", &what, &c).is_allowed());
    assert!(
        !handle
            .snapshot()
            .check(&who, "view", &what, &c)
            .is_allowed()
    );
    assert!(format!("{handle:?}").contains("policy.toml"));
}

#[test]
fn readers_never_see_a_mixed_policy_during_reloads() {
    // Two policies that differ in two rules; any snapshot must be entirely one or the other.
    let a = format!("{HEAD}{ALLOW_VIEW}");
    let b = format!(
        "{HEAD}{}",
        r#"
[[rules]]
name = "agents-refund"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
"#
    );
    let handle = Arc::new(PolicyHandle::new(Policy::from_toml(&a, "a").unwrap()));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let handle = Arc::clone(&handle);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let (who, what, c) = (agent(), order(1), ctx());
                let mut checks = 0u64;
                while !stop.load(Ordering::Relaxed) || checks < 1_000 {
                    let policy = handle.snapshot();
                    let view = policy.check(&who, "view", &what, &c).is_allowed();
                    let refund = policy.check(&who, "refund", &what, &c).is_allowed();
                    assert!(view != refund, "mixed policy: view={view} refund={refund}");
                    assert_eq!(policy.source(), if view { "a" } else { "b" });
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for i in 0..200 {
        let text = if i % 2 == 0 { &b } else { &a };
        handle.replace(Policy::from_toml(text, if i % 2 == 0 { "b" } else { "a" }).unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() >= 1_000);
    }
}

// ---- deny-unless rules -----------------------------------------------------------------------

const VIEW_ONLY_AFTER_MFA: &str = r#"
[[rules]]
name = "orders-only-after-mfa"
effect = "deny"
roles = ["*"]
permissions = ["order:*"]
unless = { mfa_within = 30 }
"#;

#[test]
fn deny_unless_applies_when_its_condition_is_not_met_and_fails_closed() {
    let p = policy(&format!("{ALLOW_VIEW}{VIEW_ONLY_AFTER_MFA}"));
    let order = order(1);
    let step_up = Reason::StepUpRequired {
        within_secs: 30,
        rule: "orders-only-after-mfa",
    };
    for (context, allowed) in [
        (ctx().with_mfa_verified_at(NOW - 30), true),
        (ctx().with_mfa_verified_at(NOW), true),
        (ctx().with_mfa_verified_at(NOW - 31), false),
        // Missing or future-dated MFA is unknown: the deny rule applies.
        (ctx(), false),
        (ctx().with_mfa_verified_at(NOW + 1), false),
    ] {
        let d = p.check(leak(agent()), "view", &order, &context);
        assert_eq!(d.is_allowed(), allowed, "{context:?}");
        if !allowed {
            assert_eq!(d.reason(), step_up, "{context:?}");
            assert!(d.view().is_empty());
        }
    }
}

#[test]
fn deny_unless_on_a_condition_the_caller_cannot_meet_is_a_plain_forbid() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "small-orders-only"
effect = "deny"
roles = ["agent"]
permissions = ["order:view"]
unless = { below = { total = 100 } }
"#
    ));
    let (small, large) = (order(99), order(100));
    assert!(p.check(leak(agent()), "view", &small, &ctx()).is_allowed());
    assert_eq!(
        reason(&p, leak(agent()), "view", &large, &ctx()),
        (false, Some("small-orders-only".to_owned()))
    );
    // No total: unknown is "not met", so the deny applies.
    let no_total = Resource::new("order", "ord-1", "store-1");
    let d = p.check(leak(agent()), "view", &no_total, leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::ForbiddenBy {
            rule: "small-orders-only"
        }
    );
    // Unknown counts against `unless` and for `when`: a rule with both applies when the `when`
    // part is not false and the `unless` part is not all true.
    let both = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "assigned-large-orders-need-mfa"
effect = "deny"
roles = ["agent"]
permissions = ["order:view"]
when = { at_least = { total = 100 } }
unless = { mfa_within = 60 }
"#
    ));
    assert!(
        both.check(leak(agent()), "view", &small, &ctx())
            .is_allowed()
    );
    assert!(
        !both
            .check(leak(agent()), "view", &large, &ctx())
            .is_allowed()
    );
    assert!(
        !both
            .check(leak(agent()), "view", &no_total, &ctx())
            .is_allowed()
    );
    let fresh = ctx().with_mfa_verified_at(NOW);
    assert!(
        both.check(leak(agent()), "view", &large, &fresh)
            .is_allowed()
    );
}

#[test]
fn a_field_restriction_may_say_unless() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{}",
        r#"
[[rules]]
name = "email-hidden-without-ticket"
effect = "deny"
roles = ["*"]
permissions = ["order:view"]
hide_fields = ["email"]
unless = { justification = "names_resource" }
"#
    ));
    let order = order(1);
    let plain = p.check(leak(agent()), "view", &order, leak(ctx()));
    assert!(plain.is_allowed());
    assert_eq!(plain.view().visibility("email"), Visibility::Hidden);
    assert_eq!(plain.restricted_by(), Some("email-hidden-without-ticket"));
    let ticket = ctx().with_justification(Justification::ticket("T").naming("order", "ord-1"));
    let with_ticket = p.check(leak(agent()), "view", &order, leak(ticket));
    assert_eq!(with_ticket.view().visibility("email"), Visibility::Masked);
    assert_eq!(with_ticket.restricted_by(), None);
}

// ---- actionable denials ----------------------------------------------------------------------

#[test]
fn denials_say_when_a_step_up_or_a_justification_would_allow() {
    let p = policy(
        r#"
[[rules]]
name = "refund-after-mfa"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
when = { mfa_within = 120, below = { total = 1000 } }

[[rules]]
name = "view-with-ticket"
effect = "allow"
roles = ["agent"]
permissions = ["order:view"]
when = { justification = "names_resource" }

[[rules]]
name = "cancel-with-mfa-and-ticket"
effect = "allow"
roles = ["agent"]
permissions = ["order:cancel"]
when = { justification = "any", mfa_within = 60 }
"#,
    );
    let (small, large) = (order(10), order(5000));
    let d = p.check(leak(agent()), "refund", &small, leak(ctx()));
    assert!(!d.is_allowed() && d.view().is_empty());
    assert_eq!(
        d.reason(),
        Reason::StepUpRequired {
            within_secs: 120,
            rule: "refund-after-mfa"
        }
    );
    assert!(d.reason().is_actionable());
    assert_eq!(d.audit_record().reason, ReasonKind::StepUpRequired);
    assert_eq!(
        d.audit_record().explanation,
        "an MFA step-up within 120 s is required (rule `refund-after-mfa`)"
    );
    // A condition the caller cannot change (the amount) fails too: a step-up would not help.
    assert_eq!(
        p.check(leak(agent()), "refund", &large, leak(ctx()))
            .reason(),
        Reason::NoRuleAllowed
    );
    // Not the caller's store: nothing to offer either.
    let elsewhere = Resource::new("order", "ord-1", "store-2").with("total", 10);
    assert_eq!(
        p.check(leak(agent()), "refund", &elsewhere, leak(ctx()))
            .reason(),
        Reason::NoRuleAllowed
    );
    // A role the rule does not name: nothing to offer.
    assert_eq!(
        p.check(
            leak(Principal::new("x", "store-1").with_role("auditor")),
            "refund",
            &small,
            leak(ctx())
        )
        .reason(),
        Reason::NoRuleAllowed
    );

    let view = p.check(leak(agent()), "view", &small, leak(ctx()));
    assert_eq!(
        view.reason(),
        Reason::JustificationRequired {
            names_resource: true,
            rule: "view-with-ticket"
        }
    );
    // A ticket about another order is not enough: still a justification naming this one.
    let wrong = ctx().with_justification(Justification::ticket("T").naming("order", "ord-9"));
    assert_eq!(
        p.check(leak(agent()), "view", &small, leak(wrong)).reason(),
        Reason::JustificationRequired {
            names_resource: true,
            rule: "view-with-ticket"
        }
    );

    // Both needed: the step-up is asked for first, then the justification.
    let cancel = p.check(leak(agent()), "cancel", &small, leak(ctx()));
    assert_eq!(
        cancel.reason(),
        Reason::StepUpRequired {
            within_secs: 60,
            rule: "cancel-with-mfa-and-ticket"
        }
    );
    let stepped_up = ctx().with_mfa_verified_at(NOW);
    assert_eq!(
        p.check(leak(agent()), "cancel", &small, leak(stepped_up))
            .reason(),
        Reason::JustificationRequired {
            names_resource: false,
            rule: "cancel-with-mfa-and-ticket"
        }
    );
}

#[test]
fn a_forbid_still_wins_over_an_actionable_answer() {
    let p = policy(
        r#"
[[rules]]
name = "refund-after-mfa"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
when = { mfa_within = 120 }

[[rules]]
name = "refunds-need-mfa-within-30"
effect = "deny"
roles = ["*"]
permissions = ["order:refund"]
unless = { mfa_within = 30 }

[[rules]]
name = "no-refunds-of-large-orders"
effect = "deny"
roles = ["*"]
permissions = ["order:refund"]
when = { at_least = { total = 1000 } }
"#,
    );
    // Both MFA windows ask for a step-up: the tighter one is reported, with the first rule
    // asking for one.
    let small = order(10);
    assert_eq!(
        p.check(leak(agent()), "refund", &small, leak(ctx()))
            .reason(),
        Reason::StepUpRequired {
            within_secs: 30,
            rule: "refund-after-mfa"
        }
    );
    // 60 s old: the allow rule is satisfied, the deny-unless rule is not.
    let minute = ctx().with_mfa_verified_at(NOW - 60);
    assert_eq!(
        p.check(leak(agent()), "refund", &small, leak(minute))
            .reason(),
        Reason::StepUpRequired {
            within_secs: 30,
            rule: "refunds-need-mfa-within-30"
        }
    );
    // A plain forbid applies: no step-up would help, and the answer names the rule that
    // forbids for good, not the deny-unless rule that a step-up would lift.
    let large = order(5000);
    for context in [ctx(), ctx().with_mfa_verified_at(NOW)] {
        assert_eq!(
            p.check(leak(agent()), "refund", &large, leak(context))
                .reason(),
            Reason::ForbiddenBy {
                rule: "no-refunds-of-large-orders"
            }
        );
    }
}

// ---- typed entity references -----------------------------------------------------------------

#[test]
fn ownership_compares_the_kind_as_well_as_the_id() {
    let p = Policy::from_toml(
        r#"
version = 1
principal_kinds = ["employee", "service"]
[resource_types.order]
actions = ["refund"]
attributes = { assigned_agent = "ref:employee", total = "integer" }
[roles.agent]
[[rules]]
name = "refund-assigned"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
when = { principal_is = "assigned_agent" }
[[rules]]
name = "no-refunds-by-the-assignee-when-flagged"
effect = "deny"
roles = ["agent"]
permissions = ["order:refund"]
when = { principal_is = "assigned_agent", at_least = { total = 1000 } }
"#,
        "typed.toml",
    )
    .unwrap();
    let employee = Principal::new("e1", "s")
        .with_role("agent")
        .with_kind("employee");
    let service = Principal::new("e1", "s")
        .with_role("agent")
        .with_kind("service");
    let kindless = Principal::new("e1", "s").with_role("agent");
    let assigned = |value: AttributeValue| {
        Resource::new("order", "o", "s")
            .with("assigned_agent", value)
            .with("total", 10)
    };
    let allowed = |who: &Principal, r: Resource| p.check(who, "refund", &r, &ctx()).is_allowed();
    assert!(allowed(
        &employee,
        assigned(EntityRef::new("employee", "e1").into())
    ));
    // A plain id is taken to be of the declared kind.
    assert!(allowed(&employee, assigned("e1".into())));
    // The same id of another kind is someone else: the issue's "customer e1 is not employee e1".
    assert!(!allowed(
        &employee,
        assigned(EntityRef::new("customer", "e1").into())
    ));
    assert!(!allowed(
        &service,
        assigned(EntityRef::new("employee", "e1").into())
    ));
    // With two principal kinds, a principal without a kind is unknown: no allow ...
    assert!(!allowed(
        &kindless,
        assigned(EntityRef::new("employee", "e1").into())
    ));
    // ... and a deny rule on it applies (fail closed).
    let flagged = Resource::new("order", "o", "s")
        .with("assigned_agent", EntityRef::new("employee", "e1"))
        .with("total", 5000);
    let d = p.check(&kindless, "refund", &flagged, leak(ctx()));
    assert_eq!(
        d.reason(),
        Reason::ForbiddenBy {
            rule: "no-refunds-by-the-assignee-when-flagged"
        }
    );
    // A reference of the wrong kind is a wrong-type value: unknown, so the deny applies too.
    let wrong_kind = Resource::new("order", "o", "s")
        .with("assigned_agent", EntityRef::new("customer", "e1"))
        .with("total", 5000);
    assert!(
        !p.check(&employee, "refund", &wrong_kind, &ctx())
            .is_allowed()
    );
    assert_eq!(
        p.check(&employee, "refund", &wrong_kind, leak(ctx()))
            .reason(),
        Reason::ForbiddenBy {
            rule: "no-refunds-by-the-assignee-when-flagged"
        }
    );
}

#[test]
fn one_principal_kind_makes_kinds_implicit() {
    // `principal_kinds` absent: every principal is an `employee`, given or not.
    let p = policy(
        r#"
[[rules]]
name = "refund-assigned"
effect = "allow"
roles = ["agent"]
permissions = ["order:refund"]
when = { principal_is = "assigned_agent" }
"#,
    );
    let mine = order(1);
    assert!(p.check(&agent(), "refund", &mine, &ctx()).is_allowed());
    let typed = agent().with_kind("employee");
    assert!(p.check(&typed, "refund", &mine, &ctx()).is_allowed());
    let other_kind = agent().with_kind("service");
    assert!(!p.check(&other_kind, "refund", &mine, &ctx()).is_allowed());
    let customer_ref = Resource::new("order", "ord-1", "store-1")
        .with("assigned_agent", EntityRef::new("customer", "emp-1"));
    assert!(
        !p.check(&agent(), "refund", &customer_ref, &ctx())
            .is_allowed()
    );
}

// ---- owned decisions -------------------------------------------------------------------------

#[test]
fn owned_decisions_answer_exactly_like_borrowed_ones() {
    let p = policy(&format!(
        "{ALLOW_VIEW}{VIEW_ONLY_AFTER_MFA}{}",
        r#"
[[rules]]
name = "hide-phone"
effect = "deny"
roles = ["agent"]
permissions = ["order:view"]
hide_fields = ["email"]
"#
    ));
    let order = order(1);
    let record = [
        ("items", "2 mugs"),
        ("email", "jane@example.com"),
        ("phone", "+1 555 0100"),
    ];
    for context in [ctx(), ctx().with_mfa_verified_at(NOW)] {
        for action in ["view", "refund", "fly"] {
            let borrowed = p.check(leak(agent()), action, &order, leak(context.clone()));
            let owned = borrowed.into_owned();
            assert_eq!(owned.is_allowed(), borrowed.is_allowed());
            assert_eq!(owned.reason(), borrowed.reason());
            assert_eq!(owned.restricted_by(), borrowed.restricted_by());
            assert_eq!(owned.audit_record(), borrowed.audit_record());
            assert_eq!(owned.view().redact(record), borrowed.view().redact(record));
            assert_eq!(
                owned.view().iter().collect::<Vec<_>>(),
                borrowed.view().iter().collect::<Vec<_>>()
            );
            assert_eq!(owned.view().is_empty(), borrowed.view().is_empty());
            assert_eq!(
                owned.view().show("items", "x"),
                borrowed.view().show("items", "x")
            );
        }
    }
    let unknown = Resource::new("parcel", "p", "store-1");
    let owned = p.check(&agent(), "view", &unknown, &ctx()).into_owned();
    assert_eq!(
        owned.reason(),
        Reason::UnknownResourceType {
            resource_type: "parcel"
        }
    );
}

#[test]
fn owned_decisions_outlive_the_request_and_cross_threads() {
    fn decide(p: &Policy, total: i64) -> custodian::rbac::OwnedDecision {
        let who = Principal::new("emp-1", "store-1").with_role("agent");
        let what = Resource::new("order", "ord-1", "store-1").with("total", total);
        let context = RequestContext::at(NOW).with_mfa_verified_at(NOW);
        p.check(&who, "view", &what, &context).into_owned()
    }
    let p = policy(&format!("{ALLOW_VIEW}{VIEW_ONLY_AFTER_MFA}"));
    let decision = decide(&p, 1);
    drop(p);
    let shown = std::thread::spawn(move || {
        assert!(decision.is_allowed());
        decision
            .view()
            .redact([("email", "jane@example.com")])
            .into_iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    assert_eq!(shown, ["email=j***@example.com"]);
}

#[test]
fn json_policies_have_unless_and_typed_references_too() {
    let p = Policy::from_json(
        r#"{
            "version": 1,
            "principal_kinds": ["employee", "service"],
            "resource_types": {"order": {"actions": ["refund"], "attributes": {"assigned_agent": "ref:employee"}}},
            "roles": {"agent": {}},
            "rules": [
                {"name": "refund-assigned", "effect": "allow", "roles": ["agent"],
                 "permissions": ["order:refund"], "when": {"principal_is": "assigned_agent"}},
                {"name": "refunds-after-mfa", "effect": "deny", "roles": ["*"],
                 "permissions": ["order:*"], "unless": {"mfa_within": 60}}
            ]
        }"#,
        "p.json",
    )
    .unwrap();
    let who = Principal::new("e1", "s")
        .with_role("agent")
        .with_kind("employee");
    let mine =
        Resource::new("order", "o", "s").with("assigned_agent", EntityRef::new("employee", "e1"));
    let fresh = ctx().with_mfa_verified_at(NOW);
    assert!(p.check(&who, "refund", &mine, &fresh).is_allowed());
    assert_eq!(
        p.check(&who, "refund", &mine, leak(ctx())).reason(),
        Reason::StepUpRequired {
            within_secs: 60,
            rule: "refunds-after-mfa"
        }
    );
    let bot = Principal::new("e1", "s")
        .with_role("agent")
        .with_kind("service");
    assert!(!p.check(&bot, "refund", &mine, &fresh).is_allowed());
}
