//! The queue's Redis keys, and the sortable member strings of its indexes.
//!
//! | key                     | type   | holds                                            |
//! |-------------------------|--------|--------------------------------------------------|
//! | `P:job:{id}`            | string | the job record (JSON, without the payload)       |
//! | `P:payload:{id}`        | string | the payload (JSON), written once                 |
//! | `P:ready:{queue}`       | zset   | `{-priority}{order}{id}`: claim order            |
//! | `P:queues`              | set    | every queue name that ever had a ready job       |
//! | `P:owned:{queue}:{owner}` | zset | the owner's entries of `P:ready:{queue}` (fair share) |
//! | `P:owners:{queue}`      | set    | every owner that ever had a ready job there      |
//! | `P:idx:{status}`        | zset   | `{time}{id}` for scheduled, running and finished |
//! | `P:idem:{key}`          | string | the job an idempotency key names                 |
//! | `P:events`              | stream | every committed [`JobEvent`](crate::queue::JobEvent) |
//! | `P:commit:{nonce}`      | string | one commit's answer, for 2 min (see `txn`)      |
//!
//! Every index is a sorted set whose members all have score 0, so Redis orders them
//! by their bytes (`ZRANGE ... BYLEX`). Numbers are written as 16 hex digits with the
//! sign bit flipped, so byte order is numeric order for negative numbers too; ids and
//! orders are ULIDs, whose text sorts like their value. This mirrors the redb keys
//! `(queue, -priority, order)` and `(time, id)` exactly, listing cursors included.

use ulid::Ulid;

use super::super::backend::Position;
use super::super::job::JobStatus;
use crate::clock::Millis;
use crate::redis_store::RedisStore;

/// Length of a ULID's text.
const ULID_LEN: usize = 26;
/// Length of a biased hex number.
const NUM_LEN: usize = 16;

/// The names of the queue's keys under one prefix.
pub(crate) struct Keys {
    base: String,
    pub(crate) queues: String,
    pub(crate) events: String,
    timed: [String; 5],
}

impl Keys {
    pub(crate) fn new(store: &RedisStore) -> Self {
        let base = store.key("");
        let timed = [
            JobStatus::Scheduled,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .map(|s| format!("{base}idx:{s}"));
        Self {
            queues: format!("{base}queues"),
            events: format!("{base}events"),
            timed,
            base,
        }
    }

    pub(crate) fn job(&self, id: Ulid) -> String {
        format!("{}job:{id}", self.base)
    }

    pub(crate) fn payload(&self, id: Ulid) -> String {
        format!("{}payload:{id}", self.base)
    }

    pub(crate) fn ready(&self, queue: &str) -> String {
        format!("{}ready:{queue}", self.base)
    }

    /// `owner`'s ready jobs of `queue`, members as in [`Keys::ready`].
    pub(crate) fn owned(&self, queue: &str, owner: &str) -> String {
        format!("{}owned:{queue}:{owner}", self.base)
    }

    /// The owners that ever had a ready job in `queue`.
    pub(crate) fn owners(&self, queue: &str) -> String {
        format!("{}owners:{queue}", self.base)
    }

    /// Where the commit named `nonce` leaves its answer.
    pub(crate) fn commit(&self, nonce: Ulid) -> String {
        format!("{}commit:{nonce}", self.base)
    }

    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}idem:{key}", self.base)
    }

    /// The time index of `status` (`queued` has none; callers never ask for it).
    pub(crate) fn timed(&self, status: JobStatus) -> &str {
        let slot = match status {
            JobStatus::Queued | JobStatus::Scheduled => 0,
            JobStatus::Running => 1,
            JobStatus::Succeeded => 2,
            JobStatus::Failed => 3,
            JobStatus::Cancelled => 4,
        };
        &self.timed[slot]
    }

    /// The sorted set and member that hold a job at `position`.
    pub(crate) fn entry(&self, id: Ulid, position: &Position) -> (String, String) {
        match position {
            Position::Ready {
                queue,
                neg_priority,
                order,
            } => (self.ready(queue), ready_member(*neg_priority, *order, id)),
            Position::Timed(status, at) => (self.timed(*status).to_owned(), timed_member(*at, id)),
        }
    }
}

/// `n` as 16 hex digits that sort like the number.
pub(crate) fn num(n: i64) -> String {
    #[allow(clippy::cast_sign_loss)]
    let biased = (n as u64) ^ (1 << 63);
    format!("{biased:016x}")
}

fn parse_num(text: &str) -> Option<i64> {
    let biased = u64::from_str_radix(text, 16).ok()?;
    #[allow(clippy::cast_possible_wrap)]
    Some((biased ^ (1 << 63)) as i64)
}

pub(crate) fn ready_member(neg_priority: i64, order: u128, id: Ulid) -> String {
    format!("{}{}{id}", num(neg_priority), Ulid(order))
}

/// `(neg_priority, order, id)` of a ready member.
pub(crate) fn parse_ready_member(member: &str) -> Option<(i64, u128, Ulid)> {
    if member.len() != NUM_LEN + 2 * ULID_LEN || !member.is_ascii() {
        return None;
    }
    let np = parse_num(&member[..NUM_LEN])?;
    let order = Ulid::from_string(&member[NUM_LEN..NUM_LEN + ULID_LEN]).ok()?;
    let id = Ulid::from_string(&member[NUM_LEN + ULID_LEN..]).ok()?;
    Some((np, order.0, id))
}

pub(crate) fn timed_member(at: Millis, id: Ulid) -> String {
    format!("{}{id}", num(at))
}

/// `(time, id)` of a time-index member.
pub(crate) fn parse_timed_member(member: &str) -> Option<(Millis, Ulid)> {
    if member.len() != NUM_LEN + ULID_LEN || !member.is_ascii() {
        return None;
    }
    Some((
        parse_num(&member[..NUM_LEN])?,
        Ulid::from_string(&member[NUM_LEN..]).ok()?,
    ))
}

/// The lowest member of a time index after every entry at or before `at`.
pub(crate) fn after_time(at: Millis) -> String {
    num(at.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_sort_like_the_redb_keys_they_mirror() {
        let ids: Vec<Ulid> = (0..3).map(|i| Ulid::from_parts(1000 + i, 7)).collect();
        let keys = [(-5, 2), (-5, 9), (0, 1), (3, 0)];
        let members: Vec<String> = keys
            .iter()
            .map(|&(np, order)| ready_member(np, order, ids[0]))
            .collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(sorted, members);
        for (m, &(np, order)) in members.iter().zip(&keys) {
            assert_eq!(parse_ready_member(m), Some((np, order, ids[0])));
        }
        let times = [i64::MIN, -1, 0, 1, 1_767_225_600_000, i64::MAX];
        let members: Vec<String> = times.iter().map(|&t| timed_member(t, ids[1])).collect();
        let mut sorted = members.clone();
        sorted.sort();
        assert_eq!(sorted, members);
        assert_eq!(parse_timed_member(&members[4]), Some((times[4], ids[1])));
        assert!(timed_member(5, ids[2]) < after_time(5));
        assert!(after_time(5) < timed_member(6, ids[0]));
        assert_eq!(parse_ready_member("short"), None);
    }
}
