//! The message bus. NATS (§1.3): always TLS, always with the client certificate from the
//! settings, and the server's leaf CN must look like `<x>.nats.bosh-internal`. An
//! `https://` mbus URL serves the agent over HTTPS instead ([`https`], for `create-env`).

pub mod https;

use bosh_agent_protocol::MbusCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MbusError {
    #[error("Parsing certificate and private key")]
    ClientCert(#[source] Option<std::io::Error>),
    #[error("parsing the mbus CA certificate")]
    Ca(#[source] Option<rustls::Error>),
    #[error("building the TLS configuration")]
    Tls(#[source] rustls::Error),
    #[error("no mbus URL in settings")]
    NoUrl,
    #[error("mbus URL '{0}' is not nats://")]
    Scheme(String),
    #[error("connecting to NATS")]
    Connect(#[source] async_nats::ConnectError),
    #[error("Loading configured tls certificate")]
    ServerCert(#[source] Option<std::io::Error>),
    #[error("Starting HTTP listener on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where requests come from: the agent's NATS subscription or the HTTPS endpoint.
pub enum Inbox {
    Nats(async_nats::Subscriber),
    Https(tokio::sync::mpsc::Receiver<https::Call>),
}

/// One incoming request: raw NATS payload (answered on its `reply_to`), or an HTTPS call
/// (answered on its channel).
pub enum Inbound {
    Nats(bytes::Bytes),
    Https(https::Call),
}

impl Inbox {
    /// The next request; `None` once the transport is gone.
    pub async fn next(&mut self) -> Option<Inbound> {
        use futures::StreamExt;
        match self {
            Inbox::Nats(sub) => sub.next().await.map(|m| Inbound::Nats(m.payload)),
            Inbox::Https(calls) => calls.recv().await.map(Inbound::Https),
        }
    }
}

/// True when `cn` matches the agent's `^[a-zA-Z0-9*\-]*.nats.bosh-internal$` (the `.` before
/// `nats` is a regex wildcard, so any one character is accepted there).
pub fn is_bosh_nats_cn(cn: &str) -> bool {
    const SUFFIX: &str = "nats.bosh-internal";
    let Some(head) = cn.strip_suffix(SUFFIX) else {
        return false;
    };
    let mut chars = head.chars();
    if chars.next_back().is_none() {
        return false;
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '-')
}

/// Chain and hostname checks by webpki, plus the BOSH CN rule on the leaf.
#[derive(Debug)]
struct BoshNatsVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for BoshNatsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity.as_ref()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let cn_ok = cert
            .subject()
            .iter_common_name()
            .any(|cn| cn.as_str().is_ok_and(is_bosh_nats_cn));
        if !cn_ok {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(
                    std::io::Error::other(
                        "server certificate CN does not match *.nats.bosh-internal",
                    ),
                ))),
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, std::io::Error> {
    rustls_pemfile::certs(&mut pem.as_bytes()).collect()
}

/// The agent's TLS client configuration for `cert` (TLS 1.2+, ring provider).
pub fn tls_config(cert: &MbusCert) -> Result<rustls::ClientConfig, MbusError> {
    let chain = pem_certs(&cert.certificate).map_err(|e| MbusError::ClientCert(Some(e)))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut cert.private_key.as_bytes())
        .map_err(|e| MbusError::ClientCert(Some(e)))?
        .ok_or(MbusError::ClientCert(None))?;
    if chain.is_empty() {
        return Err(MbusError::ClientCert(None));
    }
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&cert.ca).map_err(|_| MbusError::Ca(None))? {
        roots.add(ca).map_err(|e| MbusError::Ca(Some(e)))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|_| MbusError::Ca(None))?;
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(MbusError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(BoshNatsVerifier { inner }))
        .with_client_auth_cert(chain, key)
        .map_err(MbusError::Tls)
}

/// Splits `nats://user:pass@host:port` into the address without credentials and the
/// credentials.
fn split_credentials(url: &str) -> Result<(String, Option<(String, String)>), MbusError> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
        .ok_or_else(|| MbusError::Scheme(url.into()))?;
    match rest.rsplit_once('@') {
        Some((creds, host)) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            Ok((
                format!("nats://{host}"),
                Some((user.to_owned(), pass.to_owned())),
            ))
        }
        None => Ok((format!("nats://{rest}"), None)),
    }
}

/// Connects with TLS and the client certificate, reconnecting forever and the real agent's back-off (2 s × attempt, ≤ 10 s).
/// The first connection attempt must succeed so a broken certificate fails loudly.
pub async fn connect(
    urls: &[String],
    cert: &MbusCert,
    name: &str,
) -> Result<async_nats::Client, MbusError> {
    if urls.is_empty() {
        return Err(MbusError::NoUrl);
    }
    let tls = tls_config(cert)?;
    let mut addrs = Vec::new();
    for url in urls {
        // Credentials in the URL are dropped: the client certificate is the identity, and
        // nats-server (2.9) rejects a CONNECT user under `verify_and_map`.
        let (addr, creds) = split_credentials(url)?;
        if creds.is_some() {
            tracing::debug!(
                "ignoring credentials in the mbus URL; the client certificate authenticates"
            );
        }
        addrs.push(
            addr.parse::<async_nats::ServerAddr>()
                .map_err(|_| MbusError::Scheme(url.clone()))?,
        );
    }
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .require_tls(true)
        .tls_client_config(tls)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(10))
        // async-nats sleeps this delay before every attempt, the first included (attempt 1):
        // a fresh VM must dial at once, or each VM boot costs 2 s plus the director's ping timeout.
        .reconnect_delay_callback(|attempt| {
            Duration::from_secs((2 * attempt.saturating_sub(1) as u64).min(10))
        })
        .event_callback(|event| async move { tracing::info!(%event, "mbus event") });
    options.connect(addrs).await.map_err(MbusError::Connect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_rule_matches_the_agents_regex() {
        assert!(is_bosh_nats_cn("default.nats.bosh-internal"));
        assert!(is_bosh_nats_cn("*.nats.bosh-internal"));
        assert!(is_bosh_nats_cn("a-b.nats.bosh-internal"));
        assert!(!is_bosh_nats_cn("nats.bosh-internal"));
        assert!(!is_bosh_nats_cn("a.b.nats.bosh-internal"));
        assert!(!is_bosh_nats_cn("default.director.bosh-internal"));
    }

    #[test]
    fn credentials_are_split_from_the_url() {
        assert_eq!(
            split_credentials("nats://nats:pw@127.0.0.1:4222").unwrap(),
            (
                "nats://127.0.0.1:4222".into(),
                Some(("nats".into(), "pw".into()))
            )
        );
        assert_eq!(
            split_credentials("nats://h:1").unwrap(),
            ("nats://h:1".into(), None)
        );
        assert!(split_credentials("https://h:1").is_err());
    }

    #[test]
    fn empty_client_cert_is_refused() {
        let err = tls_config(&MbusCert::default()).unwrap_err();
        assert_eq!(err.to_string(), "Parsing certificate and private key");
    }
}
