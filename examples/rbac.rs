//! Loads the shop policy, runs its test file, shows a few decisions with their reasons (a
//! denial that a step-up would lift says so), then renders a customer record as a support agent
//! may see it.
//!
//! Run with `cargo run --example rbac`.

use custodian::rbac::{
    EntityRef, Justification, Policy, Principal, Reason, RequestContext, Resource,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policies/shop.toml");
    let policy = Policy::from_path(path)?;
    println!("loaded {} (sha-256 {})", policy.source(), policy.digest());
    for warning in policy.warnings() {
        println!("{warning}");
    }
    let tests = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.tests.toml"
    );
    let report = policy.run_tests(tests)?;
    println!("{report}\n");

    // The clock is passed in; a service would use the request's time.
    let now = 1_750_000_000;
    let plain = RequestContext::at(now);

    let agent = Principal::new("emp-17", "store-3").with_role("support");
    let packer = Principal::new("emp-40", "store-3").with_role("fulfillment");
    let clerk = Principal::new("emp-82", "store-3").with_role("finance");
    let admin = Principal::new("emp-01", "store-3").with_role("admin");

    let customer = Resource::new("customer", "cust-42", "store-3");
    let small_order = Resource::new("order", "ord-1001", "store-3")
        .with("assigned_agent", "emp-17")
        .with("customer_id", "cust-42")
        .with("total", 4_250);
    // A typed reference: the order is assigned to employee emp-17 (not a customer with that id).
    let large_order = Resource::new("order", "ord-1002", "store-3")
        .with("assigned_agent", EntityRef::new("employee", "emp-17"))
        .with("customer_id", "cust-42")
        .with("total", 18_900);
    let other_store = Resource::new("customer", "cust-77", "store-4");
    let card = Resource::new("payment_card", "card-9", "store-3").with("customer_id", "cust-42");
    let ticket = RequestContext::at(now)
        .with_justification(Justification::ticket("SUP-5521").naming("customer", "cust-42"));
    let step_up = RequestContext::at(now).with_mfa_verified_at(now - 120);

    let cases = [
        (
            "support views a customer",
            &agent,
            "view",
            &customer,
            &plain,
        ),
        (
            "support views the customer with a ticket",
            &agent,
            "view",
            &customer,
            &ticket,
        ),
        (
            "support refunds an assigned 42.50 order",
            &agent,
            "refund",
            &small_order,
            &plain,
        ),
        (
            "support refunds an assigned 189.00 order",
            &agent,
            "refund",
            &large_order,
            &plain,
        ),
        (
            "support views a customer of another store",
            &agent,
            "view",
            &other_store,
            &plain,
        ),
        (
            "fulfillment views a customer",
            &packer,
            "view",
            &customer,
            &plain,
        ),
        (
            "fulfillment views an order",
            &packer,
            "view",
            &small_order,
            &plain,
        ),
        (
            "finance views a card without MFA",
            &clerk,
            "view",
            &card,
            &plain,
        ),
        (
            "finance views a card 2 minutes after MFA",
            &clerk,
            "view",
            &card,
            &step_up,
        ),
        (
            "support deletes a customer",
            &agent,
            "delete",
            &customer,
            &plain,
        ),
        (
            "admin deletes a customer",
            &admin,
            "delete",
            &customer,
            &plain,
        ),
    ];
    for (label, principal, action, resource, context) in cases {
        let decision = policy.check(principal, action, resource, context);
        let verdict = if decision.is_allowed() {
            "ALLOW"
        } else {
            "DENY "
        };
        let visible: Vec<String> = decision
            .view()
            .iter()
            .filter(|(_, _, v)| *v != custodian::rbac::Visibility::Hidden)
            .map(|(field, _, v)| format!("{field}={v}"))
            .collect();
        let reason = decision.reason();
        // What a web service would answer: 401 asks the client to step up, 403 is final.
        let status = match reason {
            _ if decision.is_allowed() => 200,
            Reason::StepUpRequired { .. } => 401,
            _ => 403,
        };
        println!("{verdict} {status} {label}: {reason}");
        if !visible.is_empty() {
            println!("      fields: {}", visible.join(", "));
        }
    }

    // The record as stored, and as the support agent may see it without a ticket.
    let record = [
        ("name", "Jane Doe"),
        ("email", "jane.doe@example.com"),
        ("phone", "+1 (555) 010-4477"),
        ("address", "12 Harbour Street, Portsmouth"),
    ];
    let decision = policy.check(&agent, "view", &customer, &plain);
    println!("\ncustomer cust-42 as support sees it:");
    for (field, value) in decision.view().redact(record) {
        println!("  {field}: {value}");
    }

    let audit = decision.audit_record();
    println!("\naudit record: {}", serde_json::to_string(&audit)?);
    Ok(())
}
