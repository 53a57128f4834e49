//! The director HTTP client, as the official CLI's client behaves on the wire
//! (`director-api.md` §1–§3): HTTPS only (default port 25555), trust from the given CA,
//! basic auth, `Connection: close`, redirects followed by hand onto the configured
//! host:port as a GET, network errors retried, task polling with ranged event output.

pub mod artifacts;
pub mod reporter;
pub mod types;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{CONNECTION, CONTENT_TYPE, LOCATION, RANGE};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

pub use types::*;

/// Everything that can go wrong talking to a director. Messages follow the official CLI's.
#[derive(Debug, thiserror::Error)]
pub enum DirectorError {
    #[error("Expected non-empty Director URL")]
    EmptyUrl,
    #[error("Parsing director URL '{0}'")]
    BadUrl(String),
    #[error("Reading CA certificate '{path}'")]
    CaRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parsing CA certificate")]
    CaParse(#[source] reqwest::Error),
    #[error("Building HTTP client")]
    ClientBuild(#[source] reqwest::Error),
    #[error("Performing request {method} '{url}'")]
    Request {
        method: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Reading Director response")]
    ResponseRead(#[source] std::io::Error),
    #[error("Director responded with non-successful status code '{status}' response '{body}'")]
    Status { status: u16, body: String },
    #[error("Unmarshaling Director response")]
    Decode(#[source] serde_json::Error),
    #[error("Too many redirects")]
    TooManyRedirects,
    #[error("Expected task '{id}' to succeed but state is '{state}'")]
    TaskFailed { id: i64, state: String },
    #[error("Opening file '{path}'")]
    FileOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, DirectorError>;

/// A request body: nothing, bytes with their content type, or a file streamed from disk
/// (with its length as `Content-Length`; reopened on each retry, never read into memory).
#[derive(Debug, Clone)]
pub enum ReqBody {
    Empty,
    Bytes(Vec<u8>, String),
    File(PathBuf, String),
}

/// Where the client connects and as whom.
#[derive(Debug, Clone, Default)]
pub struct DirectorConfig {
    /// As the user typed it: `host`, `host:port` or `https://host:port`.
    pub url: String,
    /// PEM text of the CA; empty means the system roots.
    pub ca_cert: String,
    pub client: String,
    pub client_secret: String,
}

/// `https://host:port`, as the official CLI builds it from whatever the user typed.
pub fn director_base_url(url: &str) -> Result<String> {
    if url.is_empty() {
        return Err(DirectorError::EmptyUrl);
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or_default();
    if hostport.is_empty() {
        return Err(DirectorError::BadUrl(url.to_string()));
    }
    // An IPv6 literal keeps its brackets; a port is whatever follows the last `:` after them.
    let has_port = match hostport.rfind(']') {
        Some(end) => hostport[end..].contains(':'),
        None => hostport.contains(':'),
    };
    Ok(if has_port {
        format!("https://{hostport}")
    } else {
        format!("https://{hostport}:25555")
    })
}

/// `--ca-cert` accepts PEM text or a path to it.
pub fn ca_cert_content(value: &str) -> Result<String> {
    if value.is_empty() || value.contains("-----BEGIN") {
        return Ok(value.to_string());
    }
    let path = PathBuf::from(value);
    std::fs::read_to_string(&path).map_err(|source| DirectorError::CaRead { path, source })
}

pub struct DirectorClient {
    base: String,
    http: Client,
    auth: Option<(String, String)>,
    /// Pause between task polls (500 ms, as the official CLI).
    poll_interval: Duration,
}

const MAX_ATTEMPTS: usize = 5;
const RETRY_DELAY: Duration = Duration::from_millis(500);

impl DirectorClient {
    pub fn new(config: &DirectorConfig) -> Result<DirectorClient> {
        let base = director_base_url(&config.url)?;
        let mut builder = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .connect_timeout(Duration::from_secs(30))
            // Uploads and long task outputs must not time out.
            .timeout(None::<Duration>);
        if !config.ca_cert.is_empty() {
            let cert = reqwest::Certificate::from_pem(config.ca_cert.as_bytes())
                .map_err(DirectorError::CaParse)?;
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let http = builder.build().map_err(DirectorError::ClientBuild)?;
        let auth = (!config.client.is_empty())
            .then(|| (config.client.clone(), config.client_secret.clone()));
        Ok(DirectorClient {
            base,
            http,
            auth,
            poll_interval: Duration::from_millis(500),
        })
    }

    /// The same client without credentials (the first `/info` of every command).
    pub fn anonymous(&self) -> DirectorClient {
        DirectorClient {
            base: self.base.clone(),
            http: self.http.clone(),
            auth: None,
            poll_interval: self.poll_interval,
        }
    }

    fn send_once(
        &self,
        method: &Method,
        path: &str,
        body: &ReqBody,
        headers: &[(String, String)],
    ) -> Result<Response> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(CONNECTION, "close");
        if let Some((user, pass)) = &self.auth {
            req = req.basic_auth(user, Some(pass));
        }
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req = match body {
            ReqBody::Empty => req,
            ReqBody::Bytes(bytes, ct) => req.header(CONTENT_TYPE, ct.as_str()).body(bytes.clone()),
            ReqBody::File(path, ct) => {
                let file_err = |source| DirectorError::FileOpen {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(path).map_err(file_err)?;
                let len = file.metadata().map_err(file_err)?.len();
                req.header(CONTENT_TYPE, ct.as_str())
                    .body(reqwest::blocking::Body::sized(file, len))
            }
        };
        req.send().map_err(|source| DirectorError::Request {
            method: method.to_string(),
            url,
            source,
        })
    }

    /// One request with the official CLI's retries (network errors; 502/503/504 on GET).
    fn send_retrying(
        &self,
        method: &Method,
        path: &str,
        body: &ReqBody,
        headers: &[(String, String)],
    ) -> Result<Response> {
        let mut attempt = 1;
        loop {
            let res = self.send_once(method, path, body, headers);
            let retry = match &res {
                Err(DirectorError::Request { .. }) => true,
                Ok(resp) => {
                    (*method == Method::GET || *method == Method::HEAD)
                        && matches!(resp.status().as_u16(), 502..=504)
                }
                Err(_) => false,
            };
            if !retry || attempt >= MAX_ATTEMPTS {
                return res;
            }
            attempt += 1;
            std::thread::sleep(RETRY_DELAY);
        }
    }

    /// Sends a request and follows 301/302/303 redirects as GETs on the director's own
    /// host:port. Returns the final response whatever its status.
    pub fn raw(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        headers: &[(String, String)],
    ) -> Result<Response> {
        let mut resp = self.send_retrying(&method, path, &body, headers)?;
        for _ in 0..10 {
            if !matches!(resp.status().as_u16(), 301..=303) {
                return Ok(resp);
            }
            let location = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("/")
                .to_string();
            let target = location_path(&location);
            resp = self.send_retrying(&Method::GET, &target, &ReqBody::Empty, &[])?;
        }
        Err(DirectorError::TooManyRedirects)
    }

    /// A request whose response must be successful; returns the body bytes.
    pub fn request_bytes(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        headers: &[(String, String)],
    ) -> Result<(StatusCode, Vec<u8>)> {
        let resp = self.raw(method, path, body, headers)?;
        let status = resp.status();
        let bytes = read_body(resp)?;
        check_status(status, &bytes)?;
        Ok((status, bytes))
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (_, bytes) = self.request_bytes(Method::GET, path, ReqBody::Empty, &[])?;
        serde_json::from_slice(&bytes).map_err(DirectorError::Decode)
    }

    pub fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
    ) -> Result<T> {
        let (_, bytes) = self.request_bytes(method, path, body, &[])?;
        serde_json::from_slice(&bytes).map_err(DirectorError::Decode)
    }

    pub fn info(&self) -> Result<Info> {
        self.get_json("/info")
    }

    /// Starts a task endpoint (302 to the task, followed) and returns the task.
    pub fn task_start(&self, method: Method, path: &str, body: ReqBody) -> Result<Task> {
        self.send_json(method, path, body)
    }

    pub fn task(&self, id: i64) -> Result<Task> {
        self.get_json(&format!("/tasks/{id}"))
    }

    /// Fetches output of `kind` from `offset` on; returns the new bytes (empty on 416).
    pub fn task_output_from(&self, id: i64, kind: &str, offset: usize) -> Result<Vec<u8>> {
        let headers = [(RANGE.as_str().to_string(), format!("bytes={offset}-"))];
        let resp = self.raw(
            Method::GET,
            &format!("/tasks/{id}/output?type={kind}"),
            ReqBody::Empty,
            &headers,
        )?;
        let status = resp.status();
        let bytes = read_body(resp)?;
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(Vec::new());
        }
        check_status(status, &bytes)?;
        Ok(bytes)
    }

    /// Follows a task until it ends (§3.2): state, then output from the last offset, then
    /// a 500 ms sleep while it runs. Each new chunk goes to `on_chunk`. Returns the final
    /// task; a task that did not end `done` is [`DirectorError::TaskFailed`] (after its
    /// output has been delivered).
    pub fn task_follow(
        &self,
        id: i64,
        kind: &str,
        on_chunk: &mut dyn FnMut(&[u8]),
    ) -> Result<Task> {
        let mut offset = 0usize;
        loop {
            let task = self.task(id)?;
            let chunk = self.task_output_from(id, kind, offset)?;
            offset += chunk.len();
            if !chunk.is_empty() {
                on_chunk(&chunk);
            }
            if task.is_running() {
                std::thread::sleep(self.poll_interval);
                continue;
            }
            return Ok(task);
        }
    }

    /// The result output of a finished task (no Range).
    pub fn task_result(&self, id: i64) -> Result<Vec<u8>> {
        let (_, bytes) = self.request_bytes(
            Method::GET,
            &format!("/tasks/{id}/output?type=result"),
            ReqBody::Empty,
            &[],
        )?;
        Ok(bytes)
    }
}

/// The path and query of a `Location`, absolute or relative.
fn location_path(location: &str) -> String {
    for scheme in ["https://", "http://"] {
        if let Some(rest) = location.strip_prefix(scheme) {
            return match rest.find('/') {
                Some(i) => rest[i..].to_string(),
                None => "/".to_string(),
            };
        }
    }
    if location.starts_with('/') {
        location.to_string()
    } else {
        format!("/{location}")
    }
}

fn read_body(mut resp: Response) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    resp.read_to_end(&mut bytes)
        .map_err(DirectorError::ResponseRead)?;
    Ok(bytes)
}

/// 200, 201, 204, 206 and 302 count as success, as in the official CLI.
fn check_status(status: StatusCode, body: &[u8]) -> Result<()> {
    if matches!(status.as_u16(), 200 | 201 | 204 | 206 | 302) {
        return Ok(());
    }
    Err(DirectorError::Status {
        status: status.as_u16(),
        body: String::from_utf8_lossy(body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_forms() {
        assert_eq!(
            director_base_url("10.0.0.6").unwrap(),
            "https://10.0.0.6:25555"
        );
        assert_eq!(
            director_base_url("http://h:8443/x").unwrap(),
            "https://h:8443"
        );
        assert_eq!(
            director_base_url("https://[::1]").unwrap(),
            "https://[::1]:25555"
        );
        assert_eq!(director_base_url("[::1]:1").unwrap(), "https://[::1]:1");
        assert!(director_base_url("").is_err());
    }

    #[test]
    fn location_paths() {
        assert_eq!(location_path("/tasks/3"), "/tasks/3");
        assert_eq!(location_path("https://other:1/tasks/3"), "/tasks/3");
        assert_eq!(location_path("tasks/3"), "/tasks/3");
    }
}
