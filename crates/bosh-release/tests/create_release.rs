//! create-release against the reference CLI's fixtures (kv-release) and the full
//! init → generate → add-blob → create → finalize flow.

use bosh_release::create::{CreateOptions, create_release, release_from_manifest};
use bosh_release::finalize::finalize_release_tarball;
use bosh_release::index::{ArchiveCache, BuildIndex, ReleaseIndex};
use bosh_release::release_dir::{ReleaseDir, ResourceKind};
use bosh_types::digest::DigestString;
use bosh_types::release::ReleaseManifest;
use bosh_types::version::Version;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures")
}

fn copy_tree(src: &Path, dst: &Path) {
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(src).unwrap();
        let target = dst.join(rel);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).unwrap();
        } else {
            fs::copy(entry.path(), &target).unwrap();
            // Fixture files are read-only; keep only the exec bits that matter.
            let mut perms = fs::metadata(&target).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            fs::set_permissions(&target, perms).unwrap();
        }
    }
}

/// `(entry name, content)` of every regular file in a (gzipped) tarball.
fn tar_files(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let reader: Box<dyn Read + '_> = if data.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(data))
    } else {
        Box::new(data)
    };
    let mut out = Vec::new();
    for e in tar::Archive::new(reader).entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.push((name, buf));
    }
    out
}

/// `ls -l`-style mode and raw name of each entry, like the fixtures' `*.listing`.
fn listing(data: &[u8]) -> String {
    let mut out = String::new();
    for e in tar::Archive::new(flate2::read::GzDecoder::new(data))
        .entries()
        .unwrap()
    {
        let e = e.unwrap();
        let h = e.header();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            _ => '-',
        };
        let mode = h.mode().unwrap();
        let mut s = String::from(kind);
        for shift in [6, 3, 0] {
            let bits = (mode >> shift) & 7;
            s.push(if bits & 4 != 0 { 'r' } else { '-' });
            s.push(if bits & 2 != 0 { 'w' } else { '-' });
            s.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        out.push_str(&format!(
            "{s} {}\n",
            String::from_utf8_lossy(&e.path_bytes())
        ));
    }
    out
}

/// A writable kv-release with its missing blob restored from the fixture tarball.
fn kv_release(tmp: &Path) -> PathBuf {
    let dir = tmp.join("kv-release");
    copy_tree(&fixtures().join("kv-release"), &dir);
    let tgz = fs::read(fixtures().join("kv-release-expected/kv-1.0.0.tgz")).unwrap();
    let (_, kvtools) = tar_files(&tgz)
        .into_iter()
        .find(|(n, _)| n == "packages/kvtools.tgz")
        .unwrap();
    let (_, tool) = tar_files(&kvtools)
        .into_iter()
        .find(|(n, _)| n == "./tools/tool.txt")
        .unwrap();
    fs::create_dir_all(dir.join("blobs/tools")).unwrap();
    fs::write(dir.join("blobs/tools/tool.txt"), tool).unwrap();
    dir
}

fn expected_manifest() -> ReleaseManifest {
    let text = fs::read_to_string(fixtures().join("kv-release-expected/release-1.0.0.MF")).unwrap();
    ReleaseManifest::parse(&text).unwrap()
}

/// The manifest text with the fields that legitimately differ (archive digests, commit,
/// release version) replaced by placeholders; job/package versions stay.
fn masked(text: &str) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            let indent = &l[..l.len() - t.len()];
            if t.starts_with("sha1: ")
                || l.starts_with("commit_hash: ")
                || l.starts_with("version: ")
            {
                format!("{indent}{}: X", t.split(':').next().unwrap_or_default())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn kv_release_built_from_scratch_matches_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = kv_release(tmp.path());
    // Without the final build index everything is built here, by us.
    fs::remove_dir_all(dir.join(".final_builds")).unwrap();
    let cache = ArchiveCache::new(tmp.path().join("cache"));
    let mut lines = Vec::new();
    let rel = create_release(
        &ReleaseDir::new(&dir),
        cache,
        &CreateOptions::default(),
        &mut |l| lines.push(l.to_string()),
    )
    .unwrap();

    assert_eq!(rel.version, "1.0.0+dev.1");
    let m = rel.manifest();
    let want = expected_manifest();
    assert_eq!(masked(&m.to_yaml()), masked(&want.to_yaml()));
    // The masked comparison above covers key order; now the fields one by one.
    for (got, exp) in m.jobs.iter().zip(&want.jobs) {
        assert_eq!(
            (&got.name, &got.version, &got.fingerprint, &got.packages),
            (&exp.name, &exp.version, &exp.fingerprint, &exp.packages)
        );
        assert!(is_sha256_digest(&got.sha1), "{}", got.sha1);
    }
    for (got, exp) in m.packages.iter().zip(&want.packages) {
        assert_eq!(
            (&got.name, &got.version, &got.fingerprint, &got.dependencies),
            (&exp.name, &exp.version, &exp.fingerprint, &exp.dependencies)
        );
        assert!(is_sha256_digest(&got.sha1), "{}", got.sha1);
    }
    assert_eq!(
        (m.jobs.len(), m.packages.len()),
        (want.jobs.len(), want.packages.len())
    );
    assert_eq!(m.commit_hash, "non-git");

    // Archive content: job.MF bytes and entry listings.
    for job in &rel.jobs {
        let data = fs::read(&job.archive_path).unwrap();
        DigestString::parse(&job.sha1)
            .unwrap()
            .verify_bytes(&data)
            .unwrap();
        let expected_mf =
            fs::read(fixtures().join(format!("kv-release-expected/job-{}.MF", job.name))).unwrap();
        let (_, mf) = tar_files(&data)
            .into_iter()
            .find(|(n, _)| n == "./job.MF")
            .unwrap();
        assert_eq!(mf, expected_mf, "job.MF of {}", job.name);
        let expected = fs::read_to_string(
            fixtures().join(format!("kv-release-expected/job-{}.listing", job.name)),
        )
        .unwrap();
        assert_eq!(listing(&data), expected, "listing of job {}", job.name);
    }
    for pkg in &rel.packages {
        let data = fs::read(&pkg.archive_path).unwrap();
        let expected = fs::read_to_string(
            fixtures().join(format!("kv-release-expected/package-{}.listing", pkg.name)),
        )
        .unwrap();
        assert_eq!(listing(&data), expected, "listing of package {}", pkg.name);
    }

    // Progress lines and the dev index entries.
    let fp = &want.jobs[0].fingerprint;
    assert!(
        lines.contains(&format!("Adding job 'kv-server/{fp}'...")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("Added job 'kv-server/{fp}'")),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap(), "Added dev release 'kv/1.0.0+dev.1'");
    let dev = BuildIndex::dev(&dir, ResourceKind::Package);
    assert_eq!(
        dev.find("kvlib", &want.packages[0].fingerprint)
            .unwrap()
            .unwrap()
            .sha1,
        m.packages[0].sha1
    );
    let dev_rel = ReleaseIndex::dev(&dir);
    assert_eq!(dev_rel.read_manifest("kv", "1.0.0+dev.1").unwrap(), m);
}

#[test]
fn kv_release_reuses_final_builds_from_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = kv_release(tmp.path());
    let cache = ArchiveCache::new(tmp.path().join("cache"));
    // Prime the cache with the reference archives, as a previous download would have.
    let want = expected_manifest();
    let tgz = fs::read(fixtures().join("kv-release-expected/kv-1.0.0.tgz")).unwrap();
    fs::create_dir_all(cache.dir()).unwrap();
    for (name, data) in tar_files(&tgz) {
        let sha = want
            .jobs
            .iter()
            .map(|j| (format!("jobs/{}.tgz", j.name), &j.sha1))
            .chain(
                want.packages
                    .iter()
                    .map(|p| (format!("packages/{}.tgz", p.name), &p.sha1)),
            )
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.clone());
        if let Some(sha) = sha {
            fs::write(cache.path_for(&sha).unwrap(), data).unwrap();
        }
    }
    let mut lines = Vec::new();
    let rel = create_release(
        &ReleaseDir::new(&dir),
        cache.clone(),
        &CreateOptions::default(),
        &mut |l| lines.push(l.to_string()),
    )
    .unwrap();
    let m = rel.manifest();
    assert_eq!(m.version, "1.0.0+dev.1");
    assert_eq!(m.jobs, want.jobs);
    assert_eq!(m.packages, want.packages);
    assert_eq!(
        lines,
        vec!["Added dev release 'kv/1.0.0+dev.1'".to_string()]
    );

    // With nothing cached, the final build must come from the (absent) local blobstore.
    let empty = ArchiveCache::new(tmp.path().join("empty-cache"));
    let err = create_release(
        &ReleaseDir::new(&dir),
        empty,
        &CreateOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(format!("{err}").contains("Downloading blob"), "{err}");

    // `create-release PATH` assembles the final release from the indexes.
    let manifest_path = dir.join("releases/kv/kv-1.0.0.yml");
    let again =
        release_from_manifest(&ReleaseDir::new(&dir), cache, &manifest_path, &mut |_| {}).unwrap();
    assert_eq!(
        again.manifest(),
        ReleaseManifest::parse(&fs::read_to_string(&manifest_path).unwrap()).unwrap()
    );
}

#[test]
fn fresh_release_dev_final_and_reuse_flow() {
    let tmp = tempfile::tempdir().unwrap();
    let dir_path = tmp.path().join("demo-release");
    let dir = ReleaseDir::new(&dir_path);
    dir.init(false).unwrap();
    assert_eq!(
        fs::read_to_string(dir_path.join("config/final.yml")).unwrap(),
        "name: demo\n"
    );
    dir.generate_job("web").unwrap();
    dir.generate_package("tool").unwrap();
    assert!(dir.generate_job("web").is_err());
    fs::write(
        dir_path.join("config/final.yml"),
        format!(
            "name: demo\nblobstore:\n  provider: local\n  options:\n    blobstore_path: {}\n",
            tmp.path().join("bs").display()
        ),
    )
    .unwrap();
    fs::write(
        dir_path.join("packages/tool/spec"),
        "---\nname: tool\ndependencies: []\nfiles:\n- tool/**/*\n",
    )
    .unwrap();
    let blob_src = tmp.path().join("blob.bin");
    fs::write(&blob_src, b"blob content\n").unwrap();
    bosh_release::blobs::BlobsDir::new(&dir_path)
        .track_blob(&blob_src, "tool/blob.bin")
        .unwrap();
    fs::write(dir_path.join("LICENSE"), "MIT\n").unwrap();

    let cache = ArchiveCache::new(tmp.path().join("cache"));
    let mut lines = Vec::new();
    let mut out = |l: &str| lines.push(l.to_string());
    let first = create_release(&dir, cache.clone(), &CreateOptions::default(), &mut out).unwrap();
    assert_eq!(first.version, "0+dev.1");
    assert_eq!(first.packages[0].name, "tool");
    let license = first.license.as_ref().unwrap();
    assert_eq!(
        license.fingerprint,
        "6ddb1b0645b74df98a7db80ddd7e1a89ffa4df5700554d2c78f191b29642f183"
    );

    // Tarball layout: no `./` prefix, fixed order, license files copied out.
    let tgz_path = tmp.path().join("out/demo.tgz");
    first.write_tarball(&tgz_path).unwrap();
    let names: Vec<String> = tar_files(&fs::read(&tgz_path).unwrap())
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "release.MF",
            "jobs/",
            "jobs/web.tgz",
            "packages/",
            "packages/tool.tgz",
            "license.tgz",
            "LICENSE"
        ]
    );

    let second = create_release(&dir, cache.clone(), &CreateOptions::default(), &mut out).unwrap();
    assert_eq!(second.version, "0+dev.2");
    assert_eq!(
        second.manifest().packages,
        first.manifest().packages,
        "unchanged builds are reused"
    );

    let final_opts = CreateOptions {
        final_: true,
        ..CreateOptions::default()
    };
    let fin = create_release(&dir, cache.clone(), &final_opts, &mut out).unwrap();
    assert_eq!(fin.version, "1");
    assert!(dir_path.join("releases/demo/demo-1.yml").exists());
    let entry = BuildIndex::final_(&dir_path, ResourceKind::Package)
        .find("tool", &fin.packages[0].fingerprint)
        .unwrap()
        .unwrap();
    assert!(tmp.path().join("bs").join(&entry.blobstore_id).exists());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("-- Started uploading 'tool/")),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"Added final release 'demo/1'".to_string()),
        "{lines:?}"
    );

    let mut out = |_: &str| {};
    let fin2 = create_release(&dir, cache.clone(), &final_opts, &mut out).unwrap();
    assert_eq!(fin2.version, "2");
    let dev_after =
        create_release(&dir, cache.clone(), &CreateOptions::default(), &mut out).unwrap();
    assert_eq!(dev_after.version, "2+dev.1");

    // Version conflicts are refused with a clear error.
    let dup = CreateOptions {
        version: Some(Version::parse("0+dev.1").unwrap()),
        ..CreateOptions::default()
    };
    let err = create_release(&dir, cache.clone(), &dup, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "Release version '0+dev.1' already exists");
    let dup_final = CreateOptions {
        version: Some(Version::parse("1").unwrap()),
        final_: true,
        ..CreateOptions::default()
    };
    let err = create_release(&dir, cache.clone(), &dup_final, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "Release 'demo' version '1' already exists");

    // finalize-release of a dev tarball.
    let dev_tgz = tmp.path().join("dev.tgz");
    dev_after.write_tarball(&dev_tgz).unwrap();
    let finalized =
        finalize_release_tarball(&dir, cache.clone(), &dev_tgz, None, None, false, &mut out)
            .unwrap();
    assert_eq!(finalized.version, "3");
    assert_eq!(
        ReleaseIndex::final_(&dir_path)
            .last_version("demo")
            .unwrap()
            .unwrap()
            .to_string(),
        "3"
    );
    let err = finalize_release_tarball(
        &dir,
        cache,
        &dev_tgz,
        None,
        Some(&Version::parse("3").unwrap()),
        false,
        &mut out,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Release 'demo' version '3' already exists");
}

#[test]
fn missing_dependency_and_bad_job_dir_are_reported_together() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = ReleaseDir::new(tmp.path().join("x"));
    dir.init(false).unwrap();
    dir.generate_job("web").unwrap();
    fs::write(
        tmp.path().join("x/jobs/web/spec"),
        "---\nname: web\ntemplates: {}\npackages: [nope]\n",
    )
    .unwrap();
    dir.generate_package("p").unwrap();
    fs::write(
        tmp.path().join("x/packages/p/spec"),
        "---\nname: p\ndependencies: [gone]\nfiles: []\n",
    )
    .unwrap();
    let err = create_release(
        &dir,
        ArchiveCache::new(tmp.path().join("c")),
        &CreateOptions::default(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("Expected to find package 'gone' since it's a dependency of package 'p'"),
        "{err}"
    );
    assert!(
        err.contains("Expected to find package 'nope' since it's a dependency of job 'web'"),
        "{err}"
    );
}
