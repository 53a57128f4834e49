//! Persistent-worker mode of the external client: the real `bosh-sim-cpi` as a worker, and a
//! shell CPI that speaks the worker protocol to exercise errors, deaths, hangs and concurrency.

mod common;

use bosh_cpi::external::worker::END_OF_REQUEST;
use bosh_cpi::{Cpi, CpiError, ExternalCpi, ExternalCpiConfig, MemoryLogSink};
use bosh_cpi_protocol::CpiErrorKind;
use bosh_types::ids::{DiskCid, VmCid};
use common::{exercise_every_method, pid_dead, read_pid, sim_env, wait_for, write_script};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One line per process start: `<pid> <BOSH_CPI_WORKER or "fork">`.
fn spawns(dir: &Path) -> Vec<(u32, String)> {
    std::fs::read_to_string(dir.join("spawns"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (pid, mode) = l.split_once(' ').unwrap();
            (pid.parse().unwrap(), mode.to_owned())
        })
        .collect()
}

fn worker_pids(dir: &Path) -> Vec<u32> {
    spawns(dir)
        .into_iter()
        .filter(|(_, m)| m == "1")
        .map(|(p, _)| p)
        .collect()
}

fn client(path: &Path, workers: usize, timeout: Duration) -> ExternalCpi {
    let mut config = ExternalCpiConfig::new(path, "director-1");
    config.timeout = timeout;
    config.workers = workers;
    ExternalCpi::new(config)
}

#[tokio::test]
async fn sim_cpi_serves_every_method_from_one_worker() {
    let env = sim_env();
    let wrapper = env.dir.path().join("cpi");
    write_script(
        &wrapper,
        &format!(
            "echo \"$$ ${{BOSH_CPI_WORKER:-fork}}\" >> '{}'\nexec '{}' -configPath '{}'",
            env.dir.path().join("spawns").display(),
            env!("CARGO_BIN_EXE_bosh-sim-cpi"),
            env.config_path.display()
        ),
    );
    let sink = Arc::new(MemoryLogSink::default());
    let cpi = client(&wrapper, 2, Duration::from_secs(60)).with_log_sink(sink.clone());
    exercise_every_method(&cpi, &env).await;

    // One fork for the `info` probe, then a single worker for every later call.
    let spawned = spawns(env.dir.path());
    assert_eq!(spawned.len(), 2, "{spawned:?}");
    assert_eq!(spawned[0].1, "fork");
    assert_eq!(spawned[1].1, "1");
    let log = sink.contents();
    assert!(log.contains("cpi call"), "stderr reaches the sink: {log}");
    assert!(log.contains("delete_stemcell"), "{log}");
    assert!(!log.contains(END_OF_REQUEST), "the marker never shows");
    drop(cpi);
    wait_for("worker gone with its client", || pid_dead(spawned[1].0));
}

/// A worker-capable CPI in shell. `delete_vm(<type>)` fails with that error type,
/// `has_vm(<cid>)` works a little and answers whether the cid starts with `yes`,
/// `delete_disk` hangs, `detach_disk` waits to be killed, `reboot_vm` answers garbage.
fn shell_worker(declare: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cpi");
    let declaration = if declare {
        r#","persistent_worker":{"protocol":1}"#
    } else {
        ""
    };
    write_script(
        &path,
        &format!(
            r#"dir='{dir}'
echo "$$ ${{BOSH_CPI_WORKER:-fork}}" >> "$dir/spawns"
answer() {{
  req="$1"
  arg=$(printf '%s' "$req" | sed -n 's/.*"arguments":\["\([^"]*\)".*/\1/p')
  case "$req" in
    *'"method":"info"'*) echo '{{"result":{{"api_version":2,"stemcell_formats":["x"]{declaration}}},"error":null,"log":""}}' ;;
    *'"method":"delete_vm"'*)
      echo "failing with $arg" >&2
      printf '{{"result":null,"error":{{"type":"%s","message":"it broke","ok_to_retry":true}},"log":"log:%s"}}\n' "$arg" "$arg" ;;
    *'"method":"has_vm"'*)
      sleep 0.2
      case "$arg" in yes*) r=true ;; *) r=false ;; esac
      printf '{{"result":%s,"error":null,"log":""}}\n' "$r" ;;
    *'"method":"delete_disk"'*) echo "$$" > "$dir/hang.pid"; echo hanging >&2; sleep 60; echo '{{}}' ;;
    *'"method":"detach_disk"'*) echo "about to die" >&2; echo "$$" > "$dir/die.pid"; sleep 60 ;;
    *'"method":"reboot_vm"'*) echo 'not json' ;;
    *) echo '{{"result":null,"error":null,"log":""}}' ;;
  esac
}}
if [ "${{BOSH_CPI_WORKER:-}}" = 1 ]; then
  while IFS= read -r req; do
    answer "$req"
    printf '\036bosh-cpi-worker: end of request\n' >&2
  done
else
  answer "$(cat)"
fi"#,
            dir = dir.path().display(),
        ),
    );
    (dir, path)
}

fn vm(s: &str) -> VmCid {
    s.parse().unwrap()
}

fn disk(s: &str) -> DiskCid {
    s.parse().unwrap()
}

#[tokio::test]
async fn every_error_type_round_trips_through_a_worker() {
    let (dir, path) = shell_worker(true);
    let sink = Arc::new(MemoryLogSink::default());
    let cpi = client(&path, 1, Duration::from_secs(20)).with_log_sink(sink.clone());
    for kind in CpiErrorKind::ALL {
        let e = cpi.delete_vm(&vm(kind.type_name())).await.unwrap_err();
        let CpiError::Cloud {
            kind: got,
            message,
            ok_to_retry,
            method,
            ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*got, kind);
        assert_eq!(message, "it broke");
        assert!(ok_to_retry);
        assert_eq!(method, "delete_vm");
    }
    let e = cpi
        .delete_vm(&vm("Bosh::Clouds::Mystery"))
        .await
        .unwrap_err();
    let CpiError::Unknown { error_type, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(error_type, "Bosh::Clouds::Mystery");
    // Errors are answers: the one worker served them all.
    assert_eq!(worker_pids(dir.path()).len(), 1);
    let log = sink.contents();
    assert!(
        log.contains("failing with Bosh::Clouds::VMNotFound\n"),
        "{log}"
    );
    assert!(log.contains("log:Bosh::Clouds::VMNotFound"), "{log}");
    assert!(!log.contains(END_OF_REQUEST));
}

#[tokio::test]
async fn a_cpi_that_does_not_declare_workers_keeps_one_process_per_call() {
    let (dir, path) = shell_worker(false);
    let cpi = client(&path, 2, Duration::from_secs(20));
    assert!(cpi.has_vm(&vm("yes-1")).await.unwrap());
    assert!(!cpi.has_vm(&vm("no-1")).await.unwrap());
    let spawned = spawns(dir.path());
    assert_eq!(spawned.len(), 3, "info + two calls: {spawned:?}");
    assert!(spawned.iter().all(|(_, m)| m == "fork"), "{spawned:?}");
}

#[tokio::test]
async fn a_hanging_worker_is_killed_and_replaced() {
    let (dir, path) = shell_worker(true);
    let cpi = client(&path, 1, Duration::from_millis(1500));
    assert!(cpi.has_vm(&vm("yes")).await.unwrap());
    let first = worker_pids(dir.path());
    assert_eq!(first.len(), 1);

    let e = cpi.delete_disk(&disk("d-1")).await.unwrap_err();
    let CpiError::Timeout { method, stderr, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(method, "delete_disk");
    assert_eq!(stderr, "hanging\n");
    wait_for("hung worker killed", || pid_dead(first[0]));

    assert!(cpi.has_vm(&vm("yes-again")).await.unwrap());
    let now = worker_pids(dir.path());
    assert_eq!(now.len(), 2, "a fresh worker: {now:?}");
    assert_ne!(now[1], first[0]);
}

#[tokio::test]
async fn a_worker_killed_mid_call_fails_that_call_clearly() {
    let (dir, path) = shell_worker(true);
    let cpi = client(&path, 1, Duration::from_secs(30));
    cpi.api_version().await.unwrap();
    let die_pid = dir.path().join("die.pid");
    let call = tokio::spawn({
        let cpi = cpi.clone();
        async move { cpi.detach_disk(&vm("vm-1"), &disk("d-1")).await }
    });
    let pid = tokio::task::spawn_blocking(move || {
        wait_for("worker inside the call", || read_pid(&die_pid).is_some());
        read_pid(&die_pid).unwrap()
    })
    .await
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("a dead worker never wedges the call")
        .unwrap()
        .unwrap_err();
    let CpiError::InvalidResponse {
        method,
        reason,
        stderr,
        ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(method, "detach_disk");
    assert!(reason.contains("CPI worker exited"), "{reason}");
    assert!(stderr.contains("about to die"), "{stderr}");

    // The next call gets a new worker.
    assert!(cpi.has_vm(&vm("yes")).await.unwrap());
    let pids = worker_pids(dir.path());
    assert_eq!(pids.len(), 2, "{pids:?}");
}

#[tokio::test]
async fn a_garbled_answer_is_an_invalid_response_and_retires_the_worker() {
    let (dir, path) = shell_worker(true);
    let cpi = client(&path, 1, Duration::from_secs(20));
    let e = cpi.reboot_vm(&vm("vm-1")).await.unwrap_err();
    let CpiError::InvalidResponse { stdout, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(stdout, "not json\n");
    let first = worker_pids(dir.path());
    wait_for("garbling worker killed", || pid_dead(first[0]));
    assert!(!cpi.has_vm(&vm("no")).await.unwrap());
    assert_eq!(worker_pids(dir.path()).len(), 2);
}

#[tokio::test]
async fn concurrent_calls_share_a_bounded_pool_and_get_their_own_answers() {
    let (dir, path) = shell_worker(true);
    let cpi = client(&path, 2, Duration::from_secs(30));
    cpi.api_version().await.unwrap();
    let calls = (0..8).map(|i| {
        let cpi = cpi.clone();
        async move {
            let cid = if i % 2 == 0 {
                format!("yes-{i}")
            } else {
                format!("no-{i}")
            };
            (i, cpi.has_vm(&vm(&cid)).await.unwrap())
        }
    });
    for (i, answer) in futures::future::join_all(calls).await {
        assert_eq!(answer, i % 2 == 0, "call {i} got its own answer");
    }
    let pids = worker_pids(dir.path());
    assert_eq!(
        pids.len(),
        2,
        "the pool never grows past its size: {pids:?}"
    );
}
