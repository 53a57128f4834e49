//! Reading the reference CLI's and the BOSH director's test tarballs.

use bosh_release::archive::{self, ExtractLimits};
use bosh_release::stemcell::{StemcellTarballError, read_stemcell_manifest, read_stemcell_tarball};
use bosh_release::tarball_read::{
    ReadOptions, ReleaseTarballError, read_release_tarball, read_release_tarball_with,
};
use bosh_types::release::ReleaseManifest;
use bosh_types::stemcell::StemcellManifestError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn upstream(name: &str) -> PathBuf {
    fixtures().join("upstream").join(name)
}

fn kv(name: &str) -> PathBuf {
    fixtures().join("kv-release-expected").join(name)
}

/// Rebuilds a release tarball from an extracted one, optionally leaving out or replacing
/// entries; `gzip` picks the outer compression.
fn repack(
    src: &Path,
    dest: &Path,
    gzip: bool,
    mut edit: impl FnMut(&str, Vec<u8>) -> Option<Vec<u8>>,
) {
    let mut entries = Vec::new();
    archive::scan(
        std::fs::File::open(src).unwrap(),
        &ExtractLimits::default(),
        |info, content| {
            let mut buf = Vec::new();
            content.read_to_end(&mut buf).unwrap();
            entries.push((info.clone(), buf));
            Ok(())
        },
    )
    .unwrap();
    let out = std::fs::File::create(dest).unwrap();
    let sink: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            out,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(out)
    };
    let mut tar = tar::Builder::new(sink);
    for (info, data) in entries {
        if info.path.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(info.mode);
        match info.kind {
            archive::EntryKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, format!("{}/", info.path), std::io::empty())
                    .unwrap();
            }
            archive::EntryKind::File => {
                let Some(data) = edit(&info.path, data) else {
                    continue;
                };
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, &info.path, data.as_slice())
                    .unwrap();
            }
        }
    }
    tar.into_inner().unwrap().flush().unwrap();
}

#[test]
fn kv_tarballs_from_the_reference_cli_open_and_match_their_manifests() {
    let expected =
        ReleaseManifest::parse(&std::fs::read_to_string(kv("release-1.0.0.MF")).unwrap()).unwrap();
    let release = read_release_tarball(&kv("kv-1.0.0.tgz")).unwrap();
    let m = &release.manifest;
    assert_eq!(m.name, "kv");
    assert_eq!(m.version, "1.0.0");
    let names = |m: &ReleaseManifest| {
        (
            m.jobs
                .iter()
                .map(|j| (j.name.clone(), j.fingerprint.clone(), j.packages.clone()))
                .collect::<Vec<_>>(),
            m.packages
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.fingerprint.clone(),
                        p.dependencies.clone(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(names(m), names(&expected));
    assert!(m.jobs.iter().all(|j| j.sha1.starts_with("sha256:")));
    // job.MF inside each job archive is the spec the reference CLI stored.
    for job in &release.jobs {
        let spec_text =
            std::fs::read_to_string(kv(&format!("job-{}.MF", job.reference.name))).unwrap();
        let expected_spec = bosh_types::release::JobSpec::parse(&spec_text).unwrap();
        assert_eq!(job.spec, expected_spec);
    }
    assert_eq!(release.packages.len(), 3);
    assert!(
        release
            .packages
            .iter()
            .all(|p| p.path.as_ref().is_some_and(|p| p.is_file()))
    );
    // The dev tarball opens too.
    let dev = read_release_tarball(&kv("kv-0+dev.1.tgz")).unwrap();
    assert_eq!(dev.manifest.version, "0+dev.1");
}

#[test]
fn upstream_tarballs_that_the_director_accepts_open() {
    for name in [
        "test_release.tgz",
        "sha1_release.tgz",
        "dummy-release.tgz",
        "bosh-release-0+dev.1.tgz",
        "unsorted-release-0+dev.1.tgz",
        "release-test_release-1-on-centos-7-stemcell-3001.tgz",
        "release-test_release-1-on-centos-7-stemcell-3001_without_dot_slash_prefix.tgz",
        "test_release_with_modified_fingerprint_for_pkg_1.tgz",
    ] {
        let r = read_release_tarball(&upstream(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(!r.manifest.name.is_empty(), "{name}");
        assert_eq!(
            r.jobs.len(),
            r.manifest.jobs.len(),
            "{name}: every job verified"
        );
    }
    let licensed = read_release_tarball(&upstream("bosh-release-0+dev.1.tgz")).unwrap();
    // Its release.MF lists a license, but only the extracted LICENSE file was shipped.
    assert!(licensed.manifest.license.is_some());
    assert!(licensed.license.is_none());
    let compiled = read_release_tarball(&upstream(
        "release-test_release-1-on-centos-7-stemcell-3001_without_dot_slash_prefix.tgz",
    ))
    .unwrap();
    assert!(compiled.manifest.is_compiled());
    assert_eq!(compiled.compiled_packages.len(), 5);
    assert!(
        compiled
            .compiled_packages
            .iter()
            .all(|p| p.reference.stemcell_os_version() == Some(("centos-7", "3001")))
    );
}

#[test]
fn modified_fingerprint_release_has_a_different_pkg_1_fingerprint() {
    let base = read_release_tarball(&upstream("test_release.tgz")).unwrap();
    let modified = read_release_tarball(&upstream(
        "test_release_with_modified_fingerprint_for_pkg_1.tgz",
    ))
    .unwrap();
    let pkg = |r: &bosh_release::tarball_read::ReleaseTarball| {
        r.manifest
            .packages
            .iter()
            .find(|p| p.name == "pkg_1")
            .cloned()
            .unwrap()
    };
    // Same package name, different fingerprint: the director must notice the clash.
    assert_ne!(pkg(&base).fingerprint, pkg(&modified).fingerprint);
}

#[test]
fn invalid_upstream_tarballs_are_refused_naming_the_problem() {
    let err = read_release_tarball(&upstream("release_invalid_checksum.tgz")).unwrap_err();
    match &err {
        ReleaseTarballError::DigestMismatch { archive, .. } => {
            assert!(
                archive.starts_with("jobs/") || archive.starts_with("packages/"),
                "{archive}"
            )
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(".tgz"), "{err}");

    let err = read_release_tarball(&upstream("release_invalid_jobs.tgz")).unwrap_err();
    match &err {
        ReleaseTarballError::MissingArchive { archive } => assert_eq!(archive, "jobs/broken.tgz"),
        ReleaseTarballError::DigestMismatch { archive, .. } => {
            assert_eq!(archive, "jobs/broken.tgz")
        }
        other => panic!("expected the broken job to be named, got {other:?}"),
    }

    let err = read_release_tarball(&upstream("release_no_name.tgz")).unwrap_err();
    assert!(
        matches!(err, ReleaseTarballError::MissingField { field: "name" }),
        "{err:?}"
    );
    let err = read_release_tarball(&upstream("release_no_version.tgz")).unwrap_err();
    assert!(
        matches!(err, ReleaseTarballError::MissingField { field: "version" }),
        "{err:?}"
    );
}

#[test]
fn plain_tar_and_multi_digest_strings_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.tar");
    repack(&kv("kv-1.0.0.tgz"), &plain, false, |_, d| Some(d));
    let mut head = [0u8; 2];
    std::fs::File::open(&plain)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_ne!(
        head,
        [0x1f, 0x8b],
        "the repacked file must really be plain tar"
    );
    let r = read_release_tarball(&plain).unwrap();
    assert_eq!(r.manifest.version, "1.0.0");

    // Add a SHA-1 next to each SHA-256; verification uses the strongest (SHA-256).
    let original = read_release_tarball(&kv("kv-1.0.0.tgz")).unwrap();
    let multi = dir.path().join("multi.tgz");
    let mut m = original.manifest.clone();
    for j in &mut m.jobs {
        j.sha1 = format!("{};{}", j.sha1, "0".repeat(40));
    }
    let text = m.to_yaml();
    repack(&kv("kv-1.0.0.tgz"), &multi, true, |p, d| {
        Some(if p == "release.MF" {
            text.clone().into_bytes()
        } else {
            d
        })
    });
    let r = read_release_tarball(&multi).unwrap();
    assert!(r.manifest.jobs[0].sha1.contains(';'));

    // A wrong SHA-256 in a multi-digest is caught even when the SHA-1 is right.
    let bad = dir.path().join("bad.tgz");
    let mut m = original.manifest.clone();
    let job_bytes = std::fs::read(&original.jobs[0].path).unwrap();
    let sha1 =
        bosh_types::digest::Digest::compute_bytes(bosh_types::digest::DigestAlgo::Sha1, &job_bytes);
    m.jobs[0].sha1 = format!("sha256:{};{}", "a".repeat(64), sha1);
    let text = m.to_yaml();
    repack(&kv("kv-1.0.0.tgz"), &bad, true, |p, d| {
        Some(if p == "release.MF" {
            text.clone().into_bytes()
        } else {
            d
        })
    });
    let err = read_release_tarball(&bad).unwrap_err();
    assert!(
        matches!(&err, ReleaseTarballError::DigestMismatch { archive, .. } if archive == "jobs/kv-server.tgz"),
        "{err:?}"
    );
}

#[test]
fn trimmed_tarballs_are_representable_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let trimmed = dir.path().join("trimmed.tgz");
    repack(&kv("kv-1.0.0.tgz"), &trimmed, true, |p, d| {
        (p != "packages/kvlib.tgz").then_some(d)
    });
    let err = read_release_tarball(&trimmed).unwrap_err();
    assert!(
        matches!(&err, ReleaseTarballError::MissingArchive { archive } if archive == "packages/kvlib.tgz"),
        "{err:?}"
    );
    let opts = ReadOptions {
        allow_missing_packages: true,
        ..Default::default()
    };
    let r = read_release_tarball_with(&trimmed, &opts).unwrap();
    let kvlib = r
        .packages
        .iter()
        .find(|p| p.reference.name == "kvlib")
        .unwrap();
    assert!(kvlib.path.is_none());
    assert!(r.packages.iter().filter(|p| p.path.is_some()).count() == 2);
}

#[test]
fn job_archive_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let original = read_release_tarball(&kv("kv-1.0.0.tgz")).unwrap();

    // Replace kv-server's job archive with one whose job.MF names another job and that has
    // no monit; fix its digest so the job check itself is what fails.
    let job_tgz = |files: &[(&str, &str)]| {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            tar.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            job_tgz(&[("./job.MF", "name: other\n"), ("./monit", "")]),
            "names job 'other'",
        ),
        (
            job_tgz(&[
                (
                    "./job.MF",
                    "name: kv-server\ntemplates: {ctl.erb: bin/ctl}\n",
                ),
                ("./monit", ""),
            ]),
            "templates/ctl.erb",
        ),
        (job_tgz(&[("./job.MF", "name: kv-server\n")]), "no monit"),
        (job_tgz(&[("./monit", "")]), "no job.MF"),
        (
            job_tgz(&[
                ("./job.MF", "name: kv-server\nprovides: [{name: a}]\n"),
                ("./monit", ""),
            ]),
            "provides[0].type",
        ),
    ];
    for (i, (job, needle)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("case{i}.tgz"));
        let mut m = original.manifest.clone();
        m.jobs[0].sha1 =
            bosh_types::digest::Digest::compute_bytes(bosh_types::digest::DigestAlgo::Sha256, &job)
                .to_string();
        let text = m.to_yaml();
        repack(&kv("kv-1.0.0.tgz"), &path, true, |p, d| {
            Some(match p {
                "release.MF" => text.clone().into_bytes(),
                "jobs/kv-server.tgz" => job.clone(),
                _ => d,
            })
        });
        let err = read_release_tarball(&path).unwrap_err();
        let mut text = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(s) = src {
            text.push_str(": ");
            text.push_str(&s.to_string());
            src = s.source();
        }
        assert!(text.contains("jobs/kv-server.tgz"), "case {i}: {text}");
        assert!(text.contains(needle), "case {i}: {text}");
    }
}

#[test]
fn package_cycles_and_unknown_dependencies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let original = read_release_tarball(&kv("kv-1.0.0.tgz")).unwrap();
    for (deps, needle) in [(vec!["kvserver"], "cycle"), (vec!["nope"], "'nope'")] {
        let mut m = original.manifest.clone();
        m.packages[0].dependencies = deps.iter().map(|s| s.to_string()).collect();
        let text = m.to_yaml();
        let path = dir.path().join("graph.tgz");
        repack(&kv("kv-1.0.0.tgz"), &path, true, |p, d| {
            Some(if p == "release.MF" {
                text.clone().into_bytes()
            } else {
                d
            })
        });
        let err = read_release_tarball(&path).unwrap_err();
        let source = std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default();
        assert!(source.contains(needle), "{err}: {source}");
    }
}

#[test]
fn stemcells_open_or_are_refused_clearly() {
    let valid = read_stemcell_tarball(&upstream("valid_stemcell.tgz")).unwrap();
    assert_eq!(valid.info.name, "ubuntu-stemcell");
    assert_eq!(valid.info.version, "1");
    assert_eq!(valid.info.operating_system, "toronto-os");
    assert_eq!(valid.info.stemcell_formats, ["dummy"]);

    let light = read_stemcell_tarball(&upstream(
        "light-bosh-stemcell-3001-aws-xen-centos-7-go_agent.tgz",
    ))
    .unwrap();
    assert_eq!(light.info.version, "3001");
    assert_eq!(light.info.operating_system, "centos-7");

    let err = read_stemcell_tarball(&upstream("stemcell_invalid_mf.tgz")).unwrap_err();
    assert!(
        matches!(
            &err,
            StemcellTarballError::Manifest {
                source: StemcellManifestError::Missing { field: "version" },
                ..
            }
        ),
        "{err:?}"
    );
    let err = read_stemcell_tarball(&upstream("stemcell_no_image.tgz")).unwrap_err();
    assert!(
        matches!(&err, StemcellTarballError::MissingImage { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("image"), "{err}");

    // Metadata alone (what inspect-local-stemcell reads) does not need the image.
    let m = read_stemcell_manifest(&upstream("stemcell_no_image.tgz")).unwrap();
    assert_eq!(m.name.as_deref(), Some("ubuntu-stemcell"));

    // A release is not a stemcell.
    let err = read_stemcell_tarball(&kv("kv-1.0.0.tgz")).unwrap_err();
    assert!(
        matches!(err, StemcellTarballError::MissingManifest { .. }),
        "{err:?}"
    );
}
