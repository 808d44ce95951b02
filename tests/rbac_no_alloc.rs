//! A check does not allocate: decisions and field views borrow from the policy and the request.
//! (`allocation-counter` swaps in a counting global allocator for this test binary only.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custodian::rbac::{
    EntityRef, Justification, Policy, PolicyHandle, Principal, RequestContext, Resource,
};

#[test]
fn checks_do_not_allocate() {
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
    let now = 1_750_000_000;
    let principals = [
        Principal::new("emp-1", "store-1").with_role("support"),
        Principal::new("emp-2", "store-1")
            .with_role("fulfillment")
            .with_role("support"),
        Principal::new("emp-3", "store-1").with_role("finance"),
        Principal::new("emp-4", "store-1").with_role("admin"),
        Principal::new("emp-5", "store-2").with_role("ghost"),
    ];
    let resources = [
        Resource::new("customer", "cust-1", "store-1"),
        Resource::new("order", "ord-1", "store-1")
            .with("assigned_agent", "emp-1")
            .with("total", 500),
        Resource::new("order", "ord-2", "store-1"),
        Resource::new("order", "ord-3", "store-1")
            .with("assigned_agent", EntityRef::new("employee", "emp-1"))
            .with("total", 500),
        Resource::new("payment_card", "card-1", "store-1"),
        Resource::new("parcel", "p-1", "store-1"),
    ];
    let contexts = [
        RequestContext::at(now),
        RequestContext::at(now).with_mfa_verified_at(now - 10),
        RequestContext::at(now).with_mfa_verified_at(now - 1_000),
        RequestContext::at(now)
            .with_justification(Justification::ticket("T").naming("customer", "cust-1")),
    ];
    let actions = ["view", "refund", "update_shipping", "delete", "fly"];
    let handle = PolicyHandle::new(policy);

    // arc-swap registers each thread once (a single allocation on its first snapshot); a
    // service thread pays that once, not per check.
    drop(handle.snapshot());

    let mut allowed = 0;
    let mut actionable = 0;
    let info = allocation_counter::measure(|| {
        for p in &principals {
            for r in &resources {
                for c in &contexts {
                    for a in actions {
                        let snapshot = handle.snapshot();
                        let decision = snapshot.check(p, a, r, c);
                        // Step-up and justification answers are computed without allocating.
                        if decision.reason().is_actionable() {
                            actionable += 1;
                        }
                        if decision.is_allowed() {
                            allowed += 1;
                            // Reading the view and the reason does not allocate either.
                            assert!(decision.view().iter().count() > 0);
                            assert!(decision.reason().rule().is_some());
                        }
                    }
                }
            }
        }
    });
    assert!(allowed > 10, "the workload should include allowed requests");
    assert!(
        actionable > 0,
        "the workload should include step-up answers"
    );
    assert_eq!(info.count_total, 0, "{info:?}");

    // The counter works: building an audit record does allocate.
    let snapshot = handle.snapshot();
    let decision = snapshot.check(&principals[0], "view", &resources[0], &contexts[0]);
    let info = allocation_counter::measure(|| {
        let _ = decision.audit_record();
    });
    assert!(info.count_total > 0);
}
