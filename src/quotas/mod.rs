//! Quotas: how much of the box each user may ask for. One user's batch of 1,000
//! jobs must not starve everyone else, and a trial user must not fill the disk.
//!
//! Limits come per role (`[quotas.ROLE]`, over the defaults the operators planned:
//! 100 generations a day, 1,000 a month, 3 running, 1024x1024, 5,000 MB of outputs)
//! and per user (`darkroom users set NAME --quota KEY=VALUE`), the user's value
//! winning. Admins have no limits unless configured. What a job asks for (size,
//! steps, template, model, priority) is checked by [`check_job`]; what a user has
//! used is counted by [`ledger::Ledger`] (atomically, on both queue stores) and
//! accounted per day by [`usage::UsageBook`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::clock::Millis;
use crate::users::Role;

pub mod calendar;
pub mod ledger;
pub mod shares;
pub mod usage;

/// One limit: a number, or `unlimited` (kept as `u64::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Limit(pub u64);

impl Limit {
    pub const UNLIMITED: Self = Self(u64::MAX);

    pub fn is_unlimited(self) -> bool {
        self == Self::UNLIMITED
    }

    /// Whether `n` is within the limit.
    pub fn allows(self, n: u64) -> bool {
        n <= self.0
    }

    /// `VALUE` as `users set --quota KEY=VALUE` writes it.
    pub fn parse(field: &str, text: &str) -> Result<Self, QuotaError> {
        if text == "unlimited" {
            return Ok(Self::UNLIMITED);
        }
        parse_size(text).map(Self).ok_or_else(|| {
            QuotaError::invalid(
                field,
                format!("{text:?}: expected a number (5000MB, 2GiB) or `unlimited`"),
            )
        })
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_unlimited() {
            f.write_str("unlimited")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl utoipa::PartialSchema for Limit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["unlimited"])),
            )
            .description(Some("A number, or \"unlimited\""))
            .into()
    }
}

impl utoipa::ToSchema for Limit {}

impl Serialize for Limit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_unlimited() {
            s.serialize_str("unlimited")
        } else {
            s.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => Self::parse("limit", &s).map_err(serde::de::Error::custom),
        }
    }
}

/// `5000`, `5000MB`, `2GiB`, `1_000`.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.replace('_', "");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let per: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(per)
}

/// A set of limits; an absent one is inherited (a user's from their role, a
/// role's from the built-in defaults).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Jobs submitted per UTC day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generations_per_day: Option<Limit>,
    /// Jobs submitted per UTC calendar month.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generations_per_month: Option<Limit>,
    /// Jobs running at once (more wait in the queue).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_running: Option<Limit>,
    /// Jobs waiting at once (queued or scheduled); more are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<Limit>,
    /// Width x height of an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pixels: Option<Limit>,
    /// Sampler steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<Limit>,
    /// The templates they may run (a raw `workflow` is then refused); absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    /// The catalog models they may run; absent: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// The highest job priority they may ask for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_priority: Option<i32>,
    /// Bytes of outputs of their jobs held at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<Limit>,
    /// Their weight in fair share: with share 2 a user gets twice the GPU time of
    /// a user with share 1 when both have work waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share: Option<f64>,
}

impl Limits {
    /// No limit at all (an admin's default).
    pub fn none() -> Self {
        Self {
            share: Some(1.0),
            ..Self::default()
        }
    }

    /// What the operators planned for a user (../seed-notes): 100 a day, 1,000 a
    /// month, 3 running, 1024x1024, priority 0, 5,000 MB.
    pub fn planned() -> Self {
        Self {
            generations_per_day: Some(Limit(100)),
            generations_per_month: Some(Limit(1_000)),
            max_running: Some(Limit(3)),
            max_queued: Some(Limit(100)),
            max_pixels: Some(Limit(1024 * 1024)),
            max_steps: Some(Limit(150)),
            templates: None,
            models: None,
            max_priority: Some(0),
            storage_bytes: Some(Limit(5_000_000_000)),
            share: Some(1.0),
        }
    }

    /// `self` with every limit `over` sets replaced.
    #[must_use]
    pub fn overlay(&self, over: &Self) -> Self {
        Self {
            generations_per_day: over.generations_per_day.or(self.generations_per_day),
            generations_per_month: over.generations_per_month.or(self.generations_per_month),
            max_running: over.max_running.or(self.max_running),
            max_queued: over.max_queued.or(self.max_queued),
            max_pixels: over.max_pixels.or(self.max_pixels),
            max_steps: over.max_steps.or(self.max_steps),
            templates: over.templates.clone().or_else(|| self.templates.clone()),
            models: over.models.clone().or_else(|| self.models.clone()),
            max_priority: over.max_priority.or(self.max_priority),
            storage_bytes: over.storage_bytes.or(self.storage_bytes),
            share: over.share.or(self.share),
        }
    }

    /// Sets one limit from `KEY=VALUE` (`users set --quota`); `KEY=` clears it
    /// (back to the role's).
    pub fn set(&mut self, assignment: &str) -> Result<(), QuotaError> {
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| QuotaError::invalid("quota", format!("{assignment:?}: expected KEY=VALUE")))?;
        let (key, value) = (key.trim(), value.trim());
        let field = format!("quota.{key}");
        let limit = |v: &str| -> Result<Option<Limit>, QuotaError> {
            if v.is_empty() {
                Ok(None)
            } else {
                Limit::parse(&field, v).map(Some)
            }
        };
        let list = |v: &str| -> Option<Vec<String>> {
            (!v.is_empty()).then(|| {
                v.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
        };
        match key {
            "generations_per_day" => self.generations_per_day = limit(value)?,
            "generations_per_month" => self.generations_per_month = limit(value)?,
            "max_running" => self.max_running = limit(value)?,
            "max_queued" => self.max_queued = limit(value)?,
            "max_pixels" => self.max_pixels = limit(value)?,
            "max_steps" => self.max_steps = limit(value)?,
            "storage_bytes" => self.storage_bytes = limit(value)?,
            "templates" => self.templates = list(value),
            "models" => self.models = list(value),
            "max_priority" => {
                self.max_priority = if value.is_empty() {
                    None
                } else {
                    Some(value.parse().map_err(|_| {
                        QuotaError::invalid(&field, format!("{value:?} is not a whole number"))
                    })?)
                }
            }
            "share" => {
                self.share = if value.is_empty() {
                    None
                } else {
                    match value.parse::<f64>() {
                        Ok(s) if s > 0.0 && s.is_finite() => Some(s),
                        _ => {
                            return Err(QuotaError::invalid(
                                &field,
                                format!("{value:?}: a number above 0"),
                            ));
                        }
                    }
                }
            }
            other => {
                return Err(QuotaError::invalid(
                    "quota",
                    format!(
                        "{other:?} is not a quota; one of generations_per_day, generations_per_month, \
                         max_running, max_queued, max_pixels, max_steps, templates, models, max_priority, \
                         storage_bytes, share"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether any limit is counted over time (generations, waiting jobs, stored
    /// bytes); without one, a submit needs no reservation.
    pub fn counts(&self) -> bool {
        [
            self.generations_per_day,
            self.generations_per_month,
            self.max_queued,
            self.storage_bytes,
        ]
        .iter()
        .any(|l| l.is_some_and(|l| !l.is_unlimited()))
    }

    /// The fair-share weight (1 when unset).
    pub fn weight(&self) -> f64 {
        self.share.filter(|s| *s > 0.0).unwrap_or(1.0)
    }
}

fn unlimited(l: Option<Limit>) -> Limit {
    l.unwrap_or(Limit::UNLIMITED)
}

/// `[quotas]`: the limits of each role, over the built-in defaults
/// ([`Limits::planned`] for viewers and users, none for admins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotasConfig {
    pub viewer: Limits,
    pub user: Limits,
    pub admin: Limits,
    /// Off: nobody is limited (counted all the same).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl QuotasConfig {
    /// Whether limits are enforced (default yes).
    pub fn enforced(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The limits of `role` with `personal` over them.
    pub fn effective(&self, role: Role, personal: &Limits) -> Limits {
        let (base, configured) = match role {
            Role::Viewer => (Limits::planned(), &self.viewer),
            Role::User => (Limits::planned(), &self.user),
            Role::Admin => (Limits::none(), &self.admin),
        };
        base.overlay(configured).overlay(personal)
    }

    /// The roles and their limits, for `GET /api/v1/usage` and the docs.
    pub fn by_role(&self) -> BTreeMap<Role, Limits> {
        Role::ALL
            .into_iter()
            .map(|r| (r, self.effective(r, &Limits::default())))
            .collect()
    }
}

/// A refused request: which limit, how far the user is, and when it resets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Exceeded {
    /// The limit's name (`generations_per_day`, `max_pixels`, ...).
    pub limit: String,
    /// The request field that asks too much, for per-job limits (`params.width`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What the user has used (or, for a per-job limit, what the job asks).
    pub used: u64,
    /// What the limit allows.
    pub allowed: u64,
    /// When the count starts again (UTC ms), for limits that reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_ms: Option<Millis>,
    /// Seconds until then (`Retry-After`), or a short wait for limits that free up
    /// as jobs end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    pub message: String,
}

/// What went wrong with quotas.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{}", .0.message)]
    Exceeded(Box<Exceeded>),
    /// The job's request is refused by a per-job limit; `field` names its part.
    #[error("{message}")]
    Refused { field: String, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::docs::DocsError),
}

impl QuotaError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Checks what one job asks for against `limits`: priority, template, model, and
/// the sizes and steps found in its workflow (every node's `width` x `height` and
/// `steps` inputs). `payload` is the job's stored spec.
pub fn check_job(limits: &Limits, priority: i32, payload: &Value) -> Result<(), QuotaError> {
    if let Some(max) = limits.max_priority
        && priority > max
    {
        return over(
            "max_priority",
            "priority".into(),
            u64::try_from(priority).unwrap_or(0),
            u64::try_from(max).unwrap_or(0),
            &format!("priority {priority} is above your max_priority {max}"),
        );
    }
    check_lists(limits, payload)?;
    let template = payload.get("template").and_then(Value::as_str);
    let max_pixels = unlimited(limits.max_pixels);
    let max_steps = unlimited(limits.max_steps);
    let Some(nodes) = payload.get("workflow").and_then(Value::as_object) else {
        return Ok(());
    };
    let field = |name: &str| {
        if template.is_some() {
            format!("params.{name}")
        } else {
            "workflow".to_owned()
        }
    };
    for node in nodes.values() {
        let Some(inputs) = node.get("inputs") else {
            continue;
        };
        let num = |k: &str| inputs.get(k).and_then(Value::as_u64);
        if let (Some(w), Some(h)) = (num("width"), num("height"))
            && !max_pixels.allows(w.saturating_mul(h))
        {
            let pixels = w.saturating_mul(h);
            return over(
                "max_pixels",
                field("width"),
                pixels,
                max_pixels.0,
                &format!(
                    "{w}x{h} is {pixels} pixels, above your max_pixels {max_pixels} (1024x1024 = 1048576)"
                ),
            );
        }
        if let Some(steps) = num("steps")
            && !max_steps.allows(steps)
        {
            return over(
                "max_steps",
                field("steps"),
                steps,
                max_steps.0,
                &format!("{steps} steps is above your max_steps {max_steps}"),
            );
        }
    }
    Ok(())
}

/// A per-job limit exceeded by what the request asks in `field`.
fn over(limit: &str, field: String, used: u64, allowed: u64, message: &str) -> Result<(), QuotaError> {
    Err(QuotaError::Exceeded(Box::new(Exceeded {
        limit: limit.to_owned(),
        field: Some(field),
        used,
        allowed,
        resets_ms: None,
        retry_after_secs: None,
        message: format!("quota {limit} exceeded: {message}"),
    })))
}

/// The templates and models the user may run.
fn check_lists(limits: &Limits, payload: &Value) -> Result<(), QuotaError> {
    let refuse = |field: &str, message: String| {
        Err(QuotaError::Refused {
            field: field.to_owned(),
            message,
        })
    };
    if let Some(allowed) = &limits.templates {
        match payload.get("template").and_then(Value::as_str) {
            Some(t) if allowed.iter().any(|a| a == t) => {}
            Some(t) => {
                return refuse(
                    "template",
                    format!(
                        "template {t:?} is not one you may run (quota templates: {})",
                        allowed.join(", ")
                    ),
                );
            }
            None => {
                return refuse(
                    "workflow",
                    format!(
                        "you may only run templates ({}), not a raw workflow",
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(allowed) = &limits.models
        && let Some(model) = payload.pointer("/model/name").and_then(Value::as_str)
        && !allowed.iter().any(|a| a == model)
    {
        return refuse(
            "model",
            format!(
                "model {model:?} is not one you may run (quota models: {})",
                allowed.join(", ")
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
