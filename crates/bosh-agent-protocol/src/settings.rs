//! Agent settings (§5.2) and the `update_settings` argument, with the agent's precedence
//! rules. Unknown keys are kept in `extra` maps so a settings file round-trips.

use crate::apply_spec::null_as_default;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Settings {
    /// Director-chosen id; the NATS subjects carry it.
    pub agent_id: String,
    #[serde(default)]
    pub vm: VmSettings,
    /// `nats://[user:pass@]host:port` (or `https://` for create-env).
    #[serde(default)]
    pub mbus: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub ntp: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstore: Option<BlobstoreSettings>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub networks: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub disks: Map<String, Value>,
    #[serde(default)]
    pub env: Env,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VmSettings {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BlobstoreSettings {
    /// `dav`, `local`, or an external provider name.
    pub provider: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Env {
    #[serde(default)]
    pub bosh: BoshEnv,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoshEnv {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbus: Option<MbusSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstores: Option<Vec<BlobstoreSettings>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ntp: Option<Vec<String>>,
    /// Size of the agent's parallel download pool (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MbusSettings {
    #[serde(default)]
    pub cert: MbusCert,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub urls: Vec<String>,
}

/// PEM material for the agent's NATS client (§1.3). `ca` verifies the NATS server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MbusCert {
    #[serde(default)]
    pub ca: String,
    #[serde(default)]
    pub certificate: String,
    #[serde(default)]
    pub private_key: String,
}

impl std::fmt::Debug for SecretFree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MbusCert {{ ca: {} bytes, certificate: {} bytes, private_key: <redacted> }}",
            self.0.ca.len(),
            self.0.certificate.len()
        )
    }
}

/// Logs an [`MbusCert`] without its private key.
pub struct SecretFree<'a>(pub &'a MbusCert);

/// The `update_settings` argument.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateSettings {
    #[serde(default)]
    pub trusted_certs: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub disk_associations: Vec<DiskAssociation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mbus: Option<MbusSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blobstores: Option<Vec<BlobstoreSettings>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiskAssociation {
    pub name: String,
    pub cid: String,
}

impl Settings {
    /// NATS URLs: `update_settings.mbus.urls` > `env.bosh.mbus.urls` > top-level `mbus`.
    pub fn mbus_urls(&self, update: Option<&UpdateSettings>) -> Vec<String> {
        if let Some(urls) = update
            .and_then(|u| u.mbus.as_ref())
            .map(|m| &m.urls)
            .filter(|u| !u.is_empty())
        {
            return urls.clone();
        }
        if let Some(urls) = self
            .env
            .bosh
            .mbus
            .as_ref()
            .map(|m| &m.urls)
            .filter(|u| !u.is_empty())
        {
            return urls.clone();
        }
        if self.mbus.is_empty() {
            vec![]
        } else {
            vec![self.mbus.clone()]
        }
    }

    /// Client certificate: `update_settings.mbus.cert` (when its CA is set) > `env.bosh.mbus.cert`.
    pub fn mbus_cert(&self, update: Option<&UpdateSettings>) -> MbusCert {
        if let Some(cert) = update
            .and_then(|u| u.mbus.as_ref())
            .map(|m| &m.cert)
            .filter(|c| !c.ca.is_empty())
        {
            return cert.clone();
        }
        self.env
            .bosh
            .mbus
            .as_ref()
            .map(|m| m.cert.clone())
            .unwrap_or_default()
    }

    /// Blobstore: `update_settings.blobstores[0]` > `env.bosh.blobstores[0]` > top-level.
    pub fn blobstore(&self, update: Option<&UpdateSettings>) -> Option<BlobstoreSettings> {
        update
            .and_then(|u| u.blobstores.as_ref())
            .and_then(|b| b.first())
            .or_else(|| self.env.bosh.blobstores.as_ref().and_then(|b| b.first()))
            .or(self.blobstore.as_ref())
            .cloned()
    }

    /// NTP servers: `env.bosh.ntp` when present, else top-level `ntp`.
    pub fn ntp_servers(&self) -> Vec<String> {
        self.env
            .bosh
            .ntp
            .clone()
            .unwrap_or_else(|| self.ntp.clone())
    }

    /// The default IP: a network with a non-empty `default` list first, else any with an IP.
    pub fn default_ip(&self) -> Option<String> {
        let ip = |n: &Value| {
            n.get("ip")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let has_default = |n: &Value| {
            n.get("default")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        self.networks
            .values()
            .filter(|n| has_default(n))
            .find_map(ip)
            .or_else(|| self.networks.values().find_map(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Settings {
        serde_json::from_value(json!({
            "agent_id": "a1", "vm": {"name": "vm-a1"}, "mbus": "nats://n:p@127.0.0.1:4222",
            "ntp": ["x"], "disks": {"persistent": {}}, "cert": "",
            "blobstore": {"provider": "local", "options": {"blobstore_path": "/b"}},
            "networks": {"a": {"type": "manual", "ip": "10.0.0.2"}, "b": {"ip": "10.0.0.3", "default": ["dns"]}},
            "env": {"bosh": {"mbus": {"cert": {"ca": "CA", "certificate": "C", "private_key": "K"}},
                             "blobstores": [{"provider": "dav", "options": {"endpoint": "http://e"}}],
                             "password": "h"},
                    "persistent_disk_fs": "ext4"}
        }))
        .unwrap()
    }

    #[test]
    fn precedence_follows_the_agent() {
        let s = sample();
        assert_eq!(s.mbus_urls(None), vec!["nats://n:p@127.0.0.1:4222"]);
        assert_eq!(s.mbus_cert(None).certificate, "C");
        assert_eq!(s.blobstore(None).unwrap().provider, "dav");
        assert_eq!(s.default_ip().as_deref(), Some("10.0.0.3"));
        let upd = UpdateSettings {
            mbus: Some(MbusSettings {
                cert: MbusCert {
                    ca: "CA2".into(),
                    certificate: "C2".into(),
                    private_key: "K2".into(),
                },
                urls: vec!["nats://other:1".into()],
            }),
            blobstores: Some(vec![BlobstoreSettings {
                provider: "local".into(),
                options: Map::new(),
            }]),
            ..Default::default()
        };
        assert_eq!(s.mbus_urls(Some(&upd)), vec!["nats://other:1"]);
        assert_eq!(s.mbus_cert(Some(&upd)).certificate, "C2");
        assert_eq!(s.blobstore(Some(&upd)).unwrap().provider, "local");
        // A rotated cert without CA does not win.
        let no_ca = UpdateSettings {
            mbus: Some(MbusSettings::default()),
            ..Default::default()
        };
        assert_eq!(s.mbus_cert(Some(&no_ca)).certificate, "C");
    }

    #[test]
    fn unknown_keys_round_trip() {
        let s = sample();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cert"], json!(""));
        assert_eq!(v["env"]["persistent_disk_fs"], json!("ext4"));
        assert_eq!(v["env"]["bosh"]["password"], json!("h"));
        let redacted = format!("{:?}", SecretFree(&s.mbus_cert(None)));
        assert!(!redacted.contains('K'), "{redacted}");
    }
}
