//! The JSON shapes of the admin calls (madmin-go v3.0.109, spec §3), read leniently: unknown fields are
//! ignored and missing ones take their defaults, so newer and older servers (and `RustFS`) parse.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// Go's `time.Time` as RFC 3339; the zero time, the `1970-01-01T00:00:00Z` sentinel and anything
/// unparsable read as `None` (a date must not fail a whole listing).
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<OffsetDateTime>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw
        .and_then(|s| OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339).ok())
        .filter(|t| t.unix_timestamp() > 0))
}

/// `null` reads as the default (Go marshals nil slices and maps as `null`).
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `GET /info`: madmin's `InfoMessage`, the parts a backup records.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `online`, `initializing`, …
    #[serde(default, deserialize_with = "null_default")]
    pub mode: String,
    /// The server's region (empty when not configured; `RustFS` sends `null`).
    #[serde(default, deserialize_with = "null_default")]
    pub region: String,
    /// The deployment id, stable across restarts.
    #[serde(default, rename = "deploymentID", deserialize_with = "null_default")]
    pub deployment_id: String,
    /// Number of buckets.
    #[serde(default)]
    pub buckets: Count,
    /// Number of objects.
    #[serde(default)]
    pub objects: Count,
    /// Bytes used.
    #[serde(default)]
    pub usage: Usage,
    /// Backend description.
    #[serde(default)]
    pub backend: Backend,
    /// One entry per server of the deployment.
    #[serde(default, deserialize_with = "null_default")]
    pub servers: Vec<ServerProperties>,
    /// Which server answered, as the shape of its answer tells.
    #[serde(skip)]
    pub flavour: Flavour,
}

/// Which MinIO-compatible server answered the admin API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavour {
    /// MinIO: server info as `InfoMessage` itself.
    #[default]
    Minio,
    /// `RustFS`: server info wrapped as `{"info": …}`. Its object GETs carry neither
    /// `x-amz-tagging-count` nor the object-lock headers (1.0.1); its HEADs do.
    RustFs,
}

impl ServerInfo {
    /// Reads the answer of `GET /info`: MinIO's `InfoMessage` itself, or `RustFS`'s wrapper
    /// `{"info": InfoMessage, "admin_discovery": …, …}` (`RustFS` 1.0.1 answers so, unencrypted).
    ///
    /// `Ok(None)`: a JSON object with no server info in either place (no deployment id, no mode, no server).
    ///
    /// # Errors
    /// The body is not JSON of that shape (the error may quote the body: do not show it).
    pub fn from_answer(body: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_slice(body)?;
        let top_level_info = ["deploymentID", "mode", "servers"].iter().any(|k| value.get(k).is_some());
        let mut flavour = Flavour::Minio;
        if !top_level_info && value.get("info").is_some_and(serde_json::Value::is_object) {
            value = value["info"].take();
            flavour = Flavour::RustFs;
        }
        let info = Self { flavour, ..serde_json::from_value(value)? };
        let found = !info.deployment_id.is_empty() || !info.mode.is_empty() || !info.servers.is_empty();
        Ok(found.then_some(info))
    }

    /// The version of the first server that reports one (`2025-10-15T17:29:55Z` style for MinIO).
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.servers.iter().map(|s| s.version.as_str()).find(|v| !v.is_empty())
    }

    /// Whether the servers report different versions (a rolling upgrade in progress).
    #[must_use]
    pub fn mixed_versions(&self) -> bool {
        let mut versions = self.servers.iter().map(|s| s.version.as_str()).filter(|v| !v.is_empty());
        versions.next().is_some_and(|first| versions.any(|v| v != first))
    }
}

/// A count in `InfoMessage`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Count {
    /// The count.
    #[serde(default)]
    pub count: u64,
}

/// Usage in `InfoMessage`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Bytes.
    #[serde(default)]
    pub size: u64,
}

/// Backend in `InfoMessage`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backend {
    /// `Erasure` or `FS`.
    #[serde(default, rename = "backendType", deserialize_with = "null_default")]
    pub backend_type: String,
}

/// One server in `InfoMessage.servers`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerProperties {
    /// `online` / `offline`.
    #[serde(default, deserialize_with = "null_default")]
    pub state: String,
    /// `host:port`.
    #[serde(default, deserialize_with = "null_default")]
    pub endpoint: String,
    /// The release, e.g. `2025-10-15T17:29:55Z` (MinIO) or `@1.0.1` (`RustFS`).
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// The git commit.
    #[serde(default, rename = "commitID", deserialize_with = "null_default")]
    pub commit_id: String,
    /// Edition (`AIStor` and newer servers).
    #[serde(default, deserialize_with = "null_default")]
    pub edition: String,
}

/// `GET /list-users` values: madmin's `UserInfo`. `list-users` never returns secret keys (the IAM export
/// is the only source of them), and this type has no field for one.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// Comma-separated policy names.
    #[serde(default, rename = "policyName")]
    pub policy_name: String,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub status: String,
    /// Groups the user belongs to.
    #[serde(default, rename = "memberOf", deserialize_with = "null_default")]
    pub member_of: Vec<String>,
    /// Last change.
    #[serde(default, rename = "updatedAt", deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
}

impl UserInfo {
    /// The attached policies.
    #[must_use]
    pub fn policies(&self) -> Vec<&str> {
        split_policies(&self.policy_name)
    }
}

fn split_policies(list: &str) -> Vec<&str> {
    list.split(',').map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// `GET /group?group=`: madmin's `GroupDesc`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupDesc {
    /// The group name.
    #[serde(default)]
    pub name: String,
    /// `enabled` or `disabled`. Import-iam does not restore a disabled status (spec pitfall 4).
    #[serde(default)]
    pub status: String,
    /// Member access keys.
    #[serde(default, deserialize_with = "null_default")]
    pub members: Vec<String>,
    /// Comma-separated policy names.
    #[serde(default)]
    pub policy: String,
    /// Last change.
    #[serde(default, rename = "updatedAt", deserialize_with = "lenient_time")]
    pub updated_at: Option<OffsetDateTime>,
}

impl GroupDesc {
    /// Whether the group is enabled.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.status != "disabled"
    }

    /// The attached policies.
    #[must_use]
    pub fn policies(&self) -> Vec<&str> {
        split_policies(&self.policy)
    }
}

/// One entry of `GET /list-service-accounts`: madmin's `ServiceAccountInfo` (no secret key).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceAccountInfo {
    /// The access key.
    #[serde(default, rename = "accessKey")]
    pub access_key: String,
    /// The parent user (empty from servers that list bare access keys).
    #[serde(default, rename = "parentUser")]
    pub parent_user: String,
    /// `on` or `off`. Import-iam re-creates every account as `on` (spec pitfall 5).
    #[serde(default, rename = "accountStatus")]
    pub account_status: String,
    /// Whether the account inherits its parent's policy.
    #[serde(default, rename = "impliedPolicy")]
    pub implied_policy: bool,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Expiry (`None`: never).
    #[serde(default, deserialize_with = "lenient_time")]
    pub expiration: Option<OffsetDateTime>,
}

/// `list-service-accounts` answers: current servers list objects, servers before 2023 bare access keys.
#[derive(Deserialize)]
pub(crate) struct ListServiceAccountsResp {
    #[serde(default, deserialize_with = "null_default")]
    pub accounts: Vec<AccountEntry>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum AccountEntry {
    Info(ServiceAccountInfo),
    Key(String),
}

impl AccountEntry {
    pub(crate) fn into_info(self, parent: &str) -> ServiceAccountInfo {
        match self {
            Self::Info(info) => info,
            Self::Key(access_key) => {
                ServiceAccountInfo { access_key, parent_user: parent.to_owned(), ..Default::default() }
            }
        }
    }
}

/// Names per IAM entity type in `ImportIAMResult` (`added`, `skipped`, `removed`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamEntities {
    /// Policy names.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// User access keys.
    #[serde(default, deserialize_with = "null_default")]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<String>,
    /// Service-account access keys.
    #[serde(default, rename = "serviceAccounts", deserialize_with = "null_default")]
    pub service_accounts: Vec<String>,
    /// `[{user: [policies]}]`.
    #[serde(default, rename = "userPolicies", deserialize_with = "null_default")]
    pub user_policies: Vec<BTreeMap<String, Vec<String>>>,
    /// `[{group: [policies]}]`.
    #[serde(default, rename = "groupPolicies", deserialize_with = "null_default")]
    pub group_policies: Vec<BTreeMap<String, Vec<String>>>,
    /// `[{sts parent: [policies]}]`.
    #[serde(default, rename = "stsPolicies", deserialize_with = "null_default")]
    pub sts_policies: Vec<BTreeMap<String, Vec<String>>>,
}

/// A failed entity. MinIO marshals the Go `error` as `{}`, so `error` rarely says anything (spec §3.4);
/// `RustFS` sends a string.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamFailure {
    /// The entity's name.
    #[serde(default)]
    pub name: String,
    /// For mappings: the policies that were to be attached.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// Whatever the server put there.
    #[serde(default)]
    pub error: serde_json::Value,
}

/// Failures per IAM entity type in `ImportIAMResult.failed`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamFailures {
    /// Policies.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<IamFailure>,
    /// Users.
    #[serde(default, deserialize_with = "null_default")]
    pub users: Vec<IamFailure>,
    /// Groups.
    #[serde(default, deserialize_with = "null_default")]
    pub groups: Vec<IamFailure>,
    /// Service accounts.
    #[serde(default, rename = "serviceAccounts", deserialize_with = "null_default")]
    pub service_accounts: Vec<IamFailure>,
    /// User policy mappings.
    #[serde(default, rename = "userPolicies", deserialize_with = "null_default")]
    pub user_policies: Vec<IamFailure>,
    /// Group policy mappings.
    #[serde(default, rename = "groupPolicies", deserialize_with = "null_default")]
    pub group_policies: Vec<IamFailure>,
    /// STS policy mappings.
    #[serde(default, rename = "stsPolicies", deserialize_with = "null_default")]
    pub sts_policies: Vec<IamFailure>,
}

impl IamFailures {
    /// Whether nothing failed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.users.is_empty()
            && self.groups.is_empty()
            && self.service_accounts.is_empty()
            && self.user_policies.is_empty()
            && self.group_policies.is_empty()
            && self.sts_policies.is_empty()
    }
}

/// `PUT /import-iam-v2`: madmin's `ImportIAMResult`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportIamResult {
    /// Entities skipped (e.g. LDAP parents unknown to the target).
    #[serde(default)]
    pub skipped: IamEntities,
    /// Policies removed (an empty policy in the zip deletes it).
    #[serde(default)]
    pub removed: IamEntities,
    /// Entities added or updated.
    #[serde(default)]
    pub added: IamEntities,
    /// Entities that failed.
    #[serde(default)]
    pub failed: IamFailures,
}

/// What an IAM import returned.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IamImport {
    /// `import-iam-v2` answered with its per-entity result.
    V2(Box<ImportIamResult>),
    /// The server lacks `import-iam-v2`; `import-iam` succeeded and returns no details.
    V1,
}

impl IamImport {
    /// The per-entity result, when the server gave one.
    #[must_use]
    pub fn result(&self) -> Option<&ImportIamResult> {
        match self {
            Self::V2(r) => Some(r),
            Self::V1 => None,
        }
    }
}

/// One section's status in `BucketMetaImportErrs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetaStatus {
    /// Whether the section was applied.
    #[serde(default, rename = "isSet")]
    pub is_set: bool,
    /// Why it was not.
    #[serde(default)]
    pub error: String,
}

/// One bucket in `BucketMetaImportErrs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketImportStatus {
    /// Object lock.
    #[serde(default)]
    pub olock: MetaStatus,
    /// Versioning.
    #[serde(default)]
    pub versioning: MetaStatus,
    /// Bucket policy.
    #[serde(default)]
    pub policy: MetaStatus,
    /// Tags.
    #[serde(default)]
    pub tagging: MetaStatus,
    /// Encryption.
    #[serde(default)]
    pub sse: MetaStatus,
    /// Lifecycle.
    #[serde(default)]
    pub lifecycle: MetaStatus,
    /// Notification.
    #[serde(default)]
    pub notification: MetaStatus,
    /// Quota.
    #[serde(default)]
    pub quota: MetaStatus,
    /// CORS (`AIStor` only).
    #[serde(default)]
    pub cors: MetaStatus,
    /// A bucket-level error (e.g. the bucket could not be created).
    #[serde(default)]
    pub error: String,
}

/// `PUT /import-bucket-metadata`: madmin's `BucketMetaImportErrs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketImportReport {
    /// Per bucket. Empty when the server answered with an empty body (`RustFS` does).
    #[serde(default, deserialize_with = "null_default")]
    pub buckets: BTreeMap<String, BucketImportStatus>,
}

impl BucketImportReport {
    /// `(bucket, section, error)` for every section or bucket that reported an error.
    #[must_use]
    pub fn failures(&self) -> Vec<(&str, &'static str, &str)> {
        let mut out = Vec::new();
        for (bucket, s) in &self.buckets {
            if !s.error.is_empty() {
                out.push((bucket.as_str(), "bucket", s.error.as_str()));
            }
            for (section, status) in [
                ("object lock", &s.olock),
                ("versioning", &s.versioning),
                ("policy", &s.policy),
                ("tagging", &s.tagging),
                ("encryption", &s.sse),
                ("lifecycle", &s.lifecycle),
                ("notification", &s.notification),
                ("quota", &s.quota),
                ("cors", &s.cors),
            ] {
                if !status.error.is_empty() {
                    out.push((bucket.as_str(), section, status.error.as_str()));
                }
            }
        }
        out
    }
}

/// A bucket's quota, read from either shape a bucket-metadata export holds in `<bucket>/quota.json`:
/// madmin's `BucketQuota` (MinIO: `{"quota":N,"size":N,"rate":0,"requests":0,"quotatype":"hard"}`, the
/// limit in `size`, in `quota` on older servers) or `RustFS`'s own record (1.0.1:
/// `{"quota":0,"quota_type":"Hard","reservation_protocol":1,"reservation_quota":N,"created_at":…}`, the
/// limit in `reservation_quota`). `set-bucket-quota` takes madmin's shape only: `RustFS` reads its own
/// record there as "no quota", so restore through [`BucketQuota::to_request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BucketQuota {
    /// The limit in bytes.
    pub limit: u64,
    /// `hard` (the only kind MinIO and `RustFS` enforce), lower-case.
    pub quota_type: String,
}

impl BucketQuota {
    /// A hard quota of `limit` bytes.
    #[must_use]
    pub fn hard(limit: u64) -> Self {
        Self { limit, quota_type: "hard".into() }
    }

    /// Reads `quota.json` of either shape; `Ok(None)` when it sets no limit.
    ///
    /// # Errors
    /// Not a JSON object.
    pub fn from_json(json: &[u8]) -> Result<Option<Self>, serde_json::Error> {
        let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json)?;
        let number = |key: &str| value.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let limit = ["size", "quota", "reservation_quota"].into_iter().map(number).find(|n| *n > 0);
        let quota_type = ["quotatype", "quota_type"]
            .into_iter()
            .find_map(|key| value.get(key).and_then(serde_json::Value::as_str))
            .unwrap_or("hard")
            .to_ascii_lowercase();
        Ok(limit.map(|limit| Self { limit, quota_type }))
    }

    /// The body of `set-bucket-quota`: madmin's shape, which MinIO and `RustFS` both read.
    #[must_use]
    pub fn to_request(&self) -> Vec<u8> {
        serde_json::json!({"quota": self.limit, "size": self.limit, "quotatype": self.quota_type})
            .to_string()
            .into_bytes()
    }
}

/// A server configuration in MinIO's KV text format (`GET /config`), with secrets in clear.
///
/// `Debug` prints the length only; the text is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigText(Zeroizing<String>);

impl ConfigText {
    /// Wraps a configuration text (e.g. one read back from a backup).
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for ConfigText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigText").field("len", &self.0.len()).finish_non_exhaustive()
    }
}

/// One entry of `GET /list-config-history-kv`: madmin's `ConfigHistoryEntry`
/// (`restoreId`/`createTime`/`data`), or `RustFS`'s (`RestoreID`/`CreateTime`/`Data`/`DataRedacted`).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigHistoryEntry {
    /// The id to pass to [`crate::AdminClient::restore_config_history`].
    #[serde(default, rename = "restoreId", alias = "RestoreID")]
    pub restore_id: String,
    /// When it was stored.
    #[serde(default, rename = "createTime", alias = "CreateTime", deserialize_with = "lenient_time")]
    pub create_time: Option<OffsetDateTime>,
    /// The KV text that was set (may hold secrets: not shown by `Debug`).
    #[serde(default, alias = "Data", deserialize_with = "config_text")]
    pub data: ConfigText,
    /// Whether the server replaced the secrets in [`ConfigHistoryEntry::data`] (`RustFS` does, and says so:
    /// such an entry cannot serve as a backup of the configuration).
    #[serde(default, rename = "dataRedacted", alias = "DataRedacted")]
    pub data_redacted: bool,
}

fn config_text<'de, D: Deserializer<'de>>(d: D) -> Result<ConfigText, D::Error> {
    Ok(ConfigText::new(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

impl Default for ConfigText {
    fn default() -> Self {
        Self::new(String::new())
    }
}

impl fmt::Debug for ConfigHistoryEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigHistoryEntry")
            .field("restore_id", &self.restore_id)
            .field("create_time", &self.create_time)
            .field("data", &self.data)
            .field("data_redacted", &self.data_redacted)
            .finish()
    }
}

/// `POST /service?action=restart&type=2`: madmin's `ServiceActionResult`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceActionResult {
    /// `restart`.
    #[serde(default)]
    pub action: String,
    /// Whether it was a dry run.
    #[serde(default, rename = "dryRun")]
    pub dry_run: bool,
    /// Per peer (empty from servers before the v2 service API, which answer with no body, and from
    /// `RustFS`).
    #[serde(default, deserialize_with = "null_default")]
    pub results: Vec<ServicePeerResult>,
    /// What the server says it did (`RustFS`: "graceful shutdown initiated; the supervising process
    /// manager is responsible for relaunch": it exits and comes back only if something restarts it).
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

/// One peer of a service action.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServicePeerResult {
    /// The peer.
    #[serde(default)]
    pub host: String,
    /// Its error, if any.
    #[serde(default)]
    pub err: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_info_reads_madmin_shape() {
        let json = r#"{"mode":"online","region":"us-east-1","deploymentID":"2f5d3c40-8b0a-4f5e-9d3c-7b3c1d2e0f11",
            "buckets":{"count":3},"objects":{"count":10},"usage":{"size":1234},
            "services":{},"backend":{"backendType":"Erasure","onlineDisks":4,"offlineDisks":0},
            "servers":[{"state":"online","endpoint":"m1:9000","scheme":"http","uptime":100,
                "version":"2025-10-15T17:29:55Z","commitID":"abc","network":{"m1:9000":"online"},
                "drives":[],"poolNumber":1,"mem_stats":{},"go_max_procs":4,"num_cpu":4,"runtime_version":"go1.24","edition":""}]}"#;
        let info: ServerInfo = serde_json::from_str(json).unwrap();
        assert_eq!(info.deployment_id, "2f5d3c40-8b0a-4f5e-9d3c-7b3c1d2e0f11");
        assert_eq!(info.version(), Some("2025-10-15T17:29:55Z"));
        assert_eq!(info.backend.backend_type, "Erasure");
        assert_eq!(info.buckets.count, 3);
        assert!(!info.mixed_versions());
    }

    #[test]
    fn import_result_reads_the_documented_example() {
        let json = r#"{"skipped":{},"removed":{},
 "added":{"policies":["p1"],"users":["alice"],"groups":["devs"],"serviceAccounts":["SVC1"],
          "userPolicies":[{"alice":["readwrite","diagnostics"]}],"groupPolicies":[{"devs":["readonly"]}],
          "stsPolicies":[{"uid=bob,ou=people,dc=example,dc=org":["readonly"]}]},
 "failed":{"serviceAccounts":[{"name":"SVC2","error":{}}],
           "userPolicies":[{"name":"carol","policies":["gone"],"error":{}}]}}"#;
        let r: ImportIamResult = serde_json::from_str(json).unwrap();
        assert_eq!(r.added.user_policies[0]["alice"], ["readwrite", "diagnostics"]);
        assert_eq!(r.failed.service_accounts[0].name, "SVC2");
        assert_eq!(r.failed.user_policies[0].policies, ["gone"]);
        assert!(!r.failed.is_empty());
        assert!(r.skipped.users.is_empty());
    }

    #[test]
    fn bucket_report_failures() {
        let json = r#"{"buckets":{"photos":{"olock":{"isSet":true},"versioning":{"isSet":true},"policy":{"isSet":true},
  "tagging":{"isSet":false},"sse":{"isSet":true,"error":"Server side encryption specified but KMS is not configured"},"lifecycle":{"isSet":false},
  "notification":{"isSet":true},"quota":{"isSet":false},"cors":{"isSet":false}}}}"#;
        let r: BucketImportReport = serde_json::from_str(json).unwrap();
        assert_eq!(
            r.failures(),
            [("photos", "encryption", "Server side encryption specified but KMS is not configured")]
        );
    }

    #[test]
    fn quotas_of_both_shapes() {
        // Recorded from RustFS 1.0.1's export after `set-bucket-quota {"size":5000000,"quotatype":"hard"}`.
        let rustfs = br#"{"quota":0,"quota_type":"Hard","reservation_protocol":1,"reservation_quota":5000000,"created_at":"2026-12-06T20:54:31.328131004Z"}"#;
        assert_eq!(BucketQuota::from_json(rustfs).unwrap(), Some(BucketQuota::hard(5_000_000)));
        let minio = br#"{"quota":1073741824,"size":1073741824,"rate":0,"requests":0,"quotatype":"hard"}"#;
        assert_eq!(BucketQuota::from_json(minio).unwrap(), Some(BucketQuota::hard(1_073_741_824)));
        let old_minio = br#"{"quota":2048,"quotatype":"hard"}"#;
        assert_eq!(BucketQuota::from_json(old_minio).unwrap(), Some(BucketQuota::hard(2048)));
        assert_eq!(BucketQuota::from_json(br#"{"quota":0,"size":0}"#).unwrap(), None);
        assert!(BucketQuota::from_json(b"[1]").is_err());
        let request: serde_json::Value = serde_json::from_slice(&BucketQuota::hard(7).to_request()).unwrap();
        assert_eq!(request, serde_json::json!({"quota":7,"size":7,"quotatype":"hard"}));
    }

    #[test]
    fn rustfs_shapes() {
        // RustFS 1.0.1's history entry (`Data` shortened) and info wrapper.
        let h: ConfigHistoryEntry = serde_json::from_str(
            r#"{"RestoreID":"e164beeb-5010-4b2f-ac29-95bcb2b20a22","CreateTime":"2026-12-06T20:54:40.814585438Z","Data":"notify_webhook:a1 auth_token=\"*redacted*\"","DataRedacted":true}"#,
        )
        .unwrap();
        assert_eq!(h.restore_id, "e164beeb-5010-4b2f-ac29-95bcb2b20a22");
        assert!(h.create_time.is_some() && h.data_redacted && h.data.as_str().contains("a1"));
        let info = ServerInfo::from_answer(
            br#"{"info":{"mode":"online","region":null,"deploymentID":"cf3f33f4","servers":[{"state":"online","version":"@1.0.1","commitID":""}]},"admin_discovery":{},"bitrotSelftest":"passed"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!((info.deployment_id.as_str(), info.version()), ("cf3f33f4", Some("@1.0.1")));
        assert_eq!(ServerInfo::from_answer(br#"{"hello":"world"}"#).unwrap(), None);
        let restart: ServiceActionResult = serde_json::from_str(
            r#"{"action":"restart","accepted":true,"effective":true,"message":"graceful shutdown initiated; the supervising process manager is responsible for relaunch"}"#,
        )
        .unwrap();
        assert!(restart.message.contains("relaunch"));
    }

    #[test]
    fn secret_holding_types_hide_their_contents() {
        let c = ConfigText::new("identity_openid client_secret=hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        let h: ConfigHistoryEntry = serde_json::from_str(
            r#"{"restoreId":"r1","createTime":"2025-01-02T03:04:05.123Z","data":"notify_webhook:1 auth_token=hunter2"}"#,
        )
        .unwrap();
        let shown = format!("{h:?}");
        assert!(shown.contains("r1") && !shown.contains("hunter2"), "{shown}");
        assert!(h.create_time.is_some());
    }

    #[test]
    fn sentinel_and_zero_times_are_none() {
        let s: ServiceAccountInfo =
            serde_json::from_str(r#"{"accessKey":"k","expiration":"1970-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(s.expiration, None);
        let u: UserInfo =
            serde_json::from_str(r#"{"status":"enabled","policyName":"readwrite, diagnostics","memberOf":null,"updatedAt":"0001-01-01T00:00:00Z"}"#)
                .unwrap();
        assert_eq!(u.updated_at, None);
        assert_eq!(u.policies(), ["readwrite", "diagnostics"]);
    }
}
