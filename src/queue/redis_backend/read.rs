//! Queries on the Redis backend: one job, a page of a status, the counts, and the
//! cheap "is there anything to claim" check — the same answers, cursors included,
//! as the redb queries in `queue::read`.

use redis::Connection;
use ulid::Ulid;

use super::keys::{self, Keys};
use crate::clock::Millis;
use crate::queue::error::QueueError;
use crate::queue::job::{Job, JobStatus};
use crate::queue::read::{Counts, ListQuery, Page, bad_cursor, parse_ready_cursor, parse_time_cursor};

/// Members fetched per round trip while paging.
const BATCH: usize = 256;

pub(crate) fn get(conn: &mut Connection, keys: &Keys, id: Ulid) -> Result<Option<Job>, QueueError> {
    let (record, payload): (Option<String>, Option<String>) = redis::cmd("MGET")
        .arg(keys.job(id))
        .arg(keys.payload(id))
        .query(conn)?;
    let Some(record) = record else {
        return Ok(None);
    };
    let mut job: Job = serde_json::from_str(&record)?;
    if let Some(payload) = payload {
        job.payload = serde_json::from_str(&payload)?;
    }
    Ok(Some(job))
}

pub(crate) fn counts(conn: &mut Connection, keys: &Keys) -> Result<Counts, QueueError> {
    let mut queues: Vec<String> = redis::cmd("SMEMBERS").arg(&keys.queues).query(conn)?;
    queues.sort();
    let mut pipe = redis::pipe();
    for status in &JobStatus::ALL[1..] {
        pipe.cmd("ZCARD").arg(keys.timed(*status));
    }
    for queue in &queues {
        pipe.cmd("ZCARD").arg(keys.ready(queue));
    }
    let sizes: Vec<u64> = pipe.query(conn)?;
    let (timed, ready) = sizes.split_at(5);
    Ok(Counts {
        queued: ready.iter().sum(),
        scheduled: timed[0],
        running: timed[1],
        succeeded: timed[2],
        failed: timed[3],
        cancelled: timed[4],
    })
}

/// True when `queue` has a ready job or a scheduled job (of any queue) is due.
pub(crate) fn may_have_work(
    conn: &mut Connection,
    keys: &Keys,
    queue: &str,
    now: Millis,
) -> Result<bool, QueueError> {
    let (ready, due): (u64, Vec<String>) = redis::pipe()
        .cmd("ZCARD")
        .arg(keys.ready(queue))
        .cmd("ZRANGE")
        .arg(keys.timed(JobStatus::Scheduled))
        .arg("-")
        .arg(format!("({}", keys::after_time(now)))
        .arg("BYLEX")
        .arg("LIMIT")
        .arg(0)
        .arg(1)
        .query(conn)?;
    Ok(ready > 0 || !due.is_empty())
}

/// A page being filled, across one or more sorted sets.
struct Filler<'q> {
    queue: Option<&'q str>,
    limit: usize,
    page: Vec<Job>,
    last: Option<String>,
    next: Option<String>,
}

impl Filler<'_> {
    /// Walks `key` from `start` (a BYLEX bound), adding matching jobs; true once the
    /// page is full and the next cursor known.
    fn walk(
        &mut self,
        conn: &mut Connection,
        keys: &Keys,
        key: &str,
        mut start: String,
        cursor: impl Fn(&str) -> Option<(String, Ulid)>,
    ) -> Result<bool, QueueError> {
        loop {
            let members: Vec<String> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(&start)
                .arg("+")
                .arg("BYLEX")
                .arg("LIMIT")
                .arg(0)
                .arg(BATCH)
                .query(conn)?;
            let Some(last_member) = members.last() else {
                return Ok(false);
            };
            start = format!("({last_member}");
            let entries: Vec<(String, Ulid)> = members.iter().filter_map(|m| cursor(m)).collect();
            if !entries.is_empty() {
                let mut mget = redis::cmd("MGET");
                for (_, id) in &entries {
                    mget.arg(keys.job(*id));
                }
                let records: Vec<Option<String>> = mget.query(conn)?;
                for ((cursor, _), record) in entries.into_iter().zip(records) {
                    let Some(record) = record else { continue };
                    let job: Job = serde_json::from_str(&record)?;
                    if self.queue.is_some_and(|q| q != job.queue) {
                        continue;
                    }
                    if self.page.len() == self.limit {
                        self.next = self.last.take();
                        return Ok(true);
                    }
                    self.page.push(job);
                    self.last = Some(cursor);
                }
            }
            if members.len() < BATCH {
                return Ok(false);
            }
        }
    }
}

pub(crate) fn list(conn: &mut Connection, keys: &Keys, query: &ListQuery) -> Result<Page, QueueError> {
    let mut filler = Filler {
        queue: query.queue.as_deref(),
        limit: query.limit.max(1),
        page: Vec::new(),
        last: None,
        next: None,
    };
    if query.status == JobStatus::Queued {
        let after = query.after.as_deref().map(parse_ready_cursor).transpose()?;
        let mut queues: Vec<String> = match (query.queue.as_deref(), after) {
            (Some(q), Some((_, _, cq))) if q != cq => {
                return Err(bad_cursor(query.after.as_deref().unwrap_or("")));
            }
            (Some(q), _) => vec![q.to_owned()],
            (None, _) => redis::cmd("SMEMBERS").arg(&keys.queues).query(conn)?,
        };
        queues.sort();
        for queue in queues {
            let start = match after {
                Some((_, _, cq)) if queue.as_str() < cq => continue,
                Some((np, order, cq)) if queue == cq => {
                    format!("({}{}~", keys::num(np), Ulid(order))
                }
                _ => "-".to_owned(),
            };
            let cursor = |m: &str| {
                keys::parse_ready_member(m).map(|(np, order, id)| (format!("r:{np}:{order}:{queue}"), id))
            };
            if filler.walk(conn, keys, &keys.ready(&queue), start, cursor)? {
                break;
            }
        }
    } else {
        let start = match query.after.as_deref().map(parse_time_cursor).transpose()? {
            Some((at, id)) => format!("({}", keys::timed_member(at, Ulid(id))),
            None => "-".to_owned(),
        };
        let cursor = |m: &str| keys::parse_timed_member(m).map(|(at, id)| (format!("t:{at}:{}", id.0), id));
        filler.walk(conn, keys, keys.timed(query.status), start, cursor)?;
    }
    Ok(Page {
        jobs: filler.page,
        next: filler.next,
    })
}
