//! Generation of `variables:` values the CLI's vars store creates: `password`,
//! `certificate`, `rsa` and `ssh`, with the reference's options, defaults and messages.
//!
//! Generated maps keep the reference's field order (`certificate`, `private_key`, `ca`),
//! which shows in the vars store file for the value generated last.

use crate::error::Error;
use crate::gofmt;
use crate::patch::{scalar_text, unmarshal_error};
use base64::Engine;
use bosh_yaml::{Mapping, Value};
use md5::{Digest, Md5};
use rand::Rng;
use rsa::RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use std::net::IpAddr;

/// A certificate and its private key, as PEM text, used to sign other certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaPem {
    pub certificate: String,
    pub private_key: String,
}

const PASSWORD_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const DEFAULT_PASSWORD_LENGTH: i64 = 20;
const DEFAULT_KEY_LENGTH: i64 = 3072;
const VALID_KEY_LENGTHS: [i64; 3] = [2048, 3072, 4096];
const KEY_PAIR_BITS: usize = 2048;

/// Generates a value of `var_type` from its (already interpolated) `options`.
/// `load_ca` returns the certificate named by a certificate's `ca` option.
pub fn generate(
    var_type: &str,
    options: &Value,
    load_ca: &mut dyn FnMut(&str) -> Result<CaPem, Error>,
) -> Result<Value, Error> {
    match var_type {
        "password" => generate_password(options),
        "certificate" => generate_certificate(options, load_ca),
        "rsa" => generate_rsa(),
        "ssh" => generate_ssh(),
        other => Err(Error::msg(format!("Unsupported value type: {other}"))),
    }
}

/// The options as a map of supported keys; the reference rejects unknown keys.
fn options_map<'a>(options: &'a Value, supported: &[&str]) -> Result<Option<&'a Mapping>, Error> {
    let map = match options {
        Value::Null => return Ok(None),
        Value::Map(m) => m,
        other => {
            return Err(unmarshal_error(1, other, "map[string]interface {}")
                .context("Expected input to be deserializable"));
        }
    };
    for key in map.keys() {
        let name = scalar_text(key).unwrap_or_default();
        if !supported.contains(&name.as_str()) {
            return Err(Error::msg(format!("Unsupported parameter '{name}'")));
        }
    }
    Ok(Some(map))
}

fn option<'a>(map: Option<&'a Mapping>, key: &str) -> Option<&'a Value> {
    map.and_then(|m| m.get(&Value::from(key)))
        .filter(|v| !v.is_null())
}

fn deserialize_error(v: &Value, go_type: &str) -> Error {
    unmarshal_error(1, v, go_type).context("Expected input to be deserializable")
}

fn int_option(map: Option<&Mapping>, key: &str) -> Result<i64, Error> {
    match option(map, key) {
        None => Ok(0),
        Some(Value::Int(i)) => Ok(*i),
        // yaml.v2 truncates floats decoded into integer fields.
        Some(Value::Float(f)) if f.is_finite() => Ok(*f as i64),
        Some(v) => Err(deserialize_error(v, "int")),
    }
}

fn string_option(map: Option<&Mapping>, key: &str) -> Result<String, Error> {
    match option(map, key) {
        None => Ok(String::new()),
        Some(v) => scalar_text(v).ok_or_else(|| deserialize_error(v, "string")),
    }
}

fn bool_option(map: Option<&Mapping>, key: &str) -> Result<bool, Error> {
    match option(map, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(deserialize_error(v, "bool")),
    }
}

fn strings_option(map: Option<&Mapping>, key: &str) -> Result<Vec<String>, Error> {
    match option(map, key) {
        None => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|v| scalar_text(v).ok_or_else(|| deserialize_error(v, "string")))
            .collect(),
        Some(v) => Err(deserialize_error(v, "[]string")),
    }
}

fn generate_password(options: &Value) -> Result<Value, Error> {
    let invalid = |e: Error| e.context("Failed to generate password, parameters are invalid");
    let map = options_map(options, &["length"]).map_err(invalid)?;
    let mut length = int_option(map, "length").map_err(invalid)?;
    if length < 0 {
        return Err(Error::msg(
            "Failed to generate password, 'length' param cannot be negative",
        ));
    }
    if length == 0 {
        length = DEFAULT_PASSWORD_LENGTH;
    }
    let mut rng = rand::rngs::OsRng;
    let password: String = (0..length)
        .map(|_| PASSWORD_CHARS[rng.gen_range(0..PASSWORD_CHARS.len())] as char)
        .collect();
    Ok(Value::String(password))
}

/// PEM text as Go's `pem.EncodeToMemory` writes it: 64-column base64, LF line ends.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first PEM block in `text` (like Go's `pem.Decode`): its label and contents.
pub(crate) fn pem_decode(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = &rest[..label_end];
    let body_start = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let end = body_start.find(&end_marker)?;
    let b64: String = body_start[..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label.to_owned(), der))
}

fn new_rsa_key(bits: usize) -> Result<RsaPrivateKey, Error> {
    RsaPrivateKey::new(&mut rand::rngs::OsRng, bits).map_err(|e| Error::msg(e.to_string()))
}

fn pkcs1_pem(key: &RsaPrivateKey) -> Result<String, Error> {
    let der = key.to_pkcs1_der().map_err(|e| Error::msg(e.to_string()))?;
    Ok(pem_encode("RSA PRIVATE KEY", der.as_bytes()))
}

fn generate_rsa() -> Result<Value, Error> {
    let key = new_rsa_key(KEY_PAIR_BITS).map_err(|e| e.context("Generating RSA key pair"))?;
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| Error::msg(e.to_string()).context("Generating RSA public key pair"))?;
    let mut map = Mapping::new();
    map.insert("private_key".into(), pkcs1_pem(&key)?.into());
    map.insert(
        "public_key".into(),
        pem_encode("PUBLIC KEY", public.as_bytes()).into(),
    );
    Ok(Value::Map(map))
}

/// SSH wire encoding of an RSA public key (`string "ssh-rsa", mpint e, mpint n`).
fn ssh_public_key_blob(key: &RsaPrivateKey) -> Vec<u8> {
    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
        let trimmed: &[u8] = {
            let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
            &be[first..]
        };
        let mut bytes = Vec::with_capacity(trimmed.len() + 1);
        if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
            bytes.push(0);
        }
        bytes.extend_from_slice(trimmed);
        put_bytes(out, &bytes);
    }
    let mut blob = Vec::new();
    put_bytes(&mut blob, b"ssh-rsa");
    put_mpint(&mut blob, &key.e().to_bytes_be());
    put_mpint(&mut blob, &key.n().to_bytes_be());
    blob
}

fn generate_ssh() -> Result<Value, Error> {
    let key = new_rsa_key(KEY_PAIR_BITS).map_err(|e| e.context("Generating RSA key pair"))?;
    let blob = ssh_public_key_blob(&key);
    let authorized = format!(
        "ssh-rsa {}\n",
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    let fingerprint = Md5::digest(&blob)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let mut map = Mapping::new();
    map.insert("private_key".into(), pkcs1_pem(&key)?.into());
    map.insert("public_key".into(), authorized.into());
    map.insert("public_key_fingerprint".into(), fingerprint.into());
    Ok(Value::Map(map))
}

struct CertOptions {
    common_name: String,
    organization: String,
    alternative_names: Vec<String>,
    is_ca: bool,
    ca: String,
    extended_key_usage: Vec<String>,
    duration: i64,
    key_length: i64,
}

const CERT_OPTIONS: [&str; 8] = [
    "common_name",
    "organization",
    "alternative_names",
    "is_ca",
    "ca",
    "extended_key_usage",
    "duration",
    "key_length",
];

fn cert_options(options: &Value) -> Result<CertOptions, Error> {
    let map = options_map(options, &CERT_OPTIONS)?;
    Ok(CertOptions {
        common_name: string_option(map, "common_name")?,
        organization: string_option(map, "organization")?,
        alternative_names: strings_option(map, "alternative_names")?,
        is_ca: bool_option(map, "is_ca")?,
        ca: string_option(map, "ca")?,
        extended_key_usage: strings_option(map, "extended_key_usage")?,
        duration: int_option(map, "duration")?,
        key_length: int_option(map, "key_length")?,
    })
}

fn rcgen_error(context: &str) -> impl Fn(rcgen::Error) -> Error + '_ {
    move |e| Error::msg(e.to_string()).context(context)
}

/// A signing CA: its rcgen form (for the issuer name and key identifier) and key.
struct Signer {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pem: String,
}

fn rcgen_key(key: &RsaPrivateKey) -> Result<rcgen::KeyPair, Error> {
    let pkcs8 = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| Error::msg(e.to_string()))?;
    rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(rcgen_error("Parsing private key"))
}

fn load_signer(ca: &CaPem) -> Result<Signer, Error> {
    let Some((_, cert_der)) = pem_decode(&ca.certificate) else {
        return Err(Error::msg(
            "Certificate did not contain PEM formatted block",
        ));
    };
    let Some((_, key_der)) = pem_decode(&ca.private_key) else {
        return Err(Error::msg(
            "Private key did not contain PEM formatted block",
        ));
    };
    let pem = pem_encode("CERTIFICATE", &cert_der);
    let params = rcgen::CertificateParams::from_ca_cert_pem(&pem)
        .map_err(rcgen_error("Parsing certificate"))?;
    let rsa_key = RsaPrivateKey::from_pkcs1_der(&key_der)
        .map_err(|e| Error::msg(format!("x509: {e}")).context("Parsing private key"))?;
    let key = rcgen_key(&rsa_key)?;
    // Re-signing only gives rcgen an issuer object; the original PEM is what is kept.
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_error("Parsing certificate"))?;
    Ok(Signer { cert, key, pem })
}

/// A directory-string value as Go writes it: PrintableString when possible, else UTF-8.
fn dn_value(text: &str) -> rcgen::DnValue {
    match rcgen::PrintableString::try_from(text) {
        Ok(p) => rcgen::DnValue::PrintableString(p),
        Err(_) => rcgen::DnValue::Utf8String(text.to_owned()),
    }
}

fn generate_certificate(
    options: &Value,
    load_ca: &mut dyn FnMut(&str) -> Result<CaPem, Error>,
) -> Result<Value, Error> {
    let opts = cert_options(options)
        .map_err(|e| e.context("Failed to generate certificate, parameters are invalid"))?;
    let key_length = if opts.key_length == 0 {
        DEFAULT_KEY_LENGTH
    } else {
        opts.key_length
    };
    if !VALID_KEY_LENGTHS.contains(&key_length) {
        return Err(Error::msg(format!(
            "Invalid key_length: {key_length}.  Must be one of: [2048 3072 4096]"
        )));
    }
    let signer = if opts.ca.is_empty() {
        None
    } else {
        let ca = load_ca(&opts.ca)
            .and_then(|ca| load_signer(&ca))
            .map_err(|e| e.context("Loading certificates"))?;
        Some(ca)
    };
    if !opts.is_ca && signer.is_none() {
        return Err(Error::msg("Missing required CA name"));
    }
    let mut ext_key_usages = Vec::new();
    if !opts.is_ca {
        for usage in &opts.extended_key_usage {
            ext_key_usages.push(match usage.as_str() {
                "client_auth" => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                "server_auth" => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                other => {
                    return Err(Error::msg(format!(
                        "Unsupported extended key usage value: {other}"
                    )));
                }
            });
        }
        if ext_key_usages.is_empty() {
            ext_key_usages.push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        }
    }

    let rsa_key = new_rsa_key(key_length as usize).map_err(|e| e.context("Generating Key"))?;
    let key = rcgen_key(&rsa_key)?;

    let mut params = rcgen::CertificateParams::default();
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill(&mut serial);
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::now_utc());
    let days = if opts.duration > 0 {
        opts.duration
    } else {
        365
    };
    params.not_before = now;
    params.not_after = days
        .checked_mul(86_400)
        .and_then(|secs| now.checked_add(time::Duration::seconds(secs)))
        .ok_or_else(|| Error::msg(format!("Invalid duration: {days}")))?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CountryName, dn_value("US"));
    let org = if opts.organization.is_empty() {
        "Cloud Foundry"
    } else {
        &opts.organization
    };
    dn.push(rcgen::DnType::OrganizationName, dn_value(org));
    if !opts.common_name.is_empty() {
        dn.push(rcgen::DnType::CommonName, dn_value(&opts.common_name));
    }
    params.distinguished_name = dn;
    // Subject key id = SHA-1 of the modulus bytes, as the reference computes it.
    params.key_identifier_method =
        rcgen::KeyIdMethod::PreSpecified(sha1_digest(&rsa_key.n().to_bytes_be()));
    params.use_authority_key_identifier_extension = true;

    if opts.is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
    } else {
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyEncipherment,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.extended_key_usages = ext_key_usages;
        // DNS names are written before IP addresses, whatever the input order.
        let (ips, dns): (Vec<_>, Vec<_>) = opts
            .alternative_names
            .iter()
            .partition(|n| n.parse::<IpAddr>().is_ok());
        for name in dns {
            let ia5 = rcgen::Ia5String::try_from(name.as_str()).map_err(|_| {
                Error::msg(format!(
                    "x509: {} cannot be encoded as an IA5String",
                    gofmt::json_string(name)
                ))
                .context("Generating certificate")
            })?;
            params.subject_alt_names.push(rcgen::SanType::DnsName(ia5));
        }
        for ip in ips {
            if let Ok(addr) = ip.parse::<IpAddr>() {
                params
                    .subject_alt_names
                    .push(rcgen::SanType::IpAddress(addr));
            }
        }
    }

    let (cert_pem, ca_pem) = match &signer {
        Some(s) => {
            let what = if opts.is_ca {
                "Generating CA certificate"
            } else {
                "Generating certificate"
            };
            let cert = params
                .signed_by(&key, &s.cert, &s.key)
                .map_err(rcgen_error(what))?;
            (pem_encode("CERTIFICATE", cert.der()), s.pem.clone())
        }
        None => {
            let cert = params
                .self_signed(&key)
                .map_err(rcgen_error("Generating CA certificate"))?;
            let pem = pem_encode("CERTIFICATE", cert.der());
            (pem.clone(), pem)
        }
    };
    let mut map = Mapping::new();
    map.insert("certificate".into(), cert_pem.into());
    map.insert("private_key".into(), pkcs1_pem(&rsa_key)?.into());
    map.insert("ca".into(), ca_pem.into());
    Ok(Value::Map(map))
}

fn sha1_digest(bytes: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(bytes).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn no_ca(_: &str) -> Result<CaPem, Error> {
        Err(Error::msg("no CA in this test"))
    }

    fn opts(text: &str) -> Value {
        bosh_yaml::parse(text).expect("valid yaml")
    }

    #[test]
    fn passwords_are_20_lowercase_alphanumerics_by_default() {
        let v = generate("password", &Value::Null, &mut no_ca).expect("generates");
        let p = v.as_str().expect("a string");
        assert_eq!(p.len(), 20);
        assert!(p.bytes().all(|b| PASSWORD_CHARS.contains(&b)));
        let v = generate("password", &opts("{length: 7}"), &mut no_ca).expect("generates");
        assert_eq!(v.as_str().map(str::len), Some(7));
    }

    #[test]
    fn invalid_options_are_named() {
        let e = generate("password", &opts("{size: 7}"), &mut no_ca).expect_err("must fail");
        assert_eq!(
            e.flat(),
            "Failed to generate password, parameters are invalid: Unsupported parameter 'size'"
        );
        let e = generate("password", &opts("{length: -1}"), &mut no_ca).expect_err("must fail");
        assert_eq!(
            e.flat(),
            "Failed to generate password, 'length' param cannot be negative"
        );
        let e = generate("nope", &Value::Null, &mut no_ca).expect_err("must fail");
        assert_eq!(e.flat(), "Unsupported value type: nope");
        let e = generate(
            "certificate",
            &opts("{is_ca: true, key_length: 1024}"),
            &mut no_ca,
        )
        .expect_err("must fail");
        assert_eq!(
            e.flat(),
            "Invalid key_length: 1024.  Must be one of: [2048 3072 4096]"
        );
        let e = generate(
            "certificate",
            &opts("{common_name: x, key_length: 2048}"),
            &mut no_ca,
        )
        .expect_err("must fail");
        assert_eq!(e.flat(), "Missing required CA name");
    }

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        let pem = pem_encode("THING", &der);
        assert!(pem.lines().skip(1).take(4).all(|l| l.len() <= 64));
        assert_eq!(
            pem_decode(&format!("junk\n{pem}")),
            Some(("THING".to_owned(), der))
        );
    }

    fn parse_cert(pem: &str) -> Vec<u8> {
        pem_decode(pem).expect("PEM block").1
    }

    /// One CA and one leaf with every option: checks what a TLS client relies on.
    #[test]
    fn certificates_have_requested_attributes() {
        let ca = generate(
            "certificate",
            &opts("{is_ca: true, common_name: my-ca, key_length: 2048, organization: Org}"),
            &mut no_ca,
        )
        .expect("CA generates");
        let keys: Vec<&str> = ca
            .as_map()
            .expect("map")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, ["certificate", "private_key", "ca"]);
        let ca_cert = ca
            .get("certificate")
            .and_then(Value::as_str)
            .expect("certificate")
            .to_owned();
        let ca_key = ca
            .get("private_key")
            .and_then(Value::as_str)
            .expect("key")
            .to_owned();
        assert_eq!(ca.get("ca").and_then(Value::as_str), Some(ca_cert.as_str()));
        assert!(ca_key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));

        let ca_der = parse_cert(&ca_cert);
        let (_, parsed_ca) = X509Certificate::from_der(&ca_der).expect("CA parses");
        assert!(parsed_ca.is_ca());
        assert_eq!(parsed_ca.subject().to_string(), "C=US, O=Org, CN=my-ca");
        assert_eq!(
            parsed_ca
                .public_key()
                .parsed()
                .map(|k| match k {
                    x509_parser::public_key::PublicKey::RSA(r) => r.key_size(),
                    _ => 0,
                })
                .ok(),
            Some(2048)
        );

        let mut loader = |name: &str| {
            assert_eq!(name, "my-ca");
            Ok(CaPem {
                certificate: ca_cert.clone(),
                private_key: ca_key.clone(),
            })
        };
        let leaf = generate(
            "certificate",
            &opts("{ca: my-ca, common_name: srv, key_length: 2048, duration: 30, alternative_names: [10.0.0.1, srv.example.com], extended_key_usage: [client_auth, server_auth]}"),
            &mut loader,
        )
        .expect("leaf generates");
        assert_eq!(
            leaf.get("ca").and_then(Value::as_str),
            Some(ca_cert.as_str())
        );
        let leaf_der = parse_cert(
            leaf.get("certificate")
                .and_then(Value::as_str)
                .expect("cert"),
        );
        let (_, cert) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
        assert!(!cert.is_ca());
        assert_eq!(cert.issuer(), parsed_ca.subject());
        assert_eq!(cert.subject().to_string(), "C=US, O=Cloud Foundry, CN=srv");
        let san = cert
            .subject_alternative_name()
            .expect("ok")
            .expect("has SANs");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        assert_eq!(
            names,
            ["DNSName(\"srv.example.com\")", "IPAddress([10, 0, 0, 1])"]
        );
        let eku = cert.extended_key_usage().expect("ok").expect("has EKU");
        assert!(eku.value.client_auth && eku.value.server_auth);
        let ku = cert.key_usage().expect("ok").expect("has KU");
        assert!(ku.value.key_encipherment() && ku.value.digital_signature());
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86400;
        assert_eq!(days, 30);
        // The leaf verifies against the CA's public key.
        assert!(cert.verify_signature(Some(parsed_ca.public_key())).is_ok());
    }

    #[test]
    fn ssh_keys_have_authorized_keys_form_and_md5_fingerprint() {
        let v = generate("ssh", &Value::Null, &mut no_ca).expect("generates");
        let public = v
            .get("public_key")
            .and_then(Value::as_str)
            .expect("public key");
        let b64 = public
            .strip_prefix("ssh-rsa ")
            .and_then(|s| s.strip_suffix('\n'))
            .expect("form");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let fp = v
            .get("public_key_fingerprint")
            .and_then(Value::as_str)
            .expect("fingerprint");
        let expected: Vec<String> = Md5::digest(&blob)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fp, expected.join(":"));
        let private = v
            .get("private_key")
            .and_then(Value::as_str)
            .expect("private key");
        let (label, der) = pem_decode(private).expect("PEM");
        assert_eq!(label, "RSA PRIVATE KEY");
        let key = RsaPrivateKey::from_pkcs1_der(&der).expect("PKCS#1");
        assert_eq!(ssh_public_key_blob(&key), blob);
    }

    #[test]
    fn rsa_public_key_matches_private_key() {
        use rsa::pkcs8::DecodePublicKey;
        let v = generate("rsa", &Value::Null, &mut no_ca).expect("generates");
        let keys: Vec<&str> = v
            .as_map()
            .expect("map")
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(keys, ["private_key", "public_key"]);
        let (label, der) = pem_decode(
            v.get("private_key")
                .and_then(Value::as_str)
                .expect("private"),
        )
        .expect("PEM");
        assert_eq!(label, "RSA PRIVATE KEY");
        let private = RsaPrivateKey::from_pkcs1_der(&der).expect("PKCS#1");
        assert_eq!(private.size() * 8, KEY_PAIR_BITS);
        let (label, der) =
            pem_decode(v.get("public_key").and_then(Value::as_str).expect("public")).expect("PEM");
        assert_eq!(label, "PUBLIC KEY");
        let public = rsa::RsaPublicKey::from_public_key_der(&der).expect("SPKI");
        assert_eq!(public, private.to_public_key());
    }
}
