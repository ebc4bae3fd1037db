//! Backups as a service: take one now (the daemon's writers pause at a commit
//! boundary, so the snapshot is consistent while it serves) and read how the
//! scheduled ones have gone. The API's `/api/v1/backups` and `darkroom backup
//! --url` come here; `darkroom backup --data` takes the same path on a data
//! directory no daemon holds ([`crate::backup::Source::open`]).

use serde::{Deserialize, Serialize};

use super::{ServiceError, Services};
use crate::backup::{BackupError, BackupReport, BackupStatus};

/// What to back up to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// A directory on the daemon's machine or `s3://bucket/prefix` (default:
    /// `backup.dest`). An `s3://` destination uses `[backup.s3]`'s endpoint and keys.
    #[serde(default)]
    pub dest: Option<String>,
    /// Snapshots kept after this one (default `backup.keep`; 0 keeps all).
    #[serde(default)]
    pub keep: Option<usize>,
}

impl Services {
    fn backups(&self) -> Result<&crate::backup::Backups, ServiceError> {
        self.backups
            .as_ref()
            .ok_or_else(|| ServiceError::NoBackend("this daemon takes no backups".into()))
    }

    /// Takes a backup now.
    pub async fn backup(&self, request: &BackupRequest) -> Result<BackupReport, ServiceError> {
        let backups = self.backups()?;
        Ok(backups.run(request.dest.as_deref(), request.keep).await?)
    }

    /// The schedule and how backups have gone.
    pub fn backup_status(&self) -> Option<BackupStatus> {
        self.backups.as_ref().map(crate::backup::Backups::status)
    }
}

impl From<BackupError> for ServiceError {
    fn from(e: BackupError) -> Self {
        let message = e.to_string();
        match e {
            BackupError::Busy => Self::Conflict(message),
            BackupError::NoDest => Self::invalid("dest", message),
            BackupError::Dest { .. } => Self::Unavailable(message),
            BackupError::NoSnapshot { .. } | BackupError::NoSnapshots { .. } => Self::NotFound(message),
            _ => Self::Failed(message),
        }
    }
}
