//! Quotas and usage as a service: the admission step the jobs service runs for
//! each submit (what the job asks against the caller's limits, then an atomic
//! reservation of one generation and one waiting slot), the usage report
//! (`GET /api/v1/usage`, `darkroom usage`) and admins' per-user limits
//! (`users set NAME --quota KEY=VALUE`). The limits and counters themselves are
//! [`crate::quotas`]'.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::ServiceError;
use super::users::require_admin;
use crate::docs::Docs;
use crate::queue::{Enqueued, Job, JobStatus, NewJob, Queue};
use crate::quotas::ledger::{self, Account, Ledger, Reservation};
use crate::quotas::shares::Shares;
use crate::quotas::usage::{UsageBook, UsageDay};
use crate::quotas::{Limits, QuotaError, QuotasConfig, calendar, check_job};
use crate::users::{Principal, Role, User, Users};

/// Waiting ids looked up at most once the list is longer than this.
const PRUNE_PAST: usize = 64;

/// Sets limits of user `name` from `KEY=VALUE` assignments (admins only); what
/// `users set --quota` does on a stopped daemon's store, too.
pub async fn set_personal(
    users: &Users,
    who: &Principal,
    name: &str,
    assignments: &[String],
) -> Result<User, ServiceError> {
    require_admin(who, "changing quotas")?;
    let user = users
        .get(name)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("no user {name:?}")))?;
    let mut quota = user.quota;
    for a in assignments {
        quota.set(a)?;
    }
    Ok(users.set_quota(name, quota).await?)
}

impl From<QuotaError> for ServiceError {
    fn from(e: QuotaError) -> Self {
        match e {
            QuotaError::Exceeded(x) => Self::QuotaExceeded(x),
            QuotaError::Refused { field, message } => Self::Forbidden(format!("{field}: {message}")),
            QuotaError::Invalid { field, message } => Self::invalid(field, message),
            QuotaError::Store(e) => e.into(),
        }
    }
}

/// `GET /api/v1/usage`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
pub struct UsageQuery {
    /// Whose usage; default: yours (admins: everyone's).
    pub user: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC); default: the first of this month.
    pub from: Option<String>,
    /// Last day, included; default: today.
    pub to: Option<String>,
}

/// A change of a user's own limits: limit name to a number, `"unlimited"`, a list
/// (`templates`, `models`), or `null` to fall back to the role's.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct QuotaChange(pub BTreeMap<String, serde_json::Value>);

impl QuotaChange {
    /// From `KEY=VALUE` assignments (`KEY=`: back to the role's).
    pub fn of_assignments(assignments: &[String]) -> Result<Self, ServiceError> {
        let mut map = BTreeMap::new();
        for a in assignments {
            let (k, v) = a
                .split_once('=')
                .ok_or_else(|| ServiceError::invalid("quota", format!("{a:?}: expected KEY=VALUE")))?;
            let v = v.trim();
            let value = if v.is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::Value::String(v.to_owned())
            };
            map.insert(k.trim().to_owned(), value);
        }
        Ok(Self(map))
    }

    /// As `KEY=VALUE` assignments ([`Limits::set`]).
    pub fn assignments(&self) -> Result<Vec<String>, ServiceError> {
        use serde_json::Value;
        self.0
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned).ok_or(()))
                        .collect::<Result<Vec<_>, ()>>()
                        .map_err(|()| ServiceError::invalid(format!("quota.{k}"), "a list of names"))?
                        .join(","),
                    Value::Bool(_) | Value::Object(_) => {
                        return Err(ServiceError::invalid(
                            format!("quota.{k}"),
                            "a number, \"unlimited\", a list of names, or null",
                        ));
                    }
                };
                Ok(format!("{k}={text}"))
            })
            .collect()
    }
}

/// One user's standing now: their limits and what they used of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Standing {
    pub user: String,
    pub role: Role,
    /// Their effective limits (role's, with their own over them).
    pub limits: Limits,
    pub generations_today: u64,
    pub generations_this_month: u64,
    /// Jobs waiting (queued or scheduled).
    pub waiting: u64,
    /// Jobs running on this node.
    pub running: u64,
    pub stored_bytes: u64,
}

/// What `GET /api/v1/usage` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    /// Per user per day, oldest first.
    pub days: Vec<UsageDay>,
    /// Per user, now.
    pub users: Vec<Standing>,
}

/// The quotas service; cheap to clone.
#[derive(Clone)]
pub struct Quotas {
    config: Arc<QuotasConfig>,
    users: Users,
    ledger: Ledger,
    book: UsageBook,
    queue: Queue,
    shares: Arc<Shares>,
    /// Jobs running per owner, on this node (the dispatcher's count).
    running: Arc<dyn Fn(&str) -> u64 + Send + Sync>,
    /// Where job ends are counted, and whether per user.
    metrics: Option<(crate::metrics::Metrics, bool)>,
}

impl Quotas {
    pub fn new(config: QuotasConfig, users: Users, docs: Docs, queue: Queue) -> Self {
        let shares = Arc::new(Shares::new(&config));
        Self {
            config: Arc::new(config),
            users,
            ledger: Ledger::new(docs.clone()),
            book: UsageBook::new(docs),
            queue,
            shares,
            running: Arc::new(|_| 0),
            metrics: None,
        }
    }

    /// Counts running jobs with `running` (the dispatcher's).
    #[must_use]
    pub fn with_running(mut self, running: Arc<dyn Fn(&str) -> u64 + Send + Sync>) -> Self {
        self.running = running;
        self
    }

    /// The weights and `max_running` the dispatcher's fair share reads.
    pub fn shares(&self) -> Arc<Shares> {
        self.shares.clone()
    }

    /// Reads every user's limits into [`Quotas::shares`].
    pub async fn refresh_shares(&self) -> Result<(), ServiceError> {
        let users = self.users.list().await?;
        self.shares.refresh(&self.config, &users);
        Ok(())
    }

    /// `who`'s effective limits.
    pub async fn limits_of(&self, who: &Principal) -> Result<Limits, ServiceError> {
        let personal = self
            .users
            .get(&who.user)
            .await?
            .map(|u| u.quota)
            .unwrap_or_default();
        Ok(self.config.effective(who.role, &personal))
    }

    /// Checks `new` against `who`'s limits and reserves its generation and
    /// waiting slot; `None` when quotas are off. Settle it with [`Quotas::settle`].
    pub async fn admit(&self, who: &Principal, new: &NewJob) -> Result<Option<Reservation>, ServiceError> {
        if !self.config.enforced() {
            return Ok(None);
        }
        let limits = self.limits_of(who).await?;
        check_job(&limits, new.priority, &new.payload)?;
        if !limits.counts() {
            return Ok(None);
        }
        let account = self.ledger.account(&who.user).await?;
        let mut gone = Vec::new();
        for id in ledger::to_prune(&account, &limits, PRUNE_PAST) {
            let waiting = match id.parse() {
                Ok(id) => self
                    .queue
                    .get(id)
                    .await?
                    .is_some_and(|j| matches!(j.status, JobStatus::Queued | JobStatus::Scheduled)),
                Err(_) => false,
            };
            if !waiting {
                gone.push(id);
            }
        }
        let now = self.queue.now_ms();
        Ok(Some(self.ledger.reserve(&who.user, &limits, now, gone).await?))
    }

    /// Keeps the reservation for the job `enqueued` made, or gives it back when
    /// none was made (an idempotent repeat, or a failed enqueue).
    pub async fn settle(&self, reservation: Option<Reservation>, enqueued: Option<&Enqueued>) {
        let Some(r) = reservation else { return };
        let done = match enqueued {
            Some(e) if e.created => self.ledger.confirm(&r, &e.job.id.to_string()).await,
            _ => self.ledger.release(&r).await,
        };
        if let Err(e) = done {
            tracing::warn!(user = %r.user, error = %e, "quota reservation not settled");
        }
    }

    /// Counts job ends in `metrics`, per role (and per user with `per_user`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics, per_user: bool) -> Self {
        self.metrics = Some((metrics, per_user));
        self
    }

    /// Records `job` in its owner's usage (their stored bytes, the metrics).
    pub async fn record(&self, job: &Job) -> Result<(), ServiceError> {
        let Some(owner) = job.owner.as_deref() else {
            return Ok(());
        };
        let Some(change) = self.book.record(job).await? else {
            return Ok(());
        };
        self.ledger.add_stored(owner, change.bytes()).await?;
        if let Some((metrics, per_user)) = &self.metrics
            && change.ended()
        {
            let role = match self.users.get(owner).await? {
                Some(u) => u.role,
                None if owner == "admin" => Role::Admin,
                None => Role::User,
            };
            let status = change.now.status.to_string();
            metrics.usage(&crate::metrics::UsageEnd {
                role: role.as_str(),
                user: per_user.then_some(owner),
                status: &status,
                gpu_seconds: change.gpu_seconds(),
                images: change.images(),
            });
        }
        Ok(())
    }

    /// Usage per user per day, and each user's standing now.
    pub async fn usage(&self, who: &Principal, query: UsageQuery) -> Result<UsageReport, ServiceError> {
        let now = self.queue.now_ms();
        let today = calendar::day(now);
        let from = query
            .from
            .unwrap_or_else(|| format!("{}-01", calendar::month(now)));
        let to = query.to.unwrap_or_else(|| today.clone());
        for (field, day) in [("from", &from), ("to", &to)] {
            calendar::parse_day(field, day).map_err(|m| ServiceError::invalid(field, m))?;
        }
        let everyone = self.users.list().await?;
        let names: Vec<(String, Role)> = match (&query.user, who.role) {
            (Some(u), _) if *u == who.user => vec![(who.user.clone(), who.role)],
            (Some(_), r) if r != Role::Admin => {
                return Err(ServiceError::Forbidden(format!(
                    "the usage of others is for admins; {} is a {}",
                    who.user, who.role
                )));
            }
            (Some(u), _) => match everyone.iter().find(|x| x.name == *u) {
                Some(x) => vec![(x.name.clone(), x.role)],
                None if u == "admin" => vec![(u.clone(), Role::Admin)],
                None => return Err(ServiceError::NotFound(format!("no user {u:?}"))),
            },
            (None, Role::Admin) => {
                let mut all: Vec<(String, Role)> =
                    everyone.iter().map(|u| (u.name.clone(), u.role)).collect();
                if !all.iter().any(|(n, _)| n == "admin") {
                    all.push(("admin".into(), Role::Admin));
                }
                all
            }
            (None, _) => vec![(who.user.clone(), who.role)],
        };
        let mut days = Vec::new();
        let mut standings = Vec::new();
        for (name, role) in names {
            for (day, mut entries) in self.book.days(&name, &from, &to).await? {
                self.settle_stale(&mut entries).await;
                days.push(UsageDay::of(&name, &day, &entries));
            }
            let personal = everyone.iter().find(|u| u.name == name).map(|u| u.quota.clone());
            let account = self.ledger.account(&name).await?;
            standings.push(self.standing(&name, role, &personal.unwrap_or_default(), &account, now));
        }
        days.sort_by(|a, b| (&a.day, &a.user).cmp(&(&b.day, &b.user)));
        Ok(UsageReport {
            from,
            to,
            days,
            users: standings,
        })
    }

    /// Entries whose job ended without its event being recorded are recorded now.
    async fn settle_stale(&self, entries: &mut BTreeMap<String, crate::quotas::usage::Entry>) {
        for (id, entry) in entries.iter_mut() {
            if entry.status.is_terminal() {
                continue;
            }
            let Ok(id) = id.parse() else { continue };
            if let Ok(Some(job)) = self.queue.get(id).await
                && job.status != entry.status
            {
                *entry = crate::quotas::usage::Entry::of(&job);
                if let Err(e) = self.record(&job).await {
                    tracing::debug!(job = %id, error = %e, "usage entry not settled");
                }
            }
        }
    }

    fn standing(&self, user: &str, role: Role, personal: &Limits, a: &Account, now: i64) -> Standing {
        Standing {
            user: user.to_owned(),
            role,
            limits: self.config.effective(role, personal),
            generations_today: a.today(now),
            generations_this_month: a.this_month(now),
            waiting: a.waiting.len() as u64,
            running: (self.running)(user),
            stored_bytes: a.stored_bytes,
        }
    }

    /// Sets limits of user `name` from `KEY=VALUE` assignments (admins only).
    pub async fn set_quota(
        &self,
        who: &Principal,
        name: &str,
        assignments: &[String],
    ) -> Result<User, ServiceError> {
        let user = set_personal(&self.users, who, name, assignments).await?;
        self.refresh_shares().await?;
        Ok(user)
    }

    /// The role defaults in force.
    pub fn by_role(&self) -> BTreeMap<Role, Limits> {
        self.config.by_role()
    }
}
