// Fuzz body for the RBAC policy loader: any text yields a policy or a located error, never a
// panic; a policy that loads answers checks without panicking, and denials hide every field.

use custodian::rbac::{EntityRef, Justification, Policy, Principal, RequestContext, Resource};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Policy::from_toml(&text, "fuzz.toml") {
        Ok(policy) => exercise(&policy),
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz.toml"), "{message}");
            if let Some(line) = error.location().line {
                assert!(line >= 1 && line <= text.lines().count() + 1, "{message}");
            }
        }
    }
    if let Ok(policy) = Policy::from_json(&text, "fuzz.json") {
        exercise(&policy);
    }
}

fn exercise(policy: &Policy) {
    for warning in policy.warnings() {
        assert!(warning.to_string().contains("warning: "));
    }
    let roles: Vec<String> = policy.roles().map(str::to_owned).collect();
    let mut principal = Principal::new("emp-1", "store-1").with_role("ghost");
    for role in &roles {
        let _ = policy.effective_roles(role);
        principal = principal.with_role(role.clone());
    }
    let kind = policy.principal_kinds().next().map(str::to_owned);
    assert!(kind.is_some(), "a policy always has a principal kind");
    let kind = kind.unwrap_or_default();
    let typed = principal.clone().with_kind(kind.clone());
    let context = RequestContext::at(1_750_000_000)
        .with_mfa_verified_at(1_749_999_990)
        .with_justification(Justification::ticket("T").naming("customer", "c-1"));
    for type_name in ["customer", "order", "payment_card", "doc", "a", ""] {
        let resource = Resource::new(type_name, "c-1", "store-1")
            .with("assigned_agent", "emp-1")
            .with("customer_id", EntityRef::new("customer", "c-1"))
            .with("owner", EntityRef::new(kind.clone(), "emp-1"))
            .with("total", 50);
        for action in ["view", "refund", "delete", "update_shipping", "read", "*", ""] {
            for who in [&principal, &typed] {
                let decision = policy.check(who, action, &resource, &context);
                if !decision.is_allowed() {
                    assert!(decision.view().is_empty());
                }
                let record = decision.audit_record();
                let owned = decision.into_owned();
                assert_eq!(owned.audit_record(), record);
                assert_eq!(owned.reason(), decision.reason());
            }
        }
    }
}
