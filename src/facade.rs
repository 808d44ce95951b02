//! [`Custodian`]: the small facade most shop backends need.
//!
//! It owns a [`KeyManager`] (key store + root key), a clock, the names of two key rings (one for
//! customer data, default `customers`, and one for blind-index keys, default `blind-index`), and an
//! audit log that [`Custodian::reveal`] records into.

use crate::audit::{
    Action, AuditError, AuditEvent, AuditLog, AuditStore, CheckpointSigner, Decision,
    ErasureReceipt, Hash, Outcome, SignedCheckpoint,
};
use crate::crypto::Suite;
use crate::envelope::{EncryptionContext, Header};
pub use crate::error::Error;
use crate::fields::RecordFields;
use crate::keys::{
    Erasure, KeyError, KeyManager, KeyStore, ManagerOptions, RingWatch, RootKeyProvider, Rotation,
    RotationPolicy,
};
use crate::mfa::{FactorStore, MfaService};
use crate::rbac::{self, Policy, RequestContext, Visibility};
use crate::record::encrypted::{from_plaintext, to_plaintext};
use crate::record::{
    BlindIndex, DEFAULT_TOKEN_LEN, Encrypted, IndexKey, IndexKeySource, IndexScope, Normalizer,
    RecordError,
};
use crate::reveal::{Authorized, Denied, RevealRequest, Revealed, RevealedField, SealedRecord};
use crate::secret::SecretBytes;
use core::fmt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where the facade reads the time (seconds since the Unix epoch). Every layer below takes `now` as
/// an argument; the facade asks its clock, so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
}

/// The system clock. A clock set before 1970 reads as 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn now(&self) -> u64 {
        self()
    }
}

/// The part of the builder that is still missing. The builder's `build` exists only once the key
/// store and the root key are given, so forgetting one is a compile error.
#[derive(Debug, Default)]
pub struct Missing;

/// Builds a [`Custodian`]: `Custodian::builder().key_store(..).root_key(..).build()`.
///
/// Both parts are required, and the compiler says so:
///
/// ```compile_fail
/// # use custodian::keys::MemoryKeyStore;
/// // error: no method `build` on a builder without a root key
/// let custodian = custodian::Custodian::builder().key_store(MemoryKeyStore::new()).build();
/// ```
///
/// ```compile_fail
/// # use custodian::keys::LocalRootKey;
/// // error: no method `build` on a builder without a key store
/// let custodian = custodian::Custodian::builder().root_key(LocalRootKey::random()?).build();
/// # Ok::<(), custodian::keys::KeyError>(())
/// ```
pub struct CustodianBuilder<S, R> {
    store: S,
    root: R,
    settings: Settings,
}

/// Everything a builder holds besides the two required parts.
struct Settings {
    clock: Arc<dyn Clock>,
    options: ManagerOptions,
    data_ring: String,
    index_ring: String,
    mfa_ring: String,
    suite: Suite,
    policy: RotationPolicy,
    audit: Option<Arc<dyn AuditStore>>,
    audit_origin: String,
}

impl Custodian {
    /// Starts a builder.
    pub fn builder() -> CustodianBuilder<Missing, Missing> {
        CustodianBuilder {
            store: Missing,
            root: Missing,
            settings: Settings {
                clock: Arc::new(SystemClock),
                options: ManagerOptions::default(),
                data_ring: "customers".into(),
                index_ring: "blind-index".into(),
                mfa_ring: DEFAULT_MFA_RING.into(),
                suite: Suite::default(),
                policy: RotationPolicy::default(),
                audit: None,
                audit_origin: DEFAULT_AUDIT_ORIGIN.into(),
            },
        }
    }
}

impl<S, R> CustodianBuilder<S, R> {
    /// The key store (for example [`crate::keys::SqliteKeyStore`]). Required.
    pub fn key_store(
        self,
        store: impl KeyStore + 'static,
    ) -> CustodianBuilder<Arc<dyn KeyStore>, R> {
        self.with_store(Arc::new(store))
    }

    /// A shared key store handle. Required (or [`CustodianBuilder::key_store`]).
    pub fn with_store(self, store: Arc<dyn KeyStore>) -> CustodianBuilder<Arc<dyn KeyStore>, R> {
        CustodianBuilder {
            store,
            root: self.root,
            settings: self.settings,
        }
    }

    /// The root key provider (for example [`crate::keys::LocalRootKey`]). Required.
    pub fn root_key(
        self,
        root: impl RootKeyProvider + 'static,
    ) -> CustodianBuilder<S, Arc<dyn RootKeyProvider>> {
        CustodianBuilder {
            store: self.store,
            root: Arc::new(root),
            settings: self.settings,
        }
    }

    /// The clock (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.settings.clock = Arc::new(clock);
        self
    }

    /// Cache and usage tuning of the key manager.
    pub fn options(mut self, options: ManagerOptions) -> Self {
        self.settings.options = options;
        self
    }

    /// Names of the data ring and the blind-index ring (defaults `customers`, `blind-index`).
    pub fn rings(mut self, data: impl Into<String>, index: impl Into<String>) -> Self {
        self.settings.data_ring = data.into();
        self.settings.index_ring = index.into();
        self
    }

    /// Name of the ring that seals staff MFA seeds (default [`DEFAULT_MFA_RING`]); see
    /// [`Custodian::mfa`].
    pub fn mfa_ring(mut self, name: impl Into<String>) -> Self {
        self.settings.mfa_ring = name.into();
        self
    }

    /// Suite and rotation policy for rings this builder creates (existing rings keep theirs).
    pub fn new_ring_settings(mut self, suite: Suite, policy: RotationPolicy) -> Self {
        self.settings.suite = suite;
        self.settings.policy = policy;
        self
    }

    /// Another store for the audit log that [`Custodian::reveal`] records into (see
    /// [`Custodian::audit`]).
    ///
    /// By default the log is the key store's own: key operations and erasures commit their
    /// entries there in their own transaction, and reveals append to the same tree. A separate
    /// store splits the trail in two (key operations stay in the key store's log), so give one
    /// only if reveals must be recorded elsewhere. Pass the log's store to
    /// `MfaService::with_audit` to record MFA outcomes in the same tree
    /// ([`Custodian::audit_store`]).
    pub fn audit_store(mut self, store: Arc<dyn AuditStore>) -> Self {
        self.settings.audit = Some(store);
        self
    }

    /// The name of this deployment's audit log, signed into every checkpoint (default
    /// `custodian/audit`): for example `shop.example/audit`. Verifiers check it, so checkpoints of
    /// two deployments cannot be swapped.
    pub fn audit_origin(mut self, origin: impl Into<String>) -> Self {
        self.settings.audit_origin = origin.into();
        self
    }
}

/// The checkpoint origin of a facade built without [`CustodianBuilder::audit_origin`].
pub const DEFAULT_AUDIT_ORIGIN: &str = "custodian/audit";

/// The default name of the ring that seals staff MFA seeds ([`Custodian::mfa`]).
pub const DEFAULT_MFA_RING: &str = "staff-mfa";

/// The audit store of a facade built without [`CustodianBuilder::audit_store`]: the key store
/// itself, whose audit tables already hold the key operations, so that everything lands in one
/// tree.
fn default_audit_store(keys: &Arc<dyn KeyStore>) -> Arc<dyn AuditStore> {
    Arc::clone(keys) as Arc<dyn AuditStore>
}

impl CustodianBuilder<Arc<dyn KeyStore>, Arc<dyn RootKeyProvider>> {
    /// Opens the key store (checking that the root key is the one it was created with) and creates
    /// the two rings if they do not exist yet.
    pub fn build(self) -> Result<Custodian, Error> {
        let Settings {
            clock,
            options,
            data_ring,
            index_ring,
            mfa_ring,
            suite,
            policy,
            audit,
            audit_origin,
        } = self.settings;
        let audit = AuditLog::new(audit.unwrap_or_else(|| default_audit_store(&self.store)));
        let keys = KeyManager::with_options(self.store, self.root, options)?;
        let now = clock.now();
        keys.ensure_ring(&data_ring, suite, policy, now)?;
        keys.ensure_ring(&index_ring, suite, policy, now)?;
        // Checked now, so a bad origin is a configuration error at start-up, not at the first
        // checkpoint.
        let signer = keys.checkpoint_signer(&audit_origin)?;
        Ok(Custodian {
            keys,
            clock,
            data_ring,
            index_ring,
            mfa_ring,
            new_rings: (suite, policy),
            audit,
            signer,
        })
    }
}

/// Encrypts and decrypts customer data; see the [crate documentation](crate).
///
/// `Send + Sync` and cheap to share behind an `Arc`; it holds no global state.
///
/// ```
/// use custodian::keys::{LocalRootKey, MemoryKeyStore};
/// use custodian::{Custodian, EncryptionContext};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let custodian = Custodian::builder()
///     .key_store(MemoryKeyStore::new()) // SqliteKeyStore::open("keys.db")? in production
///     .root_key(LocalRootKey::random()?) // LocalRootKey::from_file("root.key")? in production
///     .build()?;
/// let context = EncryptionContext::for_field("customers", "42", "email")?;
/// let stored = custodian.seal("cus_42", &context, "jane@example.com")?; // Encrypted<String>
/// assert_eq!(custodian.open(&stored, &context)?, "jane@example.com");
/// # Ok(())
/// # }
/// ```
pub struct Custodian {
    keys: KeyManager,
    clock: Arc<dyn Clock>,
    data_ring: String,
    index_ring: String,
    mfa_ring: String,
    /// Suite and rotation policy of rings created after start-up (the MFA ring).
    new_rings: (Suite, RotationPolicy),
    audit: AuditLog<Arc<dyn AuditStore>>,
    signer: CheckpointSigner,
}

impl fmt::Debug for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Custodian")
            .field("data_ring", &self.data_ring)
            .field("index_ring", &self.index_ring)
            .field("mfa_ring", &self.mfa_ring)
            .field("audit", &self.audit)
            .finish_non_exhaustive()
    }
}

impl Custodian {
    /// The key manager, for administration (rotation policy, destroying versions, history).
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// The current time according to the facade's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The audit log: key operations, erasures and what [`Custodian::reveal`] recorded;
    /// checkpoints, proofs, the JSON-lines export. Its store is the key store's own unless
    /// [`CustodianBuilder::audit_store`] gave another.
    pub fn audit(&self) -> &AuditLog<Arc<dyn AuditStore>> {
        &self.audit
    }

    /// The audit log's store, to hand to `MfaService::with_audit` so MFA outcomes land in the
    /// same tree.
    pub fn audit_store(&self) -> Arc<dyn AuditStore> {
        Arc::clone(self.audit.store())
    }

    /// The checkpoint signer, whose Ed25519 seed lives in the key store wrapped by the root key.
    /// Publish `checkpoint_signer().verifier().verifier_key()` for auditors.
    pub fn checkpoint_signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    /// A signed checkpoint of the audit log as it is now. Keep the newest outside the database
    /// (another system, a ticket, a witness) and check the log against it at start-up with
    /// [`AuditLog::verify_against`]: that is what exposes a restored old copy of the database.
    pub fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        Ok(self.audit.checkpoint(&self.signer, self.now())?)
    }

    // ---- access-checked reveal ----

    /// Checks `request` against `policy`, decrypts the fields of `record` that the decision's
    /// field view shows, masks the masked ones, records who saw which fields, and returns them.
    ///
    /// - **Denied** (including "step-up required" when no fresh [`StepUp`](crate::mfa::StepUp) of
    ///   the principal was given): an `access_decision` entry (deny, the deciding rule, the
    ///   policy's digest; outcome denied) is written, nothing is decrypted, and the answer is
    ///   [`Error::Denied`].
    /// - **Allowed**: hidden fields are not decrypted at all; full and masked ones are, each with
    ///   the context `EncryptionContext::for_field(record.table(), resource id, field)`. Then one
    ///   atomic batch appends an `access_decision` entry (allow, rule, digest) and a
    ///   `fields_revealed` entry naming every field shown, in full or masked (a masked field shows
    ///   part of its value, so it counts). Actor: the principal's id; resource:
    ///   `table/record id`; subject: the subject id in the opened ciphertexts' headers.
    /// - Fail closed: if any shown field does not open (an erased customer, a wrong context), the
    ///   reveal fails and records nothing, since nothing was shown; if the entries cannot be
    ///   written, it fails with [`Error::Audit`] and returns nothing.
    ///
    /// ```
    /// use custodian::keys::{LocalRootKey, MemoryKeyStore};
    /// use custodian::rbac::{Policy, Principal, Resource};
    /// use custodian::{Custodian, EncryptionContext, RevealRequest, SealedRecord};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = Policy::from_toml(r#"
    ///     version = 1
    ///     [resource_types.customer]
    ///     actions = ["view"]
    ///     fields = { name = "text", email = "email", phone = "phone" }
    ///     [roles.support]
    ///     [[rules]]
    ///     name = "support-views-customers"
    ///     effect = "allow"
    ///     roles = ["support"]
    ///     permissions = ["customer:view"]
    ///     fields = { name = "full", email = "masked" }
    /// "#, "inline.toml")?;
    /// let custodian = Custodian::builder()
    ///     .key_store(MemoryKeyStore::new())
    ///     .root_key(LocalRootKey::random()?)
    ///     .build()?;
    ///
    /// let seal = |field: &str, value: &str| -> Result<Vec<u8>, custodian::Error> {
    ///     let context = EncryptionContext::for_field("customers", "42", field)?;
    ///     custodian.encrypt("cus_42", &context, value.as_bytes())
    /// };
    /// let (name, email, phone) = (seal("name", "Jane Doe")?, seal("email", "jane@example.com")?,
    ///     seal("phone", "+1 555 0100")?);
    /// let record = SealedRecord::new("customers")
    ///     .field("name", &name)
    ///     .field("email", &email)
    ///     .field("phone", &phone);
    ///
    /// let agent = Principal::new("emp-17", "store-3").with_role("support");
    /// let customer = Resource::new("customer", "42", "store-3");
    /// let shown = custodian.reveal(&policy, &RevealRequest::new(&agent, "view", &customer), &record)?;
    /// assert_eq!(shown.field("name").unwrap().expose_secret(), "Jane Doe");
    /// assert_eq!(shown.field("email").unwrap().expose_secret(), "j***@example.com");
    /// assert!(shown.field("phone").is_none()); // hidden, and never decrypted
    ///
    /// let trail = custodian.audit().export_json_lines(shown.audit_entries())?;
    /// assert!(trail.contains(r#""type":"fields_revealed","fields":["name","email"]"#));
    /// assert!(!trail.contains("Jane"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn reveal(
        &self,
        policy: &Policy,
        request: &RevealRequest<'_>,
        record: &SealedRecord<'_>,
    ) -> Result<Revealed, Error> {
        let now = self.now();
        let principal = request.principal;
        let resource = request.resource;
        let context = request_context(request, now);
        let decision = policy.check(principal, request.action, resource, &context);
        let policy_digest = policy_digest(policy)?;
        let audit_resource = format!("{}/{}", record.table(), resource.id());
        let decision_event = |verdict| {
            decision_event(
                now,
                principal.id(),
                &decision,
                verdict,
                policy_digest,
                &audit_resource,
            )
        };

        if !decision.is_allowed() {
            return Err(self.record_denial(decision, decision_event(Decision::Deny)));
        }

        // Which fields to open: only those the view shows. A hidden field's bytes are not read.
        let view = decision.view();
        let mut shown = Vec::new();
        for (index, (name, ciphertext)) in record.fields.iter().enumerate() {
            if record
                .fields
                .iter()
                .take(index)
                .any(|(earlier, _)| earlier == name)
            {
                return Err(Error::InvalidRecord(format!(
                    "field `{name}` is given twice"
                )));
            }
            let Some((_, kind, visibility)) = view.iter().find(|(field, _, _)| field == name)
            else {
                continue;
            };
            if visibility != Visibility::Hidden {
                let field_context =
                    EncryptionContext::for_field(record.table(), resource.id(), name.as_str())?;
                shown.push((name, kind, visibility, field_context, ciphertext));
            }
        }
        let items: Vec<(&EncryptionContext, &[u8])> = shown
            .iter()
            .map(|(_, _, _, field_context, field)| (field_context, field.ciphertext.as_ref()))
            .collect();
        let opened = self.keys.open_many(&items, now);

        let mut fields = Vec::with_capacity(shown.len());
        let mut subject: Option<String> = None;
        for ((name, kind, visibility, _, field), result) in shown.iter().zip(opened) {
            let plaintext = result?;
            let not_text = || {
                Error::Record(RecordError::Serialize(format!(
                    "the opened value of field `{name}` is not UTF-8 text"
                )))
            };
            // A sealed `Encrypted<String>` holds a JSON string; bytes hold the text itself.
            let text: Zeroizing<String> = if field.typed {
                Zeroizing::new(from_plaintext(plaintext.expose_secret()).map_err(|_| not_text())?)
            } else {
                let text =
                    std::str::from_utf8(plaintext.expose_secret()).map_err(|_| not_text())?;
                Zeroizing::new(text.to_owned())
            };
            let value = match visibility {
                Visibility::Masked => Zeroizing::new(kind.mask(&text)),
                _ => text,
            };
            // The header was authenticated by the open above.
            if let Some(owner) = Header::parse(&field.ciphertext)?.key_id().subject() {
                match &subject {
                    None => subject = Some(owner.to_owned()),
                    Some(first) if first != owner => {
                        return Err(Error::InvalidRecord(format!(
                            "field `{name}` belongs to another subject than the record's other fields"
                        )));
                    }
                    Some(_) => {}
                }
            }
            fields.push(RevealedField {
                name: (*name).clone(),
                visibility: *visibility,
                value,
            });
        }

        let mut events = vec![decision_event(Decision::Allow)];
        if !fields.is_empty() {
            events.push(AuditEvent::new(
                now,
                principal.id(),
                Action::FieldsRevealed {
                    fields: fields.iter().map(|field| field.name.clone()).collect(),
                },
                audit_resource.as_str(),
            ));
        }
        if let Some(subject) = &subject {
            for event in &mut events {
                event.subject = Some(subject.clone());
            }
        }
        let audit_entries = self.audit.append_batch(&events)?;
        Ok(Revealed {
            record: audit_resource,
            fields,
            audit_entries,
        })
    }

    /// Checks `request` against `policy` at the facade's clock, with the request's step-up and
    /// justification, and records the decision in the audit log (an `access_decision` entry for
    /// resource `type/id`, as [`Custodian::reveal`] records one): for sensitive actions that open
    /// no field, such as deleting a customer or issuing a refund. A denial is recorded, then
    /// returned as [`Error::Denied`] (whose [`kind`](Error::kind) says when a fresh step-up would
    /// lift it); an allowed decision is returned after its entry is written, so an action the log
    /// does not show is never allowed.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use custodian::{Custodian, ErrorKind, RevealRequest, keys::{LocalRootKey, MemoryKeyStore}};
    /// # use custodian::rbac::{Policy, Principal, Resource};
    /// # let custodian = Custodian::builder().key_store(MemoryKeyStore::new())
    /// #     .root_key(LocalRootKey::random()?).build()?;
    /// let policy = Policy::from_toml(r#"
    ///     version = 1
    ///     [resource_types.customer]
    ///     actions = ["delete"]
    ///     [roles.admin]
    ///     [roles.support]
    ///     [[rules]]
    ///     name = "admins-delete-customers"
    ///     effect = "allow"
    ///     roles = ["admin"]
    ///     permissions = ["customer:delete"]
    /// "#, "shop.toml")?;
    /// let customer = Resource::new("customer", "cus_42", "store-3");
    /// let admin = Principal::new("emp-1", "store-3").with_role("admin");
    /// let agent = Principal::new("emp-17", "store-3").with_role("support");
    ///
    /// let before = custodian.audit().tree_size()?;
    /// custodian.authorize(&policy, &RevealRequest::new(&admin, "delete", &customer))?;
    /// let refused = custodian.authorize(&policy, &RevealRequest::new(&agent, "delete", &customer));
    /// assert_eq!(refused.unwrap_err().kind(), ErrorKind::Denied);
    /// assert_eq!(custodian.audit().tree_size()?, before + 2); // both decisions are in the log
    /// # Ok(())
    /// # }
    /// ```
    pub fn authorize(
        &self,
        policy: &Policy,
        request: &RevealRequest<'_>,
    ) -> Result<Authorized, Error> {
        let now = self.now();
        let resource = request.resource;
        let context = request_context(request, now);
        let decision = policy.check(request.principal, request.action, resource, &context);
        let audit_resource = format!("{}/{}", resource.type_name(), resource.id());
        let policy_digest = policy_digest(policy)?;
        let principal = request.principal.id();
        let event = |verdict| {
            decision_event(
                now,
                principal,
                &decision,
                verdict,
                policy_digest,
                &audit_resource,
            )
        };
        if !decision.is_allowed() {
            let event = event(Decision::Deny);
            return Err(self.record_denial(decision, event));
        }
        let entry = self.audit.append(event(Decision::Allow))?;
        Ok(Authorized {
            decision: decision.into_owned(),
            audit_entry: entry.index,
        })
    }

    /// Records a denied decision (`event`) and makes the error that returns it; an entry that
    /// cannot be written is the error instead.
    fn record_denial(&self, decision: rbac::Decision<'_>, event: AuditEvent) -> Error {
        match self.audit.append(event.with_outcome(Outcome::Denied)) {
            Ok(entry) => Error::Denied(Box::new(Denied {
                decision: decision.into_owned(),
                audit_entry: entry.index,
            })),
            Err(e) => e.into(),
        }
    }

    // ---- MFA ----

    /// The MFA service over `store`, with its keys from this key hierarchy, recording into this
    /// audit log.
    ///
    /// - **Seeds** are sealed in the MFA ring ([`CustodianBuilder::mfa_ring`], created on first
    ///   use) under each staff member's own subject key, with the seed's context
    ///   (docs/MFA.md, "Sealed seed"). Rotate the ring with `keys().rotate(ring, now)` like any
    ///   other, then `keys().rewrap_subject_keys(ring, now)`: only subject keys are rewrapped,
    ///   so stored seeds need no rewriting, and they keep opening on every server and after every
    ///   restart. [`Custodian::erase_subject`] of a staff
    ///   member makes their seeds unopenable.
    /// - **The state key** that authenticates each factor's lifecycle columns is derived from
    ///   version 1 of the MFA ring (`KeyManager::derive_key(ring, 1,`
    ///   [`MfaService::STATE_KEY_INFO`]`, now)`), so it is the same everywhere. Limit: disabling or
    ///   destroying version 1 of the MFA ring makes every factor unverifiable (and this call
    ///   fail); rotating the state key is planned.
    ///
    /// Cheap: call it once at start-up and share the service.
    pub fn mfa(&self, store: impl FactorStore + 'static) -> Result<MfaService, Error> {
        self.mfa_with_store(Arc::new(store))
    }

    /// [`Custodian::mfa`] over a shared store handle.
    pub fn mfa_with_store(&self, store: Arc<dyn FactorStore>) -> Result<MfaService, Error> {
        let now = self.now();
        let (suite, policy) = self.new_rings;
        self.keys.ensure_ring(&self.mfa_ring, suite, policy, now)?;
        let state_key = self
            .keys
            .derive_key(&self.mfa_ring, 1, MfaService::STATE_KEY_INFO, now)?;
        let clock = Arc::clone(&self.clock);
        let service = MfaService::in_key_ring(
            store,
            self.keys.clone(),
            self.mfa_ring.clone(),
            Arc::new(move || clock.now()),
            state_key,
        );
        Ok(service.with_audit(self.audit_store()))
    }

    /// Erases `subject` in the MFA ring too if they have a key there (they are staff).
    fn erase_staff_seeds(&self, subject: &str, actor: &str) -> Result<(), Error> {
        let history = self.keys.subject_history(&self.mfa_ring, subject)?;
        if history.iter().any(|g| g.erased_at.is_none()) {
            self.keys
                .erase_subject_by(&self.mfa_ring, subject, actor, self.now())?;
        }
        Ok(())
    }

    // ---- bytes and strings ----

    /// Encrypts `plaintext` for customer `subject`, bound to `context`. Returns the binary form.
    pub fn encrypt(
        &self,
        subject: &str,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        Ok(self.keys.seal(
            &self.data_ring,
            Some(subject),
            context,
            plaintext,
            self.now(),
        )?)
    }

    /// Encrypts data that belongs to no customer (shop secrets) under the data ring itself.
    pub fn encrypt_shared(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        Ok(self
            .keys
            .seal(&self.data_ring, None, context, plaintext, self.now())?)
    }

    /// Decrypts a binary ciphertext made by [`Custodian::encrypt`] or [`Custodian::encrypt_shared`].
    pub fn decrypt(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, Error> {
        Ok(self.keys.open(context, ciphertext, self.now())?)
    }

    // ---- typed fields ----

    /// Seals a typed value for `subject` (see [`Encrypted`]): a `&str` gives an
    /// `Encrypted<String>`, a `&Address` an `Encrypted<Address>`. The type must be one that
    /// [`Custodian::open`] can give back, so sealing a `&&str` does not compile:
    ///
    /// ```compile_fail
    /// # fn f(custodian: &custodian::Custodian, context: &custodian::EncryptionContext) {
    /// // error: `&str` cannot be deserialized into an owned value (it borrows)
    /// let sealed = custodian.seal("cus_42", context, &"jane@example.com");
    /// # }
    /// ```
    pub fn seal<T>(
        &self,
        subject: &str,
        context: &EncryptionContext,
        value: &T,
    ) -> Result<Encrypted<T::Owned>, Error>
    where
        T: Serialize + ToOwned + ?Sized,
        T::Owned: DeserializeOwned,
    {
        let plaintext = to_plaintext(value)?;
        Ok(Encrypted::from_ciphertext(
            self.encrypt(subject, context, &plaintext)?,
        )?)
    }

    /// Opens a typed value with the context it was sealed with.
    pub fn open<T: DeserializeOwned>(
        &self,
        value: &Encrypted<T>,
        context: &EncryptionContext,
    ) -> Result<T, Error> {
        let plaintext = self.decrypt(context, value.as_bytes())?;
        Ok(from_plaintext(plaintext.expose_secret())?)
    }

    /// The fields of record `record` of `table`, owned by customer `subject`: seal and open them
    /// by field name alone (see [`RecordFields`]).
    pub fn record<'c>(&'c self, table: &str, record: &str, subject: &str) -> RecordFields<'c> {
        RecordFields::new(self, table, record, subject)
    }

    // ---- batches ----

    /// Encrypts several fields of one customer at once: one key lookup, one usage reservation and one
    /// call to the random generator for all of them.
    pub fn encrypt_many(
        &self,
        subject: &str,
        items: &[(&EncryptionContext, &[u8])],
    ) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self
            .keys
            .seal_many(&self.data_ring, Some(subject), items, self.now())?)
    }

    /// Decrypts several values; each gets its own result, so one bad value does not hide the others.
    pub fn decrypt_many(
        &self,
        items: &[(&EncryptionContext, &[u8])],
    ) -> Vec<Result<SecretBytes, Error>> {
        self.keys
            .open_many(items, self.now())
            .into_iter()
            .map(|result| result.map_err(Error::from))
            .collect()
    }

    // ---- blind indexes ----

    /// The blind index of `column` (for example `customers.email`), with keys for every live version
    /// of the index ring. It follows the index ring: after an index-key rotation on any server, it
    /// makes tokens under the new primary version (and searches every live one) without being built
    /// again.
    pub fn blind_index(&self, column: &str, normalizer: Normalizer) -> Result<BlindIndex, Error> {
        self.blind_index_with_len(column, normalizer, DEFAULT_TOKEN_LEN)
    }

    /// Like [`Custodian::blind_index`] with another token length (see [`crate::record`] for the
    /// trade-off).
    pub fn blind_index_with_len(
        &self,
        column: &str,
        normalizer: Normalizer,
        token_len: usize,
    ) -> Result<BlindIndex, Error> {
        self.index_following_the_ring(column, IndexScope::Column, normalizer, token_len)
    }

    /// The blind index of `column` for one `tenant` (shop): its keys are derived from the column
    /// and the tenant, so the same value has unrelated tokens in two tenants and a lookup finds only
    /// the tenant's rows. Use it when one database holds several tenants (see [`IndexScope`]); keep
    /// one per tenant. It follows index-key rotations like [`Custodian::blind_index`]. Default token
    /// length.
    pub fn tenant_blind_index(
        &self,
        column: &str,
        tenant: &str,
        normalizer: Normalizer,
    ) -> Result<BlindIndex, Error> {
        let scope = IndexScope::tenant(tenant)?;
        self.index_following_the_ring(column, scope, normalizer, DEFAULT_TOKEN_LEN)
    }

    fn index_following_the_ring(
        &self,
        column: &str,
        scope: IndexScope,
        normalizer: Normalizer,
        token_len: usize,
    ) -> Result<BlindIndex, Error> {
        let source = IndexRing {
            info: scope.key_info(column),
            watch: self.keys.watch_ring(&self.index_ring, self.now())?,
        };
        Ok(BlindIndex::following(
            column,
            scope,
            normalizer,
            token_len,
            Arc::new(source),
        )?)
    }

    // ---- rotation and erasure ----

    /// Rotates the data ring: new values are sealed under a new version at once. Constant time,
    /// whatever the number of customers: their subject keys move to the new version afterwards,
    /// with [`Custodian::rewrap_subject_keys`] (until then they keep opening under the old one).
    pub fn rotate(&self) -> Result<Rotation, Error> {
        Ok(self.keys.rotate(&self.data_ring, self.now())?)
    }

    /// How many customers' subject keys still wait for [`Custodian::rewrap_subject_keys`] (wrapped
    /// by a data-ring version older than the current one): the total of its progress.
    pub fn pending_subject_rewraps(&self) -> Result<u64, Error> {
        Ok(self
            .keys
            .pending_subject_rewraps(&self.data_ring, self.now())?)
    }

    /// The job that follows [`Custodian::rotate`]: rewraps every customer's subject key to the data
    /// ring's current version, one store transaction per batch of
    /// [`ManagerOptions::subject_rewrap_batch`], calling `progress` with the running total after
    /// each batch; returns the total. Run it in the background (a thread, `spawn_blocking`, a
    /// batch job). It is safe to interrupt (what is done stays done, the rest keeps opening under
    /// the older version), to run again (it resumes where the keys are), and to run on several
    /// servers at once (each row is compare-and-set). Payloads and ciphertexts are not touched.
    pub fn rewrap_subject_keys(&self, mut progress: impl FnMut(u64)) -> Result<u64, Error> {
        let mut total = 0u64;
        // The bound only stops a store that keeps returning rows it then refuses to update.
        for _ in 0..100_000 {
            let batch = self
                .keys
                .rewrap_subject_keys_batch(&self.data_ring, self.now())?;
            total += batch.rewrapped;
            if batch.done {
                return Ok(total);
            }
            progress(total);
        }
        Err(KeyError::Conflict(format!("subject keys of key ring `{}`", self.data_ring)).into())
    }

    /// Rotates the blind-index ring (indexes follow it by themselves; re-index rows whose token is
    /// no longer [`BlindIndex::is_current`]; old tokens stay
    /// searchable through [`BlindIndex::search_tokens`] meanwhile).
    pub fn rotate_index_keys(&self) -> Result<Rotation, Error> {
        Ok(self.keys.rotate(&self.index_ring, self.now())?)
    }

    /// Whether a stored value is under an older key version than the primary (header only).
    pub fn needs_rewrap(&self, ciphertext: &[u8]) -> Result<bool, Error> {
        Ok(self.keys.needs_rewrap(ciphertext, self.now())?)
    }

    /// Rewraps a stored value to the current key version without decrypting its payload. Returns
    /// `None` when it is already current (so a resumed batch does no work twice).
    pub fn rewrap(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let mut out = ciphertext.to_vec();
        Ok(self
            .keys
            .rewrap_in_place(context, &mut out, self.now())?
            .then_some(out))
    }

    /// Creates keys for many new customers in one store transaction (bulk import); customers that
    /// already have a key keep it. Otherwise a customer's key is created on first use.
    pub fn create_subjects(&self, subjects: &[&str]) -> Result<usize, Error> {
        Ok(self
            .keys
            .create_subjects(&self.data_ring, subjects, self.now())?)
    }

    /// Crypto-shreds customer `subject`: every value ever sealed for them becomes unopenable,
    /// wherever it was copied. Delete their blind-index tokens with the row. The erasure and its
    /// audit entry (actor: [`ManagerOptions::actor`]) commit together; see
    /// [`Custodian::erase_subject_by`] to name who asked.
    ///
    /// A staff member with MFA factors ([`Custodian::mfa`]) is a subject too: their key in the MFA
    /// ring is erased as well (a second erasure with its own audit entry, after the first), so
    /// their seeds no longer open. The returned [`Erasure`] is the data ring's. If the second
    /// erasure fails, the error is returned although the first committed; calling again completes
    /// it (an erasure of an erased subject changes nothing).
    pub fn erase_subject(&self, subject: &str) -> Result<Erasure, Error> {
        let actor = self.keys.options().actor.clone();
        self.erase_subject_by(subject, &actor)
    }

    /// [`Custodian::erase_subject`], recording `actor` (the data-protection officer, the ticket's
    /// requester) as who erased.
    pub fn erase_subject_by(&self, subject: &str, actor: &str) -> Result<Erasure, Error> {
        let erasure = self
            .keys
            .erase_subject_by(&self.data_ring, subject, actor, self.now())?;
        self.erase_staff_seeds(subject, actor)?;
        Ok(erasure)
    }

    /// The receipt of `erasure`: its audit entry, an inclusion proof and a checkpoint signed now.
    /// Serializable; anyone verifies it with the published verifier key alone
    /// ([`crate::audit::verify_receipt`]). Nothing in it identifies the customer beyond the
    /// subject id.
    pub fn erasure_receipt(&self, erasure: &Erasure) -> Result<ErasureReceipt, Error> {
        Ok(self
            .keys
            .erasure_receipt(erasure, &self.signer, self.now())?)
    }
}

/// A blind index's keys, derived from the index ring's live versions as this process sees them.
#[derive(Debug)]
struct IndexRing {
    watch: RingWatch,
    info: Vec<u8>,
}

/// The RBAC context of `request` at `now`: its step-up and justification.
fn request_context(request: &RevealRequest<'_>, now: u64) -> RequestContext {
    let mut context = RequestContext::at(now);
    if let Some(step_up) = request.step_up {
        context = context.with_step_up(request.principal, step_up);
    }
    if let Some(justification) = &request.justification {
        context = context.with_justification(justification.clone());
    }
    context
}

/// The policy's digest as the audit log records it.
fn policy_digest(policy: &Policy) -> Result<Hash, Error> {
    Hash::from_hex(policy.digest()).ok_or_else(|| {
        Error::from(AuditError::Store {
            message: format!("the policy digest `{}` is not SHA-256 hex", policy.digest()),
            source: None,
        })
    })
}

/// The `access_decision` entry of `decision` for `resource` (as the log names it).
fn decision_event(
    now: u64,
    principal: &str,
    decision: &rbac::Decision<'_>,
    verdict: Decision,
    policy_digest: Hash,
    resource: &str,
) -> AuditEvent {
    AuditEvent::new(
        now,
        principal,
        Action::AccessDecision {
            decision: verdict,
            rule: decision.reason().rule().map(str::to_owned),
            policy_digest,
        },
        resource,
    )
}

impl IndexKeySource for IndexRing {
    fn epoch(&self) -> u64 {
        self.watch.epoch()
    }

    fn keys(&self) -> Result<Vec<IndexKey>, RecordError> {
        self.watch
            .derive_live(&self.info)
            .map_err(|e| RecordError::InvalidIndex(format!("index keys: {e}")))?
            .into_iter()
            .map(|(version, key)| IndexKey::new(version, &key))
            .collect()
    }
}
