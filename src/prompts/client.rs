//! The prompt library's calls of the typed API client ([`ApiClient`]), for
//! `darkroom prompts`, `darkroom jobs rate` and the dashboard's remote mode.

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    Campaign, CampaignDraft, CampaignReport, Collection, ImportReport, LibraryExport, Prompt, PromptDraft,
    PromptEdit, Rating,
};
use crate::client::{ApiClient, ClientError, SHORT, encode_segment};
use crate::service::prompts::{JobRating, PromptDetails, PromptFilter, PromptSummary};

impl ApiClient {
    async fn send<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map_err(|e| ClientError::Invalid(e.to_string())))
            .transpose()?;
        Ok(self.call(method, path, body, SHORT).await?.1)
    }

    async fn read<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send::<(), T>(Method::GET, path, None).await
    }

    /// Saved prompts matching `filter`, with their stats.
    pub async fn prompts(&self, filter: &PromptFilter) -> Result<Vec<PromptSummary>, ClientError> {
        let path = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [
                ("category", &filter.category),
                ("tag", &filter.tag),
                ("collection", &filter.collection),
            ] {
                if let Some(v) = v {
                    query.append_pair(k, v);
                }
            }
            if let Some(f) = filter.favourite {
                query.append_pair("favourite", if f { "true" } else { "false" });
            }
            format!("/api/v1/prompts?{}", query.finish())
        };
        self.read(&path).await
    }

    pub async fn prompt(&self, name: &str) -> Result<PromptDetails, ClientError> {
        self.read(&format!("/api/v1/prompts/{}", encode_segment(name)))
            .await
    }

    pub async fn create_prompt(&self, draft: &PromptDraft) -> Result<Prompt, ClientError> {
        self.send(Method::POST, "/api/v1/prompts", Some(draft)).await
    }

    pub async fn edit_prompt(&self, name: &str, edit: &PromptEdit) -> Result<Prompt, ClientError> {
        let path = format!("/api/v1/prompts/{}", encode_segment(name));
        self.send(Method::PUT, &path, Some(edit)).await
    }

    pub async fn delete_prompt(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/prompts/{}", encode_segment(name));
        self.send::<(), ()>(Method::DELETE, &path, None).await
    }

    pub async fn rate(&self, job: &str, rating: &Rating) -> Result<JobRating, ClientError> {
        let path = format!("/api/v1/jobs/{}/rating", encode_segment(job));
        self.send(Method::POST, &path, Some(rating)).await
    }

    pub async fn campaigns(&self) -> Result<Vec<Campaign>, ClientError> {
        self.read("/api/v1/campaigns").await
    }

    pub async fn create_campaign(&self, draft: &CampaignDraft) -> Result<Campaign, ClientError> {
        self.send(Method::POST, "/api/v1/campaigns", Some(draft)).await
    }

    pub async fn campaign(&self, name: &str) -> Result<CampaignReport, ClientError> {
        self.read(&format!("/api/v1/campaigns/{}", encode_segment(name)))
            .await
    }

    /// `start` or `stop`.
    pub async fn campaign_action(&self, name: &str, action: &str) -> Result<Campaign, ClientError> {
        let path = format!("/api/v1/campaigns/{}/{action}", encode_segment(name));
        self.send::<(), _>(Method::POST, &path, None).await
    }

    pub async fn delete_campaign(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/campaigns/{}", encode_segment(name));
        self.send::<(), ()>(Method::DELETE, &path, None).await
    }

    pub async fn collections(&self) -> Result<Vec<Collection>, ClientError> {
        self.read("/api/v1/collections").await
    }

    pub async fn put_collection(&self, name: &str, c: &Collection) -> Result<Collection, ClientError> {
        let path = format!("/api/v1/collections/{}", encode_segment(name));
        self.send(Method::PUT, &path, Some(c)).await
    }

    pub async fn delete_collection(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/collections/{}", encode_segment(name));
        self.send::<(), ()>(Method::DELETE, &path, None).await
    }

    pub async fn export_library(&self) -> Result<LibraryExport, ClientError> {
        self.read("/api/v1/library").await
    }

    pub async fn import_library(
        &self,
        file: &LibraryExport,
        replace: bool,
    ) -> Result<ImportReport, ClientError> {
        let path = format!("/api/v1/library?replace={replace}");
        self.send(Method::POST, &path, Some(file)).await
    }
}
