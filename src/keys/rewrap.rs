//! Rewrapping stored values in bulk after a rotation, with progress reporting.
//!
//! The helper is idempotent and therefore resumable: a value already under the primary version is
//! reported as [`RewrapOutcome::Current`] and left alone, so after an interruption the caller simply
//! runs it again over the same rows. It holds no state of its own; the caller writes each
//! rewrapped value back (ideally with a compare-and-set on the old value) and pages through large
//! tables, calling it once per page.

use super::{KeyError, KeyManager};
use crate::envelope::EncryptionContext;

/// What happened to one value.
#[derive(Debug)]
pub enum RewrapOutcome {
    /// The value was rewrapped; store these bytes in place of the old ones.
    Rewrapped(Vec<u8>),
    /// The value is already under the ring's primary version; nothing to write.
    Current,
    /// The value could not be rewrapped (erased subject, destroyed version, wrong context,
    /// tampered bytes...). It is unchanged.
    Failed(KeyError),
}

/// Counters passed to the progress callback after each value. Serializable, for a log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RewrapProgress {
    /// Values looked at so far.
    pub seen: u64,
    /// Values rewrapped.
    pub rewrapped: u64,
    /// Values already current.
    pub current: u64,
    /// Values that failed.
    pub failed: u64,
}

impl KeyManager {
    /// Rewraps every `(id, context, stored value)` to its ring's primary version without
    /// decrypting payloads, calling `progress` after each one. Returns one outcome per item, in
    /// order, with its id.
    pub fn rewrap_batch<I>(
        &self,
        items: impl IntoIterator<Item = (I, EncryptionContext, Vec<u8>)>,
        now: u64,
        mut progress: impl FnMut(&RewrapProgress),
    ) -> Vec<(I, RewrapOutcome)> {
        let mut counts = RewrapProgress::default();
        items
            .into_iter()
            .map(|(id, context, mut value)| {
                let outcome = match self.rewrap_in_place(&context, &mut value, now) {
                    Ok(true) => {
                        counts.rewrapped += 1;
                        RewrapOutcome::Rewrapped(value)
                    }
                    Ok(false) => {
                        counts.current += 1;
                        RewrapOutcome::Current
                    }
                    Err(e) => {
                        counts.failed += 1;
                        RewrapOutcome::Failed(e)
                    }
                };
                counts.seen += 1;
                progress(&counts);
                (id, outcome)
            })
            .collect()
    }
}
