//! Rendering every instance's job templates in one batch (one Ruby process), with the job
//! sources read from the release's job archives in the blobstore.

use bosh_planner::{DeploymentPlan, InstanceGroupPlan, InstancePlan, LinkPlan};
use bosh_templates::{
    DnsEncoding, DnsGroup, GroupJobSpec, GroupJobTemplate, InstanceContext, InstanceRender,
    JobTemplates, LinkInstance, LinkSpec, ProvidedLink, ReleaseRef, RenderError, RenderRequest,
    RenderedArchive,
};
use bosh_types::ids::InstanceId;
use bosh_types::manifest::Lifecycle;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::path::Path;

use crate::error::error_chain;
use crate::releases;
use crate::services::Services;
use crate::tasks::runner::{TaskContext, TaskError};

/// Ruby's `JobTemplateRenderError` code.
pub const RENDER_FAILED: u32 = 80006;
pub const DNS_DOMAIN: &str = "bosh";

/// What a group's job gives its templates, before variables are interpolated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInput {
    pub properties: Map<String, Value>,
    pub links: IndexMap<String, LinkSpec>,
}

/// A release job's sources and where its archive is.
pub struct JobSource {
    pub templates: JobTemplates,
    pub blobstore_id: String,
    pub sha1: String,
}

/// One instance, rendered.
pub struct InstanceRendered {
    pub configuration_hash: String,
    pub template_hashes: IndexMap<String, String>,
    pub archive: RenderedArchive,
}

/// Groups whose instances get VMs on deploy (errands run later, on demand).
pub fn service_groups(plan: &DeploymentPlan) -> impl Iterator<Item = &InstanceGroupPlan> {
    plan.instance_groups
        .iter()
        .filter(|g| g.lifecycle == Lifecycle::Service)
}

fn link_spec(l: &LinkPlan) -> LinkSpec {
    LinkSpec {
        address: None,
        default_network: Some(l.default_network.clone()),
        deployment_name: Some(l.deployment_name.clone()),
        domain: Some(l.domain.clone()),
        group_name: Some(format!("{}-{}", l.link_name, l.link_type)),
        instance_group: Some(l.instance_group.clone()),
        instances: l
            .instances
            .iter()
            .map(|i| LinkInstance {
                name: i.name.clone(),
                id: i.id.to_string(),
                index: i.index,
                bootstrap: i.bootstrap,
                az: i.az.clone(),
                address: i.address.clone(),
            })
            .collect(),
        properties: match serde_json::to_value(&l.properties) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        },
        use_link_dns_names: Some(l.use_link_dns_names),
        use_short_dns_addresses: Some(l.use_short_dns_addresses),
    }
}

/// `(group, job)` → properties and links as JSON, the unit variables are interpolated in.
pub fn job_inputs(plan: &DeploymentPlan) -> Vec<((String, String), Value)> {
    let mut out = Vec::new();
    for g in service_groups(plan) {
        for j in &g.jobs {
            let properties = match serde_json::to_value(&j.properties) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let links: IndexMap<String, LinkSpec> = j
                .links
                .iter()
                .map(|(name, l)| (name.clone(), link_spec(l)))
                .collect();
            let value = serde_json::to_value(JobInput { properties, links }).unwrap_or(Value::Null);
            out.push(((g.name.clone(), j.name.clone()), value));
        }
    }
    out
}

/// The first `((placeholder))` left in a value, with its path.
pub fn placeholder_find(v: &Value, path: &str) -> Option<(String, String)> {
    match v {
        Value::String(s) => {
            let start = s.find("((")?;
            let end = s[start..].find("))")?;
            Some((path.to_owned(), s[start..start + end + 2].to_owned()))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| placeholder_find(x, &format!("{path}/{i}"))),
        Value::Object(m) => m
            .iter()
            .find_map(|(k, x)| placeholder_find(x, &format!("{path}/{k}"))),
        _ => None,
    }
}

/// Reads every release job the plan uses from its archive in the blobstore.
pub async fn job_sources_load(
    ctx: &TaskContext,
    services: &Services,
    plan: &DeploymentPlan,
) -> Result<HashMap<(String, String), JobSource>, TaskError> {
    let db = ctx.db();
    let mut out: HashMap<(String, String), JobSource> = HashMap::new();
    let mut rows: HashMap<(String, String), Vec<releases::TemplateRow>> = HashMap::new();
    for g in service_groups(plan) {
        for j in &g.jobs {
            let key = (j.release.clone(), j.name.clone());
            if out.contains_key(&key) {
                continue;
            }
            let rv_key = (j.release.clone(), j.release_version.clone());
            if !rows.contains_key(&rv_key) {
                let rid = releases::release_id_fetch(db, &j.release).await?;
                let rv = match rid {
                    Some(rid) => {
                        releases::release_version_fetch(db, rid, &j.release_version).await?
                    }
                    None => None,
                };
                let t = match rv {
                    Some(rv) => releases::release_version_templates(db, rv.id).await?,
                    None => Vec::new(),
                };
                rows.insert(rv_key.clone(), t);
            }
            let row = rows[&rv_key]
                .iter()
                .find(|t| t.name == j.name)
                .cloned()
                .ok_or_else(|| {
                    TaskError::failed(
                        RENDER_FAILED,
                        format!(
                            "Job '{}' is not in release '{}/{}'",
                            j.name, j.release, j.release_version
                        ),
                    )
                })?;
            let templates = job_archive_read(services, &row).await.map_err(|e| {
                TaskError::failed(
                    RENDER_FAILED,
                    format!("Reading job '{}/{}': {e}", j.release, j.name),
                )
            })?;
            out.insert(
                key,
                JobSource {
                    templates,
                    blobstore_id: row.blobstore_id.clone(),
                    sha1: row.sha1.clone(),
                },
            );
        }
    }
    Ok(out)
}

async fn job_archive_read(
    services: &Services,
    row: &releases::TemplateRow,
) -> Result<JobTemplates, String> {
    let dir = services.tmp_path("job");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let tgz = dir.join("job.tgz");
    let result = async {
        services
            .blobstore
            .get_to_file(&row.blobstore_id, &tgz)
            .await
            .map_err(|e| error_chain(&e))?;
        let unpacked = dir.join("job");
        tokio::task::spawn_blocking(move || -> Result<JobTemplates, String> {
            unpack(&tgz, &unpacked).map_err(|e| format!("unpacking the job archive: {e}"))?;
            JobTemplates::from_dir(&unpacked).map_err(|e| error_chain(&e))
        })
        .await
        .map_err(|e| e.to_string())?
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Unpacks a job archive; `tar` refuses entries escaping `dest`.
fn unpack(tgz: &Path, dest: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(tgz)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    std::fs::create_dir_all(dest)?;
    archive.unpack(dest)
}

fn instance_context(
    plan: &DeploymentPlan,
    g: &InstanceGroupPlan,
    i: &InstancePlan,
    sources: &HashMap<(String, String), JobSource>,
) -> InstanceContext {
    let templates = g
        .jobs
        .iter()
        .map(|j| {
            let src = sources.get(&(j.release.clone(), j.name.clone()));
            GroupJobTemplate {
                name: j.name.clone(),
                version: j.version.clone(),
                sha1: j.sha1.clone().unwrap_or_default(),
                blobstore_id: src.map(|s| s.blobstore_id.clone()).unwrap_or_default(),
                logs: None,
            }
        })
        .collect();
    let networks = i
        .networks
        .iter()
        .map(|(name, n)| {
            let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
            if let Value::Object(m) = &mut v {
                m.entry("ip").or_insert_with(|| json!("127.0.0.1"));
                m.insert(
                    "dns_record_name".into(),
                    json!(format!(
                        "{}.{}.{}.{}.{DNS_DOMAIN}",
                        i.index,
                        canonical(&g.name),
                        canonical(name),
                        canonical(&plan.name)
                    )),
                );
            }
            (name.clone(), v)
        })
        .collect();
    let address = i.address().map(|a| a.to_string());
    InstanceContext {
        deployment: plan.name.clone(),
        job: Some(GroupJobSpec {
            name: g.name.clone(),
            templates,
        }),
        index: i.index,
        bootstrap: i.bootstrap,
        name: g.name.clone(),
        id: i.id.to_string(),
        az: i.az.clone(),
        networks,
        properties_need_filtering: true,
        dns_domain_name: DNS_DOMAIN.to_owned(),
        persistent_disk: g.persistent_disk.as_ref().map_or(0, |d| d.size),
        address: address.clone(),
        ip: address,
    }
}

/// DNS names as the director canonicalises them: lowercase, `_` → `-`.
fn canonical(s: &str) -> String {
    s.to_lowercase().replace('_', "-")
}

fn dns_encoding(plan: &DeploymentPlan) -> (DnsEncoding, HashMap<(String, String, String), u64>) {
    let mut enc = DnsEncoding::default();
    let mut link_ids = HashMap::new();
    let mut next = 1u64;
    for g in service_groups(plan) {
        enc.group_ids.push(DnsGroup {
            type_: "instance-group".into(),
            name: g.name.clone(),
            deployment: plan.name.clone(),
            id: next,
        });
        next += 1;
        for j in &g.jobs {
            for p in &j.provides {
                let name = format!("{}-{}", p.alias, p.link_type);
                enc.group_ids.push(DnsGroup {
                    type_: "link".into(),
                    name,
                    deployment: plan.name.clone(),
                    id: next,
                });
                link_ids.insert((g.name.clone(), j.name.clone(), p.name.clone()), next);
                next += 1;
            }
        }
        for (n, i) in g.instances.iter().enumerate() {
            if let Some(az) = &i.az {
                let len = enc.az_ids.len() as u64;
                enc.az_ids.entry(az.clone()).or_insert(len + 1);
            }
            for net in i.networks.keys() {
                let len = enc.network_ids.len() as u64;
                enc.network_ids.entry(net.clone()).or_insert(len + 1);
            }
            enc.instance_nums.insert(i.id.to_string(), n as u64);
        }
    }
    (enc, link_ids)
}

/// Renders every service instance of the plan in one batch. `inputs` holds each group job's
/// interpolated properties and links. A failed batch reports every template error.
pub async fn instances_render(
    plan: &DeploymentPlan,
    sources: &HashMap<(String, String), JobSource>,
    inputs: &HashMap<(String, String), JobInput>,
) -> Result<HashMap<InstanceId, InstanceRendered>, TaskError> {
    let (dns, link_ids) = dns_encoding(plan);
    let mut request = RenderRequest {
        instances: Vec::new(),
        dns,
    };
    let mut order = Vec::new();
    for g in service_groups(plan) {
        for i in &g.instances {
            let mut jobs = Vec::new();
            for j in &g.jobs {
                let Some(src) = sources.get(&(j.release.clone(), j.name.clone())) else {
                    continue;
                };
                let input = inputs.get(&(g.name.clone(), j.name.clone()));
                let provided = j
                    .provides
                    .iter()
                    .map(|p| ProvidedLink {
                        name: p.name.clone(),
                        type_: p.link_type.clone(),
                        group: link_ids
                            .get(&(g.name.clone(), j.name.clone(), p.name.clone()))
                            .copied()
                            .unwrap_or(0)
                            .to_string(),
                    })
                    .collect();
                jobs.push(src.templates.job_render(
                    ReleaseRef {
                        name: j.release.clone(),
                        version: j.release_version.clone(),
                    },
                    input.map(|x| x.properties.clone()).unwrap_or_default(),
                    input.map(|x| x.links.clone()).unwrap_or_default(),
                    provided,
                ));
            }
            request.instances.push(InstanceRender {
                instance: instance_context(plan, g, i, sources),
                jobs,
            });
            order.push(i.id);
        }
    }
    if request.instances.is_empty() {
        return Ok(HashMap::new());
    }
    let rendered = tokio::task::spawn_blocking(move || {
        let batch = bosh_templates::render_batch(&request)?;
        let mut out = Vec::new();
        for r in batch.instances {
            let archive = bosh_templates::rendered_templates_archive(&r)
                .map_err(|e| RenderError::Answer(format!("{}: {}", e, error_chain(&e))))?;
            out.push(InstanceRendered {
                configuration_hash: r.configuration_hash(),
                template_hashes: r.template_hashes(),
                archive,
            });
        }
        Ok::<_, RenderError>(out)
    })
    .await
    .map_err(|e| TaskError::failed(RENDER_FAILED, format!("template rendering: {e}")))?;
    let rendered = rendered.map_err(|e| match e {
        RenderError::Templates(t) => TaskError::failed(
            RENDER_FAILED,
            format!("Unable to render jobs for instance groups:\n{t}"),
        ),
        other => TaskError::failed(RENDER_FAILED, error_chain(&other)),
    })?;
    Ok(order.into_iter().zip(rendered).collect())
}
