//! One queue transition on Redis: reads go to the server as they are asked for,
//! writes are kept here, and [`RedisTxn::commit`] applies them all in one Lua script
//! — after checking that every key the transition read still holds what it read.
//!
//! That check is what makes two nodes unable to claim the same job: both read the
//! job's record, the first commit changes it, and the second finds its guard broken
//! and runs the transition again on fresh data (optimistic concurrency, as a
//! `WATCH`/`MULTI` would, but on a shared multiplexed connection pool). The writes see
//! themselves: a job promoted from `scheduled` earlier in the same claim is in the
//! ready range the claim reads next, as in a redb write transaction.
//!
//! A commit whose answer is lost (the connection dropped or timed out after the
//! script was sent) may or may not have been applied. Each commit therefore names a
//! marker key: the script leaves its answer there for two minutes, and does nothing if
//! the marker already exists. [`settle`] then asks on a fresh connection by creating
//! the marker itself: if it could, the script never ran and never will (run the
//! transition again); if it could not, the script ran and the marker holds its answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use redis::{Connection, Script};
use serde_json::Value;
use ulid::Ulid;

use super::keys::{self, Keys};
use crate::clock::Millis;
use crate::queue::backend::{JobTables, Position};
use crate::queue::error::QueueError;
use crate::queue::job::{Job, JobEvent, JobStatus};
use crate::redis_store::Failure;

/// Entries the event stream keeps (approximately) for nodes that fell behind.
const STREAM_MAXLEN: usize = 100_000;

/// How long a commit's answer (or its fence) stays at its marker key; [`settle`]
/// must be done well within it (see [`SETTLE_WITHIN`]).
const MARKER_TTL_MS: u64 = 120_000;
/// How long after sending a commit its outcome may still be asked: half the
/// marker's life, so the marker is surely still there when asked.
pub(crate) const SETTLE_WITHIN: std::time::Duration = std::time::Duration::from_millis(MARKER_TTL_MS / 2);
/// What [`settle`] leaves at the marker of a commit that never ran.
const FENCED: &str = "fenced";

/// Checks the guards, then applies the writes. Answers 0 if a guard broke (or the
/// commit was fenced off by [`settle`]), else the stream id of the last event
/// appended, or 1 when there was none; the answer is also left at the marker key.
///
/// KEYS[1]: the marker key. ARGV: the marker's TTL in ms, the number of guards,
/// then per guard `key index, present (0|1), value`, then the writes, each an op letter and a key index with its arguments:
/// `S` set value, `D` delete, `A` add member, `R` remove member, `M` add to set,
/// `X` append an event to a stream capped at a length.
static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local current = redis.call('GET', KEYS[tonumber(ARGV[i])])
  if ARGV[i + 1] == '0' then
    if current then return 0 end
  elseif current ~= ARGV[i + 2] then
    return 0
  end
  i = i + 3
end
local last = 1
while i <= #ARGV do
  local op, key = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  if op == 'S' then redis.call('SET', key, ARGV[i + 2]); i = i + 3
  elseif op == 'D' then redis.call('DEL', key); i = i + 2
  elseif op == 'A' then redis.call('ZADD', key, 0, ARGV[i + 2]); i = i + 3
  elseif op == 'R' then redis.call('ZREM', key, ARGV[i + 2]); i = i + 3
  elseif op == 'M' then redis.call('SADD', key, ARGV[i + 2]); i = i + 3
  elseif op == 'X' then
    last = redis.call('XADD', key, 'MAXLEN', '~', ARGV[i + 2], '*', 'e', ARGV[i + 3]); i = i + 4
  else
    return redis.error_reply('darkroom commit: unknown op ' .. tostring(op))
  end
end
redis.call('SET', KEYS[1], tostring(last), 'PX', ARGV[1])
return last
",
    )
});

/// What a commit did.
pub(crate) enum Commit {
    /// A key read had changed: run the transition again.
    Conflict,
    /// Applied; the stream id of its last event, if it had any.
    Done(Option<StreamId>),
}

impl Commit {
    /// Reads a commit's answer, from the script or from its marker key.
    fn of_answer(answer: &redis::Value) -> Self {
        let text = match answer {
            redis::Value::Int(0) => return Self::Conflict,
            redis::Value::BulkString(id) => String::from_utf8_lossy(id).into_owned(),
            redis::Value::SimpleString(id) => id.clone(),
            _ => return Self::Done(None),
        };
        Self::Done(parse_stream_id(&text))
    }
}

/// Finds out what became of a commit whose answer was lost, on a fresh connection:
/// [`Commit::Conflict`] when it was not applied (it is fenced off now, so it never
/// will be) and the transition must run again, else its answer.
pub(crate) fn settle(conn: &mut Connection, marker: &str) -> Result<Commit, redis::RedisError> {
    // One command, so nothing can come between the look and the fence (Redis 7).
    let before: Option<String> = redis::cmd("SET")
        .arg(marker)
        .arg(FENCED)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(MARKER_TTL_MS)
        .query(conn)?;
    Ok(match before.as_deref() {
        None | Some(FENCED) => Commit::Conflict,
        Some(answer) => Commit::Done(parse_stream_id(answer)),
    })
}

/// A Redis stream entry id, `{ms}-{seq}`, ordered as Redis orders them.
pub(crate) type StreamId = (u64, u64);

/// Parses `1700000000000-3`.
pub(crate) fn parse_stream_id(text: &str) -> Option<StreamId> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// A transition's view of the queue on Redis.
pub(crate) struct RedisTxn<'a> {
    conn: &'a mut Connection,
    keys: &'a Keys,
    /// What each key read held when first read (`None`: absent).
    guards: BTreeMap<String, Option<String>>,
    /// Keys written: their new value, or `None` for deleted.
    writes: BTreeMap<String, Option<String>>,
    /// Index members changed: `(sorted set, member)` → present afterwards.
    members: BTreeMap<(String, String), bool>,
    /// Set members to add: `(set, member)` (queue names, owners).
    sets: BTreeSet<(String, String)>,
}

impl<'a> RedisTxn<'a> {
    pub(crate) fn new(conn: &'a mut Connection, keys: &'a Keys) -> Self {
        Self {
            conn,
            keys,
            guards: BTreeMap::new(),
            writes: BTreeMap::new(),
            members: BTreeMap::new(),
            sets: BTreeSet::new(),
        }
    }

    /// The value of `key` as this transition sees it; `guard` records it for commit.
    fn get(&mut self, key: String, guard: bool) -> Result<Option<String>, QueueError> {
        if let Some(written) = self.writes.get(&key) {
            return Ok(written.clone());
        }
        if let Some(seen) = self.guards.get(&key) {
            return Ok(seen.clone());
        }
        let value: Option<String> = redis::cmd("GET").arg(&key).query(self.conn)?;
        if guard {
            self.guards.insert(key, value.clone());
        }
        Ok(value)
    }

    fn set_member(&mut self, (key, member): (String, String), present: bool) {
        self.members.insert((key, member), present);
    }

    /// Adds or removes the owner index entry of `job` at `position` (only ready
    /// jobs with an owner have one).
    fn own(&mut self, job: &Job, position: &Position, present: bool) {
        if let (Some(owner), Position::Ready { queue, .. }) = (job.owner.as_deref(), position) {
            let (_, member) = self.keys.entry(job.id, position);
            if present {
                self.sets.insert((self.keys.owners(queue), owner.to_owned()));
            }
            self.set_member((self.keys.owned(queue, owner), member), present);
        }
    }

    /// The first `limit` members of a sorted set below `upper` (exclusive; `None`:
    /// no bound), this transition's own changes included.
    fn range(&mut self, key: &str, upper: Option<&str>, limit: usize) -> Result<Vec<String>, QueueError> {
        let changed: Vec<(&String, bool)> = self
            .members
            .range((key.to_owned(), String::new())..)
            .take_while(|((k, _), _)| k == key)
            .map(|((_, m), present)| (m, *present))
            .collect();
        let removed = changed.iter().filter(|(_, present)| !present).count();
        let max = upper.map_or_else(|| "+".to_owned(), |u| format!("({u}"));
        let stored: Vec<String> = redis::cmd("ZRANGE")
            .arg(key)
            .arg("-")
            .arg(&max)
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + removed)
            .query(self.conn)?;
        let mut all: BTreeSet<String> = stored.into_iter().collect();
        for (member, present) in changed {
            if !present {
                all.remove(member);
            } else if upper.is_none_or(|u| member.as_str() < u) {
                all.insert(member.clone());
            }
        }
        Ok(all.into_iter().take(limit).collect())
    }

    /// Applies everything written, with `events` appended to the stream, unless a
    /// key read has changed since ([`Commit::Conflict`]: run the transition again).
    /// A lost answer is [`QueueError::Unacknowledged`], to be [`settle`]d.
    pub(crate) fn commit(self, events: &[JobEvent]) -> Result<Commit, QueueError> {
        if self.writes.is_empty() && self.members.is_empty() && events.is_empty() {
            return Ok(Commit::Done(None));
        }
        let marker = self.keys.commit(Ulid::new());
        let mut args: Vec<String> = vec![MARKER_TTL_MS.to_string(), self.guards.len().to_string()];
        let mut keys: Vec<String> = vec![marker.clone()];
        let mut key_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut at = |key: &str, keys: &mut Vec<String>| -> String {
            let n = *key_index.entry(key.to_owned()).or_insert_with(|| {
                keys.push(key.to_owned());
                keys.len()
            });
            n.to_string()
        };
        for (key, value) in &self.guards {
            args.push(at(key, &mut keys));
            match value {
                Some(v) => args.extend(["1".to_owned(), v.clone()]),
                None => args.extend(["0".to_owned(), String::new()]),
            }
        }
        for (key, value) in &self.writes {
            match value {
                Some(v) => args.extend(["S".to_owned(), at(key, &mut keys), v.clone()]),
                None => args.extend(["D".to_owned(), at(key, &mut keys)]),
            }
        }
        for ((key, member), present) in &self.members {
            let op = if *present { "A" } else { "R" };
            args.extend([op.to_owned(), at(key, &mut keys), member.clone()]);
        }
        for (set, member) in &self.sets {
            args.extend(["M".to_owned(), at(set, &mut keys), member.clone()]);
        }
        for event in events {
            args.extend([
                "X".to_owned(),
                at(&self.keys.events, &mut keys),
                STREAM_MAXLEN.to_string(),
                serde_json::to_string(event)?,
            ]);
        }
        let mut invocation = COMMIT.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        for arg in &args {
            invocation.arg(arg);
        }
        match invocation.invoke::<redis::Value>(self.conn) {
            Ok(answer) => Ok(Commit::of_answer(&answer)),
            Err(source) if source.breaks_connection() => Err(QueueError::Unacknowledged { marker, source }),
            Err(e) => Err(e.into()),
        }
    }
}

impl JobTables for RedisTxn<'_> {
    fn load(&mut self, id: Ulid) -> Result<Option<Job>, QueueError> {
        match self.get(self.keys.job(id), true)? {
            Some(text) => Ok(Some(serde_json::from_str(&text)?)),
            None => Ok(None),
        }
    }

    fn payload(&mut self, id: Ulid) -> Result<Value, QueueError> {
        match self.get(self.keys.payload(id), false)? {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Ok(Value::Null),
        }
    }

    fn insert_payload(&mut self, id: Ulid, payload: &[u8]) -> Result<(), QueueError> {
        let text = String::from_utf8_lossy(payload).into_owned();
        self.writes.insert(self.keys.payload(id), Some(text));
        Ok(())
    }

    fn put(&mut self, before: Option<&Position>, job: &mut Job) -> Result<(), QueueError> {
        let after = Position::of(job);
        if before != Some(&after) {
            if let Some(old) = before {
                self.drop_position(job.id, old)?;
                self.own(job, old, false);
            }
            if let Position::Ready { queue, .. } = &after {
                self.sets.insert((self.keys.queues.clone(), queue.clone()));
            }
            let entry = self.keys.entry(job.id, &after);
            self.set_member(entry, true);
            self.own(job, &after, true);
        }
        let payload = std::mem::take(&mut job.payload);
        let encoded = serde_json::to_string(&*job);
        job.payload = payload;
        self.writes.insert(self.keys.job(job.id), Some(encoded?));
        Ok(())
    }

    fn delete(&mut self, job: &Job) -> Result<(), QueueError> {
        self.drop_position(job.id, &Position::of(job))?;
        self.own(job, &Position::of(job), false);
        self.writes.insert(self.keys.job(job.id), None);
        self.writes.insert(self.keys.payload(job.id), None);
        if let Some(key) = job.idempotency_key.as_deref()
            && self.idempotent_job(key)? == Some(job.id)
        {
            self.writes.insert(self.keys.idempotency(key), None);
        }
        Ok(())
    }

    fn idempotent_job(&mut self, key: &str) -> Result<Option<Ulid>, QueueError> {
        let value = self.get(self.keys.idempotency(key), true)?;
        Ok(value.and_then(|v| Ulid::from_string(&v).ok()))
    }

    fn set_idempotent(&mut self, key: &str, id: Ulid) -> Result<(), QueueError> {
        self.writes
            .insert(self.keys.idempotency(key), Some(id.to_string()));
        Ok(())
    }

    fn first_ready(&mut self, queue: &str, max: usize) -> Result<Vec<(Position, Ulid)>, QueueError> {
        let members = self.range(&self.keys.ready(queue), None, max)?;
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_ready_member(m))
            .map(|(neg_priority, order, id)| {
                let position = Position::Ready {
                    queue: queue.to_owned(),
                    neg_priority,
                    order,
                };
                (position, id)
            })
            .collect())
    }

    fn owner_heads(&mut self, queue: &str, max_owners: usize) -> Result<Vec<(Position, Ulid)>, QueueError> {
        let set = self.keys.owners(queue);
        let mut owners: BTreeSet<String> = redis::cmd("SMEMBERS").arg(&set).query(self.conn)?;
        owners.extend(
            self.sets
                .iter()
                .filter(|(s, _)| *s == set)
                .map(|(_, o)| o.clone()),
        );
        let mut heads = Vec::new();
        for owner in owners {
            if heads.len() >= max_owners {
                break;
            }
            let key = self.keys.owned(queue, &owner);
            if let Some((neg_priority, order, id)) = self
                .range(&key, None, 1)?
                .first()
                .and_then(|m| keys::parse_ready_member(m))
            {
                let position = Position::Ready {
                    queue: queue.to_owned(),
                    neg_priority,
                    order,
                };
                heads.push((position, id));
            }
        }
        Ok(heads)
    }

    fn due(
        &mut self,
        status: JobStatus,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<(Millis, Ulid)>, QueueError> {
        let key = self.keys.timed(status).to_owned();
        let members = self.range(&key, Some(&keys::after_time(now)), limit)?;
        Ok(members
            .iter()
            .filter_map(|m| keys::parse_timed_member(m))
            .collect())
    }

    fn drop_position(&mut self, id: Ulid, position: &Position) -> Result<(), QueueError> {
        let entry = self.keys.entry(id, position);
        self.set_member(entry, false);
        Ok(())
    }

    fn snapshot_reads(&self) -> bool {
        false
    }
}
