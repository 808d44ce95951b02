//! RBAC workloads decided by custodian and by Cedar: the shop policy, and generated policies of a
//! chosen number of roles.
//!
//! Every request exists twice, built once before timing: as custodian's principal, action,
//! resource and [`RequestContext`], and as a Cedar [`cedar_policy::Request`] over entities that
//! carry the same attributes. [`Workload::agreement`] checks that both engines decide every
//! request alike, and that Cedar reports no evaluation error (an error would skip a policy).

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, RestrictedExpression,
};
use custodian::rbac::{Justification, Policy, Principal, RequestContext, Resource};

use crate::Rng;

/// Any error while building a workload.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The time of every request.
pub const NOW: u64 = 1_750_000_000;

/// One request, in both engines' terms.
pub struct Request {
    principal: usize,
    action: String,
    resource: usize,
    context: RequestContext,
    cedar: cedar_policy::Request,
}

/// A policy in both languages, the principals and resources it is asked about, and the requests.
pub struct Workload {
    policy: Policy,
    principals: Vec<Principal>,
    resources: Vec<Resource>,
    requests: Vec<Request>,
    cedar_policies: PolicySet,
    cedar_entities: Entities,
    authorizer: Authorizer,
}

/// What [`Workload::agreement`] found: both engines gave the same decision on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// Requests decided.
    pub requests: usize,
    /// Requests both engines allowed.
    pub allowed: usize,
}

impl Workload {
    /// The requests, in the order the benches ask them.
    pub fn requests(&self) -> &[Request] {
        &self.requests
    }

    /// Cedar policies in the set.
    pub fn cedar_policy_count(&self) -> usize {
        self.cedar_policies.policies().count()
    }

    /// custodian's decision: `Policy::check`, which also computes the field view.
    pub fn custodian(&self, r: &Request) -> bool {
        self.policy
            .check(
                &self.principals[r.principal],
                &r.action,
                &self.resources[r.resource],
                &r.context,
            )
            .is_allowed()
    }

    /// Cedar's decision: `Authorizer::is_authorized` over the policy set and the entities.
    pub fn cedar(&self, r: &Request) -> bool {
        self.authorizer
            .is_authorized(&r.cedar, &self.cedar_policies, &self.cedar_entities)
            .decision()
            == Decision::Allow
    }

    /// Checks that both engines decide every request alike, and that Cedar evaluated every
    /// policy without error.
    pub fn agreement(&self) -> Result<Agreement, String> {
        let mut allowed = 0;
        for (i, r) in self.requests.iter().enumerate() {
            let theirs =
                self.authorizer
                    .is_authorized(&r.cedar, &self.cedar_policies, &self.cedar_entities);
            if let Some(error) = theirs.diagnostics().errors().next() {
                return Err(format!("request {i}: cedar evaluation error: {error}"));
            }
            let ours = self.custodian(r);
            if ours != (theirs.decision() == Decision::Allow) {
                return Err(format!(
                    "request {i} ({} `{}` on {} `{}`): custodian allows: {ours}, cedar: {:?} by {:?}",
                    self.principals[r.principal].id(),
                    r.action,
                    self.resources[r.resource].type_name(),
                    self.resources[r.resource].id(),
                    theirs.decision(),
                    theirs.diagnostics().reason().collect::<Vec<_>>(),
                ));
            }
            allowed += usize::from(ours);
        }
        Ok(Agreement {
            requests: self.requests.len(),
            allowed,
        })
    }
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, Error> {
    Ok(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name)?,
        EntityId::new(id),
    ))
}

fn entity(
    uid: EntityUid,
    attributes: impl IntoIterator<Item = (&'static str, RestrictedExpression)>,
    parents: impl IntoIterator<Item = EntityUid>,
) -> Result<Entity, Error> {
    let attributes: HashMap<String, RestrictedExpression> = attributes
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    Ok(Entity::new(
        uid,
        attributes,
        parents.into_iter().collect::<HashSet<_>>(),
    )?)
}

fn text(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

/// A principal in both engines: custodian's `Principal` and Cedar's `Employee` entity, whose
/// parents are its roles.
fn employee(id: &str, store: &str, roles: &[&str]) -> Result<(Principal, Entity), Error> {
    let mut principal = Principal::new(id, store);
    let mut parents = Vec::new();
    for role in roles {
        principal = principal.with_role(*role);
        parents.push(uid("Role", role)?);
    }
    let cedar = entity(uid("Employee", id)?, [("store", text(store))], parents)?;
    Ok((principal, cedar))
}

/// The request context in both engines: custodian's, and Cedar's record of `now`,
/// `mfa_verified_at` (if any) and `justification_names` (if any).
fn contexts(
    mfa_verified_at: Option<u64>,
    names: Option<(&str, &str)>,
) -> Result<(RequestContext, Context), Error> {
    let mut ours = RequestContext::at(NOW);
    let mut pairs = vec![("now".to_owned(), RestrictedExpression::new_long(NOW as i64))];
    if let Some(at) = mfa_verified_at {
        ours = ours.with_mfa_verified_at(at);
        pairs.push((
            "mfa_verified_at".to_owned(),
            RestrictedExpression::new_long(at as i64),
        ));
    }
    if let Some((type_name, id)) = names {
        ours = ours.with_justification(Justification::ticket("SUP-1").naming(type_name, id));
        pairs.push((
            "justification_names".to_owned(),
            RestrictedExpression::new_entity_uid(uid(type_name, id)?),
        ));
    }
    Ok((ours, Context::from_pairs(pairs)?))
}

fn store(i: usize) -> String {
    format!("store-{}", i % 10)
}

/// The shipped shop policy (examples/policies/shop.toml) and its Cedar translation
/// (policies/shop.cedar): 200 employees in 10 stores, 2,000 customers each with a card on file,
/// 10,000 orders and 10,000 requests, the workload of the main crate's `rbac/shop` bench.
pub fn shop() -> Result<Workload, Error> {
    let policy = Policy::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/policies/shop.toml"
    ))?;
    let cedar_policies = PolicySet::from_str(include_str!("../policies/shop.cedar"))?;
    let mut entities = vec![
        entity(uid("Role", "support")?, [], [])?,
        entity(uid("Role", "fulfillment")?, [], [])?,
        entity(uid("Role", "finance")?, [], [])?,
        entity(
            uid("Role", "admin")?,
            [],
            [
                uid("Role", "support")?,
                uid("Role", "fulfillment")?,
                uid("Role", "finance")?,
            ],
        )?,
    ];

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
    let mut principals = Vec::new();
    for i in 0..200 {
        let mut held = vec![roles[rng.below(roles.len())]];
        // A few people hold two roles.
        if rng.chance(10) {
            held.push(roles[rng.below(roles.len())]);
        }
        let (principal, cedar) = employee(&format!("emp-{i}"), &store(i), &held)?;
        principals.push(principal);
        entities.push(cedar);
    }

    let mut resources = Vec::new();
    for c in 0..2_000 {
        let id = format!("cust-{c}");
        resources.push(Resource::new("customer", &id, store(c)));
        entities.push(entity(
            uid("customer", &id)?,
            [("store", text(&store(c)))],
            [],
        )?);
    }
    for c in 0..2_000 {
        let id = format!("card-{c}");
        let customer = format!("cust-{c}");
        resources
            .push(Resource::new("payment_card", &id, store(c)).with("customer_id", &*customer));
        entities.push(entity(
            uid("payment_card", &id)?,
            [
                ("store", text(&store(c))),
                (
                    "customer_id",
                    RestrictedExpression::new_entity_uid(uid("customer", &customer)?),
                ),
            ],
            [],
        )?);
    }
    for o in 0..10_000 {
        let id = format!("ord-{o}");
        let customer = rng.below(2_000);
        let agent = format!("emp-{}", rng.below(200));
        let total = rng.below(30_000) as i64;
        resources.push(
            Resource::new("order", &id, store(customer))
                .with("assigned_agent", &*agent)
                .with("customer_id", format!("cust-{customer}"))
                .with("total", total),
        );
        entities.push(entity(
            uid("order", &id)?,
            [
                ("store", text(&store(customer))),
                (
                    "assigned_agent",
                    RestrictedExpression::new_entity_uid(uid("Employee", &agent)?),
                ),
                (
                    "customer_id",
                    RestrictedExpression::new_entity_uid(uid(
                        "customer",
                        &format!("cust-{customer}"),
                    )?),
                ),
                ("total", RestrictedExpression::new_long(total)),
            ],
            [],
        )?);
    }

    let mut requests = Vec::new();
    for _ in 0..10_000 {
        let principal = rng.below(200);
        // Mostly resources of the employee's own store, sometimes another store's.
        let kind = rng.below(10);
        let pick_in_store = |rng: &mut Rng, base: usize, count: usize| loop {
            let candidate = base + rng.below(count);
            if rng.chance(10) || resources[candidate].tenant() == principals[principal].tenant() {
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
        let mfa = rng.chance(30).then(|| NOW - rng.below(600) as u64);
        let subject = rng.chance(20).then(|| format!("cust-{}", rng.below(2_000)));
        let (context, cedar_context) = contexts(mfa, subject.as_deref().map(|s| ("customer", s)))?;
        let type_name = resources[resource].type_name();
        let cedar = cedar_policy::Request::new(
            uid("Employee", principals[principal].id())?,
            uid("Action", &format!("{type_name}:{action}"))?,
            uid(type_name, resources[resource].id())?,
            cedar_context,
            None,
        )?;
        requests.push(Request {
            principal,
            action: action.to_owned(),
            resource,
            context,
            cedar,
        });
    }

    Ok(Workload {
        policy,
        principals,
        resources,
        requests,
        cedar_policies,
        cedar_entities: Entities::from_entities(entities, None)?,
        authorizer: Authorizer::new(),
    })
}

/// Employees in the role-count workload, each holding one role (fewer roles than employees: some
/// share one).
const EMPLOYEES: usize = 100;
/// Resource types and actions per type in the role-count workload.
const TYPES: usize = 20;
const ACTIONS: usize = 50;

/// `roles` generated roles with 10 permissions each over 20 resource types of 50 actions, one
/// global deny rule with a condition, 100 employees and 10,000 requests (half for a permission the
/// employee's role has, half for a random one): the main crate's `rbac/scaling` workload, in both
/// languages. In Cedar each role is one `permit` whose scope lists its 10 actions.
pub fn roles(roles: usize) -> Result<Workload, Error> {
    let mut rng = Rng(7 + roles as u64);
    let mut toml = String::from("version = 1\n");
    let mut cedar = String::new();
    for t in 0..TYPES {
        let actions: Vec<String> = (0..ACTIONS).map(|a| format!("\"a{a}\"")).collect();
        writeln!(
            toml,
            "[resource_types.t{t}]\nactions = [{}]\nattributes = {{ owner = \"id\", amount = \"integer\" }}\nfields = {{ name = \"text\", email = \"email\" }}",
            actions.join(", ")
        )?;
    }
    for r in 0..roles {
        writeln!(toml, "[roles.r{r}]")?;
    }
    let mut granted = Vec::with_capacity(roles);
    for r in 0..roles {
        let permissions: Vec<(usize, usize)> = (0..10)
            .map(|_| (rng.below(TYPES), rng.below(ACTIONS)))
            .collect();
        let ours: Vec<String> = permissions
            .iter()
            .map(|(t, a)| format!("\"t{t}:a{a}\""))
            .collect();
        writeln!(
            toml,
            "[[rules]]\nname = \"r{r}-grants\"\neffect = \"allow\"\nroles = [\"r{r}\"]\npermissions = [{}]\nfields = {{ name = \"full\", email = \"masked\" }}",
            ours.join(", ")
        )?;
        let theirs: Vec<String> = permissions
            .iter()
            .map(|(t, a)| format!("Action::\"t{t}:a{a}\""))
            .collect();
        writeln!(
            cedar,
            "@id(\"r{r}-grants\")\npermit (principal in Role::\"r{r}\", action in [{}], resource)\nwhen {{ resource.store == principal.store }};",
            theirs.join(", ")
        )?;
        granted.push(permissions);
    }
    toml.push_str(
        "[[rules]]\nname = \"no-big-amounts\"\neffect = \"deny\"\nroles = [\"*\"]\npermissions = [\"*:a0\"]\nwhen = { at_least = { amount = 100000 } }\n",
    );
    let a0: Vec<String> = (0..TYPES).map(|t| format!("Action::\"t{t}:a0\"")).collect();
    writeln!(
        cedar,
        "@id(\"no-big-amounts\")\nforbid (principal, action in [{}], resource)\nwhen {{ resource.amount >= 100000 }};",
        a0.join(", ")
    )?;
    let policy = Policy::from_toml(&toml, "roles.toml")?;
    let cedar_policies = PolicySet::from_str(&cedar)?;

    let mut entities = Vec::new();
    for r in 0..roles {
        entities.push(entity(uid("Role", &format!("r{r}"))?, [], [])?);
    }
    let mut principals = Vec::new();
    for e in 0..EMPLOYEES {
        let role = format!("r{}", e % roles);
        let (principal, cedar) = employee(&format!("u{e}"), "s", &[&role])?;
        principals.push(principal);
        entities.push(cedar);
    }
    let mut resources = Vec::new();
    let mut requests = Vec::new();
    for i in 0..10_000 {
        let principal = rng.below(EMPLOYEES);
        let (t, a) = if rng.chance(50) {
            granted[principal % roles][rng.below(10)]
        } else {
            (rng.below(TYPES), rng.below(ACTIONS))
        };
        let amount = rng.below(200_000) as i64;
        let (type_name, id) = (format!("t{t}"), format!("x{i}"));
        resources.push(
            Resource::new(&type_name, &id, "s")
                .with("owner", "u0")
                .with("amount", amount),
        );
        entities.push(entity(
            uid(&type_name, &id)?,
            [
                ("store", text("s")),
                (
                    "owner",
                    RestrictedExpression::new_entity_uid(uid("Employee", "u0")?),
                ),
                ("amount", RestrictedExpression::new_long(amount)),
            ],
            [],
        )?);
        let (context, cedar_context) = contexts(None, None)?;
        let cedar = cedar_policy::Request::new(
            uid("Employee", principals[principal].id())?,
            uid("Action", &format!("t{t}:a{a}"))?,
            uid(&type_name, &id)?,
            cedar_context,
            None,
        )?;
        requests.push(Request {
            principal,
            action: format!("a{a}"),
            resource: i,
            context,
            cedar,
        });
    }

    Ok(Workload {
        policy,
        principals,
        resources,
        requests,
        cedar_policies,
        cedar_entities: Entities::from_entities(entities, None)?,
        authorizer: Authorizer::new(),
    })
}
