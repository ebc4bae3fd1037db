//! [`Library`]: saved prompts and their versions, the runs of each, collections,
//! and export/import. Every change is one atomic [`Docs::update`], so two editors
//! of one prompt each get their own version number.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::model::{Collection, EXPORT_FORMAT, ImportReport, LibraryExport, Prompt, PromptVersion, Run};
use super::{LibraryError, check_name, decode, encode, parse_ref};
use crate::clock::SharedClock;
use crate::comfy::Templates;
use crate::docs::{Docs, Write};

pub(super) const PROMPTS: &str = "prompts";
pub(super) const CAMPAIGNS: &str = "campaigns";
const COLLECTIONS: &str = "collections";
const RATINGS: &str = "ratings";

pub(super) fn runs_group(prompt: &str) -> String {
    format!("runs:{prompt}")
}

/// A new prompt (`POST /api/v1/prompts`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptDraft {
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
    /// A template name (`txt2img`, ...).
    pub template: String,
    /// The template's parameters (the positive and negative prompt among them).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An edit (`PUT /api/v1/prompts/{name}`): what is given changes. A new template
/// or new parameters make a new version; the rest describes the prompt and does not.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptEdit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub favourite: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Replaces the parameters as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Cheap `Clone` handle on the library.
#[derive(Clone)]
pub struct Library {
    pub(super) docs: Docs,
    pub(super) clock: SharedClock,
}

/// Checks that `params` render with `template`, naming the parameter at fault.
fn check_renders(
    templates: &Templates,
    template: &str,
    params: &Map<String, Value>,
) -> Result<(), LibraryError> {
    templates.render(template, params).map(drop).map_err(|e| {
        let e = crate::dispatch::RequestError::from(e);
        LibraryError::invalid(e.field, e.message)
    })
}

fn check_tags(tags: &[String]) -> Result<(), LibraryError> {
    if tags.len() > 32 || tags.iter().any(|t| t.is_empty() || t.len() > 64) {
        return Err(LibraryError::invalid(
            "tags",
            "at most 32 tags of 1-64 characters",
        ));
    }
    Ok(())
}

impl Library {
    pub fn new(docs: Docs, clock: SharedClock) -> Self {
        Self { docs, clock }
    }

    /// Every saved prompt, by name.
    pub async fn prompts(&self) -> Result<Vec<Prompt>, LibraryError> {
        self.docs
            .list(PROMPTS)
            .await?
            .iter()
            .map(|(_, raw)| decode(raw))
            .collect()
    }

    /// Prompt `name`, or a not-found error naming it.
    pub async fn prompt(&self, name: &str) -> Result<Prompt, LibraryError> {
        let raw = self.docs.get(PROMPTS, name).await?;
        raw.map(|r| decode(&r))
            .transpose()?
            .ok_or_else(|| LibraryError::NotFound(format!("no saved prompt {name:?}")))
    }

    /// Saves a new prompt as its version 1.
    pub async fn create(&self, draft: PromptDraft, templates: &Templates) -> Result<Prompt, LibraryError> {
        check_name("name", &draft.name)?;
        check_tags(&draft.tags)?;
        check_renders(templates, &draft.template, &draft.params)?;
        let now = self.clock.now_ms();
        let prompt = Prompt {
            name: draft.name.clone(),
            description: draft.description,
            category: draft.category,
            tags: draft.tags,
            author: draft.author.clone(),
            favourite: draft.favourite,
            created_ms: now,
            updated_ms: now,
            versions: vec![PromptVersion {
                version: 1,
                template: draft.template,
                params: draft.params,
                note: draft.note,
                author: draft.author,
                created_ms: now,
            }],
        };
        let raw = encode(&prompt)?;
        let name = draft.name;
        self.docs
            .update(PROMPTS, &name.clone(), move |old| match old {
                Some(_) => Err(LibraryError::Conflict(format!(
                    "a prompt named {name:?} exists; edit it (PUT /api/v1/prompts/{name}) to make a new version"
                ))),
                None => Ok((Write::Put(raw.clone()), ())),
            })
            .await?;
        Ok(prompt)
    }

    /// Applies `edit`; a changed template or parameters become a new version.
    pub async fn edit(
        &self,
        name: &str,
        edit: PromptEdit,
        templates: &Templates,
    ) -> Result<Prompt, LibraryError> {
        if let Some(tags) = &edit.tags {
            check_tags(tags)?;
        }
        let current = self.prompt(name).await?;
        let template = edit
            .template
            .clone()
            .unwrap_or_else(|| current.latest().template.clone());
        let params = edit
            .params
            .clone()
            .unwrap_or_else(|| current.latest().params.clone());
        check_renders(templates, &template, &params)?;
        let now = self.clock.now_ms();
        let missing = name.to_owned();
        self.docs
            .update(PROMPTS, name, move |old| {
                let old =
                    old.ok_or_else(|| LibraryError::NotFound(format!("no saved prompt {missing:?}")))?;
                let mut p: Prompt = decode(old)?;
                let e = edit.clone();
                if let Some(d) = e.description {
                    p.description = d;
                }
                if e.category.is_some() {
                    p.category = e.category;
                }
                if let Some(t) = e.tags {
                    p.tags = t;
                }
                if e.author.is_some() {
                    p.author.clone_from(&e.author);
                }
                if let Some(f) = e.favourite {
                    p.favourite = f;
                }
                let latest = p.latest();
                if latest.template != template || latest.params != params {
                    let version = latest.version + 1;
                    p.versions.push(PromptVersion {
                        version,
                        template: template.clone(),
                        params: params.clone(),
                        note: e.note,
                        author: e.author,
                        created_ms: now,
                    });
                }
                p.updated_ms = now;
                Ok((Write::Put(encode(&p)?), p))
            })
            .await
    }

    /// Removes prompt `name` and the record of its runs (the jobs stay).
    pub async fn delete(&self, name: &str) -> Result<(), LibraryError> {
        for campaign in self.campaigns().await? {
            let uses = campaign
                .variants
                .iter()
                .any(|v| v.prompt.split('@').next() == Some(name));
            if uses && campaign.state != super::CampaignState::Completed {
                return Err(LibraryError::Conflict(format!(
                    "campaign {:?} ({}) uses prompt {name:?}; stop or delete it first",
                    campaign.name, campaign.state
                )));
            }
        }
        let missing = name.to_owned();
        self.docs
            .update(PROMPTS, name, move |old| match old {
                Some(_) => Ok((Write::Delete, ())),
                None => Err(LibraryError::NotFound(format!("no saved prompt {missing:?}"))),
            })
            .await?;
        self.docs.delete_group(&runs_group(name)).await
    }

    /// The version `text` (`name` = latest, or `name@3`) names.
    pub async fn resolve(&self, field: &str, text: &str) -> Result<(Prompt, u32), LibraryError> {
        let (name, version) = parse_ref(field, text)?;
        let prompt = self.prompt(&name).await.map_err(|e| match e {
            LibraryError::NotFound(m) => LibraryError::invalid(field, m),
            other => other,
        })?;
        let version = version.unwrap_or_else(|| prompt.latest().version);
        if prompt.version(version).is_none() {
            return Err(LibraryError::invalid(
                field,
                format!(
                    "prompt {name:?} has no version {version} (latest: {})",
                    prompt.latest().version
                ),
            ));
        }
        Ok((prompt, version))
    }

    /// Records (or replaces) one run of prompt `name`.
    pub async fn save_run(&self, name: &str, run: &Run) -> Result<(), LibraryError> {
        self.docs
            .put(&runs_group(name), &run.job_id.to_string(), encode(run)?)
            .await
    }

    /// Changes the run of job `job_id` of prompt `name` with `f`, if it is recorded.
    pub async fn update_run<F>(
        &self,
        name: &str,
        job_id: ulid::Ulid,
        f: F,
    ) -> Result<Option<Run>, LibraryError>
    where
        F: Fn(&mut Run) + Send + 'static,
    {
        self.docs
            .update(&runs_group(name), &job_id.to_string(), move |old| {
                let Some(old) = old else {
                    return Ok((Write::Keep, None));
                };
                let mut run: Run = decode(old)?;
                f(&mut run);
                Ok((Write::Put(encode(&run)?), Some(run)))
            })
            .await
    }

    /// Every recorded run of prompt `name`, oldest first.
    pub async fn runs(&self, name: &str) -> Result<Vec<Run>, LibraryError> {
        // Job ids are ULIDs: by name is by time.
        self.docs
            .list(&runs_group(name))
            .await?
            .iter()
            .map(|(_, raw)| decode(raw))
            .collect()
    }

    /// Stores the rating of job `id` (any job, with or without a saved prompt).
    pub async fn save_rating(&self, id: ulid::Ulid, rating: &super::Rating) -> Result<(), LibraryError> {
        self.docs.put(RATINGS, &id.to_string(), encode(rating)?).await
    }

    /// The rating of job `id`, if it has one.
    pub async fn rating(&self, id: ulid::Ulid) -> Result<Option<super::Rating>, LibraryError> {
        let raw = self.docs.get(RATINGS, &id.to_string()).await?;
        raw.map(|r| decode(&r)).transpose()
    }

    /// Every collection, by name.
    pub async fn collections(&self) -> Result<Vec<Collection>, LibraryError> {
        self.docs
            .list(COLLECTIONS)
            .await?
            .iter()
            .map(|(_, raw)| decode(raw))
            .collect()
    }

    /// Creates or replaces collection `name`; every prompt it lists must exist.
    pub async fn put_collection(&self, name: &str, mut c: Collection) -> Result<Collection, LibraryError> {
        check_name("name", name)?;
        c.name = name.to_owned();
        for (i, p) in c.prompts.iter().enumerate() {
            if self.docs.get(PROMPTS, p).await?.is_none() {
                return Err(LibraryError::invalid(
                    format!("prompts[{i}]"),
                    format!("no saved prompt {p:?}"),
                ));
            }
        }
        self.docs.put(COLLECTIONS, name, encode(&c)?).await?;
        Ok(c)
    }

    pub async fn delete_collection(&self, name: &str) -> Result<(), LibraryError> {
        let missing = name.to_owned();
        self.docs
            .update(COLLECTIONS, name, move |old| match old {
                Some(_) => Ok((Write::Delete, ())),
                None => Err(LibraryError::NotFound(format!("no collection {missing:?}"))),
            })
            .await
    }

    /// The whole library: prompts with every version, collections, campaign
    /// definitions (not runs, ratings or assignments: those belong to the jobs).
    pub async fn export(&self) -> Result<LibraryExport, LibraryError> {
        let campaigns = self
            .campaigns()
            .await?
            .into_iter()
            .map(|mut c| {
                c.assigned = 0;
                c.state = super::CampaignState::Draft;
                c
            })
            .collect();
        Ok(LibraryExport {
            format: EXPORT_FORMAT.into(),
            prompts: self.prompts().await?,
            collections: self.collections().await?,
            campaigns,
        })
    }

    /// Merges an exported library: new prompts are created with their versions;
    /// an existing prompt gets the versions it lacks when the versions both have are
    /// the same, and is a conflict otherwise (replaced only with `replace`).
    /// Collections and campaigns are created or replaced (a running campaign stays).
    pub async fn import(
        &self,
        file: LibraryExport,
        replace: bool,
        templates: &Templates,
    ) -> Result<ImportReport, LibraryError> {
        if file.format != EXPORT_FORMAT {
            return Err(LibraryError::invalid(
                "format",
                format!(
                    "{:?} is not a darkroom prompt library (expected {EXPORT_FORMAT:?})",
                    file.format
                ),
            ));
        }
        for (i, p) in file.prompts.iter().enumerate() {
            check_name(&format!("prompts[{i}].name"), &p.name)?;
            if p.versions.is_empty() {
                return Err(LibraryError::invalid(
                    format!("prompts[{i}].versions"),
                    "a prompt needs a version",
                ));
            }
            for v in &p.versions {
                check_renders(templates, &v.template, &v.params).map_err(|e| match e {
                    LibraryError::Invalid { field, message } => LibraryError::invalid(
                        format!("prompts[{i}] ({}@{}).{field}", p.name, v.version),
                        message,
                    ),
                    other => other,
                })?;
            }
        }
        let mut report = ImportReport::default();
        for incoming in file.prompts {
            let name = incoming.name.clone();
            let outcome = self
                .docs
                .update(PROMPTS, &name, move |old| merge(old, &incoming, replace))
                .await?;
            match outcome {
                Merge::Created => report.created.push(name),
                Merge::Updated => report.updated.push(name),
                Merge::Unchanged => report.unchanged.push(name),
                Merge::Conflict => report.conflicts.push(name),
            }
        }
        for c in file.collections {
            let name = c.name.clone();
            self.put_collection(&name, c).await?;
            report.collections += 1;
        }
        for c in file.campaigns {
            if self.import_campaign(c).await? {
                report.campaigns += 1;
            }
        }
        Ok(report)
    }
}

enum Merge {
    Created,
    Updated,
    Unchanged,
    Conflict,
}

/// One prompt of an import against what is stored (see [`Library::import`]).
fn merge(old: Option<&[u8]>, incoming: &Prompt, replace: bool) -> Result<(Write, Merge), LibraryError> {
    let Some(old) = old else {
        return Ok((Write::Put(encode(incoming)?), Merge::Created));
    };
    let mut have: Prompt = decode(old)?;
    let same = |a: &PromptVersion, b: &PromptVersion| a.template == b.template && a.params == b.params;
    let clash = incoming
        .versions
        .iter()
        .any(|v| have.version(v.version).is_some_and(|h| !same(h, v)));
    if clash {
        return Ok(if replace {
            (Write::Put(encode(incoming)?), Merge::Updated)
        } else {
            (Write::Keep, Merge::Conflict)
        });
    }
    let missing: Vec<PromptVersion> = incoming
        .versions
        .iter()
        .filter(|v| have.version(v.version).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok((Write::Keep, Merge::Unchanged));
    }
    have.versions.extend(missing);
    have.versions.sort_by_key(|v| v.version);
    have.updated_ms = have.updated_ms.max(incoming.updated_ms);
    Ok((Write::Put(encode(&have)?), Merge::Updated))
}
