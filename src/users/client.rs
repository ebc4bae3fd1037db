//! The user and key calls of the typed API client ([`ApiClient`]), for
//! `darkroom users` and `darkroom keys` against a running daemon.

use reqwest::Method;

use super::{KeyRecord, User};
use crate::client::{ApiClient, ClientError, SHORT, encode_segment};
use crate::service::users::{CreatedKey, KeyDraft, UserDraft};

impl ApiClient {
    async fn users_call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        Ok(self.call(method, path, body, SHORT).await?.1)
    }

    pub async fn users(&self) -> Result<Vec<User>, ClientError> {
        self.users_call(Method::GET, "/api/v1/users", None).await
    }

    pub async fn add_user(&self, draft: &UserDraft) -> Result<User, ClientError> {
        let body = serde_json::to_vec(draft).map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.users_call(Method::POST, "/api/v1/users", Some(body)).await
    }

    pub async fn set_user_disabled(&self, name: &str, disabled: bool) -> Result<User, ClientError> {
        let action = if disabled { "disable" } else { "enable" };
        let path = format!("/api/v1/users/{}/{action}", encode_segment(name));
        self.users_call(Method::POST, &path, None).await
    }

    pub async fn remove_user(&self, name: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/users/{}", encode_segment(name));
        self.users_call(Method::DELETE, &path, None).await
    }

    pub async fn set_quota(
        &self,
        name: &str,
        change: &crate::service::quotas::QuotaChange,
    ) -> Result<User, ClientError> {
        let body = serde_json::to_vec(change).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let path = format!("/api/v1/users/{}/quota", encode_segment(name));
        self.users_call(Method::PATCH, &path, Some(body)).await
    }

    pub async fn usage(
        &self,
        query: &crate::service::quotas::UsageQuery,
    ) -> Result<crate::service::quotas::UsageReport, ClientError> {
        let mut params = Vec::new();
        for (k, v) in [("user", &query.user), ("from", &query.from), ("to", &query.to)] {
            if let Some(v) = v {
                params.push(format!("{k}={}", encode_segment(v)));
            }
        }
        let path = if params.is_empty() {
            "/api/v1/usage".to_owned()
        } else {
            format!("/api/v1/usage?{}", params.join("&"))
        };
        self.users_call(Method::GET, &path, None).await
    }

    pub async fn keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, ClientError> {
        let path = match user {
            Some(u) => format!("/api/v1/keys?user={}", encode_segment(u)),
            None => "/api/v1/keys".to_owned(),
        };
        self.users_call(Method::GET, &path, None).await
    }

    pub async fn create_key(&self, draft: &KeyDraft) -> Result<CreatedKey, ClientError> {
        let body = serde_json::to_vec(draft).map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.users_call(Method::POST, "/api/v1/keys", Some(body)).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<(), ClientError> {
        let path = format!("/api/v1/keys/{}", encode_segment(id));
        self.users_call(Method::DELETE, &path, None).await
    }
}
