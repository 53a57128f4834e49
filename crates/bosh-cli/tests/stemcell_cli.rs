//! `bosh-rs create-stemcell sim|docker`: tarballs that open with the stemcell reader and
//! `inspect-local-stemcell`; docker rebuilds reuse the cached debootstrapped rootfs.

use bosh_release::stemcell::read_stemcell_tarball;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn bosh_rs(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bosh-rs"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn stemcell_sim_is_a_light_stemcell() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim.tgz");
    let (ok, text) = bosh_rs(&[
        "create-stemcell",
        "sim",
        "--output",
        out.to_str().unwrap(),
        "--version",
        "7.5",
    ]);
    assert!(ok, "{text}");
    let t = read_stemcell_tarball(&out).unwrap();
    assert_eq!(t.info.name, "bosh-sim-debian-bookworm-go_agent");
    assert_eq!(t.info.version, "7.5");
    assert_eq!(t.info.operating_system, "debian-bookworm");
    assert_eq!(t.info.sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(t.info.stemcell_formats, vec!["warden-tar"]);
    assert_eq!(t.image_size, 0);
    let (ok, text) = bosh_rs(&["inspect-local-stemcell", out.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("bosh-sim-debian-bookworm-go_agent"), "{text}");
}

#[test]
fn stemcell_docker_needs_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = bosh_rs(&[
        "create-stemcell",
        "docker",
        "--output",
        dir.path().join("d.tgz").to_str().unwrap(),
        "--agent",
        "/nonexistent/bosh-agent",
    ]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/bosh-agent"), "{text}");
    assert!(!dir.path().join("d.tgz").exists());
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")))
        .unwrap_or(false)
}

/// Builds a real docker stemcell (debootstrap on the first run; minutes), then again from
/// the cache. Uses the default cache so later runs are fast.
#[test]
fn stemcell_docker_builds_and_rebuilds_from_cache() {
    let debootstrap = ["/usr/sbin/debootstrap", "/usr/bin/debootstrap"];
    if !debootstrap.iter().any(|p| Path::new(p).is_file()) || !is_root() {
        println!("SKIP stemcell_docker_builds_and_rebuilds_from_cache: needs root and debootstrap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Any executable stands in for the agent: the layer is what is under test here.
    let agent = dir.path().join("bosh-agent");
    std::fs::write(&agent, "#!/bin/sh\nexec sleep 1000000\n").unwrap();
    let build = |name: &str| {
        let out = dir.path().join(name);
        let start = Instant::now();
        let (ok, text) = bosh_rs(&[
            "create-stemcell",
            "docker",
            "--output",
            out.to_str().unwrap(),
            "--agent",
            agent.to_str().unwrap(),
            "--version",
            "0.0.1",
        ]);
        assert!(ok, "{text}");
        (out, start.elapsed())
    };
    let (first, took) = build("first.tgz");
    println!("first build: {took:?}");
    let (second, took) = build("second.tgz");
    println!("second build: {took:?}");
    assert!(
        took < Duration::from_secs(60),
        "a cached rebuild took {took:?}"
    );
    // Reading a 200 MB tarball takes a while in debug builds: check one fully, the other
    // for its size only.
    assert!(std::fs::metadata(&first).unwrap().len() > 10_000_000);
    {
        let t = read_stemcell_tarball(&second).unwrap();
        assert_eq!(t.info.name, "bosh-docker-debian-bookworm-go_agent");
        assert_eq!(t.info.operating_system, "debian-bookworm");
        assert_eq!(t.info.version, "0.0.1");
        assert_eq!(t.info.stemcell_formats, vec!["warden-tar", "general-tar"]);
        assert!(t.image_size > 10_000_000, "image of {} bytes", t.image_size);
    }
    let (ok, text) = bosh_rs(&["inspect-local-stemcell", second.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(
        text.contains("bosh-docker-debian-bookworm-go_agent"),
        "{text}"
    );

    // The image is one tar stream across the cached base and the agent layer.
    let dest = dir.path().join("x");
    std::fs::create_dir(&dest).unwrap();
    let extracted = Command::new("tar")
        .arg("-xzf")
        .arg(&second)
        .arg("-C")
        .arg(&dest)
        .arg("image")
        .status()
        .unwrap();
    assert!(extracted.success());
    // `tar` reads concatenated gzip members as one stream, as Docker does.
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(dest.join("image"))
        .output()
        .unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8_lossy(&listing.stdout);
    let has = |p: &str| listing.lines().any(|l| l.trim_start_matches("./") == p);
    let seen = (
        has("usr/bin/gcc"),
        has("var/vcap/bosh/bin/bosh-agent"),
        has("usr/sbin/runsvdir-start"),
    );
    assert_eq!(seen, (true, true, true), "gcc, agent, entry point");
}
