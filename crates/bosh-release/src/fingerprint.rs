//! `v2` fingerprints of jobs, packages and licenses (formats.md §3.2): the files sorted by
//! relative path, each contributing name + content digest + git-like mode token, then the
//! sorted extra chunks, all hashed with the digest algorithm.

use bosh_types::digest::{Digest, DigestAlgo};
use std::fs;
use std::path::{Path, PathBuf};

/// One file taking part in a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintFile {
    /// Where the file is on disk.
    pub path: PathBuf,
    /// Its name inside the archive (`job.MF`, `templates/ctl.erb`, `kvlib/kv.c`).
    pub relative_path: String,
    /// Contribute the on-disk basename instead of the relative path (licenses).
    pub use_basename: bool,
    /// Leave out the mode token (`packaging`, `pre_packaging`, licenses).
    pub exclude_mode: bool,
}

impl FingerprintFile {
    pub fn new(path: impl Into<PathBuf>, relative_path: impl Into<String>) -> Self {
        FingerprintFile {
            path: path.into(),
            relative_path: relative_path.into(),
            use_basename: false,
            exclude_mode: false,
        }
    }

    pub fn exclude_mode(mut self) -> Self {
        self.exclude_mode = true;
        self
    }

    pub fn use_basename(mut self) -> Self {
        self.use_basename = true;
        self
    }

    /// The same file looked up under another root (the staging directory).
    pub fn rebased(&self, root: &Path) -> Self {
        FingerprintFile {
            path: root.join(&self.relative_path),
            ..self.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("Fingerprinting file '{path}'")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Generated fingerprint contains unexpected characters '{0}'")]
    Unexpected(String),
}

/// The string that gets hashed (exposed for tests and debugging).
pub fn fingerprint_input(
    files: &[FingerprintFile],
    chunks: &[String],
    follow_symlinks: bool,
    algo: DigestAlgo,
) -> Result<String, FingerprintError> {
    let mut sorted: Vec<&FingerprintFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.relative_path.as_bytes().cmp(b.relative_path.as_bytes()));

    let mut out = String::from("v2");
    for file in sorted {
        out.push_str(&file_chunk(file, follow_symlinks, algo)?);
    }
    if !chunks.is_empty() {
        let mut chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        chunks.sort_unstable();
        out.push_str(&chunks.join(","));
    }
    Ok(out)
}

/// The fingerprint: the hex digest of [`fingerprint_input`] (no algorithm prefix).
pub fn fingerprint(
    files: &[FingerprintFile],
    chunks: &[String],
    follow_symlinks: bool,
    algo: DigestAlgo,
) -> Result<String, FingerprintError> {
    let input = fingerprint_input(files, chunks, follow_symlinks, algo)?;
    let hex = Digest::compute_bytes(algo, input.as_bytes())
        .hex()
        .to_string();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FingerprintError::Unexpected(hex));
    }
    Ok(hex)
}

fn file_chunk(
    file: &FingerprintFile,
    follow_symlinks: bool,
    algo: DigestAlgo,
) -> Result<String, FingerprintError> {
    let io_err = |source| FingerprintError::Io {
        path: file.path.clone(),
        source,
    };
    let mut out = if file.use_basename {
        file.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        file.relative_path.clone()
    };

    let meta = fs::symlink_metadata(&file.path).map_err(io_err)?;
    let is_symlink = meta.file_type().is_symlink();
    let digest = if is_symlink && !follow_symlinks {
        let target = fs::read_link(&file.path).map_err(io_err)?;
        Digest::compute_bytes(algo, target.to_string_lossy().as_bytes())
    } else {
        // `File::open` follows links, which is what following symlinks means here.
        let f = fs::File::open(&file.path).map_err(io_err)?;
        Digest::compute_reader(algo, std::io::BufReader::new(f)).map_err(io_err)?
    };
    out.push_str(&digest.to_string());

    if !file.exclude_mode {
        // Mode from lstat, as the reference does: a followed symlink still reports 0777.
        let token = if meta.is_dir() {
            "40755"
        } else if is_symlink && !follow_symlinks {
            "symlink"
        } else if is_executable(&meta) {
            "100755"
        } else {
            "100644"
        };
        out.push_str(token);
    }
    Ok(out)
}

#[cfg(unix)]
pub(crate) fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
pub(crate) fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

/// Same as [`is_executable`] but for the owner bit only (how staged copies get 0755).
#[cfg(unix)]
pub(crate) fn is_owner_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o100 != 0
}

#[cfg(not(unix))]
pub(crate) fn is_owner_executable(_meta: &fs::Metadata) -> bool {
    false
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, rel: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn job_files(dir: &Path) -> Vec<FingerprintFile> {
        let spec = write(
            dir,
            "spec",
            "name: demo\ntemplates:\n  ctl.erb: bin/ctl\n",
            0o644,
        );
        let monit = write(dir, "monit", "", 0o644);
        let ctl = write(dir, "templates/ctl.erb", "#!/bin/bash\n", 0o755);
        vec![
            FingerprintFile::new(spec, "job.MF"),
            FingerprintFile::new(monit, "monit"),
            FingerprintFile::new(ctl, "templates/ctl.erb"),
        ]
    }

    #[test]
    fn job_golden_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let files = job_files(tmp.path());
        assert_eq!(
            fingerprint(&files, &[], true, DigestAlgo::Sha256).unwrap(),
            "50c844e0ad6800aa013e920ab3c2f12d9a7bf0c7856c8b6bc34729780464c5f2"
        );
        assert_eq!(
            fingerprint(&files, &[], true, DigestAlgo::Sha1).unwrap(),
            "84ce9d6dbf85c161c376824444bb11de4345639b"
        );
    }

    #[test]
    fn package_golden_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let packaging = write(tmp.path(), "pkg/packaging", "set -e\n", 0o644);
        let a = write(tmp.path(), "src/demo/a.txt", "hello\n", 0o644);
        let files = vec![
            FingerprintFile::new(packaging, "packaging").exclude_mode(),
            FingerprintFile::new(a, "demo/a.txt"),
        ];
        let deps = vec!["b".to_string(), "a".to_string()];
        let input = fingerprint_input(&files, &deps, false, DigestAlgo::Sha256).unwrap();
        assert!(input.starts_with("v2demo/a.txtsha256:5891b5b5"), "{input}");
        assert!(
            input.contains("03100644packagingsha256:aa90afd8"),
            "{input}"
        );
        assert!(input.ends_with("a,b"), "{input}");
        assert_eq!(
            fingerprint(&files, &deps, false, DigestAlgo::Sha256).unwrap(),
            "bca0a3c3b7caaf5c98379c593f385e4089aa039b04aaef4ff32ae149b293d44c"
        );
        assert_eq!(
            fingerprint(&files, &deps, false, DigestAlgo::Sha1).unwrap(),
            "3b0f00c723d6f5198bd31700e150134048a8942e"
        );
    }

    #[test]
    fn license_golden_vectors() {
        let tmp = tempfile::tempdir().unwrap();
        let lic = write(tmp.path(), "LICENSE", "MIT\n", 0o644);
        let files = vec![
            FingerprintFile::new(lic, "LICENSE")
                .use_basename()
                .exclude_mode(),
        ];
        assert_eq!(
            fingerprint(&files, &[], false, DigestAlgo::Sha256).unwrap(),
            "6ddb1b0645b74df98a7db80ddd7e1a89ffa4df5700554d2c78f191b29642f183"
        );
        assert_eq!(
            fingerprint(&files, &[], false, DigestAlgo::Sha1).unwrap(),
            "0cc0c6597bfae7b2c9ac2f7e41b7bd0f4eaafdeb"
        );
    }

    #[test]
    fn order_of_inputs_does_not_matter_but_exec_bit_does() {
        let tmp = tempfile::tempdir().unwrap();
        let mut files = job_files(tmp.path());
        let fp = fingerprint(&files, &[], true, DigestAlgo::Sha256).unwrap();
        files.reverse();
        assert_eq!(
            fingerprint(&files, &[], true, DigestAlgo::Sha256).unwrap(),
            fp
        );
        fs::set_permissions(tmp.path().join("monit"), fs::Permissions::from_mode(0o744)).unwrap();
        assert_ne!(
            fingerprint(&files, &[], true, DigestAlgo::Sha256).unwrap(),
            fp
        );
    }

    #[test]
    fn unfollowed_symlink_hashes_its_target_string() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "real.txt", "data", 0o644);
        std::os::unix::fs::symlink("real.txt", tmp.path().join("link")).unwrap();
        let files = vec![FingerprintFile::new(tmp.path().join("link"), "link")];
        let input = fingerprint_input(&files, &[], false, DigestAlgo::Sha256).unwrap();
        let target_digest = Digest::compute_bytes(DigestAlgo::Sha256, b"real.txt");
        assert_eq!(input, format!("v2link{target_digest}symlink"));
        let followed = fingerprint_input(&files, &[], true, DigestAlgo::Sha256).unwrap();
        let content_digest = Digest::compute_bytes(DigestAlgo::Sha256, b"data");
        assert_eq!(followed, format!("v2link{content_digest}100755"));
    }
}
