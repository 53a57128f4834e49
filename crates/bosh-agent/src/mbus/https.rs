//! The HTTPS message bus `bosh create-env` talks to (§1.1): the mbus URL is
//! `https://user:password@host:port`; the agent listens on `host:port` with the certificate
//! and key from `env.bosh.mbus.cert`, and every route wants HTTP basic auth with the URL's
//! credentials (401 with `WWW-Authenticate: Basic realm=""` otherwise).
//!
//! * `POST /agent`: the request envelope in, the response envelope out, with no size limit.
//!   Requests join the agent's serial inbox, as NATS messages do.
//! * `PUT /blobs/<id>` (201) and `GET /blobs/<id>` (200, 404 if absent): the agent's own
//!   blob directory (`data/blobs`), which `apply` and `compile_package` read first.
//!
//! The agent publishes nothing on this transport: heartbeats and alerts are dropped, as the
//! real agent's HTTPS handler drops them.

use super::MbusError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::any;
use base64::Engine;
use bosh_agent_protocol::{MbusCert, Request, Response};
use futures::StreamExt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// One `POST /agent` waiting for the agent loop's answer.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// `https://user:password@host:port` split up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl {
    pub host_port: String,
    pub user: String,
    pub password: String,
}

pub fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// Parses the mbus URL; user and password are percent-decoded, as Go's `url.Parse` does.
pub fn parse_url(url: &str) -> Result<HttpsUrl, MbusError> {
    let bad = || MbusError::Scheme(redact_url(url));
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (creds, host_port) = match authority.rsplit_once('@') {
        Some((c, h)) => (c, h),
        None => ("", authority),
    };
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    if host_port.is_empty() {
        return Err(bad());
    }
    Ok(HttpsUrl {
        host_port: host_port.to_owned(),
        user: percent_decode(user),
        password: percent_decode(password),
    })
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((creds, host)) => {
                let user = creds.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:<redacted>@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The server's TLS configuration from `env.bosh.mbus.cert` (ring, TLS 1.2+, HTTP/1.1).
pub fn server_tls_config(cert: &MbusCert) -> Result<rustls::ServerConfig, MbusError> {
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert.certificate.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| MbusError::ServerCert(Some(e)))?;
    let key = rustls_pemfile::private_key(&mut cert.private_key.as_bytes())
        .map_err(|e| MbusError::ServerCert(Some(e)))?
        .ok_or(MbusError::ServerCert(None))?;
    if chain.is_empty() {
        return Err(MbusError::ServerCert(None));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(MbusError::Tls)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(MbusError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Clone)]
struct Ctx {
    calls: mpsc::Sender<Call>,
    blobs_dir: PathBuf,
    expected_auth: Arc<str>,
}

/// Listens on the URL's address and serves until the returned receiver is dropped and the
/// process ends. Returns the bound address and the stream of agent calls.
pub async fn serve(
    url: &str,
    cert: &MbusCert,
    blobs_dir: PathBuf,
) -> Result<(SocketAddr, mpsc::Receiver<Call>), MbusError> {
    let parsed = parse_url(url)?;
    let tls = server_tls_config(cert)?;
    std::fs::create_dir_all(&blobs_dir).map_err(|source| MbusError::Listen {
        addr: blobs_dir.display().to_string(),
        source,
    })?;
    let listener = std::net::TcpListener::bind(&parsed.host_port)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| MbusError::Listen {
            addr: parsed.host_port.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| MbusError::Listen {
        addr: parsed.host_port.clone(),
        source,
    })?;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", parsed.user, parsed.password));
    // A small queue: the inbox is serial, so callers wait for their turn either way.
    let (tx, rx) = mpsc::channel(8);
    let ctx = Ctx {
        calls: tx,
        blobs_dir,
        expected_auth: format!("Basic {token}").into(),
    };
    let app = Router::new()
        .route("/agent", any(agent))
        .route("/blobs/{*id}", any(blobs))
        .layer(middleware::from_fn_with_state(ctx.clone(), basic_auth))
        .layer(DefaultBodyLimit::disable())
        .with_state(ctx)
        .fallback(|| async { StatusCode::NOT_FOUND });
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    );
    tokio::spawn(async move {
        if let Err(e) = server.serve(app.into_make_service()).await {
            tracing::error!(error = %e, "https mbus stopped");
        }
    });
    tracing::info!(%addr, "https mbus listening");
    Ok((addr, rx))
}

/// Constant-time comparison of the whole `Authorization` header, as the real agent does.
async fn basic_auth(State(ctx): State<Ctx>, req: HttpRequest, next: Next) -> HttpResponse {
    tracing::info!(method = %req.method(), path = %req.uri().path(), "https mbus request");
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    if !constant_time_eq(given, ctx.expected_auth.as_bytes()) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="""#)],
        )
            .into_response();
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn agent(State(ctx): State<Ctx>, method: Method, body: Bytes) -> HttpResponse {
    if method != Method::POST {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The real agent answers a body it cannot decode with a bare 500.
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "unparseable https request");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let (reply, answer) = oneshot::channel();
    if ctx.calls.send(Call { request, reply }).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match answer.await {
        Ok(response) => {
            let bytes = serde_json::to_vec(&response).unwrap_or_default();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response()
        }
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The last path segment, as the real agent's `path.Split`; names that would leave the blob
/// directory are refused.
fn blob_path(ctx: &Ctx, id: &str) -> Option<PathBuf> {
    let name = id.rsplit('/').next().unwrap_or_default();
    (!name.is_empty() && name != "." && name != "..").then(|| ctx.blobs_dir.join(name))
}

async fn blobs(
    State(ctx): State<Ctx>,
    method: Method,
    UrlPath(id): UrlPath<String>,
    _headers: HeaderMap,
    body: Body,
) -> HttpResponse {
    let Some(path) = blob_path(&ctx, &id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match method {
        Method::GET => match tokio::fs::File::open(&path).await {
            Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                StatusCode::NOT_FOUND.into_response()
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "reading blob");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        },
        Method::PUT => match write_blob(&path, body).await {
            Ok(()) => StatusCode::CREATED.into_response(),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "writing blob");
                (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
            }
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Streams the body to a temporary file, then renames it into place, so a reader never
/// sees half a blob.
async fn write_blob(path: &std::path::Path, body: Body) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("part-{}", uuid::Uuid::new_v4()));
    let result = async {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp)
            .await?;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk.map_err(std::io::Error::other)?)
                .await?;
        }
        file.flush().await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts_are_decoded() {
        assert_eq!(
            parse_url("https://mbus:p%40ss@0.0.0.0:6868").unwrap(),
            HttpsUrl {
                host_port: "0.0.0.0:6868".into(),
                user: "mbus".into(),
                password: "p@ss".into(),
            }
        );
        assert_eq!(parse_url("https://h:1/").unwrap().user, "");
        assert!(parse_url("nats://h:1").is_err());
        assert_eq!(
            redact_url("https://mbus:secret@h:1"),
            "https://mbus:<redacted>@h:1"
        );
    }

    #[test]
    fn empty_server_cert_is_refused() {
        let err = server_tls_config(&MbusCert::default()).unwrap_err();
        assert_eq!(err.to_string(), "Loading configured tls certificate");
    }

    #[test]
    fn auth_comparison() {
        assert!(constant_time_eq(b"Basic abc", b"Basic abc"));
        assert!(!constant_time_eq(b"Basic abd", b"Basic abc"));
        assert!(!constant_time_eq(b"", b"Basic abc"));
    }
}
