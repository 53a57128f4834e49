//! The director's own CA and server certificate, generated on first start and reused after.
//!
//! RSA keys, because the official CLI offers only ECDHE-RSA suites for TLS 1.2 (an ECDSA
//! certificate only works over TLS 1.3). Key generation is slow, so it happens once per data dir.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::EncodePrivateKey;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot access {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate an RSA key")]
    KeyGen(#[source] rsa::Error),
    #[error("cannot encode an RSA key")]
    KeyEncode(#[source] rsa::pkcs8::Error),
    #[error("cannot build a certificate")]
    Cert(#[source] rcgen::Error),
    #[error("cannot load the TLS material in {path}")]
    Load { path: PathBuf, reason: String },
}

/// PEM files of the server identity, as stored in the data dir.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca_cert_path: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    crate::private_file::private_file_write(path, contents).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

fn rsa_key() -> Result<KeyPair, PkiError> {
    let mut rng = rand::thread_rng();
    let key = rsa::RsaPrivateKey::new(&mut rng, 2048).map_err(PkiError::KeyGen)?;
    let pem = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(PkiError::KeyEncode)?;
    KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(PkiError::Cert)
}

/// Loads the CA and server certificate from `dir`, generating them when absent. The server
/// certificate names 127.0.0.1, localhost and `listen_host`. Blocking (RSA key generation).
pub fn server_tls_ensure(dir: &Path, listen_host: &str) -> Result<ServerTls, PkiError> {
    let ca_cert_path = dir.join(CA_CERT);
    let server_cert_path = dir.join(SERVER_CERT);
    let server_key_path = dir.join(SERVER_KEY);
    if ca_cert_path.exists() && server_cert_path.exists() && server_key_path.exists() {
        return Ok(ServerTls {
            ca_cert_path,
            cert_pem: read(&server_cert_path)?,
            key_pem: read(&server_key_path)?,
        });
    }

    let ca_key = rsa_key()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Cert)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bosh-rs director CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(PkiError::Cert)?;

    let server_key = rsa_key()?;
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    if !listen_host.is_empty() && !names.iter().any(|n| n == listen_host) {
        names.push(listen_host.to_owned());
    }
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(PkiError::Cert)?;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(PkiError::Cert),
        })
        .collect::<Result<_, _>>()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "bosh-rs director");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2044, 1, 1);
    let server_cert = params
        .signed_by(&server_key, &ca_cert, &ca_key)
        .map_err(PkiError::Cert)?;

    // Keys first, certificates last: the presence of all three files means "complete".
    write_private(&dir.join(CA_KEY), &ca_key.serialize_pem())?;
    write_private(&server_key_path, &server_key.serialize_pem())?;
    let cert_pem = server_cert.pem();
    std::fs::write(&server_cert_path, &cert_pem).map_err(|source| PkiError::Io {
        path: server_cert_path.clone(),
        source,
    })?;
    std::fs::write(&ca_cert_path, ca_cert.pem()).map_err(|source| PkiError::Io {
        path: ca_cert_path.clone(),
        source,
    })?;
    Ok(ServerTls {
        ca_cert_path,
        cert_pem,
        key_pem: server_key.serialize_pem(),
    })
}

/// A rustls server config (ring provider, TLS 1.2 and 1.3) for `tls`.
pub fn rustls_config(tls: &ServerTls) -> Result<rustls::ServerConfig, PkiError> {
    let load_err = |reason: String| PkiError::Load {
        path: tls
            .ca_cert_path
            .parent()
            .unwrap_or(Path::new(""))
            .to_owned(),
        reason,
    };
    let certs = rustls_pemfile::certs(&mut tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| load_err(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut tls.key_pem.as_bytes())
        .map_err(|e| load_err(e.to_string()))?
        .ok_or_else(|| load_err("no private key in server.key".to_owned()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| load_err(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| load_err(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
