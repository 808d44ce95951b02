//! Bringing an application's stored values up to date after a rotation, page by page, resumable.
//!
//! After [`Custodian::rotate`] new values are sealed under the new key version at once, and old
//! ones keep opening. [`Custodian::rewrap_all`] then moves every stored ciphertext to the new
//! version without decrypting its payload (so old versions can be disabled and destroyed), and
//! after [`Custodian::rotate_index_keys`], [`Custodian::reindex_all`] recomputes blind-index
//! tokens that are not under the new index key.
//!
//! Both walk the application's table through two callbacks: one that reads a page of rows after a
//! position, and one that writes a page of changes (one transaction per page is the natural fit).
//! After each written page they report progress, with the position to resume from: store it, and
//! an interrupted run starts again from there. Running again from the start is safe too, since
//! values already current are skipped. A value that cannot be rewrapped is left as it is and
//! reported; it does not stop the run. Values of erased customers are counted apart: they have
//! nothing left to protect.
//!
//! Values the application already holds in memory (a page of rows it loaded as structs, a cache)
//! are brought up to date where they are with [`Custodian::rewrap_in_place`] and
//! [`Custodian::reindex_in_place`], which say which of them changed, to be written back.

use crate::Error;
use crate::envelope::EncryptionContext;
use crate::facade::Custodian;
use crate::record::{BlindIndex, Encrypted, IndexToken};
use serde::Serialize;
use std::borrow::Borrow;

/// One stored ciphertext, as the application read it: `key` says where it goes back (a row id and
/// a column, say).
#[derive(Debug)]
pub struct StoredValue<K> {
    /// Where the value is stored, for writing the new one back.
    pub key: K,
    /// The context it was sealed with.
    pub context: EncryptionContext,
    /// The stored ciphertext (binary form).
    pub ciphertext: Vec<u8>,
}

/// A value rewrapped to the current key version, to be written back in place of `old` (compare
/// with `old` in the `UPDATE` if other writers may have changed the row since it was read).
#[derive(Debug)]
pub struct Rewritten<K> {
    /// Where the value is stored.
    pub key: K,
    /// The ciphertext that was read.
    pub old: Vec<u8>,
    /// The rewrapped ciphertext: same payload, data key wrapped under the current version.
    pub new: Vec<u8>,
}

/// One stored blind-index token with the sealed value it indexes.
#[derive(Debug)]
pub struct IndexedValue<K> {
    /// Where the token is stored.
    pub key: K,
    /// The stored token.
    pub token: IndexToken,
    /// The context the value was sealed with.
    pub context: EncryptionContext,
    /// The sealed value (a string sealed with [`Custodian::seal`]).
    pub value: Encrypted<String>,
}

/// Where a run stands: counts so far and the position after the last written page. Serializable,
/// to log or to keep as the resume point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunProgress<P> {
    /// Values looked at.
    pub seen: u64,
    /// Values changed (rewrapped, or given a new token).
    pub changed: u64,
    /// Values already current: nothing to write.
    pub current: u64,
    /// Values of erased customers, left as they are.
    pub erased: u64,
    /// Values that failed (see [`RunOutcome::failures`]), left as they are.
    pub failed: u64,
    /// The position after the last written page: resume from here. `None` before the first page.
    pub position: Option<P>,
}

/// The end of a run: the final progress and what failed.
#[derive(Debug)]
pub struct RunOutcome<K, P> {
    /// The counts and the last position.
    pub progress: RunProgress<P>,
    /// Each value that could not be brought up to date, with why (not erasures).
    pub failures: Vec<(K, Error)>,
}

/// What [`Custodian::rewrap_in_place`] or [`Custodian::reindex_in_place`] did to the values it
/// was given, each named by its position in the order given. Serializes as counts, the way
/// [`RunProgress`] does (`seen`, `changed`, `current`, `erased`, `failed`), to log.
#[derive(Debug)]
pub struct InPlaceOutcome {
    /// Values looked at.
    pub seen: u64,
    /// The positions of the values that changed in place: write these back.
    pub changed: Vec<usize>,
    /// Values already current.
    pub current: u64,
    /// Values of erased customers, left as they are.
    pub erased: u64,
    /// Values that could not be brought up to date, left as they are: their positions and why.
    pub failures: Vec<(usize, Error)>,
}

impl Serialize for InPlaceOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut counts = serializer.serialize_struct("InPlaceOutcome", 5)?;
        counts.serialize_field("seen", &self.seen)?;
        counts.serialize_field("changed", &self.changed.len())?;
        counts.serialize_field("current", &self.current)?;
        counts.serialize_field("erased", &self.erased)?;
        counts.serialize_field("failed", &self.failures.len())?;
        counts.end()
    }
}

impl InPlaceOutcome {
    fn new() -> Self {
        Self {
            seen: 0,
            changed: Vec::new(),
            current: 0,
            erased: 0,
            failures: Vec::new(),
        }
    }

    fn count<W>(&mut self, position: usize, step: Result<Step<W>, Error>, write: impl FnOnce(W)) {
        self.seen += 1;
        match step {
            Ok(Step::Write(new)) => {
                write(new);
                self.changed.push(position);
            }
            Ok(Step::Current) => self.current += 1,
            Ok(Step::Erased) => self.erased += 1,
            Err(e) => self.failures.push((position, e)),
        }
    }
}

/// What one value needs.
enum Step<W> {
    Write(W),
    Current,
    Erased,
}

impl Custodian {
    /// [`Custodian::rewrap`] of a typed value: `None` when it is already under the current key
    /// version.
    pub fn rewrap_field<T>(
        &self,
        context: &EncryptionContext,
        value: &Encrypted<T>,
    ) -> Result<Option<Encrypted<T>>, Error> {
        match self.rewrap(context, value.as_bytes())? {
            Some(bytes) => Ok(Some(Encrypted::from_ciphertext(bytes)?)),
            None => Ok(None),
        }
    }

    /// Rewraps every value of the application's table to the data ring's current version, page by
    /// page (see the [module documentation](crate::rotation)).
    ///
    /// - `next_page(after)` returns the values after position `after` (`None`: from the start)
    ///   and the position after them, or `None` (or an empty page) when there are no more;
    /// - `write_page(changes)` writes a page's rewrapped values (skipped when there are none);
    /// - `progress` is called after each page, once it is written.
    ///
    /// Errors of the callbacks stop the run and are returned as they are; the last reported
    /// position is where to resume.
    pub fn rewrap_all<K, P: Clone, E>(
        &self,
        resume: Option<P>,
        next_page: impl FnMut(Option<&P>) -> Result<Option<(Vec<StoredValue<K>>, P)>, E>,
        mut write_page: impl FnMut(Vec<Rewritten<K>>) -> Result<(), E>,
        progress: impl FnMut(&RunProgress<P>),
    ) -> Result<RunOutcome<K, P>, E> {
        run_pages(
            resume,
            next_page,
            |value: &StoredValue<K>| self.rewrap_step(&value.context, &value.ciphertext),
            |changes: Vec<(StoredValue<K>, Vec<u8>)>| {
                write_page(
                    changes
                        .into_iter()
                        .map(|(value, new)| Rewritten {
                            key: value.key,
                            old: value.ciphertext,
                            new,
                        })
                        .collect(),
                )
            },
            |value| value.key,
            progress,
        )
    }

    /// Gives every token of `index` that is not under its current key version
    /// ([`BlindIndex::is_current`]) a new one, page by page, like [`Custodian::rewrap_all`].
    /// Each such value is opened to compute its new token (in memory, wiped after).
    ///
    /// `write_page` receives `(key, new token)` pairs. Until a row is re-indexed, lookups still
    /// find it through [`BlindIndex::search_tokens`].
    pub fn reindex_all<K, P: Clone, E>(
        &self,
        index: &BlindIndex,
        resume: Option<P>,
        next_page: impl FnMut(Option<&P>) -> Result<Option<(Vec<IndexedValue<K>>, P)>, E>,
        mut write_page: impl FnMut(Vec<(K, IndexToken)>) -> Result<(), E>,
        progress: impl FnMut(&RunProgress<P>),
    ) -> Result<RunOutcome<K, P>, E> {
        run_pages(
            resume,
            next_page,
            |value: &IndexedValue<K>| {
                self.reindex_step(index, &value.context, &value.value, &value.token)
            },
            |changes: Vec<(IndexedValue<K>, IndexToken)>| {
                write_page(
                    changes
                        .into_iter()
                        .map(|(value, token)| (value.key, token))
                        .collect(),
                )
            },
            |value| value.key,
            progress,
        )
    }

    /// Rewraps, where they are, the values the application holds in memory (each with the context
    /// it was sealed with), to the data ring's current version. Values already current, values of
    /// erased customers and values that fail are left as they are; the outcome says which changed.
    ///
    /// ```
    /// # fn main() -> Result<(), custodian::Error> {
    /// # use custodian::{Custodian, EncryptionContext, keys::{LocalRootKey, MemoryKeyStore}};
    /// # use std::collections::HashMap;
    /// # let custodian = Custodian::builder().key_store(MemoryKeyStore::new())
    /// #     .root_key(LocalRootKey::random()?).build()?;
    /// let mut page = HashMap::new();
    /// let context = EncryptionContext::for_field("customers", "cus_42", "email")?;
    /// page.insert(context.clone(), custodian.seal("cus_42", &context, "jane@example.com")?);
    ///
    /// custodian.rotate()?;
    /// let outcome = custodian.rewrap_in_place(page.iter_mut());
    /// assert_eq!(outcome.changed.len(), 1); // write it back
    /// assert_eq!(custodian.open(&page[&context], &context)?, "jane@example.com");
    /// # Ok(())
    /// # }
    /// ```
    pub fn rewrap_in_place<'v, T: 'v, C: Borrow<EncryptionContext>>(
        &self,
        values: impl IntoIterator<Item = (C, &'v mut Encrypted<T>)>,
    ) -> InPlaceOutcome {
        let mut outcome = InPlaceOutcome::new();
        for (position, (context, value)) in values.into_iter().enumerate() {
            let step = self
                .rewrap_step(context.borrow(), value.as_bytes())
                .and_then(|step| match step {
                    Step::Write(new) => Ok(Step::Write(Encrypted::from_ciphertext(new)?)),
                    Step::Current => Ok(Step::Current),
                    Step::Erased => Ok(Step::Erased),
                });
            outcome.count(position, step, |new| *value = new);
        }
        outcome
    }

    /// Gives, where they are, a new token to each blind-index token the application holds in
    /// memory that is not under `index`'s current key version, from the sealed value it indexes
    /// (opened in memory, wiped after). Like [`Custodian::rewrap_in_place`], the outcome says which
    /// tokens changed.
    pub fn reindex_in_place<'v, C: Borrow<EncryptionContext>>(
        &self,
        index: &BlindIndex,
        values: impl IntoIterator<Item = (C, &'v Encrypted<String>, &'v mut IndexToken)>,
    ) -> InPlaceOutcome {
        let mut outcome = InPlaceOutcome::new();
        for (position, (context, value, token)) in values.into_iter().enumerate() {
            let step = self.reindex_step(index, context.borrow(), value, token);
            outcome.count(position, step, |new| *token = new);
        }
        outcome
    }

    /// What rewrapping `ciphertext` needs: the new ciphertext, nothing, or nothing ever (erased).
    fn rewrap_step(
        &self,
        context: &EncryptionContext,
        ciphertext: &[u8],
    ) -> Result<Step<Vec<u8>>, Error> {
        match self.rewrap(context, ciphertext) {
            Ok(Some(new)) => Ok(Step::Write(new)),
            Ok(None) => Ok(Step::Current),
            Err(e) if e.is_subject_erased() => Ok(Step::Erased),
            Err(e) => Err(e),
        }
    }

    /// What re-indexing `value`, now indexed by `token`, needs.
    fn reindex_step(
        &self,
        index: &BlindIndex,
        context: &EncryptionContext,
        value: &Encrypted<String>,
        token: &IndexToken,
    ) -> Result<Step<IndexToken>, Error> {
        if index.is_current(token) {
            return Ok(Step::Current);
        }
        match self.open(value, context) {
            Ok(plaintext) => {
                let plaintext = zeroize::Zeroizing::new(plaintext);
                Ok(Step::Write(index.token(&plaintext)?))
            }
            Err(e) if e.is_subject_erased() => Ok(Step::Erased),
            Err(e) => Err(e),
        }
    }
}

/// The page loop both runs share.
fn run_pages<V, W, K, P: Clone, E>(
    resume: Option<P>,
    mut next_page: impl FnMut(Option<&P>) -> Result<Option<(Vec<V>, P)>, E>,
    step: impl Fn(&V) -> Result<Step<W>, Error>,
    mut write_page: impl FnMut(Vec<(V, W)>) -> Result<(), E>,
    key_of: impl Fn(V) -> K,
    mut progress: impl FnMut(&RunProgress<P>),
) -> Result<RunOutcome<K, P>, E> {
    let mut run = RunProgress {
        seen: 0,
        changed: 0,
        current: 0,
        erased: 0,
        failed: 0,
        position: resume,
    };
    let mut failures = Vec::new();
    while let Some((values, next)) = next_page(run.position.as_ref())? {
        if values.is_empty() {
            // An empty page is the end, whatever position came with it (no endless loop).
            break;
        }
        let mut changes = Vec::new();
        for value in values {
            run.seen += 1;
            match step(&value) {
                Ok(Step::Write(write)) => changes.push((value, write)),
                Ok(Step::Current) => run.current += 1,
                Ok(Step::Erased) => run.erased += 1,
                Err(e) => {
                    run.failed += 1;
                    failures.push((key_of(value), e));
                }
            }
        }
        let changed = changes.len() as u64;
        if changed > 0 {
            write_page(changes)?;
        }
        run.changed += changed;
        run.position = Some(next);
        progress(&run);
    }
    Ok(RunOutcome {
        progress: run,
        failures,
    })
}
