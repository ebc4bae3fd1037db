//! The prompt library's records as they are stored, exported and served: saved
//! prompts with their versions, the run of each job that used one, A/B campaigns
//! and collections. Stats are not stored; [`super::stats`] derives them from runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::clock::Millis;
use crate::queue::JobStatus;

/// A saved prompt: what it is (name, description, category, tags, author,
/// favourite) and every version of what it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Prompt {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default)]
    pub favourite: bool,
    pub created_ms: Millis,
    pub updated_ms: Millis,
    /// Oldest first; version numbers start at 1 and never repeat.
    pub versions: Vec<PromptVersion>,
}

impl Prompt {
    pub fn latest(&self) -> &PromptVersion {
        // A prompt is created with its first version and versions are never removed.
        self.versions.last().expect("a prompt has at least one version")
    }

    pub fn version(&self, n: u32) -> Option<&PromptVersion> {
        self.versions.iter().find(|v| v.version == n)
    }
}

/// What one version of a prompt runs: a template and its parameters (the positive
/// and negative prompt among them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptVersion {
    pub version: u32,
    pub template: String,
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// What changed, as the editor said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub created_ms: Millis,
}

/// Which saved prompt (and campaign variant) a job ran; kept in the job's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptRef {
    pub name: String,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

impl std::fmt::Display for PromptRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// One job that used a saved prompt: recorded at submit, completed from the job
/// once it has ended (see [`super::Library::settle`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    #[schema(value_type = String)]
    pub job_id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// The job's status when last looked at; `None` once the job is gone from the
    /// queue without having been seen to end (it counts for nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    /// Generation time of a succeeded job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub created_ms: Millis,
}

impl Run {
    /// Whether the job has ended (or is gone) and the record will not change but
    /// for its rating.
    pub fn settled(&self) -> bool {
        self.status.is_none_or(JobStatus::is_terminal)
    }
}

/// A rating of a job's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rating {
    /// 1 (worst) to 5 (best).
    pub rating: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Where a campaign is: `draft` (defined, takes no submissions), `running`, or
/// `completed` (its target reached, or stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    Draft,
    Running,
    Completed,
}

named_enum!(CampaignState, "campaign state", {
    Draft => "draft",
    Running => "running",
    Completed => "completed",
});

/// One arm of a campaign: a prompt version and its share of the submissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// `name@version` (a bare name means its latest version when the campaign is made).
    pub prompt: String,
    /// Relative share of submissions (default 1: round-robin).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// An A/B campaign: submissions are spread over its variants until `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Campaign {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Two or more, each `name@version`.
    pub variants: Vec<Variant>,
    /// Submissions it takes in all (default 100).
    pub target: u64,
    /// Ratings each variant needs before a winner is named (default 10).
    pub min_ratings: u64,
    pub state: CampaignState,
    /// Submissions assigned so far.
    pub assigned: u64,
    pub created_ms: Millis,
}

/// A named, shareable list of prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Prompt names.
    pub prompts: Vec<String>,
}

/// The whole library as one JSON file, for sharing in git.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LibraryExport {
    /// Always `darkroom-prompts/1`.
    pub format: String,
    pub prompts: Vec<Prompt>,
    #[serde(default)]
    pub collections: Vec<Collection>,
    /// Definitions only: assignments and results stay with the jobs.
    #[serde(default)]
    pub campaigns: Vec<Campaign>,
}

pub const EXPORT_FORMAT: &str = "darkroom-prompts/1";

/// What an import did, by prompt name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// New prompts.
    pub created: Vec<String>,
    /// Prompts that got versions they lacked.
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    /// Prompts whose versions differ from the file's under the same numbers; left
    /// as they are unless the import replaces.
    pub conflicts: Vec<String>,
    pub collections: usize,
    pub campaigns: usize,
}

/// Counts by a free-form key, for listings.
pub type Counts = BTreeMap<String, u64>;
