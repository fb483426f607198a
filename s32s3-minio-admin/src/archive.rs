//! The zips of `export-iam` and `export-bucket-metadata`, validated (spec §3.3, §3.5).
//!
//! MinIO streams these zips after sending `200 OK`, so a failed export can arrive as a 200 with a truncated
//! or corrupt body (spec pitfall 23). Validation reads the central directory, decompresses every entry
//! (which checks its CRC-32), checks the entry names against the layout, and parses the JSON entries.
//!
//! The IAM zip holds every user's and service account's secret key in clear, the bucket zip the remote
//! targets' credentials: neither type prints its contents in `Debug`.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{Cursor, Read, Write};

use bytes::Bytes;

use crate::error::{ArchiveKind, Error, Result};

/// Decompressed bytes allowed per entry: far above any real IAM or bucket document.
const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// Decompressed bytes allowed per archive.
const MAX_TOTAL_BYTES: u64 = 1 << 30;

/// The IAM files, in the order MinIO writes them (`cmd/admin-handlers-users.go`).
pub const IAM_FILES: [&str; 7] = [
    "policies.json",
    "users.json",
    "groups.json",
    "svcaccts.json",
    "user_mappings.json",
    "group_mappings.json",
    "stsuser_mappings.json",
];
/// The IAM files every export since the format's introduction has (`stsuser_mappings.json` came later).
const IAM_REQUIRED: [&str; 6] = [
    "policies.json",
    "users.json",
    "groups.json",
    "svcaccts.json",
    "user_mappings.json",
    "group_mappings.json",
];
/// The directory the IAM files sit in since RELEASE.2022-07-24.
pub const IAM_ASSETS_DIR: &str = "iam-assets";

/// The per-bucket files MinIO exports (plus `cors.xml`, which other servers may add).
pub const BUCKET_FILES: [&str; 11] = [
    "policy.json",
    "notification.xml",
    "lifecycle.xml",
    "bucket-encryption.xml",
    "tagging.xml",
    "quota.json",
    "object-lock.xml",
    "versioning.xml",
    "replication.xml",
    "bucket-targets.json",
    "cors.xml",
];

/// Where the IAM files sit in the zip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IamLayout {
    /// Under `iam-assets/` (RELEASE.2022-07-24 and later): what current servers import.
    Current,
    /// At the zip root (servers before RELEASE.2022-07-24). Current servers import **nothing** from such
    /// a zip (spec pitfall 9).
    Legacy,
}

/// Groups and service accounts an IAM export had disabled (names only, no secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IamDisabled {
    /// Groups with status `disabled`.
    pub groups: Vec<String>,
    /// Service accounts with status `off` (or `disabled`).
    pub service_accounts: Vec<String>,
}

/// A validated `export-iam` zip.
#[derive(Clone, PartialEq, Eq)]
pub struct IamExport {
    bytes: Bytes,
    entries: Vec<String>,
    layout: IamLayout,
}

impl IamExport {
    /// Validates `bytes` as an IAM export.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the zip is truncated or corrupt, an entry fails its CRC, a required
    /// file is missing, a file is not a JSON object, or an entry name is outside the layout.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        let kind = ArchiveKind::Iam;
        let entries = read_entries(kind, &bytes, |name, content| {
            let file = name.strip_prefix("iam-assets/").unwrap_or(name);
            if file.contains('/') {
                return Err(format!("unexpected entry {name:?}"));
            }
            if IAM_FILES.contains(&file) {
                json_object(content).map_err(|e| format!("{name} is not a JSON object: {e}"))?;
            }
            Ok(())
        })?;
        let names: BTreeSet<&str> = entries.iter().map(String::as_str).collect();
        let in_assets = |f: &str| names.contains(format!("{IAM_ASSETS_DIR}/{f}").as_str());
        let layout = if IAM_REQUIRED.iter().all(|f| in_assets(f)) {
            IamLayout::Current
        } else if IAM_REQUIRED.iter().all(|f| names.contains(f)) {
            IamLayout::Legacy
        } else {
            let missing: Vec<&str> = IAM_REQUIRED.iter().copied().filter(|f| !in_assets(f)).collect();
            return Err(invalid(kind, format!("missing {IAM_ASSETS_DIR}/{}", missing.join(", "))));
        };
        Ok(Self { bytes, entries, layout })
    }

    /// The zip bytes, exactly as the server sent them.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The zip bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Entry names (file names only; never contents).
    #[must_use]
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// What `import-iam` does not restore (spec §3.4, pitfalls 4–5): the groups that were disabled and the
    /// service accounts that were off, read from `groups.json` and `svcaccts.json`.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] if a file cannot be read again (it was validated when the export was made).
    pub fn disabled(&self) -> Result<IamDisabled> {
        let names = |file: &str, status_off: &[&str]| -> Result<Vec<String>> {
            let path = match self.layout {
                IamLayout::Current => format!("{IAM_ASSETS_DIR}/{file}"),
                IamLayout::Legacy => file.to_owned(),
            };
            let mut zip = zip::ZipArchive::new(Cursor::new(&self.bytes[..]))
                .map_err(|e| invalid(ArchiveKind::Iam, e.to_string()))?;
            let mut content = Vec::new();
            zip.by_name(&path)
                .map_err(|e| invalid(ArchiveKind::Iam, format!("{path}: {e}")))?
                .take(MAX_ENTRY_BYTES)
                .read_to_end(&mut content)
                .map_err(|e| invalid(ArchiveKind::Iam, format!("{path}: {e}")))?;
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&content)
                .map_err(|e| invalid(ArchiveKind::Iam, format!("{path}: {e}")))?;
            Ok(map
                .into_iter()
                .filter(|(_, v)| {
                    v.get("status")
                        .and_then(serde_json::Value::as_str)
                        .is_some_and(|s| status_off.contains(&s))
                })
                .map(|(name, _)| name)
                .collect())
        };
        Ok(IamDisabled {
            groups: names("groups.json", &["disabled"])?,
            service_accounts: names("svcaccts.json", &["off", "disabled"])?,
        })
    }

    /// Where the files sit.
    #[must_use]
    pub fn layout(&self) -> IamLayout {
        self.layout
    }
}

impl fmt::Debug for IamExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamExport")
            .field("len", &self.bytes.len())
            .field("entries", &self.entries)
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// A validated `export-bucket-metadata` zip: `<bucket>/<file>` entries.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketMetadataExport {
    bytes: Bytes,
    entries: Vec<String>,
}

impl BucketMetadataExport {
    /// Validates `bytes` as a bucket-metadata export. A zip without entries (a server without buckets) is
    /// valid.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the zip is truncated or corrupt, an entry fails its CRC, an entry is
    /// not `<bucket>/<file>`, or `policy.json`/`quota.json` is not a JSON object.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Result<Self> {
        let bytes = bytes.into();
        let entries = read_entries(ArchiveKind::BucketMetadata, &bytes, |name, content| {
            let Some((bucket, file)) = name.split_once('/') else {
                return Err(format!("entry {name:?} is not <bucket>/<file>"));
            };
            if bucket.is_empty() || file.is_empty() || file.contains('/') {
                return Err(format!("entry {name:?} is not <bucket>/<file>"));
            }
            if matches!(file, "policy.json" | "quota.json") {
                json_object(content).map_err(|e| format!("{name} is not a JSON object: {e}"))?;
            }
            Ok(())
        })?;
        Ok(Self { bytes, entries })
    }

    /// The zip bytes, exactly as the server sent them.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The zip bytes.
    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Entry names.
    #[must_use]
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// The buckets in the export, sorted.
    #[must_use]
    pub fn buckets(&self) -> Vec<String> {
        let set: BTreeSet<&str> =
            self.entries.iter().filter_map(|e| e.split_once('/')).map(|(b, _)| b).collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// The content of `<bucket>/<file>` (e.g. `quota.json`), if the export has it.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the entry cannot be read.
    pub fn file(&self, bucket: &str, file: &str) -> Result<Option<Vec<u8>>> {
        let kind = ArchiveKind::BucketMetadata;
        let name = format!("{bucket}/{file}");
        if !self.entries.contains(&name) {
            return Ok(None);
        }
        let mut archive = zip::ZipArchive::new(Cursor::new(&self.bytes[..])).map_err(|e| invalid(kind, e))?;
        let mut entry = archive.by_name(&name).map_err(|e| invalid(kind, e))?;
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| invalid(kind, e))?;
        Ok(Some(content))
    }

    /// A new export with only `bucket`'s entries.
    ///
    /// MinIO ignores `?bucket=` on import and imports every bucket in the zip (spec pitfall 22); this is
    /// how one bucket is restored.
    ///
    /// # Errors
    /// [`Error::InvalidArchive`] when the bucket is not in the export.
    pub fn only_bucket(&self, bucket: &str) -> Result<Self> {
        let kind = ArchiveKind::BucketMetadata;
        let mut archive = zip::ZipArchive::new(Cursor::new(&self.bytes[..])).map_err(|e| invalid(kind, e))?;
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        let prefix = format!("{bucket}/");
        let mut found = false;
        for i in 0..archive.len() {
            let mut file = archive.by_index(i).map_err(|e| invalid(kind, e))?;
            if file.is_dir() || !file.name().starts_with(&prefix) {
                continue;
            }
            found = true;
            let mut content = Vec::new();
            file.read_to_end(&mut content).map_err(|e| invalid(kind, e))?;
            writer.start_file(file.name(), options).map_err(|e| invalid(kind, e))?;
            writer.write_all(&content).map_err(|e| invalid(kind, e))?;
        }
        if !found {
            return Err(invalid(kind, format!("bucket {bucket:?} is not in the export")));
        }
        let bytes = writer.finish().map_err(|e| invalid(kind, e))?.into_inner();
        Self::from_bytes(bytes)
    }
}

impl fmt::Debug for BucketMetadataExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketMetadataExport")
            .field("len", &self.bytes.len())
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

fn invalid(kind: ArchiveKind, reason: impl fmt::Display) -> Error {
    Error::InvalidArchive { kind, reason: reason.to_string() }
}

fn json_object(content: &[u8]) -> std::result::Result<(), String> {
    match serde_json::from_slice::<serde_json::Value>(content) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err("not an object".into()),
        Err(e) => Err(crate::error::json_error(&e)),
    }
}

/// Opens the zip, reads every file entry to its end (verifying CRC-32 and sizes), and hands each to
/// `check`. Directory entries are skipped; names must be relative, without `..` or backslashes, and unique.
fn read_entries(
    kind: ArchiveKind,
    bytes: &[u8],
    mut check: impl FnMut(&str, &[u8]) -> std::result::Result<(), String>,
) -> Result<Vec<String>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| invalid(kind, e))?;
    let mut names = Vec::with_capacity(archive.len());
    let mut seen = BTreeSet::new();
    let mut total: u64 = 0;
    let mut content = Vec::new();
    for i in 0..archive.len() {
        let file = archive.by_index(i).map_err(|e| invalid(kind, format!("entry {i}: {e}")))?;
        let name = file.name().to_owned();
        if name.starts_with('/') || name.contains('\\') || name.split('/').any(|s| s == ".." || s == ".") {
            return Err(invalid(kind, format!("entry name {name:?} is not a plain relative path")));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid(kind, format!("entry {name:?} appears twice")));
        }
        content.clear();
        let limit = MAX_ENTRY_BYTES.min(MAX_TOTAL_BYTES - total);
        let read = file
            .take(limit + 1)
            .read_to_end(&mut content)
            .map_err(|e| invalid(kind, format!("entry {name:?}: {e}")))?;
        if read as u64 > limit {
            return Err(invalid(kind, format!("entry {name:?} decompresses to more than {limit} bytes")));
        }
        total += read as u64;
        // MinIO writes no directory entries; a repacked zip may have them, but never with content.
        if name.ends_with('/') {
            if !content.is_empty() {
                return Err(invalid(kind, format!("directory entry {name:?} has content")));
            }
            continue;
        }
        check(&name, &content).map_err(|reason| invalid(kind, reason))?;
        names.push(name);
    }
    Ok(names)
}

/// Builds a zip of `(name, content)` entries the way MinIO does (Deflate, mode 0600, no directories).
///
/// # Errors
/// Only when the zip writer fails, which writing to memory does not.
pub fn build_zip<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> std::io::Result<Vec<u8>> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    for (name, content) in entries {
        writer.start_file(name, options)?;
        writer.write_all(content)?;
    }
    Ok(writer.finish()?.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iam_zip(prefix: &str) -> Vec<u8> {
        let users = br#"{"alice":{"secretKey":"alice-secret-123","status":"enabled"}}"#;
        let names: Vec<String> = IAM_FILES.iter().map(|f| format!("{prefix}{f}")).collect();
        build_zip(names.iter().map(|n| {
            let content: &[u8] = if n.ends_with("/users.json") || n == "users.json" { users } else { b"{}" };
            (n.as_str(), content)
        }))
        .unwrap()
    }

    #[test]
    fn iam_export_validates_and_hides_contents() {
        let export = IamExport::from_bytes(iam_zip("iam-assets/")).unwrap();
        assert_eq!(export.layout(), IamLayout::Current);
        assert_eq!(export.entries().len(), 7);
        let shown = format!("{export:?}");
        assert!(!shown.contains("alice-secret-123"), "{shown}");
        assert!(shown.contains("iam-assets/users.json"));
        assert_eq!(IamExport::from_bytes(iam_zip("")).unwrap().layout(), IamLayout::Legacy);
    }

    #[test]
    fn disabled_groups_and_service_accounts_are_read() {
        // The shapes of spec §3.3: group status enabled/disabled, service-account status on/off.
        let groups = br#"{"devs":{"version":1,"status":"enabled","members":["alice"]},"ops":{"version":1,"status":"disabled","members":[]}}"#;
        let svcaccts = br#"{"SVC1":{"parent":"alice","accessKey":"SVC1","secretKey":"s","status":"on"},"SVC2":{"parent":"alice","accessKey":"SVC2","secretKey":"s","status":"off"}}"#;
        for prefix in ["iam-assets/", ""] {
            let names: Vec<String> = IAM_FILES.iter().map(|f| format!("{prefix}{f}")).collect();
            let zip = build_zip(names.iter().map(|n| {
                let content: &[u8] = if n.ends_with("groups.json") {
                    groups
                } else if n.ends_with("svcaccts.json") {
                    svcaccts
                } else {
                    b"{}"
                };
                (n.as_str(), content)
            }))
            .unwrap();
            let disabled = IamExport::from_bytes(zip).unwrap().disabled().unwrap();
            assert_eq!(disabled.groups, ["ops"]);
            assert_eq!(disabled.service_accounts, ["SVC2"]);
        }
        assert_eq!(
            IamExport::from_bytes(iam_zip("iam-assets/")).unwrap().disabled().unwrap(),
            IamDisabled::default()
        );
    }

    #[test]
    fn iam_export_rejects_truncation_corruption_and_bad_layout() {
        let zip = iam_zip("iam-assets/");
        for cut in [0, 10, zip.len() / 2, zip.len() - 1] {
            let err = IamExport::from_bytes(zip[..cut].to_vec()).unwrap_err();
            assert!(matches!(err, Error::InvalidArchive { kind: ArchiveKind::Iam, .. }), "cut {cut}: {err}");
        }
        // Flip a byte inside users.json's compressed data: an inflate or CRC-32 error.
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip[..])).unwrap();
        let entry = archive.by_name("iam-assets/users.json").unwrap();
        let middle = usize::try_from(entry.data_start() + entry.compressed_size() / 2).unwrap();
        drop(entry);
        let mut corrupt = zip.clone();
        corrupt[middle] ^= 0x20;
        let err = IamExport::from_bytes(corrupt).unwrap_err().to_string();
        assert!(err.contains("users.json"), "{err}");
        assert!(!err.contains("alice-secret-123"), "{err}");

        let missing = build_zip([("iam-assets/policies.json", &b"{}"[..])]).unwrap();
        let err = IamExport::from_bytes(missing).unwrap_err().to_string();
        assert!(err.contains("users.json"), "{err}");

        let names: Vec<String> = IAM_FILES.iter().map(|f| format!("iam-assets/{f}")).collect();
        let not_json = build_zip(names.iter().map(|n| (n.as_str(), &b"[1,2"[..]))).unwrap();
        assert!(IamExport::from_bytes(not_json).unwrap_err().to_string().contains("not a JSON object"));

        let traversal = build_zip([("../evil", &b"x"[..])]).unwrap();
        assert!(IamExport::from_bytes(traversal).is_err());
    }

    #[test]
    fn bucket_export_layout_and_single_bucket() {
        let zip = build_zip([
            ("photos/notification.xml", &b"<NotificationConfiguration></NotificationConfiguration>"[..]),
            ("photos/policy.json", br#"{"Version":"2012-10-17","Statement":[]}"#),
            ("photos/bucket-targets.json", b"<BucketTargets></BucketTargets>"),
            ("logs/notification.xml", b"<NotificationConfiguration></NotificationConfiguration>"),
            ("logs/quota.json", br#"{"quota":1,"size":1,"rate":0,"requests":0,"quotatype":"hard"}"#),
        ])
        .unwrap();
        let export = BucketMetadataExport::from_bytes(zip).unwrap();
        assert_eq!(export.buckets(), ["logs", "photos"]);
        let photos = export.only_bucket("photos").unwrap();
        assert_eq!(photos.buckets(), ["photos"]);
        assert_eq!(photos.entries().len(), 3);
        assert!(export.only_bucket("nope").is_err());
        assert!(BucketMetadataExport::from_bytes(build_zip([]).unwrap()).unwrap().buckets().is_empty());
    }

    /// Found by the `admin_export_zip` fuzz target: a directory entry carrying corrupt data was skipped by
    /// validation, so the export validated but `only_bucket` (which read it) failed.
    #[test]
    fn directory_entries_with_content_are_rejected() {
        let path = format!(
            "{}/tests/data/fuzz/export-zip-directory-entry-with-data.zip",
            env!("CARGO_MANIFEST_DIR")
        );
        let zip = std::fs::read(path).unwrap();
        assert!(matches!(BucketMetadataExport::from_bytes(zip.clone()), Err(Error::InvalidArchive { .. })));
        assert!(matches!(IamExport::from_bytes(zip), Err(Error::InvalidArchive { .. })));
    }

    #[test]
    fn bucket_export_rejects_bad_names_and_truncation() {
        for name in ["flat.xml", "a/b/c.xml", "/abs/x", "b/../c"] {
            let zip = build_zip([(name, &b"x"[..])]).unwrap();
            assert!(BucketMetadataExport::from_bytes(zip).is_err(), "{name}");
        }
        let zip = build_zip([("b/quota.json", &b"{\"quota\":1}"[..])]).unwrap();
        assert!(BucketMetadataExport::from_bytes(zip[..zip.len() - 5].to_vec()).is_err());
        let bad_json = build_zip([("b/quota.json", &b"quota"[..])]).unwrap();
        assert!(BucketMetadataExport::from_bytes(bad_json).is_err());
    }
}
