//! [`MemoryFactorStore`]: the [`FactorStore`] contract in a mutex-guarded map, for tests and for
//! single-process tools. Everything is lost when the process ends.

use super::error::MfaError;
use super::store::{ConsumeOutcome, FactorRecord, FactorStore, StateWrite};
use super::verify::Phase;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
struct Data {
    /// By (user, factor).
    factors: BTreeMap<(String, String), FactorRecord>,
    /// By (user, code id).
    codes: BTreeMap<(String, u64), Vec<u8>>,
}

/// Factors and recovery codes in memory.
#[derive(Default)]
pub struct MemoryFactorStore {
    data: Mutex<Data>,
}

impl MemoryFactorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(user: &str, factor: &str) -> (String, String) {
    (user.to_owned(), factor.to_owned())
}

fn next_generation(generation: u64) -> Result<u64, MfaError> {
    generation
        .checked_add(1)
        .ok_or(MfaError::CorruptRecord("factor generation exhausted"))
}

impl FactorStore for MemoryFactorStore {
    fn put_pending(
        &self,
        record: &FactorRecord,
        replaces: Option<u64>,
        unless_active: bool,
    ) -> Result<bool, MfaError> {
        let mut data = self.lock();
        if unless_active
            && data
                .factors
                .values()
                .any(|row| row.user == record.user && row.state.phase() == Phase::Active)
        {
            return Ok(false);
        }
        let slot = data.factors.get(&key(&record.user, &record.factor));
        let fits = match (slot, replaces) {
            (None, None) => true,
            (Some(row), Some(generation)) => {
                row.generation == generation
                    && matches!(row.state.phase(), Phase::Pending { .. } | Phase::Disabled)
                    && record.generation == next_generation(generation)?
            }
            _ => false,
        };
        if fits {
            data.factors
                .insert(key(&record.user, &record.factor), record.clone());
        }
        Ok(fits)
    }

    fn load(&self, user: &str, factor: &str) -> Result<Option<FactorRecord>, MfaError> {
        Ok(self.lock().factors.get(&key(user, factor)).cloned())
    }

    fn factors(&self, user: &str) -> Result<Vec<FactorRecord>, MfaError> {
        Ok(self
            .lock()
            .factors
            .values()
            .filter(|row| row.user == user)
            .cloned()
            .collect())
    }

    fn compare_and_set(&self, user: &str, write: &StateWrite) -> Result<bool, MfaError> {
        let mut data = self.lock();
        match data.factors.get_mut(&key(user, &write.factor)) {
            Some(row) if row.generation == write.expected_generation => {
                row.generation = next_generation(write.expected_generation)?;
                row.state = write.state;
                row.state_mac.clone_from(&write.state_mac);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn replace_recovery_codes(&self, user: &str, hashes: &[Vec<u8>]) -> Result<(), MfaError> {
        let mut data = self.lock();
        data.codes.retain(|(owner, _), _| owner != user);
        for (id, hash) in (0u64..).zip(hashes) {
            data.codes.insert((user.to_owned(), id), hash.clone());
        }
        Ok(())
    }

    fn recovery_codes(&self, user: &str) -> Result<Vec<(u64, Vec<u8>)>, MfaError> {
        Ok(self
            .lock()
            .codes
            .iter()
            .filter(|((owner, _), _)| owner == user)
            .map(|((_, id), hash)| (*id, hash.clone()))
            .collect())
    }

    fn consume_recovery_code(
        &self,
        user: &str,
        code_id: u64,
        resets: &[StateWrite],
    ) -> Result<ConsumeOutcome, MfaError> {
        let mut data = self.lock();
        if !data.codes.contains_key(&(user.to_owned(), code_id)) {
            return Ok(ConsumeOutcome::CodeGone);
        }
        let all_current = resets.iter().all(|write| {
            data.factors
                .get(&key(user, &write.factor))
                .is_some_and(|row| row.generation == write.expected_generation)
        });
        if !all_current {
            return Ok(ConsumeOutcome::FactorsChanged);
        }
        let updates = resets
            .iter()
            .map(|write| Ok((write, next_generation(write.expected_generation)?)))
            .collect::<Result<Vec<_>, MfaError>>()?;
        for (write, generation) in updates {
            if let Some(row) = data.factors.get_mut(&key(user, &write.factor)) {
                row.generation = generation;
                row.state = write.state;
                row.state_mac.clone_from(&write.state_mac);
            }
        }
        data.codes.remove(&(user.to_owned(), code_id));
        Ok(ConsumeOutcome::Consumed)
    }
}

impl std::fmt::Debug for MemoryFactorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.lock();
        f.debug_struct("MemoryFactorStore")
            .field("factors", &data.factors.len())
            .field("recovery_codes", &data.codes.len())
            .finish()
    }
}
