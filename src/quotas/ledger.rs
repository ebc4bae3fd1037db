//! What each user has used against their limits, counted atomically: one record
//! per user (group `quota:{user}`) in the queue's store ([`crate::docs`]), changed only by read-modify-write
//! (a redb write transaction, or WATCH/MULTI on Redis), so two submits on two nodes
//! cannot both take the last generation of the day.
//!
//! A submit first *reserves* (counts the generation and holds a waiting slot under
//! a token), then enqueues, then *confirms* the slot with the job's id, or
//! *releases* it when the enqueue did not make a new job. A reservation left by a
//! crash between the two is dropped after a minute; its generation stays counted.
//! Waiting slots of jobs that started or ended are pruned on the next reserve that
//! would otherwise be refused for them.

use serde::{Deserialize, Serialize};

use super::calendar;
use super::{Exceeded, Limit, Limits, QuotaError};
use crate::clock::Millis;
use crate::docs::{Docs, Write};

/// Each user's account is a group of its own (`quota:{user}`, one record
/// `account`): on Redis a group is one hash, watched whole by an update, so users
/// never contend with each other.
const ACCOUNT: &str = "account";

fn group(user: &str) -> String {
    format!("quota:{user}")
}
/// A reservation not confirmed within this is dropped (a crash mid-submit).
const RESERVATION_MS: Millis = 60_000;
/// How soon to try again when a limit frees up as jobs end, not at a reset.
const RETRY_SOON_SECS: u64 = 10;

/// One user's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    /// The UTC day `day_count` is for.
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub day_count: u64,
    /// The UTC month `month_count` is for.
    #[serde(default)]
    pub month: String,
    #[serde(default)]
    pub month_count: u64,
    /// Jobs waiting (or reservations, `r:` tokens) and when they were counted.
    #[serde(default)]
    pub waiting: Vec<Slot>,
    /// Bytes of their jobs' outputs held now.
    #[serde(default)]
    pub stored_bytes: u64,
}

/// A waiting job, or a reservation for one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Slot {
    pub id: String,
    pub at_ms: Millis,
}

impl Account {
    /// Counts as of `now`: a new day or month starts from zero.
    fn rolled(mut self, now: Millis) -> Self {
        let (day, month) = (calendar::day(now), calendar::month(now));
        if self.day != day {
            self.day = day;
            self.day_count = 0;
        }
        if self.month != month {
            self.month = month;
            self.month_count = 0;
        }
        self
    }

    /// Generations used today, as of `now`.
    pub fn today(&self, now: Millis) -> u64 {
        if self.day == calendar::day(now) {
            self.day_count
        } else {
            0
        }
    }

    /// Generations used this month, as of `now`.
    pub fn this_month(&self, now: Millis) -> u64 {
        if self.month == calendar::month(now) {
            self.month_count
        } else {
            0
        }
    }
}

/// A held slot: confirm it with the job's id, or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub user: String,
    token: String,
    day: String,
    month: String,
}

fn exceeded(
    limit: &str,
    used: u64,
    allowed: Limit,
    resets_ms: Option<Millis>,
    now: Millis,
    what: &str,
) -> QuotaError {
    let retry_after_secs = resets_ms.map_or(RETRY_SOON_SECS, |r| {
        u64::try_from((r - now).max(0)).unwrap_or(0).div_ceil(1000).max(1)
    });
    let when = match resets_ms {
        Some(r) => format!("; it resets at {}", crate::alerts::notify::rfc3339(r)),
        None => "; it frees up as your jobs end".to_owned(),
    };
    QuotaError::Exceeded(Box::new(Exceeded {
        limit: limit.to_owned(),
        field: None,
        used,
        allowed: allowed.0,
        resets_ms,
        retry_after_secs: Some(retry_after_secs),
        message: format!("quota {limit} exceeded: {used} {what} of {allowed} allowed{when}"),
    }))
}

/// Cheap `Clone` handle on the accounts.
#[derive(Clone)]
pub struct Ledger {
    docs: Docs,
}

impl Ledger {
    pub fn new(docs: Docs) -> Self {
        Self { docs }
    }

    /// `user`'s counts (zero when they never submitted).
    pub async fn account(&self, user: &str) -> Result<Account, QuotaError> {
        let raw = self.docs.get(&group(user), ACCOUNT).await?;
        Ok(raw
            .map(|r| serde_json::from_slice(&r))
            .transpose()
            .map_err(crate::docs::DocsError::from)?
            .unwrap_or_default())
    }

    /// Counts one generation and holds a waiting slot, unless a limit refuses it.
    /// `gone` are waiting ids known to have started or ended (pruned first).
    pub async fn reserve(
        &self,
        user: &str,
        limits: &Limits,
        now: Millis,
        gone: Vec<String>,
    ) -> Result<Reservation, QuotaError> {
        let token = format!("r:{}", ulid::Ulid::new());
        let limits = limits.clone();
        let slot = token.clone();
        let (day, month) = self
            .docs
            .update(&group(user), ACCOUNT, move |old| {
                let account: Account = old.map(serde_json::from_slice).transpose()?.unwrap_or_default();
                let mut a = account.rolled(now);
                a.waiting.retain(|s| !gone.contains(&s.id) && !abandoned(s, now));
                match admit(&a, &limits, now) {
                    Err(e) => Ok((Write::Keep, Err(e))),
                    Ok(()) => {
                        a.day_count += 1;
                        a.month_count += 1;
                        a.waiting.push(Slot {
                            id: slot.clone(),
                            at_ms: now,
                        });
                        let out = (a.day.clone(), a.month.clone());
                        Ok((Write::Put(serde_json::to_vec(&a)?), Ok(out)))
                    }
                }
            })
            .await??;
        Ok(Reservation {
            user: user.to_owned(),
            token,
            day,
            month,
        })
    }

    /// The waiting slot becomes job `id`'s.
    pub async fn confirm(&self, r: &Reservation, id: &str) -> Result<(), QuotaError> {
        let (token, id) = (r.token.clone(), id.to_owned());
        self.docs
            .update(&group(&r.user), ACCOUNT, move |old| {
                let Some(raw) = old else {
                    return Ok((Write::Keep, ()));
                };
                let mut a: Account = serde_json::from_slice(raw)?;
                for s in &mut a.waiting {
                    if s.id == token {
                        s.id.clone_from(&id);
                    }
                }
                Ok((Write::Put(serde_json::to_vec(&a)?), ()))
            })
            .await?;
        Ok(())
    }

    /// Undoes a reservation that made no job.
    pub async fn release(&self, r: &Reservation) -> Result<(), QuotaError> {
        let r = r.clone();
        let user = r.user.clone();
        self.docs
            .update(&group(&user), ACCOUNT, move |old| {
                let Some(raw) = old else {
                    return Ok((Write::Keep, ()));
                };
                let mut a: Account = serde_json::from_slice(raw)?;
                a.waiting.retain(|s| s.id != r.token);
                if a.day == r.day {
                    a.day_count = a.day_count.saturating_sub(1);
                }
                if a.month == r.month {
                    a.month_count = a.month_count.saturating_sub(1);
                }
                Ok((Write::Put(serde_json::to_vec(&a)?), ()))
            })
            .await?;
        Ok(())
    }

    /// Adds (or, negative, removes) bytes of outputs held by `user`.
    pub async fn add_stored(&self, user: &str, delta: i64) -> Result<(), QuotaError> {
        if delta == 0 {
            return Ok(());
        }
        self.docs
            .update(&group(user), ACCOUNT, move |old| {
                let mut a: Account = old.map(serde_json::from_slice).transpose()?.unwrap_or_default();
                a.stored_bytes = a.stored_bytes.saturating_add_signed(delta);
                Ok((Write::Put(serde_json::to_vec(&a)?), ()))
            })
            .await?;
        Ok(())
    }
}

/// A reservation a crash left unconfirmed.
fn abandoned(s: &Slot, now: Millis) -> bool {
    s.id.starts_with("r:") && now - s.at_ms > RESERVATION_MS
}

/// Whether one more job fits in `a` under `limits`.
fn admit(a: &Account, limits: &Limits, now: Millis) -> Result<(), QuotaError> {
    let check = |l: Option<Limit>, used: u64| l.is_some_and(|l| !l.allows(used + 1));
    if check(limits.generations_per_day, a.day_count) {
        let l = limits.generations_per_day.unwrap_or(Limit::UNLIMITED);
        return Err(exceeded(
            "generations_per_day",
            a.day_count,
            l,
            Some(calendar::next_day_ms(now)),
            now,
            "generations today",
        ));
    }
    if check(limits.generations_per_month, a.month_count) {
        let l = limits.generations_per_month.unwrap_or(Limit::UNLIMITED);
        return Err(exceeded(
            "generations_per_month",
            a.month_count,
            l,
            Some(calendar::next_month_ms(now)),
            now,
            "generations this month",
        ));
    }
    let waiting = a.waiting.len() as u64;
    if check(limits.max_queued, waiting) {
        let l = limits.max_queued.unwrap_or(Limit::UNLIMITED);
        return Err(exceeded("max_queued", waiting, l, None, now, "jobs waiting"));
    }
    if let Some(l) = limits.storage_bytes
        && !l.allows(a.stored_bytes)
    {
        return Err(exceeded(
            "storage_bytes",
            a.stored_bytes,
            l,
            None,
            now,
            "bytes of outputs held",
        ));
    }
    Ok(())
}

/// The waiting ids of `a` to look up before a reserve: all of them once the list
/// is as long as the limit (else the reserve may be refused for jobs long gone),
/// or once it grows past `keep`.
pub fn to_prune(a: &Account, limits: &Limits, keep: usize) -> Vec<String> {
    let limit = limits.max_queued.map_or(u64::MAX, |l| l.0);
    let n = a.waiting.len();
    if (n as u64) + 1 > limit || n > keep {
        a.waiting
            .iter()
            .filter(|s| !s.id.starts_with("r:"))
            .map(|s| s.id.clone())
            .collect()
    } else {
        Vec::new()
    }
}
