//! Import of an existing `rclone.conf`: `--rclone-config FILE --source-remote NAME: --destination-remote
//! NAME:` fill the source, the destination, the crypt passwords and the backup bucket from rclone's
//! remotes. The destination may be a crypt remote (its passwords and its wrapped `s3remote:bucket/prefix`
//! are used) or a plain S3 remote (`NAME:bucket/prefix`).
//!
//! Values from rclone.conf are the lowest layer: the TOML file, environment variables and flags override
//! them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::ConfigError;

/// An rclone.conf: remote name → key → value.
#[derive(Debug, Default)]
pub struct RcloneConf {
    remotes: BTreeMap<String, BTreeMap<String, String>>,
    path: String,
}

/// An S3 endpoint read from a remote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub endpoint: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub region: Option<String>,
    pub provider: Option<String>,
}

/// What the destination remote gives.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Destination {
    pub endpoint: RemoteEndpoint,
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    /// Plain (revealed) crypt passwords, when the remote is a crypt remote.
    pub password: Option<String>,
    pub password2: Option<String>,
}

impl RcloneConf {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::invalid("rclone_config", format!("{}: {e}", path.display())))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses rclone's INI format.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let mut remotes: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for (number, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if line.starts_with("RCLONE_ENCRYPT_V") {
                return Err(ConfigError::invalid(
                    "rclone_config",
                    format!(
                        "{path} is encrypted with an rclone config password; export a decrypted copy with \
                         `rclone config show > FILE` and import that"
                    ),
                ));
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(name.trim().to_owned());
                remotes.entry(name.trim().to_owned()).or_default();
                continue;
            }
            let (Some(remote), Some((key, value))) = (&current, line.split_once('=')) else {
                return Err(ConfigError::invalid(
                    "rclone_config",
                    format!("{path} line {}: not `key = value` in a [remote]", number + 1),
                ));
            };
            remotes
                .get_mut(remote)
                .expect("created at its header")
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(Self { remotes, path: path.to_owned() })
    }

    fn remote(&self, field: &str, name: &str) -> Result<&BTreeMap<String, String>, ConfigError> {
        self.remotes.get(name).ok_or_else(|| {
            ConfigError::invalid(
                field,
                format!(
                    "{path} has no remote {name:?} (it has: {})",
                    self.remotes.keys().cloned().collect::<Vec<_>>().join(", "),
                    path = self.path
                ),
            )
        })
    }

    /// An S3 remote's endpoint and credentials.
    fn s3(&self, field: &str, name: &str) -> Result<RemoteEndpoint, ConfigError> {
        let remote = self.remote(field, name)?;
        let kind = remote.get("type").map(String::as_str).unwrap_or_default();
        if kind != "s3" {
            return Err(ConfigError::invalid(
                field,
                format!("remote {name:?} is of type {kind:?}; an S3 remote is needed"),
            ));
        }
        if remote.get("env_auth").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(ConfigError::invalid(
                field,
                format!(
                    "remote {name:?} uses env_auth; give its access key and secret key to s32s3 directly"
                ),
            ));
        }
        let provider = remote.get("provider").map(|p| match p.to_ascii_lowercase().as_str() {
            "minio" => "minio".to_owned(),
            "aws" => "aws".to_owned(),
            _ => "other".to_owned(),
        });
        let endpoint = remote.get("endpoint").map(|e| {
            if e.starts_with("http://") || e.starts_with("https://") {
                e.clone()
            } else {
                format!("https://{e}")
            }
        });
        Ok(RemoteEndpoint {
            endpoint,
            access_key_id: remote.get("access_key_id").cloned(),
            secret_access_key: remote.get("secret_access_key").cloned(),
            region: remote.get("region").cloned(),
            provider,
        })
    }

    /// The source: `NAME:` of an S3 remote (no path: s32s3 backs up every bucket, or `--bucket` ones).
    pub fn source(&self, spec: &str) -> Result<RemoteEndpoint, ConfigError> {
        let (name, path) = split_remote("source_remote", spec)?;
        if !path.is_empty() {
            return Err(ConfigError::invalid(
                "source_remote",
                format!("{spec:?}: give the remote without a path (`{name}:`); choose buckets with --bucket"),
            ));
        }
        self.s3("source_remote", name)
    }

    /// The destination: `NAME:` of a crypt remote over `s3remote:bucket[/prefix]`, or `NAME:bucket[/prefix]`
    /// of an S3 remote.
    pub fn destination(&self, spec: &str) -> Result<Destination, ConfigError> {
        let field = "destination_remote";
        let (name, path) = split_remote(field, spec)?;
        let remote = self.remote(field, name)?;
        if remote.get("type").map(String::as_str) == Some("crypt") {
            if !path.is_empty() {
                return Err(ConfigError::invalid(
                    field,
                    format!("{spec:?}: give the crypt remote without a path (`{name}:`)"),
                ));
            }
            for (key, allowed) in [
                ("filename_encryption", "standard"),
                ("filename_encoding", "base32"),
                ("directory_name_encryption", "true"),
            ] {
                if let Some(value) = remote.get(key)
                    && !value.eq_ignore_ascii_case(allowed)
                {
                    return Err(ConfigError::invalid(
                        field,
                        format!(
                            "crypt remote {name:?} has {key} = {value}; s32s3 writes only {key} = {allowed}"
                        ),
                    ));
                }
            }
            let reveal = |key: &str| -> Result<Option<String>, ConfigError> {
                remote
                    .get(key)
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        s32s3_crypt::reveal(v).map_err(|e| {
                            ConfigError::invalid(field, format!("crypt remote {name:?} {key}: {e}"))
                        })
                    })
                    .transpose()
            };
            let wrapped = remote.get("remote").ok_or_else(|| {
                ConfigError::invalid(field, format!("crypt remote {name:?} has no `remote =`"))
            })?;
            let (inner, inner_path) = split_remote(field, wrapped)?;
            let (bucket, prefix) = split_bucket(field, inner_path)?;
            Ok(Destination {
                endpoint: self.s3(field, inner)?,
                bucket,
                prefix,
                password: reveal("password")?,
                password2: reveal("password2")?,
            })
        } else {
            let (bucket, prefix) = split_bucket(field, path)?;
            Ok(Destination {
                endpoint: self.s3(field, name)?,
                bucket,
                prefix,
                password: None,
                password2: None,
            })
        }
    }
}

/// `name:path` → (name, path).
fn split_remote<'a>(field: &str, spec: &'a str) -> Result<(&'a str, &'a str), ConfigError> {
    match spec.split_once(':') {
        Some((name, path)) if !name.is_empty() => Ok((name, path.trim_start_matches('/'))),
        _ => Err(ConfigError::invalid(
            field,
            format!("{spec:?} is not an rclone remote (`NAME:` or `NAME:bucket/prefix`)"),
        )),
    }
}

/// `bucket/prefix` → (bucket, prefix).
fn split_bucket(field: &str, path: &str) -> Result<(Option<String>, Option<String>), ConfigError> {
    let path = path.trim_matches('/');
    if path.is_empty() {
        return Err(ConfigError::invalid(
            field,
            "the remote's path must name the backup bucket (`remote:bucket[/prefix]`)",
        ));
    }
    Ok(match path.split_once('/') {
        Some((bucket, prefix)) => (Some(bucket.to_owned()), Some(prefix.to_owned())),
        None => (Some(path.to_owned()), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "
# comment
[minio]
type = s3
provider = Minio
endpoint = http://minio:9000
access_key_id = AKID
secret_access_key = SECRET

[offsite]
type = s3
provider = Other
endpoint = s3.example.com
access_key_id = OFF
secret_access_key = OFFSECRET
region = eu-central-1

[vault]
type = crypt
remote = offsite:backups/cluster-a
password = YWFhYWFhYWFhYWFhYWFhYXMaGgIlEQ
password2 = YmJiYmJiYmJiYmJiYmJiYp3gcEWbAw
";

    #[test]
    fn crypt_destination_and_s3_source() {
        let conf = RcloneConf::parse(CONF, "rclone.conf").unwrap();
        let src = conf.source("minio:").unwrap();
        assert_eq!(src.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(src.provider.as_deref(), Some("minio"));
        let dst = conf.destination("vault:").unwrap();
        assert_eq!(dst.endpoint.endpoint.as_deref(), Some("https://s3.example.com"));
        assert_eq!(dst.endpoint.region.as_deref(), Some("eu-central-1"));
        assert_eq!(dst.bucket.as_deref(), Some("backups"));
        assert_eq!(dst.prefix.as_deref(), Some("cluster-a"));
        // rclone's own obscure vectors: "potato" with two IVs.
        assert_eq!(dst.password.as_deref(), Some("potato"));
        assert_eq!(dst.password2.as_deref(), Some("potato"));
        let plain = conf.destination("offsite:bk").unwrap();
        assert_eq!(plain.bucket.as_deref(), Some("bk"));
        assert_eq!(plain.password, None);
    }

    #[test]
    fn clear_errors() {
        let conf = RcloneConf::parse(CONF, "rclone.conf").unwrap();
        for (result, needle) in [
            (conf.source("nope:").map(|_| ()), "has no remote \"nope\""),
            (conf.source("minio:bucket").map(|_| ()), "without a path"),
            (conf.source("vault:").map(|_| ()), "of type \"crypt\""),
            (conf.destination("offsite:").map(|_| ()), "must name the backup bucket"),
            (conf.destination("minio").map(|_| ()), "not an rclone remote"),
        ] {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        let err = RcloneConf::parse("RCLONE_ENCRYPT_V0:\nabc", "x.conf").unwrap_err().to_string();
        assert!(err.contains("encrypted"), "{err}");
        let err =
            RcloneConf::parse("[a]\ntype = crypt\nfilename_encryption = obfuscate\nremote = b:c\n", "x")
                .unwrap()
                .destination("a:")
                .unwrap_err()
                .to_string();
        assert!(err.contains("filename_encryption"), "{err}");
    }
}
