//! The harness the director CLI tests share: a real `bosh-director` on 127.0.0.1 (the binary
//! next to this test's target dir, `BOSH_DIRECTOR_BIN`, or the library in-process), killed on
//! drop, and a `bosh-rs` runner with an isolated `HOME`.
#![allow(dead_code)]

pub mod sim;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A file of `../shared/fixtures`, beside the repository (as CI lays it out).
pub fn fixture(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel);
    assert!(path.is_file(), "fixture missing: {}", path.display());
    path.to_string_lossy().into_owned()
}

pub fn director_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BOSH_DIRECTOR_BIN") {
        return Some(PathBuf::from(p));
    }
    // target/debug/deps/director_cli-… → target/debug/bosh-director
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("bosh-director");
    p.is_file().then_some(p)
}

pub enum Running {
    Process(Child),
    InProcess,
}

pub struct Director {
    running: Running,
    pub url: String,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Running::Process(child) = &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn director_start() -> Director {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let running = match director_bin() {
        Some(bin) => {
            let mut child = Command::new(bin)
                .arg("--data-dir")
                .arg(&dir)
                .args(["--listen", "127.0.0.1:0", "--cpi", "sim"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut lines = std::io::BufReader::new(stdout).lines();
                if let Some(Ok(line)) = lines.next() {
                    let url = line
                        .strip_prefix("Director listening on ")
                        .unwrap_or_default()
                        .to_owned();
                    let _ = tx.send(url);
                }
                for _ in lines {}
            });
            Running::Process(child)
        }
        None => {
            let data_dir = dir.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let opts = bosh_director::server::DirectorOptions::new(
                        data_dir,
                        "127.0.0.1:0",
                        "sim",
                        bosh_director::config::DirectorConfig::default(),
                    );
                    let d = bosh_director::server::director_start(opts).await.unwrap();
                    let _ = tx.send(d.url.clone());
                    let _ = d.wait().await;
                });
            });
            Running::InProcess
        }
    };
    let url = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("director did not start within 180s");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    Director {
        running,
        url,
        dir,
        _tmp: tmp,
    }
}

pub fn admin_password(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("credentials.yml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned()
}

pub struct Cli<'a> {
    pub home: &'a Path,
}

impl Cli<'_> {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_bosh-rs"));
        c.args(args)
            .env("HOME", self.home)
            .env_remove("BOSH_ENVIRONMENT")
            .env_remove("BOSH_CA_CERT")
            .env_remove("BOSH_CLIENT")
            .env_remove("BOSH_CLIENT_SECRET")
            .env_remove("BOSH_DEPLOYMENT")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        output_echo("bosh-rs", args, c.output().unwrap())
    }
}

/// Prints a run (`$ PROGRAM ARGS`, its stdout and stderr) for a failing test's log.
pub fn output_echo(program: &str, args: &[&str], out: Output) -> Output {
    eprintln!(
        "$ {program} {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "expected success");
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn fails(out: &Output) -> (String, String) {
    assert_eq!(out.status.code(), Some(1), "expected exit code 1");
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    assert!(stderr.ends_with("\n\nExit code 1\n"), "{stderr}");
    (String::from_utf8(out.stdout.clone()).unwrap(), stderr)
}
