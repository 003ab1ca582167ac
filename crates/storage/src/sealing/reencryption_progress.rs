//! A re-encryption's progress, as this node keeps it (`reencrypt` does
//! the work): one job per tenant, the latest, shared between the task
//! that runs it and whoever asks how far it got.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use consensusdb_types::Stamp;

use crate::writer::ResealOutcome;

/// Refusals named in the progress (all are counted).
const REFUSALS_NAMED: usize = 5;

/// Where a re-encryption stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReencryptionState {
    /// Still walking the tenant's records.
    Running,
    /// Every record was looked at.
    Done,
    /// It stopped on an error (it resumes when the node next starts).
    Stopped(String),
}

impl ReencryptionState {
    /// `running`, `done` or `stopped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReencryptionState::Running => "running",
            ReencryptionState::Done => "done",
            ReencryptionState::Stopped(_) => "stopped",
        }
    }

    /// Why it stopped, if it did.
    pub fn error(&self) -> Option<&str> {
        match self {
            ReencryptionState::Stopped(error) => Some(error),
            ReencryptionState::Running | ReencryptionState::Done => None,
        }
    }
}

/// A re-encryption's progress on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReencryptionProgress {
    /// The tenant.
    pub tenant: String,
    /// When it started (its record's stamp).
    pub started_at: Stamp,
    /// Where it stands.
    pub state: ReencryptionState,
    /// Which walk over the tenant's records this is: another starts if
    /// the tenant's keys are rotated while one runs. The counts below are
    /// the current walk's.
    pub pass: u32,
    /// The HLC of the tenant's last rotation as the walk began: values
    /// under keys made at or before it are sealed again. `None`: never
    /// rotated, only values stored in the clear are sealed.
    pub rotated_at: Option<u64>,
    /// The tenant's live records when the walk began (what `scanned` counts up
    /// to, give or take the writes since).
    pub total: u64,
    /// Records looked at so far.
    pub scanned: u64,
    /// Values sealed again under this node's current key.
    pub resealed: u64,
    /// Values under a key made after the last rotation already.
    pub already: u64,
    /// Records overwritten, removed, expired or shredded since it started:
    /// nothing to do.
    pub changed: u64,
    /// Values that could not be opened, left as they are.
    pub refused: u64,
    /// The first few of those, each with why.
    pub refusals: Vec<String>,
}

impl ReencryptionProgress {
    pub(crate) fn new(tenant: &str, started_at: Stamp) -> Self {
        Self {
            tenant: tenant.to_string(),
            started_at,
            state: ReencryptionState::Running,
            pass: 0,
            rotated_at: None,
            total: 0,
            scanned: 0,
            resealed: 0,
            already: 0,
            changed: 0,
            refused: 0,
            refusals: Vec::new(),
        }
    }

    /// Starts a walk: its counts start from zero.
    pub(crate) fn start_pass(&mut self, total: u64, rotated_at: Option<u64>) {
        *self = Self { pass: self.pass + 1, rotated_at, total, ..Self::new(&self.tenant, self.started_at) };
    }

    pub(crate) fn add(&mut self, outcome: ResealOutcome) {
        self.resealed += outcome.resealed;
        self.already += outcome.already;
        self.changed += outcome.changed;
        self.refused += outcome.refused.len() as u64;
        let room = REFUSALS_NAMED.saturating_sub(self.refusals.len());
        self.refusals.extend(outcome.refused.into_iter().take(room));
    }
}

pub(crate) type Job = Arc<Mutex<ReencryptionProgress>>;

/// The re-encryptions this node ran since it started, newest per tenant.
#[derive(Default)]
pub(crate) struct Reencryptions(Mutex<HashMap<String, Job>>);

impl Reencryptions {
    /// A new job for `tenant`, unless one is running: then `Err` with
    /// that one.
    pub(crate) fn claim(&self, tenant: &str, started_at: Stamp) -> Result<Job, Job> {
        let mut jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = jobs.get(tenant)
            && running.lock().unwrap_or_else(PoisonError::into_inner).state == ReencryptionState::Running
        {
            return Err(running.clone());
        }
        let job = Arc::new(Mutex::new(ReencryptionProgress::new(tenant, started_at)));
        jobs.insert(tenant.to_string(), job.clone());
        Ok(job)
    }

    pub(crate) fn get(&self, tenant: &str) -> Option<ReencryptionProgress> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).get(tenant).map(progress_of)
    }

    pub(crate) fn all(&self) -> Vec<ReencryptionProgress> {
        let jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = jobs.values().map(progress_of).collect();
        all.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        all
    }
}

pub(crate) fn progress_of(job: &Job) -> ReencryptionProgress {
    job.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

pub(crate) fn update(job: &Job, change: impl FnOnce(&mut ReencryptionProgress)) {
    change(&mut job.lock().unwrap_or_else(PoisonError::into_inner));
}

/// Marks its job stopped when dropped while the job still says running:
/// the task ended some other way than through its end (the store closed,
/// or a panic).
pub(crate) struct StopsUnlessFinished(pub(crate) Job);

impl Drop for StopsUnlessFinished {
    fn drop(&mut self) {
        update(&self.0, |progress| {
            if progress.state == ReencryptionState::Running {
                progress.state = ReencryptionState::Stopped(
                    "the node stopped it; it resumes when the node starts again".into(),
                );
            }
        });
    }
}
