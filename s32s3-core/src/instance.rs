//! MinIO instance metadata (DESIGN.md §4 step 3): server info, server configuration, IAM export and
//! bucket-metadata export, read through the admin API and stored encrypted under `.s32s3/instance/<id>/`.

use s32s3_minio_admin::{AdminClient, AdminOptions, Probe, ServerInfo};

use crate::error::{Error, Result};
use crate::format::manifest::{InstanceRefs, SourceInfo};
use crate::options::Provider;
use crate::progress::Event;
use crate::repo::Repository;
use crate::store::{ObjectAttrs, WriteCondition};

/// The source's admin client, when the source is a MinIO these keys can administer.
pub(crate) struct Minio {
    pub(crate) admin: AdminClient,
    pub(crate) info: ServerInfo,
}

/// Finds out whether the source is an administrable MinIO (`provider` auto), or checks that it is
/// (`provider = minio`). Read-only: one `GET /minio/admin/v3/info`.
pub(crate) async fn detect(cx: &Repository) -> Result<Option<Minio>> {
    let provider = cx.config.source_provider;
    if matches!(provider, Provider::Aws | Provider::Other) {
        return Ok(None);
    }
    let admin = admin_client(&cx.config.source)?;
    let not_minio = |reason: String| -> Result<Option<Minio>> {
        if provider == Provider::Minio {
            Err(Error::Config {
                field: "source.provider".into(),
                reason: format!("is minio, but the MinIO admin API cannot be used with these keys: {reason}"),
            })
        } else {
            Ok(None)
        }
    };
    match admin.probe().await {
        Ok(Probe::Admin(info)) => Ok(Some(Minio { admin, info })),
        Ok(Probe::NotAdmin(reason)) => {
            if provider == Provider::Auto {
                cx.progress.event(&Event::Warning(&format!(
                    "the source is MinIO, but these keys are not an admin's ({reason}): IAM and server configuration \
                     are not backed up"
                )));
            }
            not_minio(reason)
        }
        Ok(Probe::NotMinio(reason)) => not_minio(reason),
        Ok(_) => not_minio("unexpected answer".into()),
        Err(e) if provider == Provider::Auto => {
            tracing::debug!("MinIO admin probe failed: {e}");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// An admin client for the MinIO at `endpoint`, signing with its keys.
pub(crate) fn admin_client(endpoint: &crate::options::S3Endpoint) -> Result<AdminClient> {
    Ok(AdminClient::new(
        &endpoint.endpoint,
        endpoint.access_key_id.clone(),
        endpoint.secret_access_key.expose().to_owned(),
        AdminOptions::default(),
    )?)
}

/// What the manifest says about the source.
pub(crate) fn source_info(cx: &Repository, minio: Option<&Minio>) -> SourceInfo {
    SourceInfo {
        endpoint: cx.config.source.endpoint.clone(),
        kind: if minio.is_some() { "minio".into() } else { "s3".into() },
        minio_version: minio.and_then(|m| m.info.version().map(str::to_owned)),
        deployment_id: minio.map(|m| m.info.deployment_id.clone()).filter(|d| !d.is_empty()),
    }
}

/// Exports server info, configuration, IAM and bucket metadata and stores each encrypted. A failed export
/// is recorded in [`InstanceRefs::errors`] (the run ends partial); the others are still stored.
pub(crate) async fn export(cx: &Repository, minio: &Minio, snapshot_id: &str) -> Result<InstanceRefs> {
    cx.progress.event(&Event::Phase("exporting MinIO IAM, bucket metadata and configuration"));
    let mut refs = InstanceRefs::default();
    let info = serde_json::json!({
        "version": minio.info.version(),
        "deployment_id": minio.info.deployment_id,
        "region": minio.info.region,
        "mode": minio.info.mode,
        "servers": minio.info.servers.len(),
    });
    refs.server_info =
        Some(store(cx, snapshot_id, "server-info.json", &serde_json::to_vec(&info).expect("json")).await?);

    match minio.admin.get_config().await {
        Ok(config) => {
            refs.config = Some(store(cx, snapshot_id, "config.txt", config.as_str().as_bytes()).await?);
        }
        Err(e) => {
            refs.errors.insert("config".into(), e.to_string());
        }
    }
    match minio.admin.export_iam().await {
        Ok(iam) => refs.iam = Some(store(cx, snapshot_id, "iam.zip", iam.as_bytes()).await?),
        Err(e) => {
            refs.errors.insert("iam".into(), e.to_string());
        }
    }
    match minio.admin.export_bucket_metadata(None).await {
        Ok(meta) => {
            refs.bucket_metadata =
                Some(store(cx, snapshot_id, "bucket-metadata.zip", meta.as_bytes()).await?);
        }
        Err(e) => {
            refs.errors.insert("bucket_metadata".into(), e.to_string());
        }
    }
    Ok(refs)
}

/// Encrypts `plain` and stores it as `.s32s3/instance/<id>/<name>`; returns the key.
async fn store(cx: &Repository, snapshot_id: &str, name: &str, plain: &[u8]) -> Result<String> {
    let key = cx.layout.meta(&format!("instance/{snapshot_id}/{name}"));
    let nonce =
        s32s3_crypt::Nonce::random().map_err(|source| Error::Crypt { what: "nonce".into(), source })?;
    let sealed = cx.cipher.encrypt(&nonce, plain);
    cx.dest
        .put(
            cx.bucket(),
            &key,
            bytes::Bytes::from(sealed),
            &ObjectAttrs::typed("application/octet-stream"),
            WriteCondition::None,
        )
        .await?;
    Ok(key)
}
