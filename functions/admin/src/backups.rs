//! `/api/v1/admin/backups`: Keel's logical backups of the table
//! (docs/backups.md). Asking for a backup, a verification or a restore
//! commits a job with its audit entry (the jobs worker does the work); the
//! backups' records say how each went.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shared::domain::backups::{self, Backup, BackupKind, BackupStatus, RestoreJob, VerifyJob};
use shared::http::Caller;
use shared::http::extract::{PathId, ValidJson};
use shared::platform::error::{Error, Result};
use shared::platform::time;
use shared::store::ids::BackupId;
use shared::store::timestamp;
use utoipa::ToSchema;

use crate::AdminState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// `full` (every item) or `incremental` (what changed since the newest backup).
    pub kind: BackupKind,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupList {
    /// Every backup, newest first (expired ones included, marked).
    pub items: Vec<Backup>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BackupJobAccepted {
    pub backup_id: String,
    /// The job doing the work (`GET /api/v1/data/jobs/{id}` shows its result).
    pub job_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// A new table named `<live table>-restore-<suffix>`; never the live table.
    pub target_table: String,
    /// Restore the newest backup of this backup's chain completed at or
    /// before this time (RFC 3339); default: this backup.
    pub point_in_time: Option<String>,
}

/// A backup that exists and has succeeded (404, or 409 while it is not done).
async fn succeeded(state: &AdminState, id: &BackupId) -> Result<Backup> {
    let backup = backups::get(&state.platform.store, id.as_str()).await?.ok_or_else(|| Error::NotFound("no such backup".into()))?;
    if backup.status != BackupStatus::Succeeded || backup.expired {
        return Err(Error::Conflict(format!("backup {} is {:?}{}", backup.id, backup.status, if backup.expired { " and expired" } else { "" })));
    }
    Ok(backup)
}

#[utoipa::path(post, path = "/api/v1/admin/backups", tag = "backups", request_body = CreateBackup, security(("bearer" = [])),
    responses(
        (status = 202, description = "The backup was queued (its job's id is the backup's)", body = Backup),
        (status = 400, description = "Invalid kind, or an incremental backup without an earlier backup", body = shared::platform::error::Problem),
        (status = 403, description = "Missing backups:manage", body = shared::platform::error::Problem),
    ))]
pub async fn create(State(state): State<AdminState>, caller: Caller, ValidJson(body): ValidJson<CreateBackup>) -> Result<(StatusCode, Json<Backup>)> {
    let store = &state.platform.store;
    if body.kind == BackupKind::Incremental && !backups::list(store).await?.iter().any(|b| b.status == BackupStatus::Succeeded && !b.expired) {
        return Err(Error::field("kind", "an incremental backup needs an earlier backup: take a full backup first"));
    }
    let backup = backups::request_backup(store, body.kind, &caller.principal.user_id, &caller.actor()).await?;
    Ok((StatusCode::ACCEPTED, Json(backup)))
}

#[utoipa::path(get, path = "/api/v1/admin/backups", tag = "backups", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every backup, newest first", body = BackupList),
        (status = 403, description = "Missing backups:manage", body = shared::platform::error::Problem),
    ))]
pub async fn list(State(state): State<AdminState>) -> Result<Json<BackupList>> {
    Ok(Json(BackupList { items: backups::list(&state.platform.store).await? }))
}

#[utoipa::path(get, path = "/api/v1/admin/backups/{backup_id}", tag = "backups", params(("backup_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 200, description = "The backup: status, item count, size, manifest checksum, duration, last verification", body = Backup),
        (status = 403, description = "Missing backups:manage", body = shared::platform::error::Problem),
        (status = 404, description = "No such backup", body = shared::platform::error::Problem),
    ))]
pub async fn read(State(state): State<AdminState>, PathId(id): PathId<BackupId>) -> Result<Json<Backup>> {
    let backup = backups::get(&state.platform.store, id.as_str()).await?.ok_or_else(|| Error::NotFound("no such backup".into()))?;
    Ok(Json(backup))
}

#[utoipa::path(post, path = "/api/v1/admin/backups/{backup_id}/verify", tag = "backups", params(("backup_id" = String, Path)), security(("bearer" = [])),
    responses(
        (status = 202, description = "The verification was queued; its outcome is recorded on the backup (`last_verify`)", body = BackupJobAccepted),
        (status = 403, description = "Missing backups:manage", body = shared::platform::error::Problem),
        (status = 404, description = "No such backup", body = shared::platform::error::Problem),
        (status = 409, description = "The backup has not succeeded, or has expired", body = shared::platform::error::Problem),
    ))]
pub async fn verify(State(state): State<AdminState>, caller: Caller, PathId(id): PathId<BackupId>) -> Result<(StatusCode, Json<BackupJobAccepted>)> {
    let backup = succeeded(&state, &id).await?;
    let payload = VerifyJob { backup_id: backup.id.clone() };
    let job = backups::request_job(&state.platform.store, &caller.principal.user_id, &payload, &caller.actor(), ("backup.verify", &backup.id), None).await?;
    Ok((StatusCode::ACCEPTED, Json(BackupJobAccepted { backup_id: backup.id, job_id: job.id })))
}

#[utoipa::path(post, path = "/api/v1/admin/backups/{backup_id}/restore", tag = "backups", params(("backup_id" = String, Path)), request_body = RestoreRequest, security(("bearer" = [])),
    responses(
        (status = 202, description = "The restore was queued; its job's result names the table and what was applied", body = BackupJobAccepted),
        (status = 400, description = "Invalid target table (the live table, or not `<table>-restore-<suffix>`) or point in time", body = shared::platform::error::Problem),
        (status = 403, description = "Missing backups:manage", body = shared::platform::error::Problem),
        (status = 404, description = "No such backup", body = shared::platform::error::Problem),
        (status = 409, description = "The backup has not succeeded, or has expired", body = shared::platform::error::Problem),
    ))]
pub async fn restore(
    State(state): State<AdminState>,
    caller: Caller,
    PathId(id): PathId<BackupId>,
    ValidJson(body): ValidJson<RestoreRequest>,
) -> Result<(StatusCode, Json<BackupJobAccepted>)> {
    backups::check_target_table(&state.platform.config.table, &body.target_table)?;
    let point_in_time = time::field("point_in_time", body.point_in_time.as_deref())?.map(timestamp);
    let backup = succeeded(&state, &id).await?;
    let payload = RestoreJob { backup_id: backup.id.clone(), target_table: body.target_table, point_in_time };
    let job = backups::request_job(&state.platform.store, &caller.principal.user_id, &payload, &caller.actor(), ("backup.restore", &backup.id), None).await?;
    Ok((StatusCode::ACCEPTED, Json(BackupJobAccepted { backup_id: backup.id, job_id: job.id })))
}
