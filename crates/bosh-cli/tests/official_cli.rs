//! The official Go `bosh` CLI, unchanged, against our `bosh-director` (sim CPI): every
//! director command of the Director issue, asserting exit codes and the values in the CLI's
//! `--json` output (its Tables/Blocks/Lines shape), so the wire format is judged by the real
//! client rather than by our own.
//!
//! The binary is `BOSH_OFFICIAL_CLI`, else `~/.cache/bosh-rs/official-cli/bosh`, which
//! `scripts/official-cli.sh` builds from a local bosh-cli source. Without either the test
//! prints a loud SKIP and passes. The director is found or started as in `director_cli.rs`.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bosh_director::db::Db;
use bosh_director::deployments::deployment_upsert;
use bosh_director::locks::{LockSpec, lock_acquire};
use bosh_director::tasks::TaskId;
use serde_json::Value;

fn official_cli() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOSH_OFFICIAL_CLI") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BOSH_OFFICIAL_CLI={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".cache/bosh-rs/official-cli/bosh");
    p.is_file().then_some(p)
}

/// The official CLI with its own `HOME` (so its `~/.bosh/config`) and no `BOSH_*` from the
/// caller's environment.
struct Official {
    bin: PathBuf,
    home: tempfile::TempDir,
}

impl Official {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("BOSH_") {
                c.env_remove(k);
            }
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        eprintln!(
            "$ bosh {} (exit {:?})\n{}{}",
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs with `--json`, expects exit 0, and returns the parsed output.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.run(&[args, &["--json"]].concat());
        assert_eq!(out.status.code(), Some(0), "bosh {args:?} failed");
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("bosh {args:?} --json printed no JSON: {e}"))
    }

    /// Runs with `--json`, expects exit 1; returns everything printed.
    fn json_fails(&self, args: &[&str]) -> String {
        let out = self.run(&[args, &["--json"]].concat());
        assert_eq!(out.status.code(), Some(1), "bosh {args:?} should fail");
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON output");
        lines(&v).join("\n")
    }
}

/// The rows of table `i` of a `--json` output.
fn rows(v: &Value, i: usize) -> Vec<Value> {
    v["Tables"][i]["Rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no table {i} in {v}"))
        .clone()
}

fn lines(v: &Value) -> Vec<String> {
    v["Lines"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn blocks(v: &Value) -> String {
    v["Blocks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn s<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {row}"))
}

/// The id in the first `Task N` line.
fn task_id(v: &Value) -> i64 {
    lines(v)
        .iter()
        .find_map(|l| {
            l.strip_prefix("Task ")
                .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no Task line in {v}"))
}

fn http(d: &Director) -> reqwest::blocking::Client {
    let ca = std::fs::read(d.dir.join("ca.crt")).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap()
}

fn api_json(d: &Director, path: &str) -> Value {
    http(d)
        .get(format!("{}{path}", d.url))
        .basic_auth("admin", Some(admin_password(&d.dir)))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn api_text(d: &Director, path: &str) -> String {
    let resp = http(d)
        .get(format!("{}{path}", d.url))
        .basic_auth("admin", Some(admin_password(&d.dir)))
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.text().unwrap()
}

/// A deployment row written straight into the director's database (deploys are not built
/// yet), optionally locked by a task that never ends.
fn seed(d: &Director, name: &str, lock: bool) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = Db::open_sqlite_in(&d.dir).await.unwrap();
        deployment_upsert(
            &db,
            name,
            &format!(
                "name: {name}\nreleases:\n- name: kv\n  version: 1.0.0\nstemcells:\n- alias: default\n  os: ubuntu-trusty\n  version: \"3147\"\n"
            ),
        )
        .await
        .unwrap();
        if lock {
            assert!(
                lock_acquire(&db, &LockSpec::deployment(name), TaskId(999_999), 3_600_000)
                    .await
                    .unwrap()
            );
        }
    });
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// The kv release directory as a fresh dev-release tree named `kv-dir`: no final builds, and
/// its one blob taken from the final tarball (the fixture leaves `blobs/` out).
fn release_dir_prepare(work: &Path, kv_tarball: &str) -> PathBuf {
    let src = fixture("kv-release/config/final.yml");
    let dir = work.join("kv-dir");
    copy_dir(Path::new(&src).parent().unwrap().parent().unwrap(), &dir);
    std::fs::remove_dir_all(dir.join(".final_builds")).unwrap();
    std::fs::remove_dir_all(dir.join("releases")).unwrap();
    std::fs::write(
        dir.join("config/final.yml"),
        format!(
            "name: kv-dir\nblobstore:\n  provider: local\n  options:\n    blobstore_path: {}\n",
            work.join("final-blobs").display()
        ),
    )
    .unwrap();
    let unpacked = work.join("kv-unpacked");
    std::fs::create_dir_all(unpacked.join("kvtools")).unwrap();
    let tar = |args: &[&str]| {
        let st = Command::new("tar").args(args).status().unwrap();
        assert!(st.success(), "tar {args:?}");
    };
    let u = unpacked.to_str().unwrap();
    tar(&["-xzf", kv_tarball, "-C", u]);
    let pkg = unpacked.join("packages/kvtools.tgz");
    tar(&["-xzf", pkg.to_str().unwrap(), "-C", &format!("{u}/kvtools")]);
    std::fs::create_dir_all(dir.join("blobs/tools")).unwrap();
    std::fs::copy(
        unpacked.join("kvtools/tools/tool.txt"),
        dir.join("blobs/tools/tool.txt"),
    )
    .unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
            // The fixtures are read-only; the CLI rewrites index files in the copy.
            let mut perm = std::fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&target, perm).unwrap();
        }
    }
}

#[test]
fn official_cli_drives_the_director() {
    let Some(bin) = official_cli() else {
        eprintln!(
            "\n==== SKIP official_cli: no official bosh CLI. Build one with scripts/official-cli.sh \
             or set BOSH_OFFICIAL_CLI=/path/to/bosh ====\n"
        );
        return;
    };
    let d = director_start();
    let bosh = Official {
        bin,
        home: tempfile::tempdir().unwrap(),
    };
    let work = tempfile::tempdir().unwrap();
    let ca = d.dir.join("ca.crt");
    let ca = ca.to_str().unwrap();
    let password = admin_password(&d.dir);
    let info = api_json(&d, "/info");
    fn with_e<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["-e", "test"][..], args].concat()
    }

    // env before logging in: /info without credentials.
    let v = bosh.json(&["-e", &d.url, "--ca-cert", ca, "env"]);
    let env = &rows(&v, 0)[0];
    assert_eq!(s(env, "name"), info["name"].as_str().unwrap());
    assert_eq!(s(env, "uuid"), info["uuid"].as_str().unwrap());
    assert_eq!(s(env, "version"), info["version"].as_str().unwrap());
    assert_eq!(s(env, "user"), "(not logged in)");
    assert_eq!(s(env, "cpi"), info["cpi"].as_str().unwrap());

    bosh.json(&["alias-env", "test", "-e", &d.url, "--ca-cert", ca]);
    let v = bosh.json(&["environments"]);
    let envs = rows(&v, 0);
    assert_eq!(envs.len(), 1, "{v}");
    assert_eq!(s(&envs[0], "url"), d.url);
    assert_eq!(s(&envs[0], "alias"), "test");

    // log-in (basic): wrong credentials fail, right ones are saved in the CLI's config.
    let text = bosh.json_fails(&with_e(&[
        "log-in",
        "--client",
        "admin",
        "--client-secret",
        "wrong",
    ]));
    assert!(text.contains("Invalid credentials"), "{text}");
    let v = bosh.json(&with_e(&[
        "log-in",
        "--client",
        "admin",
        "--client-secret",
        &password,
    ]));
    assert!(
        lines(&v).iter().any(|l| l.starts_with("Logged in to")),
        "{v}"
    );
    let v = bosh.json(&with_e(&["env"]));
    assert_eq!(s(&rows(&v, 0)[0], "user"), "admin");

    // curl: the raw body.
    let out = bosh.run(&with_e(&["curl", "/info"]));
    assert_eq!(out.status.code(), Some(0));
    let body: Value = serde_json::from_slice(&out.stdout).expect("curl /info prints the body");
    assert_eq!(body["user"], "admin");
    assert_eq!(body["user_authentication"]["type"], "basic");

    // Stemcells.
    let stemcell = fixture("upstream/valid_stemcell.tgz");
    let v = bosh.json(&with_e(&["upload-stemcell", &stemcell]));
    let upload_stemcell_task = task_id(&v);
    let v = bosh.json(&with_e(&["stemcells"]));
    let sc = rows(&v, 0);
    assert_eq!(sc.len(), 1, "{v}");
    let listed = &api_json(&d, "/stemcells")[0];
    let (sc_name, sc_version) = (
        listed["name"].as_str().unwrap().to_owned(),
        listed["version"].as_str().unwrap().to_owned(),
    );
    assert_eq!(s(&sc[0], "name"), sc_name);
    assert_eq!(s(&sc[0], "version"), sc_version, "not in use: no '*'");
    assert_eq!(
        s(&sc[0], "os"),
        listed["operating_system"].as_str().unwrap()
    );
    assert_eq!(s(&sc[0], "cid"), listed["cid"].as_str().unwrap());
    let v = bosh.json(&with_e(&["upload-stemcell", &stemcell]));
    assert!(
        lines(&v)
            .iter()
            .any(|l| l == &format!("Stemcell '{sc_name}/{sc_version}' already exists.")),
        "{v}"
    );

    // Releases: SHA-256 tarballs (the second trimmed by /packages/matches), a SHA-1-era one,
    // and a release directory (the CLI creates a dev release, then uploads it).
    let kv0 = fixture("kv-release-expected/kv-0+dev.1.tgz");
    let kv1 = fixture("kv-release-expected/kv-1.0.0.tgz");
    let sha1_release = fixture("upstream/sha1_release.tgz");
    bosh.json(&with_e(&["upload-release", &kv0]));
    bosh.json(&with_e(&["upload-release", &kv1]));
    let v = bosh.json(&with_e(&[
        "upload-release",
        &kv1,
        "--name",
        "kv",
        "--version",
        "1.0.0",
    ]));
    assert!(
        lines(&v)
            .iter()
            .any(|l| l == "Release 'kv/1.0.0' already exists."),
        "{v}"
    );
    bosh.json(&with_e(&["upload-release", &sha1_release]));
    let kv_dir = release_dir_prepare(work.path(), &kv1);
    // The official CLI's way: create the dev release, then upload the latest one of `--dir`.
    let kv_dir = kv_dir.to_str().unwrap();
    bosh.json(&["create-release", "--dir", kv_dir]);
    bosh.json(&with_e(&["upload-release", "--dir", kv_dir]));

    let v = bosh.json(&with_e(&["releases"]));
    let rels = rows(&v, 0);
    let listed = api_json(&d, "/releases");
    let want: usize = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["release_versions"].as_array().unwrap().len())
        .sum();
    assert_eq!(rels.len(), want, "{v}");
    let kv_versions: Vec<&str> = rels
        .iter()
        .filter(|r| s(r, "name") == "kv")
        .map(|r| s(r, "version"))
        .collect();
    assert_eq!(kv_versions.len(), 2, "{v}");
    assert!(kv_versions.contains(&"1.0.0"), "{v}");
    assert!(kv_versions.contains(&"0+dev.1"), "{v}");
    let dir_row = rels
        .iter()
        .find(|r| s(r, "name") == "kv-dir")
        .unwrap_or_else(|| panic!("the release directory's dev release: {v}"));
    assert_eq!(s(dir_row, "version"), "0+dev.1");
    let sha1_name = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .find(|n| *n != "kv" && *n != "kv-dir")
        .expect("the SHA-1-era release is listed")
        .to_owned();
    assert!(rels.iter().any(|r| s(r, "name") == sha1_name), "{v}");

    let v = bosh.json(&with_e(&["inspect-release", "kv/1.0.0"]));
    let jobs = rows(&v, 0);
    let pkgs = rows(&v, 1);
    let job_names: Vec<&str> = jobs.iter().map(|r| s(r, "job")).collect();
    assert_eq!(job_names.len(), 2, "{v}");
    assert!(job_names.iter().any(|j| j.starts_with("kv-server/")), "{v}");
    assert!(job_names.iter().any(|j| j.starts_with("kv-smoke/")), "{v}");
    assert_eq!(pkgs.len(), 3, "{v}");
    for p in &pkgs {
        assert!(!s(p, "blobstore_id").is_empty(), "{p}");
        assert!(s(p, "digest").starts_with("sha256:"), "{p}");
    }
    let text = bosh.json_fails(&with_e(&["inspect-release", "kv/7.7.7"]));
    assert!(text.contains("kv"), "{text}");

    bosh.json(&with_e(&["-n", "delete-release", "kv/0+dev.1"]));
    let v = bosh.json(&with_e(&["releases"]));
    assert!(
        !rows(&v, 0)
            .iter()
            .any(|r| s(r, "name") == "kv" && s(r, "version") == "0+dev.1"),
        "{v}"
    );

    // Generic configs.
    let cc1 = write(work.path(), "cc1.yml", "azs:\n- name: z1\n");
    let cc2 = write(work.path(), "cc2.yml", "azs:\n- name: z1\n- name: z2\n");
    bosh.json(&with_e(&[
        "-n",
        "update-config",
        "--type",
        "cloud",
        "--name",
        "extra",
        &cc1,
    ]));
    let v = bosh.json(&with_e(&[
        "-n",
        "update-config",
        "--type",
        "cloud",
        "--name",
        "extra",
        &cc2,
    ]));
    assert!(
        lines(&v).iter().any(|l| l == "+ - name: z2\n"),
        "the diff shows the added AZ: {v}"
    );
    let v = bosh.json(&with_e(&["configs"]));
    let cfgs = rows(&v, 0);
    let extra = cfgs
        .iter()
        .find(|r| s(r, "name") == "extra")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(s(extra, "type"), "cloud");
    let new_id = s(extra, "id").trim_end_matches('*').to_owned();
    let all = api_json(&d, "/configs?type=cloud&name=extra");
    let ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().expect("config ids are strings").to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{all}");
    assert_eq!(ids[0], new_id, "newest first");
    let old_id = ids[1].clone();
    let v = bosh.json(&with_e(&["config", "--type", "cloud", "--name", "extra"]));
    let cfg = &rows(&v, 0)[0];
    assert!(s(cfg, "content").contains("z2"), "{v}");
    assert_eq!(s(cfg, "id"), new_id);
    let v = bosh.json(&with_e(&["config", &old_id]));
    assert!(!s(&rows(&v, 0)[0], "content").contains("z2"), "{v}");
    let v = bosh.json(&with_e(&[
        "diff-config",
        "--from-id",
        &old_id,
        "--to-id",
        &new_id,
    ]));
    let diff = &rows(&v, 0)[0];
    assert_eq!(
        s(diff, "diff"),
        "  azs:\n  - name: z1\n+ - name: z2\n",
        "{v}"
    );
    assert_eq!((s(diff, "from_id"), s(diff, "to_id")), (&*old_id, &*new_id));
    bosh.json(&with_e(&[
        "-n",
        "delete-config",
        "--type",
        "cloud",
        "--name",
        "extra",
    ]));
    let v = bosh.json(&with_e(&["configs"]));
    assert!(!rows(&v, 0).iter().any(|r| s(r, "name") == "extra"), "{v}");

    // Legacy typed configs.
    let cc = write(
        work.path(),
        "cloud.yml",
        "azs:\n- name: z1\nvm_types:\n- name: small\nnetworks:\n- name: default\n  type: manual\n  subnets:\n  - range: 10.0.0.0/24\n    gateway: 10.0.0.1\n    az: z1\n",
    );
    let rc = write(
        work.path(),
        "runtime.yml",
        "releases:\n- name: kv\n  version: 1.0.0\naddons: []\n",
    );
    let cpi = write(
        work.path(),
        "cpi.yml",
        "cpis:\n- name: sim\n  type: sim\n  properties: {}\n",
    );
    for (update, show, file, needle) in [
        ("update-cloud-config", "cloud-config", &cc, "10.0.0.0/24"),
        ("update-runtime-config", "runtime-config", &rc, "addons"),
        ("update-cpi-config", "cpi-config", &cpi, "cpis"),
    ] {
        bosh.json(&with_e(&["-n", update, file]));
        let v = bosh.json(&with_e(&[show]));
        let shown = format!("{}{}", blocks(&v), lines(&v).join("\n"));
        assert!(shown.contains(needle), "{show}: {v}");
    }

    // Deployments (seeded in the database; deploys are not built yet) and locks.
    seed(&d, "dep1", false);
    seed(&d, "busy", true);
    let v = bosh.json(&with_e(&["deployments"]));
    let deps = rows(&v, 0);
    let names: Vec<&str> = deps.iter().map(|r| s(r, "name")).collect();
    assert_eq!(names, ["busy", "dep1"], "{v}");
    let v = bosh.json(&with_e(&["locks"]));
    let locks = rows(&v, 0);
    assert_eq!(locks.len(), 1, "{v}");
    assert_eq!(s(&locks[0], "type"), "deployment");
    assert_eq!(s(&locks[0], "resource"), "busy");
    assert_eq!(s(&locks[0], "task_id"), "999999");

    // tasks: none running; recent ones, newest first; --all includes every type.
    let v = bosh.json(&with_e(&["tasks"]));
    assert!(rows(&v, 0).is_empty(), "{v}");
    let v = bosh.json(&with_e(&["tasks", "--recent"]));
    let recent = rows(&v, 0);
    assert!(!recent.is_empty(), "{v}");
    let ids: Vec<i64> = recent.iter().map(|r| s(r, "id").parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    let up = recent
        .iter()
        .find(|r| s(r, "id") == upload_stemcell_task.to_string())
        .unwrap_or_else(|| panic!("upload-stemcell task {upload_stemcell_task} in {v}"));
    assert_eq!(s(up, "state"), "done");
    assert_eq!(s(up, "user"), "admin");
    assert!(s(up, "description").contains("stemcell"), "{up}");
    let v = bosh.json(&with_e(&["tasks", "--recent=2", "--all"]));
    assert_eq!(rows(&v, 0).len(), 2, "{v}");

    // task N and its four logs.
    let n = upload_stemcell_task.to_string();
    let v = bosh.json(&with_e(&["task", &n]));
    let text = lines(&v).join("\n");
    assert!(text.contains(&format!("Task {n} done")), "{v}");
    let out = bosh.run(&with_e(&["task", &n, "--event"]));
    assert_eq!(out.status.code(), Some(0));
    let events = String::from_utf8_lossy(&out.stdout);
    let first = events
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no event lines: {events}"));
    let ev: Value = serde_json::from_str(first).unwrap();
    assert!(ev["time"].is_i64() && ev["stage"].is_string(), "{ev}");
    // The plain logs are the director's bytes as they are.
    for kind in ["debug", "cpi", "result", "event"] {
        let out = bosh.run(&with_e(&["task", &n, &format!("--{kind}")]));
        assert_eq!(out.status.code(), Some(0), "task --{kind}");
        let served = api_text(&d, &format!("/tasks/{n}/output?type={kind}"));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            served.trim_end(),
            "task --{kind}"
        );
        if kind == "debug" {
            assert!(served.contains("create stemcell"), "{served}");
        }
    }
    let text = bosh.json_fails(&with_e(&["task", "987654"]));
    assert!(text.contains("987654"), "{text}");

    // cancel-task: a delete waits on the lock `busy` holds; cancelling it fails the command.
    let child = bosh
        .cmd(&with_e(&["-n", "-d", "busy", "delete-deployment"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let busy_id = loop {
        let v = bosh.json(&with_e(&["tasks"]));
        // A worker may not have claimed it yet ("queued"); it blocks on the lock once it has.
        if let Some(t) = rows(&v, 0).iter().find(|t| s(t, "deployment") == "busy") {
            let state = s(t, "state");
            assert!(state == "queued" || state == "processing", "{state}");
            if state == "processing" {
                break s(t, "id").to_owned();
            }
        }
        assert!(Instant::now() < deadline, "no processing task for busy");
        std::thread::sleep(Duration::from_millis(200));
    };
    bosh.json(&with_e(&["cancel-task", &busy_id]));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "$ bosh delete-deployment (cancelled; exit {:?})\n{stdout}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "Deleting deployment 'busy':\n  Expected task '{busy_id}' to succeed but state is 'cancelled'"
        )),
        "{stderr}"
    );
    let text = bosh.json_fails(&with_e(&["cancel-task", &busy_id]));
    assert!(text.contains(&busy_id), "{text}");

    // manifest and a delete that succeeds.
    let out = bosh.run(&with_e(&["-d", "dep1", "manifest"]));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("name: dep1\n"),
        "the stored manifest"
    );
    bosh.json(&with_e(&["-n", "-d", "dep1", "delete-deployment"]));
    let v = bosh.json(&with_e(&["deployments"]));
    let left = rows(&v, 0);
    let names: Vec<&str> = left.iter().map(|r| s(r, "name")).collect();
    assert_eq!(names, ["busy"], "{v}");
    let text = bosh.json_fails(&with_e(&["-d", "nope", "manifest"]));
    assert!(text.contains("70000"), "{text}");

    // events: the uploads and deletes above, newest first, with string ids.
    let v = bosh.json(&with_e(&["events"]));
    let evs = rows(&v, 0);
    assert!(!evs.is_empty(), "{v}");
    assert!(
        evs.iter().any(|r| s(r, "action") == "create"
            && s(r, "object_type") == "stemcell"
            && s(r, "task_id") == n),
        "{v}"
    );
    assert!(
        evs.iter().any(|r| s(r, "action") == "delete"
            && s(r, "object_type") == "release"
            && s(r, "object_name").starts_with("kv")),
        "{v}"
    );
    let v = bosh.json(&with_e(&["events", "--object-type", "stemcell"]));
    assert!(
        rows(&v, 0)
            .iter()
            .all(|r| s(r, "object_type") == "stemcell"),
        "{v}"
    );

    // delete-stemcell, then the listing is empty.
    let slug = format!("{sc_name}/{sc_version}");
    bosh.json(&with_e(&["-n", "delete-stemcell", &slug]));
    let v = bosh.json(&with_e(&["stemcells"]));
    assert!(rows(&v, 0).is_empty(), "{v}");

    // log-out: credentials are gone from the CLI's config.
    bosh.json(&with_e(&["log-out"]));
    let v = bosh.json(&with_e(&["env"]));
    assert_eq!(s(&rows(&v, 0)[0], "user"), "(not logged in)");
    let text = bosh.json_fails(&with_e(&["tasks"]));
    assert!(text.contains("401"), "{text}");
}
