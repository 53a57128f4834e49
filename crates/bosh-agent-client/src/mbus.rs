//! The director's NATS connection: TLS with the director's client certificate (the NATS
//! server maps the certificate subject to a user with `verify_and_map`).

use crate::error::AgentError;
use bosh_agent_protocol::MbusCert;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::Duration;

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, std::io::Error> {
    rustls_pemfile::certs(&mut pem.as_bytes()).collect()
}

fn tls_error(what: &str) -> AgentError {
    AgentError::Connection {
        what: what.to_owned(),
        source: None,
    }
}

/// TLS 1.2+ client configuration (ring provider): the server is checked against `cert.ca`
/// (chain and host name), and `cert.certificate`/`private_key` authenticate us.
pub fn tls_config(cert: &MbusCert) -> Result<rustls::ClientConfig, AgentError> {
    let chain = pem_certs(&cert.certificate)
        .map_err(|e| AgentError::connection("Parsing the mbus client certificate", e))?;
    if chain.is_empty() {
        return Err(tls_error("No mbus client certificate"));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut cert.private_key.as_bytes())
        .map_err(|e| AgentError::connection("Parsing the mbus client private key", e))?
        .ok_or_else(|| tls_error("No mbus client private key"))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_certs(&cert.ca).map_err(|e| AgentError::connection("Parsing the mbus CA", e))? {
        roots
            .add(ca)
            .map_err(|e| AgentError::connection("Adding the mbus CA", e))?;
    }
    if roots.is_empty() {
        return Err(tls_error("No mbus CA certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AgentError::connection("Building the TLS configuration", e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| AgentError::connection("Building the TLS configuration", e))
}

/// `nats://user:pass@host:port` without its credentials (nats-server refuses a CONNECT user
/// from a client whose certificate is mapped to a user).
pub fn strip_credentials(url: &str) -> Result<String, AgentError> {
    let rest = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
        .ok_or_else(|| {
            tls_error(&format!(
                "mbus URL scheme is not nats:// in '{}'",
                redact(url)
            ))
        })?;
    Ok(match rest.rsplit_once('@') {
        Some((_, host)) => format!("nats://{host}"),
        None => format!("nats://{rest}"),
    })
}

/// The URL with any credentials replaced, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://<redacted>@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Connects to NATS over TLS with `cert`, reconnecting forever once connected; the first
/// attempt must succeed so that a wrong certificate or address fails loudly.
pub async fn connect(
    urls: &[String],
    cert: &MbusCert,
    name: &str,
) -> Result<async_nats::Client, AgentError> {
    if urls.is_empty() {
        return Err(tls_error("No mbus URL"));
    }
    let tls = tls_config(cert)?;
    let mut addrs = Vec::with_capacity(urls.len());
    for url in urls {
        let addr = strip_credentials(url)?;
        addrs.push(addr.parse::<async_nats::ServerAddr>().map_err(|e| {
            AgentError::connection(format!("Parsing mbus URL '{}'", redact(url)), e)
        })?);
    }
    async_nats::ConnectOptions::new()
        .name(name)
        .require_tls(true)
        .tls_client_config(tls)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(10))
        .event_callback(|event| async move { tracing::info!(%event, "mbus event") })
        .connect(addrs)
        .await
        .map_err(|e| AgentError::connection("Connecting to NATS", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_and_redacted() {
        assert_eq!(
            strip_credentials("nats://u:pw@127.0.0.1:4222").unwrap(),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            strip_credentials("tls://h:1").unwrap(),
            "nats://h:1".to_owned()
        );
        let err = strip_credentials("https://u:secret@h:1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn missing_certificates_are_refused() {
        let err = tls_config(&MbusCert::default()).unwrap_err();
        assert_eq!(err.to_string(), "No mbus client certificate");
    }
}
