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
    let catalog = inputs.catalog;
    let model_of = |c: &Candidate| c.affinity.as_deref().and_then(|n| catalog.get(n));
    let mut slots: Vec<usize> = inputs
        .backends
        .iter()
        .map(|b| {
            if b.healthy {
                b.max_in_flight.saturating_sub(b.in_flight)
            } else {
                0
            }
        })
        .collect();
    // Loaded files as the plan goes (a backend taking a job loads its model).
    let mut loaded: Vec<Option<String>> = inputs.backends.iter().map(|b| b.loaded.clone()).collect();
    let mut taken = vec![false; candidates.len()];
    let mut out = Plan::default();
    let eligible = |c: &Candidate, bi: usize| -> bool {
        let b = &inputs.backends[bi];
        if refuse(b, model_of(c), catalog).is_some() {
            return false;
        }
        // Not where its last attempt failed, unless no other backend could take it.
        let failed_here = inputs.failed_on.get(&c.id).is_some_and(|u| *u == b.url);
        !failed_here
            || !inputs
                .backends
                .iter()
                .enumerate()
                .any(|(j, o)| j != bi && refuse(o, model_of(c), catalog).is_none())
    };
    let rejected_for = |c: &Candidate| -> Vec<Rejected> {
        inputs
            .backends
            .iter()
            .filter_map(|b| {
                refuse(b, model_of(c), catalog).map(|why| Rejected {
                    backend: b.url.clone(),
                    why,
                })
            })
            .collect()
    };
    match inputs.scheduler {
        Scheduler::LeastLoaded => {
            for (ci, c) in candidates.iter().enumerate() {
                let best = (0..slots.len())
                    .filter(|&bi| slots[bi] > 0 && eligible(c, bi))
                    .min_by_key(|&bi| inputs.backends[bi].max_in_flight - slots[bi]);
                if let Some(bi) = best {
                    slots[bi] -= 1;
                    taken[ci] = true;
                    out.picks.push((ci, placement(bi, "least_loaded", rejected_for(c))));
                }
            }
        }
        Scheduler::Affinity => loop {
            let mut progressed = false;
            for bi in 0..slots.len() {
                if slots[bi] == 0 {
                    continue;
                }
                let fits: Vec<usize> = (0..candidates.len())
                    .filter(|&ci| !taken[ci] && eligible(&candidates[ci], bi))
                    .collect();
                let Some(&first) = fits.first() else { continue };
                let top = candidates[first].priority;
                let same: Vec<usize> = fits
                    .iter()
                    .copied()
                    .take_while(|&ci| candidates[ci].priority == top)
                    .collect();
                let file_of = |ci: usize| model_of(&candidates[ci]).map(|m| m.file.as_str());
                let overdue = same.iter().copied().find(|&ci| {
                    inputs
                        .passed
                        .get(&candidates[ci].id)
                        .is_some_and(|since| inputs.now_ms - since >= inputs.max_wait_ms)
                });
                let here = loaded[bi].as_deref();
                let elsewhere = |file: &str| {
                    loaded
                        .iter()
                        .enumerate()
                        .any(|(j, l)| j != bi && l.as_deref() == Some(file))
                };
                // Another backend with a free slot has its model loaded: leave it
                // to that one this round.
                let waits_elsewhere = |ci: usize| {
                    file_of(ci).is_some_and(|f| {
                        (0..slots.len()).any(|j| {
                            j != bi && slots[j] > 0 && loaded[j].as_deref() == Some(f) && eligible(&candidates[ci], j)
                        })
                    })
                };
                let (ci, reason) = if let Some(ci) = overdue {
                    (ci, "waited")
                } else if let Some(ci) = same
                    .iter()
                    .copied()
                    .find(|&ci| file_of(ci).is_some_and(|f| Some(f) == here))
                {
                    (ci, "loaded")
                } else if let Some(ci) = same
                    .iter()
                    .copied()
                    .find(|&ci| file_of(ci).is_none_or(|f| !elsewhere(f)))
                {
                    (ci, if file_of(ci).is_some() { "unloaded" } else { "any" })
                } else if let Some(ci) = same.iter().copied().find(|&ci| !waits_elsewhere(ci)) {
                    (ci, "any")
                } else {
                    continue;
                };
                for &ahead in same.iter().take_while(|&&a| a != ci) {
                    out.passed_over.push(candidates[ahead].id);
                }
                if let Some(f) = file_of(ci) {
                    loaded[bi] = Some(f.to_owned());
                }
                slots[bi] -= 1;
                taken[ci] = true;
                out.picks.push((ci, placement(bi, reason, rejected_for(&candidates[ci]))));
                progressed = true;
            }
            if !progressed {
                break;
            }
        },
    }
    out
}

fn placement(backend: usize, reason: &'static str, rejected: Vec<Rejected>) -> Placement {
    Placement {
        backend,
        reason,
        rejected,
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
