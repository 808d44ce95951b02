//! The async facade (feature `tokio`): [`AsyncCustodian`] and [`AsyncMfa`] for tokio services (axum,
//! actix on tokio), without blocking the runtime's worker threads.
//!
//! Every operation first runs **inline, from memory only**: with the keys it needs already cached
//! (the common case once a customer has been seen) a seal or an open completes in the same poll,
//! as fast as the synchronous call, with no allocation beyond the result and no task hop. If it
//! would need the key store or a remote root key provider (a cache miss, a new usage block, a ring
//! snapshot to reload), it stops before any I/O and runs again on tokio's blocking pool
//! (`spawn_blocking`), where the stores do their blocking work. Administrative operations (erase,
//! rotate) and every MFA operation go to the blocking pool directly.
//!
//! The synchronous [`Custodian`] stays the API for batch jobs and scripts; this module adds types,
//! it changes no signature. See docs/ARCHITECTURE.md for why the stores are synchronous and what
//! the hop costs.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), custodian::Error> {
//! use custodian::asynchronous::AsyncCustodian;
//! use custodian::keys::{LocalRootKey, MemoryKeyStore};
//! use custodian::{Custodian, EncryptionContext};
//!
//! let custodian = AsyncCustodian::build(
//!     Custodian::builder()
//!         .key_store(MemoryKeyStore::new())
//!         .root_key(LocalRootKey::random()?),
//! )
//! .await?;
//! let context = EncryptionContext::for_field("customers", "42", "email")?;
//! let sealed = custodian.encrypt("cus_42", &context, b"jane@example.com").await?;
//! let opened = custodian.decrypt(&context, &sealed).await?;
//! assert_eq!(opened.expose_secret(), b"jane@example.com");
//! custodian.erase_subject("cus_42").await?;
//! assert!(custodian.decrypt(&context, &sealed).await.unwrap_err().is_subject_erased());
//! # Ok(())
//! # }
//! ```

use crate::audit::{AuditLog, AuditStore, ErasureReceipt, SignedCheckpoint};
use crate::envelope::EncryptionContext;
use crate::facade::{Custodian, CustodianBuilder, Error};
use crate::keys::{Erasure, KeyError, KeyStore, RootKeyProvider, Rotation, without_io};
use crate::mfa::{
    Factor, FactorStore, MfaError, MfaService, Phase, RecoveryCodeSet, StepUp, StoredFactor,
    TotpKey, Verifier,
};
use crate::rbac::Policy;
use crate::record::encrypted::{from_plaintext, to_plaintext};
use crate::record::{BlindIndex, Encrypted, Normalizer};
use crate::reveal::{Authorized, OwnedRevealRequest, RevealRequest, Revealed, SealedRecord};
use crate::secret::SecretBytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Runs `op` answering from memory only: `None` if it needs storage.
fn from_memory<T>(op: impl FnOnce() -> Result<T, Error>) -> Option<Result<T, Error>> {
    match without_io(op) {
        Err(Error::Keys(KeyError::WouldBlock)) => None,
        done => Some(done),
    }
}

/// A blocking task that did not finish (it panicked, or the runtime is shutting down).
fn join_failed(e: &tokio::task::JoinError) -> KeyError {
    KeyError::Store(format!("the blocking task did not finish: {e}"))
}

/// The facade for async code. Cheap to clone (one `Arc`); share one per application.
#[derive(Debug, Clone)]
pub struct AsyncCustodian {
    inner: Arc<Custodian>,
}

impl From<Custodian> for AsyncCustodian {
    fn from(custodian: Custodian) -> Self {
        Self {
            inner: Arc::new(custodian),
        }
    }
}

impl AsyncCustodian {
    /// Builds the facade on the blocking pool (opening the store reads and may write it).
    pub async fn build(
        builder: CustodianBuilder<Arc<dyn KeyStore>, Arc<dyn RootKeyProvider>>,
    ) -> Result<Self, Error> {
        let custodian = tokio::task::spawn_blocking(move || builder.build())
            .await
            .map_err(|e| join_failed(&e))??;
        Ok(custodian.into())
    }

    /// The synchronous facade, for what never touches storage (header checks, the clock) and for
    /// code already on a blocking thread.
    pub fn sync(&self) -> &Custodian {
        &self.inner
    }

    /// Runs any synchronous facade operation: inline if it can answer from memory, else on the
    /// blocking pool. `op` may run twice (once inline, refused before any I/O, then on the pool).
    ///
    /// Not for what writes the audit log ([`Custodian::reveal`], [`Custodian::checkpoint`]):
    /// their appends are not refused inline, so they would block the runtime's thread. Use
    /// [`AsyncCustodian::blocking`] for those.
    pub async fn run<T, F>(&self, op: F) -> Result<T, Error>
    where
        F: Fn(&Custodian) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        if let Some(done) = from_memory(|| op(&self.inner)) {
            return done;
        }
        self.blocking(op).await
    }

    /// Runs `op` on the blocking pool, always: for facade operations that write storage whatever
    /// the caches hold, such as [`Custodian::reveal`] (it appends to the audit log), or several
    /// steps that belong together, such as [`Custodian::rotate`] then [`Custodian::rewrap_all`]
    /// over the application's table.
    ///
    /// ```
    /// # use custodian::asynchronous::AsyncCustodian;
    /// # async fn f(custodian: AsyncCustodian) -> Result<(), custodian::Error> {
    /// let rotation = custodian.blocking(|c| c.rotate()).await?;
    /// # let _ = rotation;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn blocking<T, F>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce(&Custodian) -> Result<T, Error> + Send + 'static,
        T: Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner))
            .await
            .map_err(|e| join_failed(&e))?
    }

    /// [`Custodian::encrypt`].
    pub async fn encrypt(
        &self,
        subject: &str,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        if let Some(done) = from_memory(|| self.inner.encrypt(subject, context, plaintext)) {
            return done;
        }
        let (subject, context) = (subject.to_owned(), context.clone());
        let plaintext = SecretBytes::new(plaintext.to_vec());
        self.blocking(move |c| c.encrypt(&subject, &context, plaintext.expose_secret()))
            .await
    }

    /// [`Custodian::encrypt_shared`].
    pub async fn encrypt_shared(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        if let Some(done) = from_memory(|| self.inner.encrypt_shared(context, plaintext)) {
            return done;
        }
        let context = context.clone();
        let plaintext = SecretBytes::new(plaintext.to_vec());
        self.blocking(move |c| c.encrypt_shared(&context, plaintext.expose_secret()))
            .await
    }

    /// [`Custodian::decrypt`].
    pub async fn decrypt(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<SecretBytes, Error> {
        if let Some(done) = from_memory(|| self.inner.decrypt(context, ciphertext)) {
            return done;
        }
        let (context, ciphertext) = (context.clone(), ciphertext.to_vec());
        self.blocking(move |c| c.decrypt(&context, &ciphertext))
            .await
    }

    /// [`Custodian::seal`].
    pub async fn seal<T>(
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
        let ciphertext = self.encrypt(subject, context, &plaintext).await?;
        Ok(Encrypted::from_ciphertext(ciphertext)?)
    }

    /// [`Custodian::open`].
    pub async fn open<T: DeserializeOwned>(
        &self,
        value: &Encrypted<T>,
        context: &EncryptionContext,
    ) -> Result<T, Error> {
        let plaintext = self.decrypt(context, value.as_bytes()).await?;
        Ok(from_plaintext(plaintext.expose_secret())?)
    }

    /// [`Custodian::encrypt_many`] for fields of one customer given as owned pairs.
    pub async fn encrypt_many(
        &self,
        subject: &str,
        items: &[(&EncryptionContext, &[u8])],
    ) -> Result<Vec<Vec<u8>>, Error> {
        if let Some(done) = from_memory(|| self.inner.encrypt_many(subject, items)) {
            return done;
        }
        let subject = subject.to_owned();
        let owned: Vec<(EncryptionContext, SecretBytes)> = items
            .iter()
            .map(|(c, p)| ((*c).clone(), SecretBytes::new(p.to_vec())))
            .collect();
        self.blocking(move |c| {
            let items: Vec<(&EncryptionContext, &[u8])> =
                owned.iter().map(|(c, p)| (c, p.expose_secret())).collect();
            c.encrypt_many(&subject, &items)
        })
        .await
    }

    /// [`Custodian::decrypt_many`]: each value gets its own result.
    pub async fn decrypt_many(
        &self,
        items: &[(&EncryptionContext, &[u8])],
    ) -> Vec<Result<SecretBytes, Error>> {
        let inline = without_io(|| self.inner.decrypt_many(items));
        let needs_store = inline
            .iter()
            .any(|r| matches!(r, Err(Error::Keys(KeyError::WouldBlock))));
        if !needs_store {
            return inline;
        }
        let owned: Vec<(EncryptionContext, Vec<u8>)> = items
            .iter()
            .map(|(c, ct)| ((*c).clone(), ct.to_vec()))
            .collect();
        let count = owned.len();
        let result = self
            .blocking(move |c| {
                let items: Vec<(&EncryptionContext, &[u8])> =
                    owned.iter().map(|(c, ct)| (c, ct.as_slice())).collect();
                Ok(c.decrypt_many(&items))
            })
            .await;
        match result {
            Ok(results) => results,
            Err(e) => {
                let text = e.to_string();
                (0..count)
                    .map(|_| Err(Error::Keys(KeyError::Store(text.clone()))))
                    .collect()
            }
        }
    }

    /// [`Custodian::blind_index`] (the first build of an index may read the index ring).
    pub async fn blind_index(
        &self,
        column: &str,
        normalizer: Normalizer,
    ) -> Result<BlindIndex, Error> {
        let column = column.to_owned();
        self.run(move |c| c.blind_index(&column, normalizer.clone()))
            .await
    }

    /// [`Custodian::rewrap`].
    pub async fn rewrap(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        if let Some(done) = from_memory(|| self.inner.rewrap(context, ciphertext)) {
            return done;
        }
        let (context, ciphertext) = (context.clone(), ciphertext.to_vec());
        self.blocking(move |c| c.rewrap(&context, &ciphertext))
            .await
    }

    /// [`Custodian::reveal`], on the blocking pool (it appends to the audit log). The request and
    /// the record are copied for the blocking task.
    pub async fn reveal(
        &self,
        policy: &Arc<Policy>,
        request: &RevealRequest<'_>,
        record: &SealedRecord<'_>,
    ) -> Result<Revealed, Error> {
        let (policy, request) = (Arc::clone(policy), OwnedRevealRequest::new(request));
        let record = record.clone().into_owned();
        self.blocking(move |c| c.reveal(&policy, &request.request(), &record))
            .await
    }

    /// [`Custodian::authorize`], on the blocking pool (it appends to the audit log).
    pub async fn authorize(
        &self,
        policy: &Arc<Policy>,
        request: &RevealRequest<'_>,
    ) -> Result<Authorized, Error> {
        let (policy, request) = (Arc::clone(policy), OwnedRevealRequest::new(request));
        self.blocking(move |c| c.authorize(&policy, &request.request()))
            .await
    }

    /// [`Custodian::rotate`], on the blocking pool.
    pub async fn rotate(&self) -> Result<Rotation, Error> {
        self.blocking(Custodian::rotate).await
    }

    /// [`Custodian::rewrap_subject_keys`], on the blocking pool (spawn it as a task to run it in
    /// the background).
    pub async fn rewrap_subject_keys(&self) -> Result<u64, Error> {
        self.blocking(|c| c.rewrap_subject_keys(|_| {})).await
    }

    /// [`Custodian::rotate_index_keys`], on the blocking pool.
    pub async fn rotate_index_keys(&self) -> Result<Rotation, Error> {
        self.blocking(Custodian::rotate_index_keys).await
    }

    /// [`Custodian::create_subjects`], on the blocking pool.
    pub async fn create_subjects(&self, subjects: Vec<String>) -> Result<usize, Error> {
        self.blocking(move |c| {
            let ids: Vec<&str> = subjects.iter().map(String::as_str).collect();
            c.create_subjects(&ids)
        })
        .await
    }

    /// [`Custodian::erase_subject`], on the blocking pool.
    pub async fn erase_subject(&self, subject: &str) -> Result<Erasure, Error> {
        let subject = subject.to_owned();
        self.blocking(move |c| c.erase_subject(&subject)).await
    }

    /// [`Custodian::erase_subject_by`], on the blocking pool.
    pub async fn erase_subject_by(&self, subject: &str, actor: &str) -> Result<Erasure, Error> {
        let (subject, actor) = (subject.to_owned(), actor.to_owned());
        self.blocking(move |c| c.erase_subject_by(&subject, &actor))
            .await
    }

    /// [`Custodian::erasure_receipt`], on the blocking pool.
    pub async fn erasure_receipt(&self, erasure: &Erasure) -> Result<ErasureReceipt, Error> {
        let erasure = erasure.clone();
        self.blocking(move |c| c.erasure_receipt(&erasure)).await
    }

    /// [`Custodian::checkpoint`], on the blocking pool.
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, Error> {
        self.blocking(Custodian::checkpoint).await
    }

    /// [`Custodian::mfa`] for async code, deciding with `verifier`; on the blocking pool (it may
    /// create the MFA ring).
    pub async fn mfa(
        &self,
        store: impl FactorStore + 'static,
        verifier: Verifier,
    ) -> Result<AsyncMfa, Error> {
        let store: Arc<dyn FactorStore> = Arc::new(store);
        let service = self.blocking(move |c| c.mfa_with_store(store)).await?;
        Ok(AsyncMfa::new(service, verifier))
    }
}

/// [`MfaService`] for async code: every operation reads and writes the factor store, so each
/// runs on the blocking pool. Verifications of different users run in parallel.
#[derive(Debug, Clone)]
pub struct AsyncMfa {
    service: MfaService,
    verifier: Verifier,
}

impl AsyncMfa {
    /// Wraps `service`, deciding with `verifier`.
    pub fn new(service: MfaService, verifier: Verifier) -> Self {
        Self { service, verifier }
    }

    /// The synchronous service.
    pub fn sync(&self) -> &MfaService {
        &self.service
    }

    /// The policy.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// The audit log the service records into ([`MfaService::with_audit`]), if any. Appends run
    /// on the blocking pool with the operation they record.
    pub fn audit(&self) -> Option<&AuditLog<Arc<dyn AuditStore>>> {
        self.service.audit()
    }

    async fn blocking<T, F>(&self, op: F) -> Result<T, MfaError>
    where
        F: FnOnce(&MfaService, &Verifier) -> Result<T, MfaError> + Send + 'static,
        T: Send + 'static,
    {
        let (service, verifier) = (self.service.clone(), self.verifier);
        tokio::task::spawn_blocking(move || op(&service, &verifier))
            .await
            .map_err(|e| MfaError::Store(format!("the blocking task did not finish: {e}")))?
    }

    /// [`MfaService::begin_enrollment`].
    pub async fn begin_enrollment(
        &self,
        user: &str,
        factor_id: &str,
        key: TotpKey,
        now: u64,
        step_up: Option<StepUp>,
    ) -> Result<Factor, MfaError> {
        let (user, factor_id) = (user.to_owned(), factor_id.to_owned());
        self.blocking(move |s, v| {
            s.begin_enrollment(v, &user, &factor_id, key, now, step_up.as_ref())
        })
        .await
    }

    /// [`MfaService::confirm_enrollment`].
    pub async fn confirm_enrollment(
        &self,
        user: &str,
        factor_id: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        let (user, factor_id) = (user.to_owned(), factor_id.to_owned());
        let code = zeroize::Zeroizing::new(code.to_owned());
        self.blocking(move |s, v| s.confirm_enrollment(v, &user, &factor_id, &code, now))
            .await
    }

    /// [`MfaService::verify`].
    pub async fn verify(
        &self,
        user: &str,
        factor_id: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        let (user, factor_id) = (user.to_owned(), factor_id.to_owned());
        let code = zeroize::Zeroizing::new(code.to_owned());
        self.blocking(move |s, v| s.verify(v, &user, &factor_id, &code, now))
            .await
    }

    /// [`MfaService::disable`].
    pub async fn disable(
        &self,
        user: &str,
        factor_id: &str,
        step_up: StepUp,
        now: u64,
    ) -> Result<(), MfaError> {
        let (user, factor_id) = (user.to_owned(), factor_id.to_owned());
        self.blocking(move |s, v| s.disable(v, &user, &factor_id, &step_up, now))
            .await
    }

    /// [`MfaService::admin_reset`].
    pub async fn admin_reset(
        &self,
        admin: &str,
        user: &str,
        factor_id: &str,
        now: u64,
    ) -> Result<(), MfaError> {
        let (admin, user, factor_id) = (admin.to_owned(), user.to_owned(), factor_id.to_owned());
        self.blocking(move |s, _| s.admin_reset(&admin, &user, &factor_id, now))
            .await
    }

    /// [`MfaService::admin_disable`].
    pub async fn admin_disable(
        &self,
        admin: &str,
        user: &str,
        factor_id: &str,
        now: u64,
    ) -> Result<bool, MfaError> {
        let (admin, user, factor_id) = (admin.to_owned(), user.to_owned(), factor_id.to_owned());
        self.blocking(move |s, _| s.admin_disable(&admin, &user, &factor_id, now))
            .await
    }

    /// [`MfaService::admin_revoke_recovery_codes`].
    pub async fn admin_revoke_recovery_codes(
        &self,
        admin: &str,
        user: &str,
        now: u64,
    ) -> Result<usize, MfaError> {
        let (admin, user) = (admin.to_owned(), user.to_owned());
        self.blocking(move |s, _| s.admin_revoke_recovery_codes(&admin, &user, now))
            .await
    }

    /// [`MfaService::load`].
    pub async fn load(&self, user: &str, factor_id: &str) -> Result<StoredFactor, MfaError> {
        let (user, factor_id) = (user.to_owned(), factor_id.to_owned());
        self.blocking(move |s, _| s.load(&user, &factor_id)).await
    }

    /// [`MfaService::factors`].
    pub async fn factors(&self, user: &str) -> Result<Vec<(String, Phase)>, MfaError> {
        let user = user.to_owned();
        self.blocking(move |s, _| s.factors(&user)).await
    }

    /// [`MfaService::replace_recovery_codes`].
    pub async fn replace_recovery_codes(&self, set: RecoveryCodeSet) -> Result<(), MfaError> {
        self.blocking(move |s, _| s.replace_recovery_codes(&set))
            .await
    }

    /// [`MfaService::use_recovery_code`].
    pub async fn use_recovery_code(
        &self,
        user: &str,
        code: &str,
        now: u64,
    ) -> Result<StepUp, MfaError> {
        let user = user.to_owned();
        let code = zeroize::Zeroizing::new(code.to_owned());
        self.blocking(move |s, _| s.use_recovery_code(&user, &code, now))
            .await
    }
}
