//! sha1ify-release / sha2ify-release.

use bosh_release::rewrite::{entry_paths, redigest_release};
use bosh_release::tarball_read::read_release_tarball;
use bosh_types::digest::DigestAlgo;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(rel)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn sha1ify_then_sha2ify_round_trips_the_reference_digests() {
    let src = fixture("kv-release-expected/kv-1.0.0.tgz");
    let original = read_release_tarball(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let sha1 = dir.path().join("sha1.tgz");
    let m1 = redigest_release(&src, &sha1, DigestAlgo::Sha1).unwrap();
    let reread = read_release_tarball(&sha1).unwrap();
    assert_eq!(reread.manifest, m1, "what was written is what was returned");
    for (new, old) in m1.jobs.iter().zip(&original.manifest.jobs) {
        assert!(is_hex(&new.sha1, 40), "{}", new.sha1);
        assert_eq!(new.fingerprint, old.fingerprint);
        assert_eq!(new.version, old.version);
        assert_eq!(new.packages, old.packages);
    }
    for (new, old) in m1.packages.iter().zip(&original.manifest.packages) {
        assert!(is_hex(&new.sha1, 40), "{}", new.sha1);
        assert_eq!(new.fingerprint, old.fingerprint);
        assert_eq!(new.dependencies, old.dependencies);
    }
    assert_eq!(
        entry_paths(&sha1).unwrap()[0],
        "release.MF",
        "written like the Go CLI: release.MF first, no ./ prefix"
    );

    // The archives are copied byte for byte, so SHA-256 gives back the reference digests.
    let sha2 = dir.path().join("sha2.tgz");
    let m2 = redigest_release(&sha1, &sha2, DigestAlgo::Sha256).unwrap();
    assert_eq!(m2, original.manifest);
}

#[test]
fn compiled_releases_are_redigested_and_bad_sources_refused() {
    let src = fixture("upstream/release-test_release-1-on-centos-7-stemcell-3001.tgz");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tgz");
    let m = redigest_release(&src, &out, DigestAlgo::Sha256).unwrap();
    assert!(
        m.compiled_packages
            .iter()
            .all(|p| p.sha1.starts_with("sha256:"))
    );
    assert!(m.jobs.iter().all(|j| j.sha1.starts_with("sha256:")));
    assert_eq!(read_release_tarball(&out).unwrap().manifest, m);

    let bad = fixture("upstream/release_invalid_checksum.tgz");
    let out = dir.path().join("never.tgz");
    assert!(redigest_release(&bad, &out, DigestAlgo::Sha256).is_err());
    assert!(!out.exists(), "a corrupt release is not re-signed");
}
