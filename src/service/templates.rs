//! The templates service: list and show the templates jobs can name, import a
//! workflow as a new one (proposing its manifest with ranges from a backend's
//! `/object_info`), replace and delete user templates, and validate one against a
//! backend. The rules — names, built-ins untouchable, the editor format refused,
//! a manifest that must fit its workflow — are the library's
//! ([`crate::templates`]); this maps them to [`ServiceError`]s and runs the
//! blocking saves off the async workers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ServiceError, Services};
use crate::comfy::templates::check_api_format;
use crate::comfy::{ParamSpec, SourceError, Template, TemplateSource};
use crate::templates::{Finding, LibraryError, ObjectInfo, TemplateLibrary};

/// How long one backend may take to answer `/object_info`.
const OBJECT_INFO_TIMEOUT: Duration = Duration::from_secs(15);

/// A template and its parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateInfo {
    pub name: String,
    pub description: String,
    pub params: BTreeMap<String, ParamSpec>,
    /// Changes on every edit (a hash of workflow and manifest); every job
    /// records the one it ran as `payload.template_version`.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub source: TemplateSource,
    /// What is wrong with a newer edit of its files; the version above serves
    /// until they are fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<SourceError>,
}

/// One template in full: its parameters, workflow and manifest text.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateDetail {
    #[serde(flatten)]
    pub info: TemplateInfo,
    /// The API-format workflow.
    #[schema(value_type = Object)]
    pub workflow: Value,
    /// The manifest as TOML (`NAME.toml`).
    pub manifest: String,
}

/// A template to save: `POST /api/v1/templates` (with `name`) and `PUT
/// /api/v1/templates/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateUpload {
    /// The new template's name (POST; PUT takes it from the path):
    /// `[a-z0-9_-]{1,64}`, not a built-in's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The workflow as ComfyUI's Workflow → Export (API) saves it.
    #[schema(value_type = Object)]
    pub workflow: Value,
    /// The manifest as TOML (a proposal, accepted or edited); absent: darkroom
    /// proposes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The description of a proposed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What an import did or, with `dry_run`, would do.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ImportOutcome {
    pub template: TemplateDetail,
    /// False with `dry_run`: nothing was stored.
    pub saved: bool,
    /// The backend whose `/object_info` gave ranges and choices, if one answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// What the proposal could not do (no backend, unknown node classes, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// A template checked against a backend's `/object_info`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ValidationReport {
    pub template: String,
    pub version: String,
    /// The backend that was asked.
    pub backend: String,
    /// Each node or input the backend would refuse.
    pub findings: Vec<Finding>,
    /// Broken files of a newer edit (see [`TemplateInfo::problems`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<SourceError>,
    /// Nothing to fix.
    pub ok: bool,
}

/// A deleted template.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TemplateDeleted {
    pub deleted: String,
}

fn info(t: &Template, library: &TemplateLibrary) -> TemplateInfo {
    TemplateInfo {
        name: t.name.clone(),
        description: t.manifest.description.clone(),
        params: t.manifest.params.clone(),
        version: t.version.clone(),
        source: t.source,
        problems: library.problems_of(&t.name),
    }
}

fn detail(t: &Template, library: &TemplateLibrary) -> TemplateDetail {
    TemplateDetail {
        info: info(t, library),
        workflow: t.workflow.clone(),
        manifest: t.manifest_text.clone(),
    }
}

impl From<LibraryError> for ServiceError {
    fn from(e: LibraryError) -> Self {
        match e {
            LibraryError::BadName(_) => Self::invalid("name", e.to_string()),
            LibraryError::Builtin(_) | LibraryError::Exists(_) => Self::Conflict(e.to_string()),
            LibraryError::NotFound(_) => Self::NotFound(e.to_string()),
            LibraryError::Source(s) => {
                let toml = std::path::Path::new(&s.file)
                    .extension()
                    .is_some_and(|x| x.eq_ignore_ascii_case("toml"));
                let field = if toml { "manifest" } else { "workflow" };
                Self::invalid(field, s.to_string())
            }
            LibraryError::Redis { .. } => Self::Unavailable(e.to_string()),
            LibraryError::Io { .. } | LibraryError::Watch { .. } | LibraryError::NowhereToSave(_) => {
                Self::Internal(e.to_string())
            }
        }
    }
}

impl Services {
    /// The workflow templates jobs can name, with their parameters and versions.
    pub fn templates(&self) -> Vec<TemplateInfo> {
        let library = self.jobs.template_library();
        library.current().iter().map(|t| info(t, library)).collect()
    }

    /// Template `name` in full.
    pub fn template(&self, name: &str) -> Result<TemplateDetail, ServiceError> {
        let library = self.jobs.template_library();
        let current = library.current();
        match current.get(name) {
            Ok(t) => Ok(detail(t, library)),
            Err(_) => Err(not_found(library, name)),
        }
    }

    /// Imports a workflow as template `upload.name` (proposing its manifest
    /// unless one is given); with `dry_run`, only says what it would save.
    pub async fn import_template(
        &self,
        upload: TemplateUpload,
        dry_run: bool,
    ) -> Result<ImportOutcome, ServiceError> {
        let name = upload
            .name
            .clone()
            .ok_or_else(|| ServiceError::invalid("name", "a new template needs a `name`"))?;
        self.save_template(&name, upload, dry_run, true).await
    }

    /// Replaces (or creates) template `name`; its version changes.
    pub async fn replace_template(
        &self,
        name: &str,
        upload: TemplateUpload,
    ) -> Result<ImportOutcome, ServiceError> {
        if upload.name.as_deref().is_some_and(|n| n != name) {
            return Err(ServiceError::invalid(
                "name",
                format!(
                    "the body names {:?} but the path {name:?}",
                    upload.name.unwrap_or_default()
                ),
            ));
        }
        self.save_template(name, upload, false, false).await
    }

    async fn save_template(
        &self,
        name: &str,
        upload: TemplateUpload,
        dry_run: bool,
        only_new: bool,
    ) -> Result<ImportOutcome, ServiceError> {
        let library = self.jobs.template_library().clone();
        if !crate::templates::folder::valid_name(name) {
            return Err(LibraryError::BadName(name.to_owned()).into());
        }
        if library.is_builtin(name) {
            return Err(LibraryError::Builtin(name.to_owned()).into());
        }
        check_api_format(&upload.workflow).map_err(|m| ServiceError::invalid("workflow", m))?;
        let workflow_text = pretty(&upload.workflow);
        let (manifest_text, backend, notes) = match upload.manifest {
            Some(text) => (text, None, Vec::new()),
            None => {
                let (backend, info, mut notes) = match self.object_info().await {
                    Ok((url, info)) => (Some(url), Some(info), Vec::new()),
                    Err(why) => (None, None, vec![why]),
                };
                let description = upload.description.unwrap_or_default();
                let proposal = crate::templates::propose(&upload.workflow, info.as_ref(), &description);
                notes.extend(proposal.notes.iter().cloned());
                let text = crate::templates::manifest_text(&proposal, "a workflow sent to the API");
                (text, backend, notes)
            }
        };
        let source = if library.is_shared() {
            TemplateSource::Shared
        } else {
            TemplateSource::Folder
        };
        let proposed =
            Template::parse(name, &workflow_text, &manifest_text, source).map_err(LibraryError::from)?;
        if dry_run {
            return Ok(ImportOutcome {
                template: detail(&proposed, &library),
                saved: false,
                backend,
                notes,
            });
        }
        let owned = name.to_owned();
        let lib = library.clone();
        let saved =
            tokio::task::spawn_blocking(move || lib.save(&owned, &workflow_text, &manifest_text, only_new))
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(ImportOutcome {
            template: detail(&saved, &library),
            saved: true,
            backend,
            notes,
        })
    }

    /// Deletes user template `name` (a built-in is refused).
    pub async fn delete_template(&self, name: &str) -> Result<TemplateDeleted, ServiceError> {
        let lib = self.jobs.template_library().clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || lib.delete(&owned))
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))??;
        Ok(TemplateDeleted {
            deleted: name.to_owned(),
        })
    }

    /// Checks template `name` against the first backend that answers `/object_info`.
    pub async fn validate_template(&self, name: &str) -> Result<ValidationReport, ServiceError> {
        let library = self.jobs.template_library();
        let current = library.current();
        let t = current.get(name).map_err(|_| not_found(library, name))?;
        let (backend, info) = self.object_info().await.map_err(ServiceError::NoBackend)?;
        let findings = crate::templates::validate::validate(t, &info);
        let problems = library.problems_of(name);
        Ok(ValidationReport {
            template: t.name.clone(),
            version: t.version.clone(),
            backend,
            ok: findings.is_empty() && problems.is_empty(),
            findings,
            problems,
        })
    }

    /// `/object_info` of the first backend that answers (healthy ones first).
    async fn object_info(&self) -> Result<(String, ObjectInfo), String> {
        let mut backends = self.dispatcher.backends();
        backends.sort_by_key(|b| !b.healthy);
        let urls: Vec<String> = backends.into_iter().map(|b| b.url).collect();
        crate::templates::object_info::fetch(&urls, OBJECT_INFO_TIMEOUT, self.dispatcher.trust()).await
    }
}

/// The workflow text a template is stored with.
pub fn pretty(workflow: &Value) -> String {
    let mut text = serde_json::to_string_pretty(workflow).unwrap_or_else(|_| workflow.to_string());
    text.push('\n');
    text
}

/// "No template `x`", with what is wrong with its files when that is why.
fn not_found(library: &TemplateLibrary, name: &str) -> ServiceError {
    let problems = library.problems_of(name);
    if problems.is_empty() {
        return ServiceError::NotFound(format!("no template `{name}`; GET /api/v1/templates lists them"));
    }
    let why: Vec<String> = problems.iter().map(ToString::to_string).collect();
    ServiceError::NotFound(format!("template `{name}` is not loaded: {}", why.join("; ")))
}
