//! `bosh-rs logs`, `ssh` and `scp` against a real director on the sim CPI (VMs are real
//! `bosh-agent` processes). The sim VMs run no sshd, so `ssh`/`scp` are fakes placed first on
//! PATH: they record their arguments and check, while the session is up, that the key file
//! and known-hosts file exist and that the agent installed the matching public key for the
//! ephemeral user; afterwards the files are gone and the cleanup task removed the user.

mod common;
use common::sim::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CTL: &str = r#"#!/bin/bash
set -eu
RUN=/var/vcap/sys/run/logger
LOG=/var/vcap/sys/log/logger
mkdir -p "$RUN" "$LOG"
case "$1" in
  start)
    echo "logger started" >> "$LOG/logger.log"
    echo $$ > "$RUN/logger.pid"
    exec sleep 100000
    ;;
  stop)
    kill "$(cat "$RUN/logger.pid")" 2>/dev/null || true
    rm -f "$RUN/logger.pid"
    ;;
esac
"#;

/// A fake `ssh`/`scp`: writes its arguments (one per line, then `--`) to a file of its own in
/// the directory `$FAKE_LOG` (renamed into place: parallel sessions, one per instance, never
/// share a file, so their lines cannot interleave), and for `IdentityFile=` / `UserKnownHostsFile=` / `-l USER` checks what must
/// exist during a session: the key, the known-hosts file, and the user's authorized key on
/// some sim VM equal to the key's public half.
const FAKE: &str = r#"#!/bin/bash
set -u
key= ; known= ; user= ; prev= ; buf=
for a in "$@"; do
  buf+="$a"$'\n'
  case "$a" in
    IdentityFile=*) key="${a#IdentityFile=}" ;;
    UserKnownHostsFile=*) known="${a#UserKnownHostsFile=}" ;;
  esac
  [ "$prev" = "-l" ] && user="$a"
  case "$a" in *@*:*) user="${a%%@*}" ;; esac
  prev="$a"
done
# One append per invocation: parallel sessions (one per instance) must not interleave lines.
tmp="$FAKE_LOG/.call.$$"
printf '%s--\n' "$buf" > "$tmp"
mv "$tmp" "$FAKE_LOG/call.$(date +%s%N).$$"
[ -f "$key" ] || { echo "no key file $key" >&2; exit 3; }
[ -f "$known" ] || { echo "no known hosts $known" >&2; exit 3; }
pub="$(ssh-keygen -y -f "$key" | cut -d' ' -f1-2)"
found=0
for f in "$FAKE_SIM"/vms/*/bosh_ssh/"$user"/.ssh/authorized_keys; do
  [ -f "$f" ] && grep -qF "$pub" "$f" && found=$((found+1))
done
[ "$found" -gt 0 ] || { echo "no authorized key for $user" >&2; exit 4; }
echo "hello from $(basename "$0") as $user"
echo "a warning" >&2
"#;

/// The `.tgz` files in `dir`.
fn tarballs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tgz"))
        .collect();
    names.sort();
    names
}

/// `<prefix>-YYYYMMDD-HHMMSS[-nanos].tgz`, the official downloader's name.
fn assert_log_name(name: &str, prefix: &str) {
    let rest = name
        .strip_prefix(&format!("{prefix}-"))
        .and_then(|r| r.strip_suffix(".tgz"))
        .unwrap_or_else(|| panic!("{name} does not start with {prefix}-"));
    let parts: Vec<&str> = rest.split('-').collect();
    assert!(
        (2..=3).contains(&parts.len())
            && parts[0].len() == 8
            && parts[1].len() == 6
            && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
            && parts
                .get(2)
                .is_none_or(|n| n.len() <= 9 && !n.ends_with('0')),
        "{name}"
    );
}

fn tar_list(path: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tzf").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .filter(|l| !l.is_empty() && !l.ends_with('/'))
        .collect()
}

fn tar_cat(path: &Path, entry: &str) -> String {
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(path)
        .arg("--wildcards")
        .arg(format!("*{entry}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{entry} in {}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

/// Every recorded invocation of a fake (one `call.*` file each, in start order): its arguments.
fn invocations(dir: &Path) -> Vec<Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|f| {
        f.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("call."))
    });
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            text.lines()
                .take_while(|l| *l != "--")
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

fn opt_value(args: &[String], key: &str) -> String {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {args:?}"))
        .to_owned()
}

/// Waits until no sim VM has an ephemeral ssh user any more (the cleanup task is not
/// awaited by the CLI).
fn ssh_users_gone(sim: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left: Vec<PathBuf> = std::fs::read_dir(sim.join("vms"))
            .unwrap()
            .flatten()
            .filter_map(|vm| std::fs::read_dir(vm.path().join("bosh_ssh")).ok())
            .flat_map(|d| d.flatten().map(|e| e.path()))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "ssh users left: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn logs_ssh_and_scp_through_the_cli() {
    let s = SimSession::deploy(
        loggers_tarball,
        &cloud_config("127.98.0"),
        &job_manifest("loggers", "logger"),
    );
    let sim = s.sim();
    let work = &s.work;
    let fakes = work.path().join("bin");
    std::fs::create_dir_all(&fakes).unwrap();
    for name in ["ssh", "scp"] {
        let p = fakes.join(name);
        std::fs::write(&p, FAKE).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let fake_log = work.path().join("fake-calls");
    std::fs::create_dir_all(&fake_log).unwrap();
    let path = format!(
        "{}:{}",
        fakes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let fake_env = [
        ("PATH", path.as_str()),
        ("FAKE_LOG", fake_log.to_str().unwrap()),
        ("FAKE_SIM", sim.to_str().unwrap()),
    ];
    let run = |args: &[&str]| s.run_env(args, &fake_env);

    // The whole deployment: one tarball holding one tarball per instance.
    let logs_dir = work.path().join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let out = ok(&run(&["logs", "--dir", logs_dir.to_str().unwrap()]));
    assert!(out.contains("Using deployment 'dep'"), "{out}");
    assert!(out.contains("Task "), "{out}");
    assert!(out.contains("Downloading resource '"), "{out}");
    let names = tarballs(&logs_dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_log_name(&names[0], "dep");
    assert!(out.contains(&names[0]), "{out}");
    let outer = tar_list(&logs_dir.join(&names[0]));
    assert_eq!(outer.len(), 2, "{outer:?}");
    assert!(
        outer
            .iter()
            .all(|e| e.starts_with("logger.") && e.ends_with(".tgz")),
        "{outer:?}"
    );

    // One instance by index: the job's own log.
    let one = work.path().join("one");
    std::fs::create_dir_all(&one).unwrap();
    ok(&run(&["logs", "logger/0", "--dir", one.to_str().unwrap()]));
    let names = tarballs(&one);
    assert_eq!(names.len(), 1, "{names:?}");
    assert_log_name(&names[0], "dep.logger.0");
    let file = one.join(&names[0]);
    assert!(tar_list(&file).contains(&"logger/logger.log".to_owned()));
    assert!(tar_cat(&file, "logger/logger.log").contains("logger started"));

    // Agent logs only: nothing of the job.
    let agent_dir = work.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    ok(&run(&[
        "logs",
        "logger/1",
        "--agent",
        "--dir",
        agent_dir.to_str().unwrap(),
    ]));
    let names = tarballs(&agent_dir);
    assert_log_name(&names[0], "dep.logger.1");
    assert!(
        !tar_list(&agent_dir.join(&names[0]))
            .iter()
            .any(|e| e.contains("logger.log"))
    );

    let (_, err) = fails(&run(&["logs", "-f"]));
    assert!(err.contains("not supported"), "{err}");

    // ssh -c on the group: a fake ssh per instance, output prefixed per instance.
    let out = ok(&run(&["ssh", "logger", "-c", "uptime", "--opts", " -v "]));
    let calls = invocations(&fake_log);
    assert_eq!(calls.len(), 2, "{calls:?}");
    let mut users = vec![];
    for args in &calls {
        assert_eq!(args[0], "-tt");
        let key = opt_value(args, "IdentityFile");
        let known = opt_value(args, "UserKnownHostsFile");
        assert!(!Path::new(&key).exists(), "the key file is removed: {key}");
        assert!(!Path::new(&known).exists(), "{known}");
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_owned()));
        assert!(
            args.contains(&"-v".to_owned()),
            "--opts passed through: {args:?}"
        );
        let l = args.iter().position(|a| a == "-l").unwrap();
        let user = &args[l + 1];
        assert!(user.starts_with("bosh_") && user.len() == 20, "{user}");
        assert!(args[l - 1].starts_with("127.98.0."), "{args:?}");
        assert_eq!(args.last().unwrap(), "uptime");
        users.push(user.clone());
        assert!(
            out.contains(&format!(": stdout | hello from ssh as {user}")),
            "{out}"
        );
    }
    assert_eq!(users[0], users[1], "one user for the session");
    assert!(out.contains("logger/"), "{out}");
    assert!(out.contains(": stderr | a warning"), "{out}");
    ssh_users_gone(&sim);

    // scp to one instance: the remote path names user@ip.
    std::fs::remove_dir_all(&fake_log).unwrap();
    std::fs::create_dir_all(&fake_log).unwrap();
    let local = work.path().join("copy.txt");
    let out = ok(&run(&[
        "scp",
        "logger/0:/var/vcap/sys/log/logger/logger.log",
        local.to_str().unwrap(),
    ]));
    let calls = invocations(&fake_log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let args = &calls[0];
    assert_ne!(args[0], "-tt");
    let remote = &args[args.len() - 2];
    assert!(
        remote.starts_with("bosh_")
            && remote.contains("@127.98.0.")
            && remote.ends_with(":/var/vcap/sys/log/logger/logger.log"),
        "{remote}"
    );
    assert_eq!(args.last().unwrap(), local.to_str().unwrap());
    assert!(out.contains(": stdout | hello from scp as bosh_"), "{out}");
    ssh_users_gone(&sim);

    // Non-interactive ssh needs a command, and a failing ssh fails the command.
    let (_, err) = fails(&run(&["-n", "ssh", "logger/0"]));
    assert!(
        err.contains("Non-interactive SSH requires non-empty command"),
        "{err}"
    );
    let (_, err) = fails(&s.run_env(
        &["ssh", "logger/0", "-c", "true"],
        &[fake_env[0], fake_env[1], ("FAKE_SIM", "/nonexistent")],
    ));
    assert!(err.contains("Running SSH"), "{err}");
    ssh_users_gone(&sim);
}

/// A dev release `loggers` with one shell job that logs (nothing to compile).
fn loggers_tarball(work: &Path) -> PathBuf {
    let spec = "---\nname: logger\ntemplates:\n  ctl.erb: bin/ctl\npackages: []\nproperties: {}\n";
    dev_release_tarball(
        work,
        "loggers",
        "logger",
        spec,
        &job_monit("logger"),
        &[("ctl.erb", CTL)],
    )
}
