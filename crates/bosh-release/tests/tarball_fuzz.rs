//! Random and mutated bytes never make the tarball readers or release.MF parsing panic.

use bosh_release::archive::{self, ExtractLimits};
use bosh_release::stemcell::read_stemcell_tarball;
use bosh_release::tarball_read::{parse_release_manifest, read_release_tarball};
use bosh_types::release::{JobSpec, ReleaseManifest};
use proptest::prelude::*;
use std::io::Read;
use std::path::Path;

fn fixture_bytes(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures")
            .join(rel),
    )
    .unwrap()
}

/// The uncompressed tar of a fixture, so mutations hit headers rather than gzip framing.
fn plain_tar(rel: &str) -> Vec<u8> {
    let mut out = Vec::new();
    archive::decompressed(fixture_bytes(rel).as_slice())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for &(pos, val) in edits {
        let i = pos % bytes.len();
        bytes[i] = val;
    }
    bytes
}

fn read_all(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.tgz");
    std::fs::write(&path, bytes).unwrap();
    let _ = read_release_tarball(&path);
    let _ = read_stemcell_tarball(&path);
    let limits = ExtractLimits {
        max_total_bytes: 4 * 1024 * 1024,
        max_entries: 1000,
    };
    let _ = archive::extract_reader(bytes, &dir.path().join("x"), &limits);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        read_all(&bytes);
    }

    #[test]
    fn mutated_release_tarballs_do_not_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        truncate in any::<Option<usize>>(),
    ) {
        let mut bytes = mutate(plain_tar("kv-release-expected/kv-1.0.0.tgz"), &edits);
        if let Some(t) = truncate {
            bytes.truncate(t % (bytes.len() + 1));
        }
        read_all(&bytes);
        let gz = mutate(fixture_bytes("upstream/valid_stemcell.tgz"), &edits);
        read_all(&gz);
    }

    #[test]
    fn mutated_manifests_do_not_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        junk in "\\PC{0,200}",
    ) {
        let base = fixture_bytes("kv-release-expected/release-1.0.0.MF");
        let text = String::from_utf8_lossy(&mutate(base, &edits)).into_owned();
        let _ = parse_release_manifest(&text);
        if let Ok(m) = ReleaseManifest::parse(&text) {
            let _ = m.validate();
            let _ = m.to_yaml();
        }
        let _ = parse_release_manifest(&junk);
        let _ = JobSpec::parse(&junk);
        let spec = fixture_bytes("kv-release-expected/job-kv-server.MF");
        let _ = JobSpec::parse(&String::from_utf8_lossy(&mutate(spec, &edits)));
    }
}
