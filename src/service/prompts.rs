//! The prompt library as a service: save and edit prompts (checked against the
//! templates), submit by prompt or campaign, rate jobs, and read each version's
//! stats and each campaign's report — figures settled from the jobs themselves.
//!
//! A job submitted with a saved prompt carries a [`PromptRef`] in its payload and
//! gets a [`Run`] record at submit. A run is settled (its status and generation
//! time copied from the job) when the job ends — by [`Prompts::settle_job`], which
//! the daemon calls on every job's end — and, should that have been missed (a
//! crash), the next time the prompt's stats are read.

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{Jobs, ServiceError};
use crate::dispatch::{JobRequest, JobSpec};
use crate::prompts::{
    Campaign, CampaignDraft, CampaignReport, CampaignState, Collection, ImportReport, Library, LibraryExport,
    Prompt, PromptDraft, PromptEdit, PromptRef, PromptVersion, Rating, Run, Stats, stats,
};
use crate::queue::{Job, JobStatus};

/// How many of a prompt's latest runs its details show.
const RECENT_RUNS: usize = 12;

/// A prompt in a listing: what it is, its latest version and the stats of all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptSummary {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub favourite: bool,
    pub latest_version: u32,
    pub template: String,
    /// Over every version.
    pub stats: Stats,
}

/// One version with its own stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionDetails {
    #[serde(flatten)]
    pub version: PromptVersion,
    pub stats: Stats,
}

/// A prompt with every version's stats and its latest runs (`GET /api/v1/prompts/{name}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptDetails {
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
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Over every version.
    pub stats: Stats,
    /// Oldest first.
    pub versions: Vec<VersionDetails>,
    /// The latest runs, newest first.
    pub recent: Vec<Run>,
}

/// Which prompts to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::IntoParams)]
pub struct PromptFilter {
    pub category: Option<String>,
    pub tag: Option<String>,
    pub favourite: Option<bool>,
    /// Only the prompts of this collection.
    pub collection: Option<String>,
}

/// A job's rating as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRating {
    #[schema(value_type = String)]
    pub job_id: Ulid,
    pub rating: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The saved prompt version the job ran, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptRef>,
}

/// The prompt library service; cheap to clone.
#[derive(Clone)]
pub struct Prompts {
    library: Library,
    jobs: Jobs,
}

fn spec_of(job: &Job) -> Option<JobSpec> {
    serde_json::from_value(job.payload.clone()).ok()
}

#[allow(clippy::cast_precision_loss)]
fn settle(run: &mut Run, job: Option<&Job>) {
    let Some(job) = job else {
        // Gone from the queue (its results expired) without being seen to end.
        if !run.settled() {
            run.status = None;
        }
        return;
    };
    run.status = Some(job.status);
    run.seconds = match (job.status, job.started_ms, job.finished_ms) {
        (JobStatus::Succeeded, Some(s), Some(f)) if f >= s => Some((f - s) as f64 / 1000.0),
        _ => None,
    };
}

impl Prompts {
    pub fn new(library: Library, jobs: Jobs) -> Self {
        Self { library, jobs }
    }

    pub fn library(&self) -> &Library {
        &self.library
    }

    /// Copies an ended job's outcome into its run, if it ran a saved prompt.
    pub async fn settle_job(&self, job: &Job) -> Result<(), ServiceError> {
        let Some(saved) = spec_of(job).and_then(|s| s.prompt) else {
            return Ok(());
        };
        let job = job.clone();
        self.library
            .update_run(&saved.name, job.id, move |run| settle(run, Some(&job)))
            .await?;
        Ok(())
    }

    /// Prompt `name`'s runs, the unsettled ones brought up to date from the queue.
    async fn runs(&self, name: &str) -> Result<Vec<Run>, ServiceError> {
        let mut runs = self.library.runs(name).await?;
        for run in runs.iter_mut().filter(|r| !r.settled()) {
            let job = self.jobs.queue().get(run.job_id).await?;
            let before = run.clone();
            settle(run, job.as_ref());
            if *run != before && run.settled() {
                let done = run.clone();
                self.library
                    .update_run(name, run.job_id, move |r| {
                        r.status = done.status;
                        r.seconds = done.seconds;
                    })
                    .await?;
            }
        }
        Ok(runs)
    }

    /// Saved prompts matching `filter`, with their stats.
    pub async fn list(&self, filter: &PromptFilter) -> Result<Vec<PromptSummary>, ServiceError> {
        let members = match &filter.collection {
            Some(c) => Some(
                self.library
                    .collections()
                    .await?
                    .into_iter()
                    .find(|x| &x.name == c)
                    .ok_or_else(|| ServiceError::invalid("collection", format!("no collection {c:?}")))?
                    .prompts,
            ),
            None => None,
        };
        let mut out = Vec::new();
        for p in self.library.prompts().await? {
            let keep = filter
                .category
                .as_ref()
                .is_none_or(|c| p.category.as_ref() == Some(c))
                && filter.tag.as_ref().is_none_or(|t| p.tags.contains(t))
                && filter.favourite.is_none_or(|f| p.favourite == f)
                && members.as_ref().is_none_or(|m| m.contains(&p.name));
            if !keep {
                continue;
            }
            let runs = self.runs(&p.name).await?;
            let latest = p.latest();
            out.push(PromptSummary {
                latest_version: latest.version,
                template: latest.template.clone(),
                stats: stats::of(&runs),
                name: p.name,
                description: p.description,
                category: p.category,
                tags: p.tags,
                favourite: p.favourite,
            });
        }
        Ok(out)
    }

    /// Prompt `name` with its versions' stats and latest runs.
    pub async fn get(&self, name: &str) -> Result<PromptDetails, ServiceError> {
        let p = self.library.prompt(name).await?;
        let runs = self.runs(name).await?;
        let versions = p
            .versions
            .iter()
            .map(|v| VersionDetails {
                stats: stats::of(runs.iter().filter(|r| r.version == v.version)),
                version: v.clone(),
            })
            .collect();
        let recent = runs.iter().rev().take(RECENT_RUNS).cloned().collect();
        Ok(PromptDetails {
            stats: stats::of(&runs),
            name: p.name,
            description: p.description,
            category: p.category,
            tags: p.tags,
            author: p.author,
            favourite: p.favourite,
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
            versions,
            recent,
        })
    }

    pub async fn create(&self, draft: PromptDraft) -> Result<Prompt, ServiceError> {
        Ok(self.library.create(draft, &self.jobs.templates()).await?)
    }

    pub async fn edit(&self, name: &str, edit: PromptEdit) -> Result<Prompt, ServiceError> {
        Ok(self.library.edit(name, edit, &self.jobs.templates()).await?)
    }

    pub async fn delete(&self, name: &str) -> Result<(), ServiceError> {
        Ok(self.library.delete(name).await?)
    }

    /// Rates a succeeded job (again: the new rating replaces the old).
    pub async fn rate(&self, id: Ulid, rating: Rating) -> Result<JobRating, ServiceError> {
        if !(1..=5).contains(&rating.rating) {
            return Err(ServiceError::invalid("rating", "must be 1 to 5"));
        }
        if rating.comment.as_ref().is_some_and(|c| c.chars().count() > 2000) {
            return Err(ServiceError::invalid("comment", "at most 2000 characters"));
        }
        let job = self.jobs.get(id).await?;
        if job.status != JobStatus::Succeeded {
            return Err(ServiceError::Conflict(format!(
                "job {id} is {}; only a succeeded job's images can be rated",
                job.status
            )));
        }
        let saved = spec_of(&job).and_then(|s| s.prompt);
        if let Some(saved) = &saved {
            let (r, c, finished) = (rating.rating, rating.comment.clone(), job.clone());
            let updated = self
                .library
                .update_run(&saved.name, id, move |run| {
                    settle(run, Some(&finished));
                    run.rating = Some(r);
                    run.comment.clone_from(&c);
                })
                .await?;
            if updated.is_none() {
                // Submitted before the run was recorded (a crash between): record it now.
                let mut run = Run {
                    job_id: id,
                    version: saved.version,
                    campaign: saved.campaign.clone(),
                    status: None,
                    seconds: None,
                    rating: Some(rating.rating),
                    comment: rating.comment.clone(),
                    created_ms: job.created_ms,
                };
                settle(&mut run, Some(&job));
                self.library.save_run(&saved.name, &run).await?;
            }
        }
        self.library.save_rating(id, &rating).await?;
        Ok(JobRating {
            job_id: id,
            rating: rating.rating,
            comment: rating.comment,
            prompt: saved,
        })
    }

    /// Job `id`'s rating, if it has one.
    pub async fn rating(&self, id: Ulid) -> Result<Option<Rating>, ServiceError> {
        Ok(self.library.rating(id).await?)
    }

    pub async fn campaigns(&self) -> Result<Vec<Campaign>, ServiceError> {
        Ok(self.library.campaigns().await?)
    }

    pub async fn create_campaign(&self, draft: CampaignDraft) -> Result<Campaign, ServiceError> {
        Ok(self.library.create_campaign(draft).await?)
    }

    pub async fn set_campaign_state(
        &self,
        name: &str,
        state: CampaignState,
    ) -> Result<Campaign, ServiceError> {
        Ok(self.library.set_campaign_state(name, state).await?)
    }

    pub async fn delete_campaign(&self, name: &str) -> Result<(), ServiceError> {
        Ok(self.library.delete_campaign(name).await?)
    }

    /// A campaign's figures per variant and its winner, from settled runs.
    pub async fn report(&self, name: &str) -> Result<CampaignReport, ServiceError> {
        let campaign = self.library.campaign(name).await?;
        for v in &campaign.variants {
            let prompt = v.prompt.split('@').next().unwrap_or_default();
            self.runs(prompt).await?;
        }
        Ok(self.library.report(name).await?)
    }

    pub async fn collections(&self) -> Result<Vec<Collection>, ServiceError> {
        Ok(self.library.collections().await?)
    }

    pub async fn put_collection(&self, name: &str, c: Collection) -> Result<Collection, ServiceError> {
        Ok(self.library.put_collection(name, c).await?)
    }

    pub async fn delete_collection(&self, name: &str) -> Result<(), ServiceError> {
        Ok(self.library.delete_collection(name).await?)
    }

    pub async fn export(&self) -> Result<LibraryExport, ServiceError> {
        Ok(self.library.export().await?)
    }

    pub async fn import(&self, file: LibraryExport, replace: bool) -> Result<ImportReport, ServiceError> {
        Ok(self.library.import(file, replace, &self.jobs.templates()).await?)
    }
}

/// Turns a request naming a saved `prompt` or a `campaign` into one naming the
/// version's template and parameters (the request's `params` override).
pub(super) async fn expand(library: &Library, mut request: JobRequest) -> Result<JobRequest, ServiceError> {
    let saved = match (&request.prompt, &request.campaign) {
        (None, None) => return Ok(request),
        (Some(_), Some(_)) => {
            return Err(ServiceError::invalid(
                "campaign",
                "give either `prompt` or `campaign`, not both",
            ));
        }
        (Some(text), None) => {
            let (prompt, version) = library.resolve("prompt", text).await?;
            PromptRef {
                name: prompt.name,
                version,
                campaign: None,
            }
        }
        (None, Some(campaign)) => library.assign("campaign", campaign).await?,
    };
    let field = if request.campaign.is_some() {
        "campaign"
    } else {
        "prompt"
    };
    if request.template.is_some() || request.workflow.is_some() {
        return Err(ServiceError::invalid(
            field,
            "a saved prompt brings its template: give `params` to override, not `template` or `workflow`",
        ));
    }
    let prompt = library.prompt(&saved.name).await?;
    let version = prompt
        .version(saved.version)
        .ok_or_else(|| ServiceError::invalid(field, format!("{saved} no longer exists")))?;
    let mut params = version.params.clone();
    params.extend(std::mem::take(&mut request.params));
    request.template = Some(version.template.clone());
    request.params = params;
    request.saved_prompt = Some(saved);
    Ok(request)
}

/// Records the run of a job just submitted with a saved prompt.
pub(super) async fn record(library: &Library, job: &Job) -> Result<(), ServiceError> {
    let Some(saved) = spec_of(job).and_then(|s| s.prompt) else {
        return Ok(());
    };
    let mut run = Run {
        job_id: job.id,
        version: saved.version,
        campaign: saved.campaign,
        status: Some(job.status),
        seconds: None,
        rating: None,
        comment: None,
        created_ms: job.created_ms,
    };
    settle(&mut run, Some(job));
    Ok(library.save_run(&saved.name, &run).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(status: &str, started: Option<i64>, finished: Option<i64>) -> Job {
        serde_json::from_value(json!({
            "id": Ulid::nil().to_string(), "queue": "comfyui", "priority": 0, "status": status,
            "payload": {"workflow": {}, "prompt": {"name": "p", "version": 2}}, "attempts": 1,
            "max_attempts": 1, "timeout_ms": 1000, "created_ms": 0,
            "started_ms": started, "finished_ms": finished,
        }))
        .unwrap()
    }

    fn run() -> Run {
        Run {
            job_id: Ulid::nil(),
            version: 2,
            campaign: None,
            status: Some(JobStatus::Queued),
            seconds: None,
            rating: None,
            comment: None,
            created_ms: 0,
        }
    }

    /// A run takes its outcome from the job record; a job gone from the queue
    /// before it was seen to end counts for nothing.
    #[test]
    fn runs_settle_from_the_job_record() {
        let mut r = run();
        settle(&mut r, Some(&job("running", Some(1000), None)));
        assert_eq!(
            (r.status, r.seconds, r.settled()),
            (Some(JobStatus::Running), None, false)
        );
        settle(&mut r, Some(&job("succeeded", Some(1000), Some(3500))));
        assert_eq!(
            (r.status, r.seconds, r.settled()),
            (Some(JobStatus::Succeeded), Some(2.5), true)
        );
        let mut f = run();
        settle(&mut f, Some(&job("failed", Some(1000), Some(2000))));
        assert_eq!((f.status, f.seconds), (Some(JobStatus::Failed), None));
        let mut gone = run();
        settle(&mut gone, None);
        assert_eq!((gone.status, gone.settled()), (None, true));
        // A settled run is not unsettled by the job's record expiring later.
        settle(&mut r, None);
        assert_eq!(r.status, Some(JobStatus::Succeeded));
        assert_eq!(
            spec_of(&job("queued", None, None))
                .and_then(|s| s.prompt)
                .map(|p| p.version),
            Some(2)
        );
    }
}
