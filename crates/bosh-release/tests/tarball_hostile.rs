//! Hostile archives are refused, naming the entry, and nothing lands outside the target.

use bosh_release::archive::{self, ArchiveError, ExtractLimits};
use bosh_release::stemcell::{StemcellTarballError, read_stemcell_tarball};
use bosh_release::tarball_read::{ReleaseTarballError, read_release_tarball};
use std::io::Write;
use std::path::Path;

/// One raw tar entry; the name is written into the header bytes directly so that names the
/// `tar` crate's builder would refuse (`/abs`, `..`) can be produced.
struct Raw<'a> {
    name: &'a str,
    kind: tar::EntryType,
    data: &'a [u8],
    link: Option<&'a str>,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name,
        kind: tar::EntryType::Regular,
        data,
        link: None,
    }
}

fn build(entries: &[Raw<'_>], gzip: bool) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            let bytes = e.name.as_bytes();
            old.name[..bytes.len()].copy_from_slice(bytes);
            if let Some(link) = e.link {
                old.linkname[..link.len()].copy_from_slice(link.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_mode(0o644);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        tar.append(&h, e.data).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        gz.finish().unwrap()
    } else {
        bytes
    }
}

/// Every path under `root`, relative.
fn tree(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            e.unwrap()
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    out.sort();
    out
}

fn refused(entries: &[Raw<'_>], limits: &ExtractLimits) -> (ArchiveError, Vec<String>) {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("target");
    let err =
        archive::extract_reader(build(entries, true).as_slice(), &target, limits).unwrap_err();
    // Listing without extracting refuses the same archive.
    assert!(archive::list_reader(build(entries, false).as_slice(), limits).is_err());
    (err, tree(root.path()))
}

#[test]
fn absolute_paths_are_refused() {
    let (err, tree) = refused(
        &[file("ok.txt", b"x"), file("/tmp/bosh-rs-evil-abs", b"evil")],
        &ExtractLimits::default(),
    );
    assert!(
        matches!(&err, ArchiveError::AbsolutePath { entry } if entry == "/tmp/bosh-rs-evil-abs"),
        "{err:?}"
    );
    assert!(err.to_string().contains("/tmp/bosh-rs-evil-abs"));
    assert!(!Path::new("/tmp/bosh-rs-evil-abs").exists());
    assert_eq!(tree, ["target", "target/ok.txt"]);
}

#[test]
fn parent_dir_components_are_refused() {
    for name in ["../evil", "./a/../../evil", "a/../../../evil"] {
        let (err, tree) = refused(&[file(name, b"evil")], &ExtractLimits::default());
        assert!(
            matches!(&err, ArchiveError::ParentDir { entry } if entry == name),
            "{err:?}"
        );
        assert!(err.to_string().contains(name));
        assert_eq!(tree, ["target"], "{name}");
    }
}

#[test]
fn links_and_special_files_are_refused() {
    let link = |kind, name: &'static str| Raw {
        name,
        kind,
        data: b"",
        link: Some("/etc/passwd"),
    };
    let (err, tree) = refused(
        &[file("a.txt", b"a"), link(tar::EntryType::Symlink, "sym")],
        &ExtractLimits::default(),
    );
    assert!(
        matches!(&err, ArchiveError::Symlink { entry } if entry == "sym"),
        "{err:?}"
    );
    assert_eq!(tree, ["target", "target/a.txt"]);

    let (err, _) = refused(
        &[link(tar::EntryType::Link, "hard")],
        &ExtractLimits::default(),
    );
    assert!(
        matches!(&err, ArchiveError::HardLink { entry } if entry == "hard"),
        "{err:?}"
    );

    for (kind, what) in [
        (tar::EntryType::Char, "character device"),
        (tar::EntryType::Block, "block device"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let (err, tree) = refused(
            &[Raw {
                name: "dev",
                kind,
                data: b"",
                link: None,
            }],
            &ExtractLimits::default(),
        );
        assert!(
            matches!(&err, ArchiveError::Special { entry, kind } if entry == "dev" && *kind == what),
            "{err:?}"
        );
        assert_eq!(tree, ["target"]);
    }
}

#[test]
fn size_bombs_are_refused_naming_the_entry() {
    // 8 MiB of zeros compresses to a few KiB; the limit is 1 MiB in total.
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let limits = ExtractLimits {
        max_total_bytes: 1024 * 1024,
        max_entries: 100,
    };
    let compressed = build(&[file("small", b"ok"), file("bomb", &zeros)], true);
    assert!(compressed.len() < 100 * 1024);
    let root = tempfile::tempdir().unwrap();
    let err = archive::extract_reader(compressed.as_slice(), root.path(), &limits).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TooLarge { entry, .. } if entry == "bomb"),
        "{err:?}"
    );
    assert!(!root.path().join("bomb").exists());

    // Many small files that add up past the limit.
    let chunk = vec![1u8; 400 * 1024];
    let entries = [file("a", &chunk), file("b", &chunk), file("c", &chunk)];
    let err = archive::list_reader(build(&entries, false).as_slice(), &limits).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TooLarge { entry, .. } if entry == "c"),
        "{err:?}"
    );

    let few = ExtractLimits {
        max_total_bytes: u64::MAX,
        max_entries: 2,
    };
    let err = archive::list_reader(build(&entries, false).as_slice(), &few).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::TooManyEntries { entry, .. } if entry == "c"),
        "{err:?}"
    );
}

#[test]
fn regular_files_keep_their_modes_and_dot_prefixes_are_dropped() {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, mode) in [("./bin/run", 0o755), ("./conf", 0o644), ("./suid", 0o4755)] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(1);
        tar.append_data(&mut h, name, &b"x"[..]).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let root = tempfile::tempdir().unwrap();
    let entries =
        archive::extract_reader(bytes.as_slice(), root.path(), &ExtractLimits::default()).unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["bin/run", "conf", "suid"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| {
        std::fs::metadata(root.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/run"), 0o755);
    assert_eq!(mode("conf"), 0o644);
    assert_eq!(mode("suid"), 0o755, "setuid is dropped");
}

#[test]
fn a_preexisting_symlink_in_the_target_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let target = root.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("dir")).unwrap();
    let err = archive::extract_reader(
        build(&[file("dir/evil", b"x")], false).as_slice(),
        &target,
        &ExtractLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Collision { entry } if entry == "dir/evil"),
        "{err:?}"
    );
    assert!(tree(&outside).is_empty());
}

#[test]
fn hostile_entries_inside_release_and_stemcell_tarballs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A symlink next to release.MF.
    let release = dir.path().join("release.tgz");
    std::fs::write(
        &release,
        build(
            &[
                file("release.MF", b"name: r\nversion: '1'\n"),
                Raw {
                    name: "jobs/evil.tgz",
                    kind: tar::EntryType::Symlink,
                    data: b"",
                    link: Some("/etc/shadow"),
                },
            ],
            true,
        ),
    )
    .unwrap();
    let err = read_release_tarball(&release).unwrap_err();
    assert!(
        matches!(&err, ReleaseTarballError::Extract { source: ArchiveError::Symlink { entry }, .. } if entry == "jobs/evil.tgz"),
        "{err:?}"
    );

    // A symlink inside a job archive.
    let job = build(
        &[
            file("./job.MF", b"name: j\n"),
            file("./monit", b""),
            Raw {
                name: "./templates/x",
                kind: tar::EntryType::Symlink,
                data: b"",
                link: Some("/etc/shadow"),
            },
        ],
        true,
    );
    let sha =
        bosh_types::digest::Digest::compute_bytes(bosh_types::digest::DigestAlgo::Sha256, &job);
    let mf = format!(
        "name: r\nversion: '1'\njobs:\n- name: j\n  version: v\n  fingerprint: v\n  sha1: {sha}\n"
    );
    std::fs::write(
        &release,
        build(
            &[file("release.MF", mf.as_bytes()), file("jobs/j.tgz", &job)],
            true,
        ),
    )
    .unwrap();
    let err = read_release_tarball(&release).unwrap_err();
    assert!(
        matches!(&err, ReleaseTarballError::JobArchive { archive, source: ArchiveError::Symlink { entry } } if archive == "jobs/j.tgz" && entry == "./templates/x"),
        "{err:?}"
    );

    let stemcell = dir.path().join("stemcell.tgz");
    std::fs::write(
        &stemcell,
        build(
            &[
                file("stemcell.MF", b"name: s\nversion: '1'\nsha1: x\n"),
                Raw {
                    name: "image",
                    kind: tar::EntryType::Link,
                    data: b"",
                    link: Some("/etc/shadow"),
                },
            ],
            true,
        ),
    )
    .unwrap();
    let err = read_stemcell_tarball(&stemcell).unwrap_err();
    assert!(
        matches!(&err, StemcellTarballError::Archive { source: ArchiveError::HardLink { entry }, .. } if entry == "image"),
        "{err:?}"
    );
}
