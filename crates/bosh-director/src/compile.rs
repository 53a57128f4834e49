//! Package compilation (agent-protocol.md §9): the package DAG of the release versions a
//! deployment uses, compiled on compilation VMs through the agent's `compile_package`, cached
//! in `compiled_packages` by (package fingerprint, stemcell os, stemcell version, dependency
//! key) and shared by every deployment.
//!
//! - Ready packages (all dependencies compiled) start in order of their critical path (the
//!   longest chain of packages waiting on them), at most `compilation.workers` at once.
//! - A per-(fingerprint, stemcell) lock in the `locks` table plus a cache re-check makes two
//!   tasks that need the same package compile it once.
//! - Compilation VMs take a dynamic address from the compilation network's range (not
//!   reserved, not static, not in `ip_addresses`); with `reuse_compilation_vms` an idle VM is
//!   reused, otherwise each package gets its own VM, deleted right after. Every VM is deleted
//!   before this function returns, on success, failure or cancel.

use bosh_cpi_protocol::methods::{CloudProperties, Network as CpiNetwork, NetworkType, Networks};
use bosh_types::cloud_config::{CloudConfig, Compilation, Network};
use bosh_types::ids::StemcellCid;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use crate::db::{Db, DbError, now_secs};
use crate::error::error_chain;
use crate::locks::LockSpec;
use crate::releases::{self, PackageRow};
use crate::services::Services;
use crate::stemcells::{self, Stemcell};
use crate::tasks::events::Stage;
use crate::tasks::runner::{TaskContext, TaskError};
use crate::vms::{self, Vm, VmSpec};

/// Ruby's `PackageCompilationFailed`-family code for a failed compilation.
pub const COMPILE_FAILED: u32 = 450001;
const NOT_FOUND: u32 = 60001;
const AGENT_WAIT: Duration = Duration::from_secs(600);

/// The packages of one release version to compile (with their dependencies).
#[derive(Debug, Clone)]
pub struct ReleasePackages {
    pub release: String,
    pub version: String,
    /// Package names; `None` compiles every package of the release version.
    pub packages: Option<Vec<String>>,
}

/// What to compile, on what, and where.
#[derive(Debug, Clone)]
pub struct CompileRequest {
    pub deployment: String,
    pub releases: Vec<ReleasePackages>,
    pub stemcell_name: String,
    pub stemcell_version: String,
    /// For the compilation block and the networks, AZs, VM types and extensions it names.
    pub cloud_config: CloudConfig,
}

/// A compiled package as the apply spec needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPackageRef {
    pub release: String,
    pub name: String,
    /// The package's version (its fingerprint for releases made by CLI v2).
    pub version: String,
    pub fingerprint: String,
    pub dependency_key: String,
    pub stemcell_os: String,
    pub stemcell_version: String,
    pub build: i64,
    pub blobstore_id: String,
    /// Bare SHA-1 hex of the compiled tarball, as the agent reports it.
    pub sha1: String,
    /// Compiled by this call (false: found in the cache).
    pub compiled_now: bool,
}

impl CompiledPackageRef {
    /// `<version>.<build>`, the version the agent installs under.
    pub fn agent_version(&self) -> String {
        format!("{}.{}", self.version, self.build)
    }
}

struct Node {
    release: String,
    pkg: PackageRow,
    deps: Vec<usize>,
    dependents: Vec<usize>,
    dependency_key: String,
    /// Length of the longest chain of packages waiting on this one (itself included).
    priority: usize,
}

/// Ruby's `KeyGenerator#dependency_key_from_models`: the sorted direct dependencies as
/// `[name, version]`, with a third element listing their own dependencies the same way when
/// they have any; JSON without spaces.
pub fn dependency_key(name: &str, packages: &HashMap<String, PackageRow>) -> String {
    fn arrayify(name: &str, packages: &HashMap<String, PackageRow>) -> Value {
        let Some(p) = packages.get(name) else {
            return json!([name, ""]);
        };
        let mut out = vec![json!(p.name), json!(p.version)];
        if !p.dependencies.is_empty() {
            let mut deps = p.dependencies.clone();
            deps.sort();
            out.push(Value::Array(
                deps.iter().map(|d| arrayify(d, packages)).collect(),
            ));
        }
        Value::Array(out)
    }
    let mut deps = packages
        .get(name)
        .map(|p| p.dependencies.clone())
        .unwrap_or_default();
    deps.sort();
    Value::Array(deps.iter().map(|d| arrayify(d, packages)).collect()).to_string()
}

fn not_found(message: String) -> TaskError {
    TaskError::failed(NOT_FOUND, message)
}

async fn graph_build(db: &Db, req: &CompileRequest) -> Result<Vec<Node>, TaskError> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for r in &req.releases {
        let rid = releases::release_id_fetch(db, &r.release)
            .await?
            .ok_or_else(|| not_found(format!("Release '{}' doesn't exist", r.release)))?;
        let rv = releases::release_version_fetch(db, rid, &r.version)
            .await?
            .ok_or_else(|| {
                not_found(format!(
                    "Release version '{}/{}' doesn't exist",
                    r.release, r.version
                ))
            })?;
        let by_name: HashMap<String, PackageRow> = releases::release_version_packages(db, rv.id)
            .await?
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        let mut wanted: Vec<String> = match &r.packages {
            Some(names) => names.clone(),
            None => {
                let mut all: Vec<String> = by_name.keys().cloned().collect();
                all.sort();
                all
            }
        };
        // Depth-first over dependencies (release upload guarantees no cycles).
        while let Some(name) = wanted.pop() {
            let key = (r.release.clone(), name.clone());
            if index.contains_key(&key) {
                continue;
            }
            let pkg = by_name.get(&name).cloned().ok_or_else(|| {
                not_found(format!(
                    "Package '{name}' is not in release '{}/{}'",
                    r.release, r.version
                ))
            })?;
            wanted.extend(pkg.dependencies.iter().cloned());
            index.insert(key, nodes.len());
            nodes.push(Node {
                release: r.release.clone(),
                dependency_key: dependency_key(&name, &by_name),
                pkg,
                deps: Vec::new(),
                dependents: Vec::new(),
                priority: 0,
            });
        }
    }
    for i in 0..nodes.len() {
        let deps: Vec<usize> = nodes[i]
            .pkg
            .dependencies
            .iter()
            .filter_map(|d| index.get(&(nodes[i].release.clone(), d.clone())).copied())
            .collect();
        for &d in &deps {
            nodes[d].dependents.push(i);
        }
        nodes[i].deps = deps;
    }
    // Critical path: a package's priority is 1 + the largest priority of its dependents.
    fn priority(nodes: &mut [Node], i: usize, seen: &mut Vec<bool>) -> usize {
        if seen[i] {
            return nodes[i].priority;
        }
        seen[i] = true;
        let dependents = nodes[i].dependents.clone();
        let p = 1 + dependents
            .into_iter()
            .map(|d| priority(nodes, d, seen))
            .max()
            .unwrap_or(0);
        nodes[i].priority = p;
        p
    }
    let mut seen = vec![false; nodes.len()];
    for i in 0..nodes.len() {
        priority(&mut nodes, i, &mut seen);
    }
    Ok(nodes)
}

/// The cached compiled package for a key, if any: `(blobstore_id, sha1, build)`.
pub async fn compiled_package_find(
    db: &Db,
    fingerprint: &str,
    stemcell_os: &str,
    stemcell_version: &str,
    dependency_key: &str,
) -> Result<Option<(String, String, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT blobstore_id, sha1, build FROM compiled_packages WHERE fingerprint = $1 \
         AND stemcell_os = $2 AND stemcell_version = $3 AND dependency_key = $4",
    )
    .bind(fingerprint)
    .bind(stemcell_os)
    .bind(stemcell_version)
    .bind(dependency_key)
    .fetch_optional(db.pool())
    .await?)
}

/// A compilation VM and the address it holds.
struct CompileVm {
    vm: Vm,
    ip: Option<(String, IpAddr)>,
}

/// Everything compilation needs that does not change per package.
struct Compiler<'a> {
    ctx: &'a TaskContext,
    services: &'a Services,
    req: &'a CompileRequest,
    compilation: Compilation,
    stemcell: Stemcell,
    stage: Stage,
    idle: Mutex<Vec<CompileVm>>,
    /// Every VM created and not yet deleted.
    live: Mutex<Vec<CompileVm>>,
}

/// A cloud-config YAML value as JSON (`Null` when it cannot be one).
fn json_of(v: &bosh_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn json_object(v: &bosh_yaml::Value) -> Map<String, Value> {
    match json_of(v) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn merge(into: &mut Map<String, Value>, from: &bosh_yaml::Value) {
    merge_json(into, &json_of(from));
}

fn merge_json(into: &mut Map<String, Value>, from: &Value) {
    if let Value::Object(m) = from {
        for (k, v) in m {
            match (into.get_mut(k), v) {
                (Some(Value::Object(a)), Value::Object(_)) => merge_json(a, v),
                _ => {
                    into.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// Usable dynamic addresses of a subnet range: not the network or broadcast address, the
/// gateway, reserved or static ranges.
fn subnet_candidates(subnet: &bosh_types::cloud_config::ManualSubnet) -> Vec<IpAddr> {
    let Some(range) = subnet.range else {
        return Vec::new();
    };
    let Some(all) = range.as_range().addresses(65536) else {
        return Vec::new();
    };
    let (first, last) = (range.first(), range.last());
    all.into_iter()
        .filter(|ip| *ip != first && !(range.is_ipv4() && *ip == last))
        .filter(|ip| Some(*ip) != subnet.gateway)
        .filter(|ip| !subnet.reserved.iter().any(|r| r.contains(*ip)))
        .filter(|ip| !subnet.static_ips.iter().any(|r| r.contains(*ip)))
        .collect()
}

impl Compiler<'_> {
    fn cloud_properties(&self) -> Result<CloudProperties, TaskError> {
        let cc = &self.req.cloud_config;
        let c = &self.compilation;
        let mut props = Map::new();
        if let Some(az) = &c.az {
            let az = cc.azs.iter().find(|a| &a.name == az).ok_or_else(|| {
                not_found(format!("Compilation AZ '{az}' is not in the cloud config"))
            })?;
            merge(&mut props, &az.cloud_properties);
        }
        match &c.vm_type {
            Some(name) => {
                let t = cc
                    .vm_types
                    .iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| {
                        not_found(format!(
                            "Compilation vm_type '{name}' is not in the cloud config"
                        ))
                    })?;
                merge(&mut props, &t.cloud_properties);
            }
            None => merge(&mut props, &c.cloud_properties),
        }
        for name in &c.vm_extensions {
            let e = cc
                .vm_extensions
                .iter()
                .find(|e| &e.name == name)
                .ok_or_else(|| {
                    not_found(format!(
                        "Compilation vm_extension '{name}' is not in the cloud config"
                    ))
                })?;
            merge(&mut props, &e.cloud_properties);
        }
        Ok(props)
    }

    /// The compilation network settings for `create_vm`, with a dynamic reservation on a
    /// manual network.
    async fn network(&self) -> Result<(Networks, Option<(String, IpAddr)>), TaskError> {
        let name = &self.compilation.network;
        let net = self
            .req
            .cloud_config
            .networks
            .iter()
            .find(|n| n.name() == name)
            .ok_or_else(|| {
                not_found(format!(
                    "Compilation network '{name}' is not in the cloud config"
                ))
            })?;
        let az = self.compilation.az.as_deref();
        let mut setting = CpiNetwork {
            network_type: None,
            ip: None,
            netmask: None,
            gateway: None,
            prefix: None,
            dns: None,
            default: Some(vec!["dns".into(), "gateway".into()]),
            cloud_properties: Map::new(),
            mac: None,
            preconfigured: None,
            extra: Map::new(),
        };
        let mut reservation = None;
        match net {
            Network::Manual(m) => {
                let db = self.ctx.db();
                let mut reserved = None;
                for subnet in m.subnets.iter().filter(|s| {
                    az.is_none() || s.azs.is_empty() || s.azs.iter().any(|a| Some(a.as_str()) == az)
                }) {
                    if let Some(ip) = vms::ip_reserve_dynamic(
                        db,
                        name,
                        &self.req.deployment,
                        subnet_candidates(subnet),
                        Some(self.ctx.id.0),
                    )
                    .await?
                    {
                        reserved = Some((subnet, ip));
                        break;
                    }
                }
                let (subnet, ip) = reserved.ok_or_else(|| {
                    TaskError::failed(
                        COMPILE_FAILED,
                        format!("Failed to reserve a dynamic IP on network '{name}' for a compilation VM: no address left"),
                    )
                })?;
                setting.network_type = Some(NetworkType::Manual);
                setting.ip = Some(ip.to_string());
                if let Some(range) = subnet.range {
                    setting.netmask = Some(range.netmask().to_string());
                    setting.prefix = Some(json!(range.prefix_len().to_string()));
                }
                setting.gateway = subnet.gateway.map(|g| g.to_string());
                setting.dns = Some(subnet.dns.iter().map(|d| d.to_string()).collect());
                setting.cloud_properties = json_object(&subnet.cloud_properties);
                reservation = Some((name.clone(), ip));
            }
            Network::Dynamic(d) => {
                setting.network_type = Some(NetworkType::Dynamic);
                setting.dns = Some(d.dns.iter().map(|x| x.to_string()).collect());
                setting.cloud_properties = json_object(&d.cloud_properties);
            }
            Network::Vip(_) => {
                return Err(TaskError::failed(
                    COMPILE_FAILED,
                    format!("Compilation network '{name}' is a vip network"),
                ));
            }
        }
        Ok((BTreeMap::from([(name.clone(), setting)]), reservation))
    }

    async fn vm_acquire(&self, package: &str) -> Result<CompileVm, TaskError> {
        if self.compilation.reuse_compilation_vms
            && let Some(vm) = self.idle.lock().ok().and_then(|mut i| i.pop())
        {
            return Ok(vm);
        }
        let cloud_properties = self.cloud_properties()?;
        let (networks, ip) = self.network().await?;
        let env = json_object(&self.compilation.env);
        let group = format!("compilation-{}", uuid::Uuid::new_v4());
        let spec = VmSpec {
            deployment: self.req.deployment.clone(),
            instance_id: None,
            stemcell_name: self.stemcell.name.clone(),
            stemcell_version: self.stemcell.version.clone(),
            stemcell_cid: StemcellCid::new(self.stemcell.cid.clone())
                .map_err(|e| TaskError::failed(COMPILE_FAILED, e.to_string()))?,
            cloud_properties,
            networks,
            env,
            group: group.clone(),
            groups: vec![self.req.deployment.clone(), group],
            metadata: BTreeMap::from([("compiling".to_owned(), package.to_owned())]),
            compilation: true,
            task_id: Some(self.ctx.id.0),
            agent_wait: AGENT_WAIT,
            agent_id: None,
        };
        match vms::vm_create(self.ctx.db(), self.services, spec).await {
            Ok(vm) => {
                if let Some((net, addr)) = &ip {
                    vms::ip_assign_vm(self.ctx.db(), net, *addr, vm.id).await?;
                }
                let cvm = CompileVm { vm, ip };
                if let Ok(mut live) = self.live.lock() {
                    live.push(CompileVm {
                        vm: cvm.vm.clone(),
                        ip: cvm.ip.clone(),
                    });
                }
                Ok(cvm)
            }
            Err(e) => {
                if let Some((net, addr)) = ip {
                    let _ = vms::ip_release(self.ctx.db(), &net, addr).await;
                }
                Err(TaskError::failed(
                    COMPILE_FAILED,
                    format!(
                        "Creating a compilation VM for '{package}': {}",
                        error_chain(&e)
                    ),
                ))
            }
        }
    }

    async fn vm_destroy(&self, cvm: CompileVm) -> Result<(), TaskError> {
        vms::vm_delete(self.ctx.db(), self.services, &cvm.vm)
            .await
            .map_err(|e| {
                TaskError::failed(
                    COMPILE_FAILED,
                    format!(
                        "Deleting compilation VM '{}': {}",
                        cvm.vm.cid,
                        error_chain(&e)
                    ),
                )
            })?;
        if let Ok(mut live) = self.live.lock() {
            live.retain(|v| v.vm.id != cvm.vm.id);
        }
        if let Some((net, addr)) = cvm.ip {
            vms::ip_release(self.ctx.db(), &net, addr).await?;
        }
        Ok(())
    }

    /// After a package: back to the idle pool, or deleted.
    async fn vm_release(&self, cvm: CompileVm, healthy: bool) -> Result<(), TaskError> {
        if healthy
            && self.compilation.reuse_compilation_vms
            && let Ok(mut idle) = self.idle.lock()
        {
            idle.push(cvm);
            return Ok(());
        }
        self.vm_destroy(cvm).await
    }

    /// Deletes every VM still alive; the first error is reported after trying them all.
    async fn vms_cleanup(&self) -> Result<(), TaskError> {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        let live: Vec<CompileVm> = self
            .live
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        let mut first = None;
        for cvm in live {
            let id = cvm.vm.id;
            // Back in the list until deleted, so a failed delete stays visible.
            if let Ok(mut l) = self.live.lock() {
                l.push(CompileVm {
                    vm: cvm.vm.clone(),
                    ip: cvm.ip.clone(),
                });
            }
            if let Err(e) = self.vm_destroy(cvm).await {
                tracing::error!(vm = id, error = %e, "cannot delete a compilation VM");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    async fn compile_one(
        &self,
        node: &Node,
        deps: Vec<CompiledPackageRef>,
    ) -> Result<CompiledPackageRef, TaskError> {
        let db = self.ctx.db();
        let (os, ver) = (&self.stemcell.operating_system, &self.stemcell.version);
        let p = &node.pkg;
        let found = |hit: (String, String, i64), now: bool| CompiledPackageRef {
            release: node.release.clone(),
            name: p.name.clone(),
            version: p.version.clone(),
            fingerprint: p.fingerprint.clone(),
            dependency_key: node.dependency_key.clone(),
            stemcell_os: os.clone(),
            stemcell_version: ver.clone(),
            blobstore_id: hit.0,
            sha1: hit.1,
            build: hit.2,
            compiled_now: now,
        };
        if let Some(hit) =
            compiled_package_find(db, &p.fingerprint, os, ver, &node.dependency_key).await?
        {
            return Ok(found(hit, false));
        }
        let lock = LockSpec {
            lock_type: "compile".to_owned(),
            resource: vec![p.fingerprint.clone(), format!("{os}/{ver}")],
        };
        self.ctx.lock(&lock).await?;
        let result = async {
            if let Some(hit) =
                compiled_package_find(db, &p.fingerprint, os, ver, &node.dependency_key).await?
            {
                return Ok(found(hit, false));
            }
            let (Some(blob), Some(sha1)) = (&p.blobstore_id, &p.sha1) else {
                return Err(TaskError::failed(
                    COMPILE_FAILED,
                    format!(
                        "Package '{}/{}' has no source and no compiled package for stemcell '{os}/{ver}'",
                        p.name, p.version
                    ),
                ));
            };
            let task = self.stage.task(&format!("{}/{}", p.name, p.version));
            let outcome = self.compile_on_vm(node, blob, sha1, &deps).await;
            match outcome {
                Ok((blobstore_id, digest, build)) => {
                    task.finished();
                    Ok(found((blobstore_id, digest, build), true))
                }
                Err(e) => {
                    task.failed(&e.to_string());
                    Err(e)
                }
            }
        }
        .await;
        let _ = self.ctx.unlock(&lock).await;
        result
    }

    async fn compile_on_vm(
        &self,
        node: &Node,
        blob: &str,
        sha1: &str,
        deps: &[CompiledPackageRef],
    ) -> Result<(String, String, i64), TaskError> {
        let p = &node.pkg;
        let db = self.ctx.db();
        let (os, ver) = (&self.stemcell.operating_system, &self.stemcell.version);
        let build: (Option<i64>,) = sqlx::query_as(
            "SELECT MAX(c.build) FROM compiled_packages c JOIN packages p ON p.id = c.package_id \
             WHERE p.name = $1 AND p.version = $2 AND c.stemcell_os = $3",
        )
        .bind(&p.name)
        .bind(&p.version)
        .bind(os)
        .fetch_one(db.pool())
        .await
        .map_err(DbError::from)?;
        let build = build.0.unwrap_or(0) + 1;
        let dep_args: Map<String, Value> = deps
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    json!({"name": d.name, "version": d.agent_version(), "sha1": d.sha1, "blobstore_id": d.blobstore_id}),
                )
            })
            .collect();
        let label = format!("{}/{}", p.name, p.version);
        let cvm = self.vm_acquire(&label).await?;
        let agent = cvm.vm.agent_id.to_string();
        let agents = self.services.agents()?;
        self.ctx.info(&format!(
            "Compiling package {label} on VM {} (agent {agent})",
            cvm.vm.cid
        ));
        let reply = agents
            .client()
            .call(
                &agent,
                "compile_package",
                vec![
                    json!(blob),
                    json!(sha1),
                    json!(p.name),
                    json!(format!("{}.{build}", p.version)),
                    Value::Object(dep_args),
                ],
            )
            .await;
        let healthy = !matches!(&reply, Err(e) if e.is_timeout());
        self.vm_release(cvm, healthy).await?;
        let value = reply.map_err(|e| {
            TaskError::failed(
                COMPILE_FAILED,
                format!("Compiling package '{label}' failed: {}", error_chain(&e)),
            )
        })?;
        let result = value.get("result").unwrap_or(&value);
        let blobstore_id = result
            .get("blobstore_id")
            .and_then(Value::as_str)
            .filter(|id| uuid::Uuid::parse_str(id).is_ok())
            .ok_or_else(|| {
                TaskError::failed(
                    COMPILE_FAILED,
                    format!(
                        "Compiling package '{label}': the agent returned no valid blobstore id"
                    ),
                )
            })?
            .to_owned();
        let digest = result
            .get("sha1")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        sqlx::query(
            "INSERT INTO compiled_packages (package_id, stemcell_os, stemcell_version, dependency_key, \
             sha1, blobstore_id, created_at, fingerprint, build) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(p.id)
        .bind(os)
        .bind(ver)
        .bind(&node.dependency_key)
        .bind(&digest)
        .bind(&blobstore_id)
        .bind(now_secs())
        .bind(&p.fingerprint)
        .bind(build)
        .execute(db.pool())
        .await
        .map_err(DbError::from)?;
        Ok((blobstore_id, digest, build))
    }
}

/// Compiles (or finds in the cache) every requested package and its dependencies for the
/// stemcell; returns them in no particular order. Compilation VMs are always deleted.
pub async fn compile_packages(
    ctx: &TaskContext,
    services: &Services,
    req: &CompileRequest,
) -> Result<Vec<CompiledPackageRef>, TaskError> {
    let db = ctx.db();
    let compilation = req.cloud_config.compilation.clone().ok_or_else(|| {
        TaskError::failed(COMPILE_FAILED, "The cloud config has no compilation block")
    })?;
    let stemcell = stemcells::stemcell_fetch(db, &req.stemcell_name, &req.stemcell_version)
        .await?
        .ok_or_else(|| {
            not_found(format!(
                "Stemcell '{}/{}' doesn't exist",
                req.stemcell_name, req.stemcell_version
            ))
        })?;
    let prep = ctx
        .events()
        .stage("Preparing package compilation", &[], Some(1));
    let t = prep.task("Finding packages to compile");
    let nodes = match graph_build(db, req).await {
        Ok(n) => n,
        Err(e) => {
            t.failed(&e.to_string());
            return Err(e);
        }
    };
    let mut missing = 0u32;
    for n in &nodes {
        if compiled_package_find(
            db,
            &n.pkg.fingerprint,
            &stemcell.operating_system,
            &stemcell.version,
            &n.dependency_key,
        )
        .await?
        .is_none()
        {
            missing += 1;
        }
    }
    t.finished();
    let compiler = Compiler {
        ctx,
        services,
        req,
        stage: ctx.events().stage("Compiling packages", &[], Some(missing)),
        compilation,
        stemcell,
        idle: Mutex::new(Vec::new()),
        live: Mutex::new(Vec::new()),
    };
    let result = schedule(&compiler, &nodes).await;
    let cleanup = compiler.vms_cleanup().await;
    let out = result?;
    cleanup?;
    Ok(out)
}

async fn schedule(c: &Compiler<'_>, nodes: &[Node]) -> Result<Vec<CompiledPackageRef>, TaskError> {
    let workers = c.compilation.workers.max(1) as usize;
    let mut waiting: Vec<usize> = nodes.iter().map(|n| n.deps.len()).collect();
    let mut done: Vec<Option<CompiledPackageRef>> = vec![None; nodes.len()];
    let mut ready: Vec<usize> = (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut running = FuturesUnordered::new();
    let mut failure: Option<TaskError> = None;
    loop {
        while failure.is_none() && running.len() < workers && !ready.is_empty() {
            if let Err(e) = c.ctx.checkpoint().await {
                failure = Some(e);
                break;
            }
            // Highest critical path first; ties by name for a stable order.
            ready.sort_by(|&a, &b| {
                nodes[a]
                    .priority
                    .cmp(&nodes[b].priority)
                    .then_with(|| nodes[b].pkg.name.cmp(&nodes[a].pkg.name))
            });
            let Some(i) = ready.pop() else { break };
            let deps: Vec<CompiledPackageRef> = nodes[i]
                .deps
                .iter()
                .filter_map(|&d| done[d].clone())
                .collect();
            running.push(async move { (i, c.compile_one(&nodes[i], deps).await) });
        }
        let Some((i, r)) = running.next().await else {
            break;
        };
        match r {
            Ok(compiled) => {
                done[i] = Some(compiled);
                for &d in &nodes[i].dependents {
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        ready.push(d);
                    }
                }
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(done.into_iter().flatten().collect())
}
