//! Replacing the policy while the service runs, without ever making a check wait.
//!
//! `arc-swap` holds the current policy behind an atomically swapped `Arc`. A reader takes a
//! snapshot with a few atomic operations and no lock, and keeps using that snapshot even if a
//! reload swaps in a new policy meanwhile; the old one is freed when its last snapshot is dropped.
//! A `RwLock<Arc<Policy>>` would make every check contend on the lock's counter and let a writer
//! stall readers; the standard library has no lock-free alternative without `unsafe`, which this
//! crate forbids. arc-swap is widely used (tokio-console, tracing-subscriber reloading, sled),
//! has no dependencies, and is tested under loom and miri by its authors.

use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::compile::Policy;
use super::error::PolicyError;

/// The current policy of a running service, replaceable at any time.
///
/// ```
/// use custodian::rbac::{Policy, PolicyHandle, Principal, RequestContext, Resource};
///
/// let v1 = Policy::from_toml(r#"
///     version = 1
///     [resource_types.order]
///     actions = ["view"]
///     [roles.support]
/// "#, "v1.toml")?;
/// let handle = PolicyHandle::new(v1);
///
/// let agent = Principal::new("emp-1", "store-1").with_role("support");
/// let order = Resource::new("order", "ord-1", "store-1");
/// let now = RequestContext::at(1_700_000_000);
/// assert!(!handle.snapshot().check(&agent, "view", &order, &now).is_allowed());
///
/// let v2 = Policy::from_toml(r#"
///     version = 1
///     [resource_types.order]
///     actions = ["view"]
///     [roles.support]
///     [[rules]]
///     name = "support-views-orders"
///     effect = "allow"
///     roles = ["support"]
///     permissions = ["order:view"]
/// "#, "v2.toml")?;
/// handle.replace(v2);
/// assert!(handle.snapshot().check(&agent, "view", &order, &now).is_allowed());
/// # Ok::<(), custodian::rbac::PolicyError>(())
/// ```
pub struct PolicyHandle {
    current: ArcSwap<Policy>,
}

impl PolicyHandle {
    /// A handle starting with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// The current policy, for one request: lock-free and cheap. Hold it for the duration of
    /// a request, not longer (long-lived snapshots make arc-swap fall back to a slower path).
    pub fn snapshot(&self) -> PolicySnapshot {
        PolicySnapshot(self.current.load())
    }

    /// The current policy as an `Arc`, for keeping beyond a request.
    pub fn current(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Puts `policy` in place atomically and returns the one it replaced. Checks already
    /// running finish on the policy they started with.
    pub fn replace(&self, policy: Policy) -> Arc<Policy> {
        self.current.swap(Arc::new(policy))
    }

    /// Loads and compiles the file at `path` and, only if that succeeds, puts it in place.
    ///
    /// # Errors
    /// The load error; the current policy then stays in place.
    pub fn reload_from_path(&self, path: impl AsRef<Path>) -> Result<Arc<Policy>, PolicyError> {
        let policy = Policy::from_path(path)?;
        Ok(self.replace(policy))
    }
}

impl fmt::Debug for PolicyHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.current.load();
        f.debug_struct("PolicyHandle")
            .field("source", &current.source())
            .field("digest", &current.digest())
            .finish()
    }
}

/// A snapshot of the current policy, from [`PolicyHandle::snapshot`]. Dereferences to
/// [`Policy`].
pub struct PolicySnapshot(Guard<Arc<Policy>>);

impl Deref for PolicySnapshot {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.0
    }
}

impl fmt::Debug for PolicySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PolicySnapshot")
            .field(&self.source())
            .finish()
    }
}
