//! IAM changes one entity at a time, as an operator makes them with `mc admin user add`, `policy create`,
//! `group add`, `policy attach` and `user svcacct add` (spec §3.1, "restore-side helpers"). Backup and
//! restore do not need them (the IAM export and import carry everything); an embedding service or a test
//! preparing a server does.

use std::fmt;

use bytes::Bytes;
use reqwest::Method;
use zeroize::Zeroizing;

use super::{AdminClient, Call};
use crate::error::Result;

/// A service account to create with [`AdminClient::add_service_account`] (madmin's
/// `AddServiceAccountReq`). `Debug` leaves the secret key out.
#[derive(Clone)]
#[non_exhaustive]
pub struct NewServiceAccount {
    /// The user it acts for (`targetUser`).
    pub parent: String,
    /// Its access key.
    pub access_key: String,
    secret_key: Zeroizing<String>,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// A policy narrower than the parent's; `None`: the parent's policy (implied).
    pub policy: Option<serde_json::Value>,
}

impl NewServiceAccount {
    /// An account of `parent` with these keys and the parent's policy.
    pub fn new(
        parent: impl Into<String>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        Self {
            parent: parent.into(),
            access_key: access_key.into(),
            secret_key: Zeroizing::new(secret_key.into()),
            name: String::new(),
            description: String::new(),
            policy: None,
        }
    }

    /// Sets the display name and description.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>, description: impl Into<String>) -> Self {
        self.name = name.into();
        self.description = description.into();
        self
    }

    /// Restricts the account to `policy`.
    #[must_use]
    pub fn with_policy(mut self, policy: serde_json::Value) -> Self {
        self.policy = Some(policy);
        self
    }
}

impl fmt::Debug for NewServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewServiceAccount")
            .field("parent", &self.parent)
            .field("access_key", &self.access_key)
            .field("name", &self.name)
            .field("policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `PUT /add-user?accessKey=` with the encrypted `{"secretKey","status"}`: creates (or updates) a user.
    ///
    /// # Errors
    /// Call errors (an access key the server refuses, e.g. too short, is an [`crate::Error::Server`]).
    pub async fn add_user(&self, access_key: &str, secret_key: &str, enabled: bool) -> Result<()> {
        let request = serde_json::json!({
            "secretKey": secret_key,
            "status": if enabled { "enabled" } else { "disabled" },
        });
        let body = self.encrypt(request.to_string().into_bytes()).await?;
        self.execute(&Call::put("add-user", body).query("accessKey", access_key)).await.map(drop)
    }

    /// `PUT /add-canned-policy?name=` with the policy document: creates (or replaces) a policy.
    ///
    /// # Errors
    /// Call errors (a document the server does not accept is an [`crate::Error::Server`]).
    pub async fn add_canned_policy(&self, name: &str, policy: &serde_json::Value) -> Result<()> {
        let call = Call::put("add-canned-policy", policy.to_string().into_bytes()).query("name", name);
        self.execute(&call).await.map(drop)
    }

    /// `PUT /update-group-members` with `{"group","members","groupStatus":"enabled","isRemove":false}`: adds
    /// members to a group, creating it (enabled) when it does not exist. `RustFS` refuses the request
    /// without `groupStatus`, which madmin always sends.
    ///
    /// # Errors
    /// Call errors ([`crate::Error::NotFound`] or [`crate::Error::Server`] for a member that does not exist).
    pub async fn add_group_members(&self, group: &str, members: &[&str]) -> Result<()> {
        let request = serde_json::json!({
            "group": group,
            "members": members,
            "groupStatus": "enabled",
            "isRemove": false,
        });
        self.execute(&Call::put("update-group-members", request.to_string().into_bytes())).await.map(drop)
    }

    /// `PUT /set-user-or-group-policy?policyName=&userOrGroup=&isGroup=`: sets the policies (comma-separated
    /// names) of a user or a group, replacing the ones it had.
    ///
    /// # Errors
    /// Call errors ([`crate::Error::NotFound`] for a missing user, group or policy).
    pub async fn set_policy(&self, policies: &str, user_or_group: &str, is_group: bool) -> Result<()> {
        let call = Call::put("set-user-or-group-policy", Bytes::new())
            .query("policyName", policies)
            .query("userOrGroup", user_or_group)
            .query("isGroup", if is_group { "true" } else { "false" });
        self.execute(&call).await.map(drop)
    }

    /// `PUT /add-service-account` with the encrypted `AddServiceAccountReq`: creates a service account
    /// (enabled; turn it off with [`AdminClient::set_service_account_status`]).
    ///
    /// # Errors
    /// Call errors.
    pub async fn add_service_account(&self, account: &NewServiceAccount) -> Result<()> {
        let mut request = serde_json::json!({
            "targetUser": account.parent,
            "accessKey": account.access_key,
            "secretKey": account.secret_key.as_str(),
            "name": account.name,
            "description": account.description,
        });
        if let Some(policy) = &account.policy {
            request["policy"] = policy.clone();
        }
        let plain = Zeroizing::new(request.to_string().into_bytes());
        let body = self.encrypt(plain.to_vec()).await?;
        // The answer (the new credentials, encrypted) tells nothing the caller does not know.
        self.execute(&Call::new(Method::PUT, "add-service-account", body.into())).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_the_secret_out() {
        let account =
            NewServiceAccount::new("alice", "svc-1", "svc-secret-hunter2").with_name("backup", "nightly");
        let shown = format!("{account:?}");
        assert!(shown.contains("svc-1") && !shown.contains("hunter2"), "{shown}");
    }
}
