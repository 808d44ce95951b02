//! custodian and Cedar decide every request of the compared workloads alike (the benches check
//! this too before timing; here it runs without timing anything).

use custodian_comparisons::rbac;

#[test]
fn shop_policy_decisions_match_cedar() {
    let agreement = rbac::shop().unwrap().agreement().unwrap();
    assert_eq!(agreement.requests, 10_000);
    // A workload that allowed or denied everything would prove little.
    assert!(
        agreement.allowed > 1_000 && agreement.allowed < 9_000,
        "{agreement:?}"
    );
}

#[test]
fn generated_role_policies_match_cedar() {
    for roles in [4, 32, 256] {
        let agreement = rbac::roles(roles).unwrap().agreement().unwrap();
        assert!(
            agreement.allowed > 1_000 && agreement.allowed < 9_000,
            "{roles}: {agreement:?}"
        );
    }
}
