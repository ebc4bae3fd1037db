//! Fair share: which of the ready jobs go first when several users have work
//! waiting. Priority always wins; among jobs of the same priority the owner with
//! the least recent GPU time, divided by their share, goes next, so a user who
//! queues 1,000 jobs delays another user's single job by at most the jobs already
//! running. Within one owner, jobs keep their order.
//!
//! GPU time is counted on this node as jobs run: a job is charged an estimate
//! (the mean of recent jobs) when it starts and its real time when it ends, and
//! what was charged fades by half every [`HALF_LIFE_MS`]. Jobs of an owner at their
//! `max_running` on this node wait. Shares and limits come from an [`OwnerPolicy`]
//! (the quotas of each user's role, kept fresh by the daemon).

// Times in ms as f64: exact far beyond any span fair share weighs.
#![allow(clippy::cast_precision_loss)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::clock::Millis;
use crate::queue::Candidate;

/// Charged GPU time halves every this long.
pub const HALF_LIFE_MS: f64 = 600_000.0;
/// The estimate charged at start before any job has ended here.
const FIRST_ESTIMATE_MS: f64 = 10_000.0;

/// What fair share needs to know about each owner.
pub trait OwnerPolicy: Send + Sync {
    /// Their weight (1: an equal share).
    fn weight(&self, owner: &str) -> f64;
    /// How many of their jobs may run at once (`None`: any number).
    fn max_running(&self, owner: &str) -> Option<u64>;
}

/// Everyone equal, no limits.
pub struct Equal;

impl OwnerPolicy for Equal {
    fn weight(&self, _: &str) -> f64 {
        1.0
    }
    fn max_running(&self, _: &str) -> Option<u64> {
        None
    }
}

#[derive(Default)]
struct State {
    /// Charged GPU ms of each owner, as of the time beside it.
    charged: HashMap<String, (f64, Millis)>,
    running: HashMap<String, u64>,
    /// Mean time of the jobs ended here (ms), and how many.
    mean_ms: f64,
    ended: u64,
}

/// The fair-share bookkeeping of one dispatcher.
pub struct FairShare {
    state: Mutex<State>,
    policy: std::sync::RwLock<Arc<dyn OwnerPolicy>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn owner_of(c: &Candidate) -> &str {
    c.owner.as_deref().unwrap_or("")
}

fn decayed((value, at): (f64, Millis), now: Millis) -> f64 {
    let age = (now - at).max(0) as f64;
    value * (0.5f64).powf(age / HALF_LIFE_MS)
}

impl FairShare {
    pub fn new(policy: Arc<dyn OwnerPolicy>) -> Self {
        Self {
            state: Mutex::default(),
            policy: std::sync::RwLock::new(policy),
        }
    }

    pub fn set_policy(&self, policy: Arc<dyn OwnerPolicy>) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    fn policy(&self) -> Arc<dyn OwnerPolicy> {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn estimate(s: &State) -> f64 {
        if s.ended == 0 {
            FIRST_ESTIMATE_MS
        } else {
            s.mean_ms
        }
    }

    fn charge(s: &mut State, owner: &str, ms: f64, now: Millis) {
        let entry = s.charged.entry(owner.to_owned()).or_insert((0.0, now));
        *entry = ((decayed(*entry, now) + ms).max(0.0), now);
    }

    /// A job of `owner` started here; answers what it was charged.
    pub fn started(&self, owner: Option<&str>, now: Millis) -> f64 {
        let owner = owner.unwrap_or("");
        let mut s = lock(&self.state);
        let estimate = Self::estimate(&s);
        Self::charge(&mut s, owner, estimate, now);
        *s.running.entry(owner.to_owned()).or_default() += 1;
        estimate
    }

    /// A job of `owner` that was charged `charged` at start ran `ran_ms`.
    pub fn ended(&self, owner: Option<&str>, charged: f64, ran_ms: Millis, now: Millis) {
        let owner = owner.unwrap_or("");
        let mut s = lock(&self.state);
        let ran = ran_ms.max(0) as f64;
        Self::charge(&mut s, owner, ran - charged, now);
        if let Some(n) = s.running.get_mut(owner) {
            *n = n.saturating_sub(1);
        }
        s.ended += 1;
        let n = s.ended.min(50) as f64;
        s.mean_ms += (ran - s.mean_ms) / n;
    }

    /// Jobs of `owner` running here.
    pub fn running(&self, owner: &str) -> u64 {
        lock(&self.state).running.get(owner).copied().unwrap_or(0)
    }

    /// The candidates (best first) in the order fair share starts them, as
    /// indexes; those whose owner is at `max_running` are left out.
    pub fn order(&self, candidates: &[Candidate], now: Millis) -> Vec<usize> {
        let policy = self.policy();
        let s = lock(&self.state);
        let estimate = Self::estimate(&s);
        let mut order = Vec::with_capacity(candidates.len());
        let mut start = 0;
        while start < candidates.len() {
            let priority = candidates[start].priority;
            let end = candidates[start..]
                .iter()
                .position(|c| c.priority != priority)
                .map_or(candidates.len(), |n| start + n);
            order_level(
                &*policy,
                &s,
                &candidates[start..end],
                start,
                estimate,
                now,
                &mut order,
            );
            start = end;
        }
        order
    }
}

/// One priority level: owners take turns by least weighted usage.
fn order_level(
    policy: &dyn OwnerPolicy,
    s: &State,
    level: &[Candidate],
    offset: usize,
    estimate: f64,
    now: Millis,
    order: &mut Vec<usize>,
) {
    // Each owner's jobs in order, the owners in order of their first job.
    let mut owners: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, c) in level.iter().enumerate() {
        let o = owner_of(c);
        match owners.iter_mut().find(|(name, _)| *name == o) {
            Some((_, jobs)) => jobs.push(offset + i),
            None => owners.push((o, vec![offset + i])),
        }
    }
    struct Turn {
        usage: f64,
        weight: f64,
        room: u64,
        next: usize,
    }
    let mut turns: Vec<Turn> = owners
        .iter()
        .map(|(o, _)| {
            let weight = policy.weight(o).max(f64::MIN_POSITIVE);
            let running = s.running.get(*o).copied().unwrap_or(0);
            let room = policy
                .max_running(o)
                .map_or(u64::MAX, |m| m.saturating_sub(running));
            let usage = s.charged.get(*o).map_or(0.0, |c| decayed(*c, now));
            Turn {
                usage,
                weight,
                room,
                next: 0,
            }
        })
        .collect();
    loop {
        let best = turns
            .iter()
            .enumerate()
            .filter(|(i, t)| t.room > 0 && t.next < owners[*i].1.len())
            .min_by(|(_, a), (_, b)| (a.usage / a.weight).total_cmp(&(b.usage / b.weight)))
            .map(|(i, _)| i);
        let Some(i) = best else { break };
        let t = &mut turns[i];
        order.push(owners[i].1[t.next]);
        t.next += 1;
        t.room -= 1;
        t.usage += estimate;
    }
}

#[cfg(test)]
mod tests {
    use ulid::Ulid;

    use super::*;

    fn jobs(owners: &[(&str, i32)]) -> Vec<Candidate> {
        owners
            .iter()
            .enumerate()
            .map(|(i, (o, p))| Candidate {
                id: Ulid::from_parts(i as u64, 0),
                priority: *p,
                affinity: None,
                created_ms: 0,
                owner: Some((*o).to_owned()),
            })
            .collect()
    }

    struct Policy;
    impl OwnerPolicy for Policy {
        fn weight(&self, owner: &str) -> f64 {
            if owner == "big" { 2.0 } else { 1.0 }
        }
        fn max_running(&self, owner: &str) -> Option<u64> {
            (owner == "trial").then_some(1)
        }
    }

    #[test]
    fn a_single_job_does_not_wait_behind_a_batch() {
        let fair = FairShare::new(Arc::new(Equal));
        // alice queued 5 jobs before bob's one; alice already ran one.
        let c = jobs(&[
            ("alice", 0),
            ("alice", 0),
            ("alice", 0),
            ("alice", 0),
            ("alice", 0),
            ("bob", 0),
        ]);
        let charged = fair.started(Some("alice"), 0);
        fair.ended(Some("alice"), charged, 5_000, 5_000);
        let order = fair.order(&c, 5_000);
        assert_eq!(order[0], 5, "bob, who used nothing, goes first: {order:?}");
        assert_eq!(&order[1..], &[0, 1, 2, 3, 4]);
    }

    #[test]
    fn owners_take_turns_and_priority_wins() {
        let fair = FairShare::new(Arc::new(Equal));
        let c = jobs(&[("x", 5), ("a", 0), ("a", 0), ("a", 0), ("b", 0), ("b", 0)]);
        assert_eq!(fair.order(&c, 0), vec![0, 1, 4, 2, 5, 3]);
    }

    #[test]
    fn shares_weigh_and_max_running_holds_back() {
        let fair = FairShare::new(Arc::new(Policy));
        // big (share 2) gets two turns for small's one.
        let c = jobs(&[
            ("big", 0),
            ("big", 0),
            ("big", 0),
            ("big", 0),
            ("small", 0),
            ("small", 0),
        ]);
        assert_eq!(fair.order(&c, 0), vec![0, 4, 1, 2, 5, 3]);
        // trial may run one job: with one running, none of theirs is offered.
        let c = jobs(&[("trial", 0), ("trial", 0), ("other", 0)]);
        assert_eq!(fair.order(&c, 0), vec![0, 2]);
        fair.started(Some("trial"), 0);
        assert_eq!(fair.order(&c, 0), vec![2]);
    }

    #[test]
    fn charged_time_fades() {
        let fair = FairShare::new(Arc::new(Equal));
        let charged = fair.started(Some("a"), 0);
        fair.ended(Some("a"), charged, 60_000, 60_000);
        let s = lock(&fair.state);
        let at_end = decayed(s.charged["a"], 60_000);
        // The estimate charged at start has faded a little by the end; the rest is the run.
        assert!(at_end > 59_000.0 && at_end < 60_000.0, "{at_end}");
        let later = decayed(s.charged["a"], 60_000 + 600_000);
        assert!((later - at_end / 2.0).abs() < 1.0, "{later}");
    }
}
