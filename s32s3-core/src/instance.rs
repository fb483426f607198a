//! MinIO instance metadata (DESIGN.md §4 step 3): server info, server configuration, IAM export and
//! bucket-metadata export, read through the admin API and stored encrypted under `.s32s3/instance/<id>/`.

use s32s3_minio_admin::{AdminClient, AdminOptions, Probe, ServerInfo};

use crate::error::{Error, Result};
use crate::format::manifest::{InstanceRefs, SourceInfo};
use crate::options::Provider;
use crate::progress::Event;
use crate::repo::Repository;
use crate::store::{ObjectAttrs, WriteCondition};

/// The source's admin client, when the source answers MinIO's admin API (MinIO, `RustFS`).
pub(crate) struct Minio {
    pub(crate) admin: AdminClient,
    /// What `GET /minio/admin/v3/info` said (default when it refused or could not be read).
    pub(crate) info: ServerInfo,
    /// Why nothing can be exported, when so: the keys lack `admin:ServerInfo`, or the server's answer could
    /// not be read. Recorded as the run's failure (the snapshot is partial), never passed over in silence.
    pub(crate) refused: Option<String>,
}

impl Minio {
    /// Whether the source's object GETs carry the tag count and the object lock that its HEADs do. MinIO's
    /// do; `RustFS`'s (1.0.1) do not; a server whose admin answer was refused or unreadable is not known,
    /// so not trusted (the copy asks with a HEAD: one request more per object).
    pub(crate) fn get_carries_attributes(&self) -> bool {
        self.refused.is_none() && self.info.flavour == s32s3_minio_admin::Flavour::Minio
    }

    /// Whether the source's listing carries each object's tags (`ListObjectsV2` with `metadata=true`, a
    /// MinIO extension `RustFS` serves too). Only a server known as one of them is trusted: one that ignored
    /// the parameter would list every object without tags, which would read as "all tags removed".
    pub(crate) fn lists_tags(&self) -> bool {
        self.refused.is_none()
    }
}

/// Finds out whether the source answers MinIO's admin API (`provider` auto), or checks that it does
/// (`provider = minio`). Read-only: one `GET /minio/admin/v3/info` (and `GET /minio/health/live` when
/// that is refused).
///
/// A server that answers the admin API but refuses these keys, or whose answer cannot be read, is still
/// MinIO: the backup goes on with the data and ends partial, saying why IAM and configuration are missing.
pub(crate) async fn detect(cx: &Repository) -> Result<Option<Minio>> {
    let provider = cx.config.source_provider;
    if matches!(provider, Provider::Aws | Provider::Other) {
        return Ok(None);
    }
    let admin = admin_client(&cx.config.source)?;
    let refused = |admin: AdminClient, reason: String| {
        Ok(Some(Minio { admin, info: ServerInfo::default(), refused: Some(reason) }))
    };
    match admin.probe().await {
        Ok(Probe::Admin(info)) => Ok(Some(Minio { admin, info, refused: None })),
        Ok(Probe::NotAdmin(reason)) => {
            refused(admin, format!("the source answers MinIO's admin API, but {reason}"))
        }
        Ok(Probe::Unreadable(reason)) => refused(
            admin,
            format!("the source answers MinIO's admin API, but this s32s3 cannot read the answer: {reason}"),
        ),
        Ok(Probe::NotMinio(reason)) if provider == Provider::Minio => Err(Error::Config {
            field: "source.provider".into(),
            reason: format!("is minio, but the source does not answer MinIO's admin API: {reason}"),
        }),
        Ok(_) => Ok(None),
        // The S3 listing took these keys, the admin API does not: something between (a proxy) or the
        // server's admin side is not as it should be. Not plain S3, and not to be kept quiet.
        Err(e @ s32s3_minio_admin::Error::BadCredentials { .. }) if provider == Provider::Auto => {
            refused(admin, e.to_string())
        }
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
    let mut refs = InstanceRefs::default();
    if let Some(reason) = &minio.refused {
        refs.errors.insert(
            "admin".into(),
            format!("{reason}; IAM, bucket metadata and server configuration not backed up"),
        );
        return Ok(refs);
    }
    cx.progress.event(&Event::Phase("exporting MinIO IAM, bucket metadata and configuration"));
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
