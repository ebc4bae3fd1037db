//! The drop folders as a service: each `[[inbox]]` rule with what its folders
//! hold (`GET /api/v1/inbox`, `darkroom inbox list`). Reading only; the inbox's
//! own loop (`crate::inbox`) does the work.

use super::{ServiceError, Services};
use crate::inbox::RuleStatus;

impl Services {
    /// Every inbox rule with its pending, processed and failed counts.
    pub async fn inbox(&self) -> Result<Vec<RuleStatus>, ServiceError> {
        crate::inbox::status(&self.storage, &self.inbox)
            .await
            .map_err(|e| ServiceError::Internal(format!("cannot read the inbox folders: {e}")))
    }
}
