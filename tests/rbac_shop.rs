//! Every rule of the shipped shop policy (`examples/policies/shop.toml`), through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::rbac::{
    Justification, Policy, Principal, Reason, RequestContext, Resource, Visibility,
};

const NOW: u64 = 1_750_000_000;

fn shop() -> Policy {
    Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap()
}

fn employee(role: &str) -> Principal {
    Principal::new(format!("emp-{role}"), "store-3").with_role(role)
}

fn customer() -> Resource {
    Resource::new("customer", "cust-42", "store-3")
}

fn order(assigned: &str, total: i64) -> Resource {
    Resource::new("order", "ord-1", "store-3")
        .with("assigned_agent", assigned)
        .with("customer_id", "cust-42")
        .with("total", total)
}

fn card() -> Resource {
    Resource::new("payment_card", "card-1", "store-3").with("customer_id", "cust-42")
}

fn at() -> RequestContext {
    RequestContext::at(NOW)
}

fn allowed_by(
    policy: &Policy,
    p: &Principal,
    action: &str,
    r: &Resource,
    c: &RequestContext,
) -> String {
    let decision = policy.check(p, action, r, c);
    assert!(
        decision.is_allowed(),
        "{action} on {}: {}",
        r.type_name(),
        decision.reason()
    );
    decision.reason().rule().unwrap().to_owned()
}

fn denied(
    policy: &Policy,
    p: &Principal,
    action: &str,
    r: &Resource,
    c: &RequestContext,
) -> Reason<'static> {
    let decision = policy.check(p, action, r, c);
    assert!(
        !decision.is_allowed(),
        "{action} on {} allowed: {}",
        r.type_name(),
        decision.reason()
    );
    assert!(decision.view().is_empty(), "a denial hides every field");
    match decision.reason() {
        Reason::ForbiddenBy { rule } => Reason::ForbiddenBy {
            rule: rule.to_owned().leak(),
        },
        Reason::NoRuleAllowed => Reason::NoRuleAllowed,
        Reason::StepUpRequired { within_secs, rule } => Reason::StepUpRequired {
            within_secs,
            rule: rule.to_owned().leak(),
        },
        Reason::JustificationRequired {
            names_resource,
            rule,
        } => Reason::JustificationRequired {
            names_resource,
            rule: rule.to_owned().leak(),
        },
        other => panic!("unexpected reason {other:?}"),
    }
}

#[test]
fn roles_and_inheritance() {
    let policy = shop();
    assert_eq!(policy.roles().collect::<Vec<_>>().len(), 4);
    let mut admin = policy.effective_roles("admin");
    admin.sort_unstable();
    assert_eq!(admin, ["admin", "finance", "fulfillment", "support"]);
    assert_eq!(policy.effective_roles("support"), ["support"]);
}

#[test]
fn support_views_customers_name_and_masked_email() {
    let policy = shop();
    let (agent, customer, context) = (employee("support"), customer(), at());
    let decision = policy.check(&agent, "view", &customer, &context);
    assert_eq!(
        decision.reason(),
        Reason::AllowedBy {
            rule: "support-views-customers"
        }
    );
    let view = decision.view();
    assert_eq!(view.visibility("name"), Visibility::Full);
    assert_eq!(view.visibility("email"), Visibility::Masked);
    assert_eq!(view.visibility("phone"), Visibility::Hidden);
    assert_eq!(view.visibility("address"), Visibility::Hidden);
    let shown = view.redact([
        ("name", "Jane Doe"),
        ("email", "jane@example.com"),
        ("phone", "+1 555 123 4567"),
        ("address", "1 Main St"),
    ]);
    assert_eq!(shown.len(), 2);
    assert_eq!(shown[0], ("name", "Jane Doe".into()));
    assert_eq!(shown[1], ("email", "j***@example.com".into()));
}

#[test]
fn support_sees_full_pii_only_with_a_ticket_for_that_customer() {
    let policy = shop();
    let agent = employee("support");
    let right =
        at().with_justification(Justification::ticket("SUP-1").naming("customer", "cust-42"));
    let customer = customer();
    let decision = policy.check(&agent, "view", &customer, &right);
    assert!(decision.is_allowed());
    for field in ["name", "email", "phone", "address"] {
        assert_eq!(
            decision.view().visibility(field),
            Visibility::Full,
            "{field}"
        );
    }
    // A ticket about someone else, or not naming anyone, does not unlock PII.
    for context in [
        at().with_justification(Justification::ticket("SUP-2").naming("customer", "cust-43")),
        at().with_justification(Justification::ticket("SUP-3")),
    ] {
        let decision = policy.check(&agent, "view", &customer, &context);
        assert_eq!(decision.view().visibility("phone"), Visibility::Hidden);
        assert_eq!(decision.view().visibility("email"), Visibility::Masked);
    }
}

#[test]
fn support_views_orders_with_masked_contact_data() {
    let policy = shop();
    let (agent, any_order, context) = (employee("support"), order("emp-x", 100), at());
    let decision = policy.check(&agent, "view", &any_order, &context);
    assert_eq!(
        decision.reason(),
        Reason::AllowedBy {
            rule: "support-views-orders"
        }
    );
    assert_eq!(decision.view().visibility("items"), Visibility::Full);
    assert_eq!(
        decision.view().visibility("customer_email"),
        Visibility::Masked
    );
    assert_eq!(
        decision.view().visibility("customer_phone"),
        Visibility::Masked
    );
}

#[test]
fn support_refunds_only_assigned_orders_below_100() {
    let policy = shop();
    let agent = employee("support");
    let me = agent.id().to_owned();
    assert_eq!(
        allowed_by(&policy, &agent, "refund", &order(&me, 9_999), &at()),
        "support-refunds-assigned-small-orders"
    );
    assert_eq!(
        denied(&policy, &agent, "refund", &order(&me, 10_000), &at()),
        Reason::NoRuleAllowed
    );
    assert_eq!(
        denied(&policy, &agent, "refund", &order("emp-other", 50), &at()),
        Reason::NoRuleAllowed
    );
    // Without an assignee or a total the rule cannot be evaluated, so it does not allow.
    let unassigned = Resource::new("order", "ord-2", "store-3").with("total", 50);
    assert_eq!(
        denied(&policy, &agent, "refund", &unassigned, &at()),
        Reason::NoRuleAllowed
    );
    let no_total = Resource::new("order", "ord-3", "store-3").with("assigned_agent", me.as_str());
    assert_eq!(
        denied(&policy, &agent, "refund", &no_total, &at()),
        Reason::NoRuleAllowed
    );
}

#[test]
fn fulfillment_views_orders_and_updates_shipping_without_contact_data() {
    let policy = shop();
    let packer = employee("fulfillment");
    for action in ["view", "update_shipping"] {
        let (any_order, context) = (order("x", 100), at());
        let decision = policy.check(&packer, action, &any_order, &context);
        assert_eq!(
            decision.reason(),
            Reason::AllowedBy {
                rule: "fulfillment-handles-orders"
            }
        );
        assert_eq!(
            decision.view().visibility("shipping_address"),
            Visibility::Full
        );
        assert_eq!(
            decision.view().visibility("customer_email"),
            Visibility::Hidden
        );
        assert_eq!(decision.view().visibility("total"), Visibility::Hidden);
    }
    assert_eq!(
        denied(&policy, &packer, "refund", &order("x", 100), &at()),
        Reason::NoRuleAllowed
    );
}

#[test]
fn fulfillment_is_denied_customer_pii_even_with_another_role() {
    let policy = shop();
    let packer = employee("fulfillment");
    for action in ["view", "update", "delete"] {
        // For `delete` two deny rules apply; the first in file order is named.
        assert_eq!(
            denied(&policy, &packer, action, &customer(), &at()),
            Reason::ForbiddenBy {
                rule: "fulfillment-no-customer-pii"
            }
        );
    }
    // Someone in both support and fulfillment: the deny wins over support's allow.
    let both = Principal::new("emp-9", "store-3")
        .with_role("support")
        .with_role("fulfillment");
    assert_eq!(
        denied(&policy, &both, "view", &customer(), &at()),
        Reason::ForbiddenBy {
            rule: "fulfillment-no-customer-pii"
        }
    );
    // And on orders their support view loses the contact fields.
    let (any_order, context) = (order("x", 1), at());
    let decision = policy.check(&both, "view", &any_order, &context);
    assert!(decision.is_allowed());
    assert_eq!(
        decision.restricted_by(),
        Some("fulfillment-no-contact-data-on-orders")
    );
    assert_eq!(
        decision.view().visibility("customer_email"),
        Visibility::Hidden
    );
    assert_eq!(
        decision.view().visibility("customer_phone"),
        Visibility::Hidden
    );
    assert_eq!(decision.view().visibility("total"), Visibility::Full);
}

#[test]
fn finance_views_and_refunds_orders() {
    let policy = shop();
    let clerk = employee("finance");
    assert_eq!(
        allowed_by(&policy, &clerk, "view", &order("x", 1), &at()),
        "finance-views-and-refunds-orders"
    );
    assert_eq!(
        allowed_by(&policy, &clerk, "refund", &order("x", 1_000_000), &at()),
        "finance-views-and-refunds-orders"
    );
    assert_eq!(
        denied(&policy, &clerk, "view", &customer(), &at()),
        Reason::NoRuleAllowed
    );
}

#[test]
fn finance_views_cards_only_within_five_minutes_of_mfa() {
    let policy = shop();
    let clerk = employee("finance");
    let fresh = at().with_mfa_verified_at(NOW - 300);
    let card_on_file = card();
    let decision = policy.check(&clerk, "view", &card_on_file, &fresh);
    assert_eq!(
        decision.reason(),
        Reason::AllowedBy {
            rule: "finance-views-cards"
        }
    );
    assert_eq!(decision.view().visibility("number"), Visibility::Full);
    // Stale, missing or future-dated MFA: the deny-unless rule applies, and since finance
    // would be allowed after a step-up, the denial says so.
    let step_up = Reason::StepUpRequired {
        within_secs: 300,
        rule: "cards-only-after-mfa",
    };
    let stale = at().with_mfa_verified_at(NOW - 301);
    assert_eq!(denied(&policy, &clerk, "view", &card(), &stale), step_up);
    assert_eq!(denied(&policy, &clerk, "view", &card(), &at()), step_up);
    let future = at().with_mfa_verified_at(NOW + 60);
    assert_eq!(denied(&policy, &clerk, "view", &card(), &future), step_up);
    // Support has no card access at all: with MFA nothing allows it, and without MFA the
    // card rule forbids it (a step-up would not help, so it is not offered).
    assert_eq!(
        denied(&policy, &employee("support"), "view", &card(), &fresh),
        Reason::NoRuleAllowed
    );
    assert_eq!(
        denied(&policy, &employee("support"), "view", &card(), &at()),
        Reason::ForbiddenBy {
            rule: "cards-only-after-mfa"
        }
    );
}

#[test]
fn the_card_rule_binds_every_role_without_repeating_mfa_in_allow_rules() {
    // The allow rule for cards has no MFA condition; the deny-unless rule supplies it, for
    // every principal (admin included) and for any allow rule a later edit might add.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
    let with_extra_allow = format!(
        "{text}\n[[rules]]\nname = \"support-views-cards\"\neffect = \"allow\"\nroles = [\"support\"]\npermissions = [\"payment_card:view\"]\n"
    );
    let policy = Policy::from_toml(&with_extra_allow, "shop-plus.toml").unwrap();
    let (agent, card_on_file, no_mfa) = (employee("support"), card(), at());
    let decision = policy.check(&agent, "view", &card_on_file, &no_mfa);
    assert!(!decision.is_allowed());
    assert_eq!(
        decision.reason(),
        Reason::StepUpRequired {
            within_secs: 300,
            rule: "cards-only-after-mfa"
        }
    );
    let fresh = at().with_mfa_verified_at(NOW);
    assert!(
        policy
            .check(&agent, "view", &card_on_file, &fresh)
            .is_allowed()
    );
    let admin = employee("admin");
    assert!(
        !policy
            .check(&admin, "view", &card_on_file, &no_mfa)
            .is_allowed()
    );
}

#[test]
fn only_admin_deletes_customers() {
    let policy = shop();
    for role in ["support", "finance", "intern"] {
        assert_eq!(
            denied(&policy, &employee(role), "delete", &customer(), &at()),
            Reason::ForbiddenBy {
                rule: "only-admin-deletes-customers"
            },
            "{role}"
        );
    }
    let nobody = Principal::new("svc", "store-3");
    assert!(
        !policy
            .check(&nobody, "delete", &customer(), &at())
            .is_allowed()
    );
    assert_eq!(
        allowed_by(&policy, &employee("admin"), "delete", &customer(), &at()),
        "admin-deletes-customers"
    );
}

#[test]
fn admin_inherits_everything_but_still_needs_mfa_and_tickets() {
    let policy = shop();
    let admin = employee("admin");
    let me = admin.id().to_owned();
    assert!(
        policy
            .check(&admin, "view", &customer(), &at())
            .is_allowed()
    );
    assert!(
        policy
            .check(&admin, "refund", &order(&me, 1), &at())
            .is_allowed()
    );
    assert!(
        policy
            .check(&admin, "update_shipping", &order("x", 1), &at())
            .is_allowed()
    );
    // Admin is excepted from fulfillment's prohibitions.
    let (any_order, context) = (order("x", 1), at());
    let decision = policy.check(&admin, "view", &any_order, &context);
    assert_eq!(decision.restricted_by(), None);
    assert_eq!(
        decision.view().visibility("customer_email"),
        Visibility::Masked
    );
    // Inherited conditions still hold.
    assert!(!policy.check(&admin, "view", &card(), &at()).is_allowed());
    assert!(
        policy
            .check(&admin, "view", &card(), &at().with_mfa_verified_at(NOW))
            .is_allowed()
    );
    let (customer, context) = (customer(), at());
    assert_eq!(
        policy
            .check(&admin, "view", &customer, &context)
            .view()
            .visibility("phone"),
        Visibility::Hidden
    );
}

#[test]
fn nobody_acts_across_stores() {
    let policy = shop();
    let mfa = at()
        .with_mfa_verified_at(NOW)
        .with_justification(Justification::ticket("T").naming("customer", "cust-42"));
    let elsewhere = |r: Resource| {
        Resource::new(r.type_name(), r.id(), "store-4")
            .with("assigned_agent", "emp-support")
            .with("customer_id", "cust-42")
            .with("total", 1)
    };
    for role in ["support", "fulfillment", "finance", "admin"] {
        let p = employee(role);
        for (action, resource) in [
            ("view", customer()),
            ("delete", customer()),
            ("view", order("emp-support", 1)),
            ("refund", order("emp-support", 1)),
            ("update_shipping", order("x", 1)),
            ("view", card()),
        ] {
            let resource = elsewhere(resource);
            let decision = policy.check(&p, action, &resource, &mfa);
            assert!(
                !decision.is_allowed(),
                "{role} {action}: {}",
                decision.reason()
            );
        }
    }
}

#[test]
fn audit_record_of_a_shop_decision() {
    let policy = shop();
    let context =
        at().with_justification(Justification::ticket("SUP-7").naming("customer", "cust-42"));
    let agent = employee("support");
    let customer = customer();
    let record = policy
        .check(&agent, "view", &customer, &context)
        .audit_record();
    assert!(record.allowed);
    assert_eq!(record.rule.as_deref(), Some("support-views-customers"));
    assert_eq!(record.justification.as_deref(), Some("SUP-7"));
    assert_eq!(record.fields.len(), 4);
    assert_eq!(record.policy_digest, policy.digest());
    assert_eq!(record.policy_digest.len(), 64);
    let json = serde_json::to_string(&record).unwrap();
    let back: custodian::rbac::AuditRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(back, record);
    assert!(json.contains("\"reason\":\"allowed_by_rule\""));

    let denied = policy
        .check(&agent, "delete", &customer, &context)
        .audit_record();
    assert!(!denied.allowed);
    assert_eq!(
        denied.explanation,
        "forbidden by rule `only-admin-deletes-customers`"
    );
    assert!(denied.fields.is_empty());
}

#[test]
fn an_mfa_step_up_counts_only_for_the_user_who_made_it() {
    use custodian::mfa::{StepUp, StepUpMethod};
    let policy = shop();
    let clerk = employee("finance");
    let own =
        StepUp::assume_verified_by_this_server(clerk.id(), "phone", StepUpMethod::Totp, NOW - 10);
    let with_own = at().with_step_up(&clerk, &own);
    let card_on_file = card();
    let decision = policy.check(&clerk, "view", &card_on_file, &with_own);
    assert!(decision.is_allowed(), "{:?}", decision.reason());
    let someone_else =
        StepUp::assume_verified_by_this_server("emp-other", "phone", StepUpMethod::Totp, NOW - 10);
    let with_other = at().with_step_up(&clerk, &someone_else);
    assert_eq!(
        denied(&policy, &clerk, "view", &card(), &with_other),
        Reason::StepUpRequired {
            within_secs: 300,
            rule: "cards-only-after-mfa"
        }
    );
}

#[test]
fn the_shop_policy_passes_its_own_test_file() {
    let report = shop()
        .run_tests(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/policies/shop.tests.toml"
        ))
        .unwrap();
    assert!(report.all_passed(), "{report}");
    assert!(report.passed() >= 20, "{report}");
}

#[test]
fn the_shop_policy_loads_without_warnings() {
    let policy = shop();
    assert!(policy.warnings().is_empty(), "{:?}", policy.warnings());
    assert_eq!(policy.principal_kinds().collect::<Vec<_>>(), ["employee"]);
}
