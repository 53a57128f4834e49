//! Config commands: the generic `/configs` API and the legacy cloud/runtime/CPI config
//! endpoints (`director-api.md` §5.1, §5.2).

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};

use super::{Out, Session, confirm, form_escape};
use crate::GlobalOpts;
use crate::director::{
    Config, ConfigDiff, DirectorClient, DirectorError, LegacyConfig, ReqBody, diff_text,
};
use crate::ui::{Table, TableOptions};

#[derive(clap::Subcommand, Debug)]
pub enum ConfigCommand {
    /// List configs
    #[command(name = "configs", visible_alias = "cs")]
    Configs {
        /// Config type
        #[arg(long = "type")]
        kind: Option<String>,
        /// Config name
        #[arg(long)]
        name: Option<String>,
        /// Number of configs to show
        #[arg(short = 'r', long = "recent", num_args = 0..=1, require_equals = true, default_missing_value = "1", default_value = "1")]
        recent: u32,
    },
    /// Show current config for either ID or both type and name
    #[command(name = "config", visible_alias = "c")]
    Config {
        #[arg(value_name = "ID")]
        id: Option<String>,
        /// Config type
        #[arg(long = "type")]
        kind: Option<String>,
        /// Config name
        #[arg(long)]
        name: Option<String>,
    },
    /// Update config
    #[command(name = "update-config", visible_alias = "uc")]
    UpdateConfig {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Config type, e.g. 'cloud', 'runtime', or 'cpi'
        #[arg(long = "type", required = true)]
        kind: String,
        /// Config name
        #[arg(long, required = true)]
        name: String,
        /// Expected ID of latest config
        #[arg(long = "expected-latest-id")]
        expected_latest_id: Option<String>,
    },
    /// Delete config
    #[command(name = "delete-config", visible_alias = "dc")]
    DeleteConfig {
        #[arg(value_name = "ID")]
        id: Option<String>,
        /// Config type
        #[arg(long = "type")]
        kind: Option<String>,
        /// Config name
        #[arg(long)]
        name: Option<String>,
    },
    /// Diff two configs by ID or content
    #[command(name = "diff-config")]
    DiffConfig {
        /// ID of first config to compare
        #[arg(long = "from-id")]
        from_id: Option<String>,
        /// ID of second config to compare
        #[arg(long = "to-id")]
        to_id: Option<String>,
        /// Path to first config file to compare
        #[arg(long = "from-content")]
        from_content: Option<PathBuf>,
        /// Path to second config file to compare
        #[arg(long = "to-content")]
        to_content: Option<PathBuf>,
    },
    /// Show current cloud config
    #[command(name = "cloud-config", visible_alias = "cc")]
    CloudConfig {
        /// Cloud-Config name
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Update current cloud config
    #[command(name = "update-cloud-config", visible_alias = "ucc")]
    UpdateCloudConfig {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Cloud-Config name
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Show current runtime config
    #[command(name = "runtime-config", visible_alias = "rc")]
    RuntimeConfig {
        /// Runtime-Config name
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Update current runtime config
    #[command(name = "update-runtime-config", visible_alias = "urc")]
    UpdateRuntimeConfig {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Runtime-Config name
        #[arg(long, default_value = "")]
        name: String,
        /// Show non-redacted manifest diff
        #[arg(long = "no-redact")]
        no_redact: bool,
    },
    /// Show current CPI config
    #[command(name = "cpi-config")]
    CpiConfig,
    /// Update current CPI config
    #[command(name = "update-cpi-config")]
    UpdateCpiConfig {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Show non-redacted manifest diff
        #[arg(long = "no-redact")]
        no_redact: bool,
    },
}

/// `?k=v&…` with keys sorted and values form-escaped, like Go's `url.Values.Encode`.
fn query(pairs: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = pairs.to_vec();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Reads a YAML file and re-serialises it (keys sorted), as the official CLI sends configs.
fn yaml_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Reading file '{}'", path.display()))?;
    let value = bosh_yaml::parse(&text)
        .with_context(|| format!("Parsing YAML file '{}'", path.display()))?;
    Ok(bosh_yaml::to_string_sorted(&value))
}

fn yaml_body(content: &str) -> ReqBody {
    ReqBody::Bytes(content.as_bytes().to_vec(), "text/yaml".into())
}

fn json_body(v: serde_json::Value) -> ReqBody {
    ReqBody::Bytes(v.to_string().into_bytes(), "application/json".into())
}

/// Checks the ID-or-type-and-name arguments of `config` and `delete-config`.
fn id_or_type_name(
    id: &Option<String>,
    kind: &Option<String>,
    name: &Option<String>,
) -> anyhow::Result<()> {
    let id = id.as_deref().unwrap_or_default();
    let kind = kind.as_deref().unwrap_or_default();
    let name = name.as_deref().unwrap_or_default();
    if id.is_empty() && kind.is_empty() && name.is_empty() {
        bail!("Either <ID> or parameters --type and --name must be provided");
    }
    if !id.is_empty() && (!kind.is_empty() || !name.is_empty()) {
        bail!("Can only specify one of ID or parameters '--type' and '--name'");
    }
    if id.is_empty() && (kind.is_empty() || name.is_empty()) {
        bail!("Need to specify both parameters '--type' and '--name'");
    }
    Ok(())
}

fn print_diff(out: &mut Out, diff: &ConfigDiff) {
    let text = diff_text(&diff.diff);
    if !text.is_empty() {
        out.raw(&text);
    }
}

/// A diff endpoint: 404 gives an empty diff, unless its body carries config-not-found
/// (440012), whose description is the error.
fn diff_post(client: &DirectorClient, path: &str, body: ReqBody) -> anyhow::Result<ConfigDiff> {
    match client.send_json::<ConfigDiff>(Method::POST, path, body) {
        Ok(d) => Ok(d),
        Err(DirectorError::Status { status: 404, body }) => {
            if body.contains("\"code\":440012") {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                bail!(
                    "{}",
                    v["description"].as_str().unwrap_or("Config not found")
                );
            }
            Ok(ConfigDiff::default())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn run(cmd: ConfigCommand, global: &GlobalOpts, out: &mut Out) -> anyhow::Result<()> {
    match cmd {
        ConfigCommand::Configs { kind, name, recent } => {
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let limit = recent.to_string();
            let latest = if recent == 1 { "true" } else { "false" };
            let mut q = vec![("limit", limit.as_str()), ("latest", latest)];
            if let Some(k) = kind.as_deref().filter(|k| !k.is_empty()) {
                q.push(("type", k));
            }
            if let Some(n) = name.as_deref().filter(|n| !n.is_empty()) {
                q.push(("name", n));
            }
            let list: Vec<Config> = client
                .get_json(&format!("/configs?{}", query(&q)))
                .context("Listing configs")?;
            let mut notes = Vec::new();
            if list.iter().any(|c| c.current) {
                notes.push("(*) Currently active".to_string());
            }
            if recent <= 1 {
                notes.push(
                    "Only showing active configs. To see older versions use the --recent=10 option."
                        .to_string(),
                );
            }
            let rows = list
                .iter()
                .map(|c| {
                    vec![
                        if c.current {
                            format!("{}*", c.id)
                        } else {
                            c.id.clone()
                        },
                        c.kind.clone(),
                        c.name.clone(),
                        c.team.clone(),
                        c.created_at.clone(),
                    ]
                })
                .collect();
            out.table(
                &Table {
                    content: "configs".into(),
                    header: ["ID", "Type", "Name", "Team", "Created At"]
                        .map(String::from)
                        .to_vec(),
                    rows,
                    notes,
                },
                &TableOptions::default(),
            );
            Ok(())
        }
        ConfigCommand::Config { id, kind, name } => {
            id_or_type_name(&id, &kind, &name)?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let config = match id.as_deref().filter(|i| !i.is_empty()) {
                Some(id) => client
                    .get_json::<Config>(&format!("/configs/{id}"))
                    .context("No config")?,
                None => {
                    let kind = kind.unwrap_or_default();
                    let name = name.unwrap_or_default();
                    let list: Vec<Config> = client
                        .get_json(&format!(
                            "/configs?{}",
                            query(&[
                                ("type", &kind),
                                ("name", &name),
                                ("limit", "1"),
                                ("latest", "true")
                            ])
                        ))
                        .context("Finding config")?;
                    list.into_iter()
                        .next()
                        .ok_or_else(|| anyhow!("No config"))?
                }
            };
            config_table(out, config);
            Ok(())
        }
        ConfigCommand::UpdateConfig {
            path,
            kind,
            name,
            expected_latest_id,
        } => {
            let content = yaml_file(&path)?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let diff = diff_post(
                &client,
                "/configs/diff",
                json_body(json!({"type": kind, "name": name, "content": content})),
            )?;
            print_diff(out, &diff);
            confirm(out, global)?;
            let expected = expected_latest_id
                .filter(|e| !e.is_empty())
                .or_else(|| diff.from.get("id").cloned())
                .unwrap_or_default();
            let mut body = json!({"type": kind, "name": name, "content": content});
            if !expected.is_empty() {
                body["expected_latest_id"] = json!(expected);
            }
            let config: Config = match client.send_json(Method::POST, "/configs", json_body(body)) {
                Ok(c) => c,
                Err(DirectorError::Status { status: 412, body }) => {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    bail!(
                        "Config update rejected: The expected latest ID '{}' doesn't match the latest ID '{}'. This most likely means that a concurrent update of the config happened. Please try to upload again.",
                        v["expected_latest_id"].as_str().unwrap_or_default(),
                        v["latest_id"].as_str().unwrap_or_default()
                    );
                }
                Err(e) => return Err(anyhow::Error::from(e).context("Updating config")),
            };
            config_table(out, config);
            Ok(())
        }
        ConfigCommand::DeleteConfig { id, kind, name } => {
            id_or_type_name(&id, &kind, &name)?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            confirm(out, global)?;
            let (path, missing) = match id.as_deref().filter(|i| !i.is_empty()) {
                Some(id) => (
                    format!("/configs/{id}"),
                    format!("No configs to delete: no matches for id '{id}' found."),
                ),
                None => {
                    let kind = kind.unwrap_or_default();
                    let name = name.unwrap_or_default();
                    (
                        format!("/configs?{}", query(&[("type", &kind), ("name", &name)])),
                        format!(
                            "No configs to delete: no matches for type '{kind}' and name '{name}' found."
                        ),
                    )
                }
            };
            match client.request_bytes(Method::DELETE, &path, ReqBody::Empty, &[]) {
                Ok(_) => Ok(()),
                Err(DirectorError::Status { status: 404, .. }) => {
                    out.line(missing);
                    Ok(())
                }
                Err(e) => Err(anyhow::Error::from(e).context("Deleting config")),
            }
        }
        ConfigCommand::DiffConfig {
            from_id,
            to_id,
            from_content,
            to_content,
        } => {
            let side = |id: &Option<String>,
                        content: &Option<PathBuf>|
             -> anyhow::Result<serde_json::Value> {
                match (id.as_deref().filter(|i| !i.is_empty()), content) {
                    (Some(id), None) => Ok(json!({"id": id})),
                    (None, Some(p)) => Ok(json!({"content": std::fs::read_to_string(p)
                        .with_context(|| format!("Reading file '{}'", p.display()))?})),
                    _ => bail!(
                        "Expected either --from-id and --to-id or --from-content and --to-content"
                    ),
                }
            };
            let from = side(&from_id, &from_content)?;
            let to = side(&to_id, &to_content)?;
            let sess = Session::new(global)?;
            let (client, _) = sess.director(out)?;
            let diff = diff_post(
                &client,
                "/configs/diff",
                json_body(json!({"from": from, "to": to})),
            )?;
            out.table(
                &Table {
                    content: String::new(),
                    header: ["From ID", "To ID", "Diff"].map(String::from).to_vec(),
                    rows: vec![vec![
                        from_id.unwrap_or_default(),
                        to_id.unwrap_or_default(),
                        diff_text(&diff.diff),
                    ]],
                    notes: vec![],
                },
                &TableOptions {
                    transpose: true,
                    fill_first_column: true,
                    ..TableOptions::default()
                },
            );
            Ok(())
        }
        ConfigCommand::CloudConfig { name } => {
            let props = legacy_latest(
                global,
                out,
                &format!(
                    "/cloud_configs?{}",
                    query(&[("name", &name), ("limit", "1")])
                ),
                "Finding cloud configs",
            )?
            .ok_or_else(|| anyhow!("No cloud config"))?;
            out.raw(&props);
            Ok(())
        }
        ConfigCommand::RuntimeConfig { name } => {
            let props = legacy_latest(
                global,
                out,
                &format!(
                    "/runtime_configs?{}",
                    query(&[("name", &name), ("limit", "1")])
                ),
                "Finding runtime configs",
            )?;
            match props {
                Some(p) => {
                    out.raw(&p);
                    Ok(())
                }
                None if name.is_empty() => bail!("No default runtime config"),
                None => bail!("No runtime config with name '{name}'"),
            }
        }
        ConfigCommand::CpiConfig => {
            let props = legacy_latest(global, out, "/cpi_configs?limit=1", "Finding CPI configs")?
                .ok_or_else(|| anyhow!("No CPI config"))?;
            out.raw(&props);
            Ok(())
        }
        ConfigCommand::UpdateCloudConfig { path, name } => legacy_update(
            global,
            out,
            &path,
            &format!("/cloud_configs/diff?{}", query(&[("name", &name)])),
            &format!("/cloud_configs?{}", query(&[("name", &name)])),
            "Updating cloud config",
        ),
        ConfigCommand::UpdateRuntimeConfig {
            path,
            name,
            no_redact,
        } => {
            let mut q = vec![("name", name.as_str())];
            if no_redact {
                q.push(("redact", "false"));
            }
            legacy_update(
                global,
                out,
                &path,
                &format!("/runtime_configs/diff?{}", query(&q)),
                &format!("/runtime_configs?{}", query(&[("name", &name)])),
                "Updating runtime config",
            )
        }
        ConfigCommand::UpdateCpiConfig { path, no_redact } => {
            let q = if no_redact { "redact=false" } else { "" };
            legacy_update(
                global,
                out,
                &path,
                &format!("/cpi_configs/diff?{q}"),
                "/cpi_configs",
                "Updating CPI config",
            )
        }
    }
}

/// The newest legacy config's properties, or `None` when there is none.
fn legacy_latest(
    global: &GlobalOpts,
    out: &mut Out,
    path: &str,
    what: &str,
) -> anyhow::Result<Option<String>> {
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let list: Vec<LegacyConfig> = client.get_json(path).context(what.to_string())?;
    Ok(list.into_iter().next().map(|c| c.properties))
}

fn legacy_update(
    global: &GlobalOpts,
    out: &mut Out,
    file: &Path,
    diff_path: &str,
    post_path: &str,
    what: &str,
) -> anyhow::Result<()> {
    let content = yaml_file(file)?;
    let sess = Session::new(global)?;
    let (client, _) = sess.director(out)?;
    let diff = diff_post(&client, diff_path, yaml_body(&content))?;
    print_diff(out, &diff);
    confirm(out, global)?;
    client
        .request_bytes(Method::POST, post_path, yaml_body(&content), &[])
        .context(what.to_string())?;
    Ok(())
}

/// One config as `config` and `update-config` show it (the reference CLI's config table).
fn config_table(out: &mut Out, config: Config) {
    out.table(
        &Table {
            content: "config".into(),
            header: ["ID", "Type", "Name", "Created At", "Content"]
                .map(String::from)
                .to_vec(),
            rows: vec![vec![
                config.id,
                config.kind,
                config.name,
                config.created_at,
                config.content,
            ]],
            notes: vec![],
        },
        &TableOptions {
            transpose: true,
            fill_first_column: true,
            ..TableOptions::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_sorted_and_escaped() {
        assert_eq!(query(&[("name", ""), ("limit", "1")]), "limit=1&name=");
        assert_eq!(
            query(&[
                ("type", "cloud"),
                ("name", "a+b c"),
                ("limit", "1"),
                ("latest", "true")
            ]),
            "latest=true&limit=1&name=a%2Bb+c&type=cloud"
        );
    }
}
