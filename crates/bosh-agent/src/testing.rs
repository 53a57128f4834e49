//! Test support shared with the director: a CA with the BOSH NATS identities, the nats-server
//! configuration the director runs (TLS `verify_and_map`, per-agent permissions as
//! `bosh-nats-sync` writes them), and a nats-server child process on a free port.

use bosh_agent_protocol::MbusCert;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    #[error("generating a certificate")]
    Cert(#[from] rcgen::Error),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nats-server did not accept connections within {0:?}")]
    NotReady(Duration),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestingError {
    let what = what.into();
    move |source| TestingError::Io { what, source }
}

/// A certificate and its key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Pem {
    pub certificate: String,
    pub private_key: String,
}

/// The BOSH subject for a NATS identity: `C=USA, O=Cloud Foundry, CN=<cn>`.
pub fn bosh_subject(cn: &str) -> String {
    format!("C=USA, O=Cloud Foundry, CN={cn}")
}

pub fn director_cn() -> &'static str {
    "default.director.bosh-internal"
}
pub fn hm_cn() -> &'static str {
    "default.hm.bosh-internal"
}
pub fn agent_cn(agent_id: &str) -> String {
    format!("{agent_id}.agent.bosh-internal")
}

/// A test CA that signs the NATS server and client certificates.
pub struct TestPki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
    pub ca_pem: String,
}

impl TestPki {
    pub fn generate() -> Result<TestPki, TestingError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "bosh-rs test CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        Ok(TestPki {
            ca_cert,
            ca_key,
            ca_pem,
        })
    }

    fn issue(&self, cn: &str, sans: &[&str], server: bool) -> Result<Pem, TestingError> {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "USA");
        dn.push(DnType::OrganizationName, "Cloud Foundry");
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key)?;
        Ok(Pem {
            certificate: cert.pem(),
            private_key: key.serialize_pem(),
        })
    }

    /// The NATS server certificate: CN `default.nats.bosh-internal`, SANs for loopback.
    pub fn server(&self) -> Result<Pem, TestingError> {
        self.issue(
            "default.nats.bosh-internal",
            &["127.0.0.1", "localhost"],
            true,
        )
    }

    /// The NATS server certificate, also valid for `hosts` (e.g. a Docker network's gateway
    /// that containers dial).
    pub fn server_for(&self, hosts: &[&str]) -> Result<Pem, TestingError> {
        let mut sans = vec!["127.0.0.1", "localhost"];
        sans.extend_from_slice(hosts);
        self.issue("default.nats.bosh-internal", &sans, true)
    }

    /// A server certificate with any CN (to test the agent's CN rule).
    pub fn server_with_cn(&self, cn: &str) -> Result<Pem, TestingError> {
        self.issue(cn, &["127.0.0.1", "localhost"], true)
    }

    pub fn client(&self, cn: &str) -> Result<MbusCert, TestingError> {
        let pem = self.issue(cn, &[], false)?;
        Ok(MbusCert {
            ca: self.ca_pem.clone(),
            certificate: pem.certificate,
            private_key: pem.private_key,
        })
    }

    pub fn director(&self) -> Result<MbusCert, TestingError> {
        self.client(director_cn())
    }

    pub fn hm(&self) -> Result<MbusCert, TestingError> {
        self.client(hm_cn())
    }

    /// The agent's client certificate, as the director puts it in `env.bosh.mbus.cert`.
    pub fn agent(&self, agent_id: &str) -> Result<MbusCert, TestingError> {
        self.client(&agent_cn(agent_id))
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The permissions `bosh-nats-sync` gives one agent identity.
fn agent_user(cn: &str, agent_id: &str) -> String {
    let publish = vec![
        format!("hm.agent.heartbeat.{agent_id}"),
        format!("hm.agent.alert.{agent_id}"),
        format!("hm.agent.shutdown.{agent_id}"),
        format!("director.*.{agent_id}.*"),
    ];
    format!(
        "    {{ user: {:?}, permissions: {{ publish: [{}], subscribe: [{:?}] }} }}\n",
        bosh_subject(cn),
        quoted_list(&publish),
        format!("agent.{agent_id}")
    )
}

/// A nats-server configuration like the stock BOSH one: TLS with client certificates mapped
/// to users, the director and HM users, and for each agent id its permanent and bootstrap
/// users.
pub fn nats_config(
    port: u16,
    server_cert: &Path,
    server_key: &Path,
    ca: &Path,
    agent_ids: &[&str],
) -> String {
    nats_config_on(
        Ipv4Addr::LOCALHOST,
        port,
        server_cert,
        server_key,
        ca,
        agent_ids,
    )
}

/// [`nats_config`] listening on `host` instead of loopback.
pub fn nats_config_on(
    host: Ipv4Addr,
    port: u16,
    server_cert: &Path,
    server_key: &Path,
    ca: &Path,
    agent_ids: &[&str],
) -> String {
    let mut users = String::new();
    users.push_str(&format!(
        "    {{ user: {:?}, permissions: {{ publish: [\"agent.*\", \"hm.director.alert\"], subscribe: [\"director.>\"] }} }}\n",
        bosh_subject(director_cn())
    ));
    users.push_str(&format!(
        "    {{ user: {:?}, permissions: {{ subscribe: [\"hm.agent.heartbeat.*\", \"hm.agent.alert.*\", \"hm.agent.shutdown.*\", \"hm.director.alert\"] }} }}\n",
        bosh_subject(hm_cn())
    ));
    for id in agent_ids {
        users.push_str(&agent_user(&agent_cn(id), id));
        users.push_str(&agent_user(
            &format!("{id}.bootstrap.agent.bosh-internal"),
            id,
        ));
    }
    format!(
        "listen: \"{host}:{port}\"\nping_interval: \"5s\"\nping_max: 2\nmax_payload: 1048576\n\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify_and_map: true\n  timeout: 5\n}}\n\nauthorization {{\n  users: [\n{users}  ]\n}}\n",
        server_cert.display().to_string(),
        server_key.display().to_string(),
        ca.display().to_string(),
    )
}

/// A port nothing listens on right now.
pub fn free_port() -> Result<u16, TestingError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io("binding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io("reading the bound port"))
}

/// A nats-server child process; killed on drop.
pub struct NatsServer {
    child: Child,
    pub host: Ipv4Addr,
    pub port: u16,
    pub dir: PathBuf,
}

impl NatsServer {
    /// Writes certificates and config into `dir` and starts `/usr/sbin/nats-server` (or
    /// `$NATS_SERVER`) with the given server certificate.
    pub fn start(
        dir: &Path,
        pki: &TestPki,
        server: &Pem,
        agent_ids: &[&str],
    ) -> Result<NatsServer, TestingError> {
        Self::start_on(Ipv4Addr::LOCALHOST, dir, pki, server, agent_ids)
    }

    /// [`NatsServer::start`] listening on `host` (which must be a local address); the
    /// certificate should name it (see [`TestPki::server_for`]).
    pub fn start_on(
        host: Ipv4Addr,
        dir: &Path,
        pki: &TestPki,
        server: &Pem,
        agent_ids: &[&str],
    ) -> Result<NatsServer, TestingError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let (cert, key, ca) = (
            dir.join("server.pem"),
            dir.join("server.key"),
            dir.join("ca.pem"),
        );
        for (path, text) in [
            (&cert, &server.certificate),
            (&key, &server.private_key),
            (&ca, &pki.ca_pem),
        ] {
            std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
        }
        let port = free_port()?;
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            nats_config_on(host, port, &cert, &key, &ca, agent_ids),
        )
        .map_err(io("writing nats.conf"))?;
        let log = std::fs::File::create(dir.join("nats.log")).map_err(io("creating nats.log"))?;
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("cloning log handle"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {bin}")))?;
        let server = NatsServer {
            child,
            host,
            port,
            dir: dir.to_owned(),
        };
        let limit = Duration::from_secs(10);
        let deadline = Instant::now() + limit;
        while TcpStream::connect((host, port)).is_err() {
            if Instant::now() > deadline {
                return Err(TestingError::NotReady(limit));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_grants_agents_only_their_own_subjects() {
        let conf = nats_config(
            4222,
            Path::new("/s.pem"),
            Path::new("/s.key"),
            Path::new("/ca.pem"),
            &["a1"],
        );
        assert!(conf.contains("verify_and_map: true"));
        assert!(conf.contains(r#""C=USA, O=Cloud Foundry, CN=a1.agent.bosh-internal""#));
        assert!(conf.contains(r#""C=USA, O=Cloud Foundry, CN=a1.bootstrap.agent.bosh-internal""#));
        assert!(conf.contains(r#""director.*.a1.*""#));
        assert!(conf.contains(r#"subscribe: ["agent.a1"]"#));
    }
}
