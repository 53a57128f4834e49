//! What the day-2 CLI tests share: an in-process director on the sim CPI whose VMs are real
//! `bosh-agent` processes, a one-job dev release with nothing to compile, and a guard that
//! kills whatever still runs under the test's dirs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `bosh-agent`, built into this test's target dir.
pub fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let target = profile.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "bosh-agent",
        "--bin",
        "bosh-agent",
    ])
    .arg("--target-dir")
    .arg(target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile.file_name().and_then(|n| n.to_str()) == Some("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().unwrap();
    let path = profile.join("bosh-agent");
    assert!(
        path.is_file(),
        "building bosh-agent failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// An in-process director on the sim CPI whose VMs run `agent`: (url, data dir, its tempdir).
pub fn director_with_agents(agent: &Path) -> (String, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let data_dir = dir.clone();
    let agent = agent.display().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let mut opts = bosh_director::server::DirectorOptions::new(
                data_dir,
                "127.0.0.1:0",
                "sim",
                bosh_director::config::DirectorConfig::default(),
            );
            opts.agent_command = Some(vec![agent]);
            let d = bosh_director::server::director_start(opts).await.unwrap();
            let _ = tx.send(d.url.clone());
            let _ = d.wait().await;
        });
    });
    let url = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("director did not start");
    (url, dir, tmp)
}

/// A dev release `name` with one job `job` (its `spec`, `monit` and `templates/<file>`
/// contents) and no packages, written as `WORK/<name>.tgz`.
pub fn dev_release_tarball(
    work: &Path,
    name: &str,
    job: &str,
    spec: &str,
    monit: &str,
    templates: &[(&str, &str)],
) -> PathBuf {
    let rel = work.join(name);
    let job_dir = rel.join("jobs").join(job);
    std::fs::create_dir_all(job_dir.join("templates")).unwrap();
    std::fs::create_dir_all(rel.join("packages")).unwrap();
    std::fs::create_dir_all(rel.join("config")).unwrap();
    std::fs::write(rel.join("config/final.yml"), format!("---\nname: {name}\n")).unwrap();
    std::fs::write(job_dir.join("spec"), spec).unwrap();
    std::fs::write(job_dir.join("monit"), monit).unwrap();
    for (file, text) in templates {
        std::fs::write(job_dir.join("templates").join(file), text).unwrap();
    }
    let dir = bosh_release::release_dir::ReleaseDir::new(&rel);
    let cache = bosh_release::index::ArchiveCache::new(work.join("cache"));
    let opts = bosh_release::create::CreateOptions {
        name: Some(name.to_owned()),
        force: true,
        ..Default::default()
    };
    let release = bosh_release::create::create_release(&dir, cache, &opts, &mut |_| {}).unwrap();
    let out = work.join(format!("{name}.tgz"));
    release.write_tarball(&out).unwrap();
    out
}

/// Live pids whose command line or environment mention `needle` (a VM's dir names its agent
/// and its jobs).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        })
        .filter(|pid| {
            let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let hay = [read("cmdline"), read("environ")].concat();
            hay.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

/// Kills whatever still runs under the dir (agents, jobs) when the test ends.
pub struct Killer(pub PathBuf);

impl Drop for Killer {
    fn drop(&mut self) {
        for pid in processes_mentioning(&self.0.display().to_string()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A director with agents (see [`director_with_agents`]) on which a deployment `dep` was made
/// with the CLI: the sim stemcell, one release, a cloud config and the manifest uploaded.
/// Fields drop in order: the killer ends the VMs before their dirs go.
pub struct SimSession {
    pub url: String,
    /// The director's data dir (`sim-cpi/` below it holds the VMs).
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub password: String,
    /// Scratch space of the test (the release and manifest were written here).
    pub work: tempfile::TempDir,
    /// `HOME` of every CLI run.
    pub home: tempfile::TempDir,
    _killer: Killer,
    _data: tempfile::TempDir,
}

impl SimSession {
    /// Starts the director and deploys `manifest` with the release `release(work)` builds.
    pub fn deploy(
        release: impl FnOnce(&Path) -> PathBuf,
        cloud_config: &str,
        manifest: &str,
    ) -> SimSession {
        let (url, dir, data) = director_with_agents(&agent_bin());
        let s = SimSession {
            url,
            ca: dir.join("ca.crt"),
            password: crate::common::admin_password(&dir),
            _killer: Killer(dir.join("sim-cpi")),
            dir,
            work: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            _data: data,
        };
        let work = s.work.path();
        let stemcell = work.join("stemcell.tgz");
        bosh_stemcell::sim::build_sim_stemcell(&bosh_stemcell::sim::SimStemcellOptions::new(
            &stemcell,
        ))
        .unwrap();
        let ok = crate::common::ok;
        ok(&s.run(&["upload-stemcell", stemcell.to_str().unwrap()]));
        let release = release(work);
        ok(&s.run(&["upload-release", release.to_str().unwrap()]));
        let cc = work.join("cc.yml");
        std::fs::write(&cc, cloud_config).unwrap();
        ok(&s.run(&["-n", "update-cloud-config", cc.to_str().unwrap()]));
        let m = work.join("m.yml");
        std::fs::write(&m, manifest).unwrap();
        ok(&s.run(&["-n", "deploy", m.to_str().unwrap()]));
        s
    }

    /// The root of the sim CPI: `vms/<cid>/` is each VM's agent base dir.
    pub fn sim(&self) -> PathBuf {
        self.dir.join("sim-cpi")
    }

    /// The `BOSH_*` environment that targets this director and deployment `dep`.
    pub fn env(&self) -> [(&'static str, &str); 5] {
        [
            ("BOSH_ENVIRONMENT", self.url.as_str()),
            ("BOSH_CA_CERT", self.ca.to_str().unwrap()),
            ("BOSH_CLIENT", "admin"),
            ("BOSH_CLIENT_SECRET", self.password.as_str()),
            ("BOSH_DEPLOYMENT", "dep"),
        ]
    }

    /// `bosh-rs ARGS` against this director.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_env(args, &[])
    }

    /// Like [`SimSession::run`] with `extra` variables set after the `BOSH_*` ones.
    pub fn run_env(&self, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
        let env: Vec<(&str, &str)> = self
            .env()
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        crate::common::Cli {
            home: self.home.path(),
        }
        .run_env(args, &env)
    }

    /// The official CLI `bosh` with the same environment and `HOME`, its output echoed.
    pub fn official_run(&self, bosh: &Path, args: &[&str]) -> std::process::Output {
        let out = Command::new(bosh)
            .args(args)
            .envs(self.env())
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        crate::common::output_echo("bosh", args, out)
    }

    /// `GET PATH` on the director as admin, as JSON.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let pem = std::fs::read(&self.ca).unwrap();
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        http.get(format!("{}{path}", self.url))
            .basic_auth("admin", Some(&self.password))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

/// The official Go CLI: `BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`.
pub fn official_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOSH_OFFICIAL_CLI") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cache/bosh-rs/official-cli/bosh");
    p.is_file().then_some(p)
}

/// A cloud config: AZ `z1`, vm type `small`, the manual network `default` on `NET.0/24`
/// (`net` like `127.94.0`, `.2`-`.9` reserved), one compilation worker.
pub fn cloud_config(net: &str) -> String {
    format!(
        r#"
azs: [{{name: z1}}]
vm_types: [{{name: small, cloud_properties: {{}}}}]
networks:
- name: default
  type: manual
  subnets:
  - range: {net}.0/24
    gateway: {net}.1
    reserved: [{net}.2 - {net}.9]
    azs: [z1]
compilation:
  workers: 1
  network: default
  az: z1
  vm_type: small
"#
    )
}

/// Deployment `dep`: one group named after `job` (of release `release`) with 2 instances.
pub fn job_manifest(release: &str, job: &str) -> String {
    format!(
        r#"
name: dep
releases: [{{name: {release}, version: latest}}]
stemcells: [{{alias: default, os: debian-bookworm, version: latest}}]
update:
  canaries: 1
  max_in_flight: 2
  canary_watch_time: 100-10000
  update_watch_time: 100-10000
instance_groups:
- name: {job}
  instances: 2
  azs: [z1]
  vm_type: small
  stemcell: default
  networks: [{{name: default}}]
  jobs:
  - name: {job}
    release: {release}
"#
    )
}

/// The monit file of a shell job `job` whose `bin/ctl start` writes its pidfile.
pub fn job_monit(job: &str) -> String {
    format!(
        r#"check process {job}
  with pidfile /var/vcap/sys/run/{job}/{job}.pid
  start program "/var/vcap/jobs/{job}/bin/ctl start"
  stop program "/var/vcap/jobs/{job}/bin/ctl stop"
  group vcap
"#
    )
}

/// The control script of the `sleeper` job of [`sleepers_tarball`].
pub const SLEEPER_CTL: &str = r#"#!/bin/bash
set -eu
RUN=/var/vcap/sys/run/sleeper
mkdir -p "$RUN"
case "$1" in
  start)
    echo $$ > "$RUN/sleeper.pid"
    exec sleep 100000
    ;;
  stop)
    kill "$(cat "$RUN/sleeper.pid")" 2>/dev/null || true
    rm -f "$RUN/sleeper.pid"
    ;;
esac
"#;

/// A dev release `sleepers` with one shell job `sleeper` whose process sleeps (nothing to
/// compile).
pub fn sleepers_tarball(work: &Path) -> PathBuf {
    let spec = "---\nname: sleeper\ntemplates:\n  ctl.erb: bin/ctl\npackages: []\nproperties: {}\n";
    dev_release_tarball(
        work,
        "sleepers",
        "sleeper",
        spec,
        &job_monit("sleeper"),
        &[("ctl.erb", SLEEPER_CTL)],
    )
}
