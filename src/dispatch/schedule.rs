//! Which queued jobs start next, and where, when the model catalog is in use.
//!
//! The claim loop shows [`plan`] the first ready jobs (best first) and the backends
//! with free slots. A job may only go to a backend that has its model's file and
//! room for it; a job no free backend can take waits in the queue (it does not
//! fail, and does not block the jobs behind it).
//!
//! With `routing.scheduler = "affinity"` (the default) a free backend takes, among
//! the jobs of the highest priority it can run, the first whose model it already
//! has loaded; else the first whose model no other backend has loaded (so it does
//! not take another backend's group away); else the first. Swapping a 14 GB model
//! costs seconds to minutes, so grouping saves most of them. Each job passed over
//! this way is remembered with the time, and once it has been passed over for
//! `max_affinity_wait_seconds` it goes first: no job waits longer than that beyond
//! what strict order would have given it. Priority always wins.
//! `"least_loaded"` is strict priority/FIFO order to the least loaded backend that
//! can take the job (the behaviour before the catalog, kept for comparison).

use std::collections::HashMap;

use serde::Serialize;
use ulid::Ulid;

use crate::clock::Millis;
use crate::models::{BackendView, Catalog, ModelSpec, Scheduler};
use crate::queue::Candidate;

/// Where a planned job runs and why: recorded in the job as `routing`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    /// Index of the backend in the pool.
    #[serde(skip)]
    pub backend: usize,
    /// `loaded` (had the model), `unloaded` (no other backend has it loaded),
    /// `least_loaded`, `waited` (passed over for too long), `any`.
    pub reason: &'static str,
    /// Backends that could not take it, and why.
    pub rejected: Vec<Rejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    pub backend: String,
    pub why: String,
}

/// What the planner knows besides the candidates.
pub struct Inputs<'a> {
    pub catalog: &'a Catalog,
    pub scheduler: Scheduler,
    pub backends: &'a [BackendView],
    pub now_ms: Millis,
    pub max_wait_ms: i64,
    /// When each job was first passed over for another of its model group.
    pub passed: &'a HashMap<Ulid, Millis>,
    /// Where each job's last attempt failed.
    pub failed_on: &'a HashMap<Ulid, String>,
}

/// The jobs to start now, and the ones passed over in favour of a later job.
#[derive(Debug, Default)]
pub struct Plan {
    pub picks: Vec<(usize, Placement)>,
    pub passed_over: Vec<Ulid>,
}

/// Why `backend` cannot take a job of `model` now, if so.
fn refuse(b: &BackendView, model: Option<&ModelSpec>, catalog: &Catalog) -> Option<String> {
    if !b.healthy {
        return Some("down".into());
    }
    let m = model?;
    if let Some(why) = b.cannot_hold(m) {
        return Some(why);
    }
    // An idle backend is emptied before the load (`/free`), so only its total counts.
    if b.in_flight > 0 && !b.fits_now(m, catalog) {
        return Some(format!("not enough free VRAM for {} now", m.name));
    }
    None
}

/// Chooses jobs for the free slots of `inputs.backends`.
pub fn plan(candidates: &[Candidate], inputs: &Inputs<'_>) -> Plan {
    let mut p = Planner {
        candidates,
        inputs,
        slots: inputs
            .backends
            .iter()
            .map(|b| {
                if b.healthy {
                    b.max_in_flight.saturating_sub(b.in_flight)
                } else {
                    0
                }
            })
            .collect(),
        loaded: inputs.backends.iter().map(|b| b.loaded.clone()).collect(),
        taken: vec![false; candidates.len()],
        out: Plan::default(),
    };
    match inputs.scheduler {
        Scheduler::LeastLoaded => p.least_loaded(),
        Scheduler::Affinity => while p.affinity_round() {},
    }
    p.out
}

/// One plan in the making.
struct Planner<'a> {
    candidates: &'a [Candidate],
    inputs: &'a Inputs<'a>,
    /// Free slots left per backend.
    slots: Vec<usize>,
    /// Loaded files as the plan goes (a backend taking a job loads its model).
    loaded: Vec<Option<String>>,
    taken: Vec<bool>,
    out: Plan,
}

impl Planner<'_> {
    fn model_of(&self, ci: usize) -> Option<&ModelSpec> {
        self.candidates[ci]
            .affinity
            .as_deref()
            .and_then(|n| self.inputs.catalog.get(n))
    }

    fn file_of(&self, ci: usize) -> Option<&str> {
        self.model_of(ci).map(|m| m.file.as_str())
    }

    /// Whether backend `bi` may take candidate `ci`: it can, and it is not where
    /// the job's last attempt failed unless no other backend could take it.
    fn eligible(&self, ci: usize, bi: usize) -> bool {
        let (backends, catalog) = (self.inputs.backends, self.inputs.catalog);
        let model = self.model_of(ci);
        if refuse(&backends[bi], model, catalog).is_some() {
            return false;
        }
        let failed_here = self
            .inputs
            .failed_on
            .get(&self.candidates[ci].id)
            .is_some_and(|u| *u == backends[bi].url);
        !failed_here
            || !backends
                .iter()
                .enumerate()
                .any(|(j, o)| j != bi && refuse(o, model, catalog).is_none())
    }

    fn take(&mut self, ci: usize, bi: usize, reason: &'static str) {
        if let Some(f) = self.file_of(ci) {
            self.loaded[bi] = Some(f.to_owned());
        }
        self.slots[bi] -= 1;
        self.taken[ci] = true;
        let model = self.model_of(ci);
        let rejected = self
            .inputs
            .backends
            .iter()
            .filter_map(|b| {
                refuse(b, model, self.inputs.catalog).map(|why| Rejected {
                    backend: b.url.clone(),
                    why,
                })
            })
            .collect();
        self.out.picks.push((
            ci,
            Placement {
                backend: bi,
                reason,
                rejected,
            },
        ));
    }

    /// Strict order: each job to the least loaded backend that can take it.
    fn least_loaded(&mut self) {
        for ci in 0..self.candidates.len() {
            let best = (0..self.slots.len())
                .filter(|&bi| self.slots[bi] > 0 && self.eligible(ci, bi))
                .min_by_key(|&bi| self.inputs.backends[bi].max_in_flight - self.slots[bi]);
            if let Some(bi) = best {
                self.take(ci, bi, "least_loaded");
            }
        }
    }

    /// Gives each backend with a free slot one job; false when none was given.
    fn affinity_round(&mut self) -> bool {
        let mut progressed = false;
        for bi in 0..self.slots.len() {
            if self.slots[bi] == 0 {
                continue;
            }
            let fits: Vec<usize> = (0..self.candidates.len())
                .filter(|&ci| !self.taken[ci] && self.eligible(ci, bi))
                .collect();
            let Some(&first) = fits.first() else { continue };
            let top = self.candidates[first].priority;
            let same: Vec<usize> = fits
                .into_iter()
                .take_while(|&ci| self.candidates[ci].priority == top)
                .collect();
            let Some((ci, reason)) = self.affinity_choice(bi, &same) else {
                continue;
            };
            for &ahead in same.iter().take_while(|&&a| a != ci) {
                self.out.passed_over.push(self.candidates[ahead].id);
            }
            self.take(ci, bi, reason);
            progressed = true;
        }
        progressed
    }

    /// Among `same` (the jobs of the top priority backend `bi` can take, in
    /// order), the one it takes and why; `None` leaves them to backends that have
    /// their model loaded.
    fn affinity_choice(&self, bi: usize, same: &[usize]) -> Option<(usize, &'static str)> {
        let now = self.inputs.now_ms;
        let overdue = same.iter().copied().find(|&ci| {
            self.inputs
                .passed
                .get(&self.candidates[ci].id)
                .is_some_and(|since| now - since >= self.inputs.max_wait_ms)
        });
        if let Some(ci) = overdue {
            return Some((ci, "waited"));
        }
        let here = self.loaded[bi].as_deref();
        if let Some(ci) = same
            .iter()
            .copied()
            .find(|&ci| self.file_of(ci).is_some_and(|f| Some(f) == here))
        {
            return Some((ci, "loaded"));
        }
        let loaded_elsewhere =
            |f: &str| (0..self.slots.len()).any(|j| j != bi && self.loaded[j].as_deref() == Some(f));
        if let Some(ci) = same
            .iter()
            .copied()
            .find(|&ci| self.file_of(ci).is_none_or(|f| !loaded_elsewhere(f)))
        {
            return Some((
                ci,
                if self.file_of(ci).is_some() {
                    "unloaded"
                } else {
                    "any"
                },
            ));
        }
        // Every job's model is loaded on another backend: take one whose backend
        // is busy, rather than idle; leave the rest to their free backends.
        same.iter()
            .copied()
            .find(|&ci| {
                self.file_of(ci).is_none_or(|f| {
                    !(0..self.slots.len()).any(|j| {
                        j != bi
                            && self.slots[j] > 0
                            && self.loaded[j].as_deref() == Some(f)
                            && self.eligible(ci, j)
                    })
                })
            })
            .map(|ci| (ci, "any"))
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
