//! Stemcells, releases and package matching on the director (`director-api.md` §4): the
//! JSON objects, with the field types the official CLI expects, and the client calls.

use reqwest::Method;
use serde::{Deserialize, Deserializer};
use std::path::Path;

use super::{DirectorClient, ReqBody, Result, Task};

/// `null` → the type's default, like Go's `encoding/json`.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The content type of raw tarball uploads.
pub const COMPRESSED: &str = "application/x-compressed";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StemcellDeployment {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
}

/// An element of `GET /stemcells`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Stemcell {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(deserialize_with = "nullable")]
    pub operating_system: String,
    #[serde(deserialize_with = "nullable")]
    pub cid: String,
    #[serde(deserialize_with = "nullable")]
    pub cpi: String,
    #[serde(deserialize_with = "nullable")]
    pub deployments: Vec<StemcellDeployment>,
}

/// `{"needed": bool}` of `POST /stemcell_uploads`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StemcellNeeded {
    #[serde(deserialize_with = "nullable")]
    pub needed: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseVersion {
    #[serde(deserialize_with = "nullable")]
    pub version: String,
    #[serde(deserialize_with = "nullable")]
    pub commit_hash: String,
    #[serde(deserialize_with = "nullable")]
    pub uncommitted_changes: bool,
    #[serde(deserialize_with = "nullable")]
    pub currently_deployed: bool,
    #[serde(deserialize_with = "nullable")]
    pub job_names: Vec<String>,
}

/// An element of `GET /releases`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Release {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub release_versions: Vec<ReleaseVersion>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InspectJob {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub blobstore_id: String,
    #[serde(deserialize_with = "nullable")]
    pub sha1: String,
    #[serde(deserialize_with = "nullable")]
    pub fingerprint: String,
    #[serde(deserialize_with = "nullable")]
    pub consumes: serde_json::Value,
    #[serde(deserialize_with = "nullable")]
    pub provides: serde_json::Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InspectCompiledPackage {
    #[serde(deserialize_with = "nullable")]
    pub stemcell: String,
    #[serde(deserialize_with = "nullable")]
    pub sha1: String,
    #[serde(deserialize_with = "nullable")]
    pub blobstore_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InspectPackage {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub blobstore_id: String,
    #[serde(deserialize_with = "nullable")]
    pub sha1: String,
    #[serde(deserialize_with = "nullable")]
    pub fingerprint: String,
    #[serde(deserialize_with = "nullable")]
    pub compiled_packages: Vec<InspectCompiledPackage>,
}

/// `GET /releases/{name}?version={v}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ReleaseInspect {
    #[serde(deserialize_with = "nullable")]
    pub jobs: Vec<InspectJob>,
    #[serde(deserialize_with = "nullable")]
    pub packages: Vec<InspectPackage>,
}

/// Query string of an upload: `?`, `?fix=true`, `?rebase=true&fix=true`…
fn upload_query(rebase: bool, fix: bool) -> String {
    let mut q = Vec::new();
    if rebase {
        q.push("rebase=true");
    }
    if fix {
        q.push("fix=true");
    }
    format!("?{}", q.join("&"))
}

fn location_body(url: &str, sha1: &str) -> ReqBody {
    let mut body = serde_json::json!({ "location": url });
    if !sha1.is_empty() {
        body["sha1"] = serde_json::Value::String(sha1.to_string());
    }
    ReqBody::Bytes(body.to_string().into_bytes(), "application/json".into())
}

impl DirectorClient {
    pub fn stemcells(&self) -> Result<Vec<Stemcell>> {
        self.get_json("/stemcells")
    }

    /// `POST /stemcell_uploads`: does the director want this stemcell?
    pub fn stemcell_needs_upload(&self, name: &str, version: &str) -> Result<bool> {
        let body = serde_json::json!({ "stemcell": { "name": name, "version": version } });
        let needed: StemcellNeeded = self.send_json(
            Method::POST,
            "/stemcell_uploads",
            ReqBody::Bytes(body.to_string().into_bytes(), "application/json".into()),
        )?;
        Ok(needed.needed)
    }

    /// Starts a stemcell upload streamed from `path`.
    pub fn upload_stemcell_file(&self, path: &Path, fix: bool) -> Result<Task> {
        self.task_start(
            Method::POST,
            &format!("/stemcells{}", upload_query(false, fix)),
            ReqBody::File(path.to_path_buf(), COMPRESSED.into()),
        )
    }

    pub fn upload_stemcell_url(&self, url: &str, sha1: &str, fix: bool) -> Result<Task> {
        self.task_start(
            Method::POST,
            &format!("/stemcells{}", upload_query(false, fix)),
            location_body(url, sha1),
        )
    }

    pub fn releases(&self) -> Result<Vec<Release>> {
        self.get_json("/releases")
    }

    pub fn release_inspect(&self, name: &str, version: &str) -> Result<ReleaseInspect> {
        self.get_json(&format!(
            "/releases/{}?version={}",
            path_escape(name),
            query_escape(version)
        ))
    }

    /// `POST /packages/matches[_compiled]` with the release manifest; the fingerprints the
    /// director already has.
    pub fn match_packages(&self, manifest_yaml: &str, compiled: bool) -> Result<Vec<String>> {
        let path = if compiled {
            "/packages/matches_compiled"
        } else {
            "/packages/matches"
        };
        self.send_json(
            Method::POST,
            path,
            ReqBody::Bytes(manifest_yaml.as_bytes().to_vec(), "text/yaml".into()),
        )
    }

    /// Starts a release upload streamed from `path`.
    pub fn upload_release_file(&self, path: &Path, rebase: bool, fix: bool) -> Result<Task> {
        self.task_start(
            Method::POST,
            &format!("/releases{}", upload_query(rebase, fix)),
            ReqBody::File(path.to_path_buf(), COMPRESSED.into()),
        )
    }

    pub fn upload_release_url(
        &self,
        url: &str,
        sha1: &str,
        rebase: bool,
        fix: bool,
    ) -> Result<Task> {
        self.task_start(
            Method::POST,
            &format!("/releases{}", upload_query(rebase, fix)),
            location_body(url, sha1),
        )
    }

    pub fn delete_stemcell(&self, name: &str, version: &str, force: bool) -> Result<Task> {
        let q = if force { "?force=true" } else { "" };
        self.task_start(
            Method::DELETE,
            &format!(
                "/stemcells/{}/{}{q}",
                path_escape(name),
                path_escape(version)
            ),
            ReqBody::Empty,
        )
    }

    /// Deletes one version (`Some`) or the whole series.
    pub fn delete_release(&self, name: &str, version: Option<&str>, force: bool) -> Result<Task> {
        let mut q = Vec::new();
        if force {
            q.push("force=true".to_string());
        }
        if let Some(v) = version {
            q.push(format!("version={}", query_escape(v)));
        }
        q.sort();
        self.task_start(
            Method::DELETE,
            &format!("/releases/{}?{}", path_escape(name), q.join("&")),
            ReqBody::Empty,
        )
    }
}

/// Go's `url.PathEscape` for one segment.
pub fn path_escape(s: &str) -> String {
    escape(s, b"-_.~!$&'()*+,;=:@")
}

/// Go's `url.QueryEscape` (space as `+`).
pub fn query_escape(s: &str) -> String {
    escape(s, b"-_.~").replace("%20", "+")
}

fn escape(s: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(query_escape("0+dev.1"), "0%2Bdev.1");
        assert_eq!(path_escape("0+dev.1"), "0+dev.1");
        assert_eq!(path_escape("a/b c"), "a%2Fb%20c");
        assert_eq!(upload_query(false, false), "?");
        assert_eq!(upload_query(true, true), "?rebase=true&fix=true");
    }
}
