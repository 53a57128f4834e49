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

/// The official Go CLI: `BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`.
pub fn official_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOSH_OFFICIAL_CLI") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cache/bosh-rs/official-cli/bosh");
    p.is_file().then_some(p)
}

/// The monit file and control script of the `sleeper` job of [`sleepers_tarball`].
pub const SLEEPER_MONIT: &str = r#"check process sleeper
  with pidfile /var/vcap/sys/run/sleeper/sleeper.pid
  start program "/var/vcap/jobs/sleeper/bin/ctl start"
  stop program "/var/vcap/jobs/sleeper/bin/ctl stop"
  group vcap
"#;

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
        SLEEPER_MONIT,
        &[("ctl.erb", SLEEPER_CTL)],
    )
}
