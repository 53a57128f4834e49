//! Writing archives: job/package/license archives in the shape `tar -czf out -C staging .`
//! gives (`./`, `./job.MF`, `./templates/`, …) and release tarballs (formats.md §5: no `./`
//! prefix; `release.MF`, `jobs/…`, `packages/…`, `compiled_packages/…`, `license.tgz`, then
//! the `LICENSE*`/`NOTICE*` files copied out of the license archive).

use bosh_types::release::ReleaseManifest;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum TarballWriteError {
    #[error("{action} '{path}'")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> TarballWriteError + use<> {
    let path = path.to_path_buf();
    move |source| TarballWriteError::Io {
        action,
        path,
        source,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A tar stream whose entry names are written verbatim (the `tar` crate would drop `./`).
struct RawTar<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> RawTar<W> {
    fn new(w: W) -> Self {
        RawTar {
            builder: tar::Builder::new(w),
            mtime: now(),
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        let _ = h.set_username("root");
        let _ = h.set_groupname("root");
        h
    }

    /// Puts `name` into the header, preceded by a GNU long-name entry when it is too long.
    fn append(&mut self, name: &str, mut h: tar::Header, data: impl Read) -> io::Result<()> {
        let bytes = name.as_bytes();
        if bytes.len() > 100 {
            let mut long = self.header(tar::EntryType::GNULongName, 0o644, bytes.len() as u64 + 1);
            write_name(&mut long, b"././@LongLink");
            long.set_cksum();
            let mut data_with_nul = bytes.to_vec();
            data_with_nul.push(0);
            self.builder.append(&long, &data_with_nul[..])?;
            write_name(&mut h, &bytes[..100]);
        } else {
            write_name(&mut h, bytes);
        }
        h.set_cksum();
        self.builder.append(&h, data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> io::Result<()> {
        let h = self.header(tar::EntryType::Directory, mode, 0);
        self.append(name, h, io::empty())
    }

    fn file(&mut self, name: &str, mode: u32, size: u64, data: impl Read) -> io::Result<()> {
        let h = self.header(tar::EntryType::Regular, mode, size);
        self.append(name, h, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name(target)?;
        self.append(name, h, io::empty())
    }

    fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

fn write_name(h: &mut tar::Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
}

/// Entry order of a staged directory: `primary` (job.MF / packaging) first, then the
/// subdirectories by name (each recursively: subdirectories, then files), then the other
/// files by name. The reference CLI shells out to `tar` and so gets readdir order; this
/// order is what the reference fixtures show, and it is deterministic.
fn ordered_children(dir: &Path, primary: Option<&str>) -> io::Result<Vec<(String, fs::FileType)>> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    let mut first = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        if Some(name.as_str()) == primary {
            first.push((name, ft));
        } else if ft.is_dir() {
            dirs.push((name, ft));
        } else {
            files.push((name, ft));
        }
    }
    dirs.sort_by(|a, b| a.0.cmp(&b.0));
    files.sort_by(|a, b| a.0.cmp(&b.0));
    first.extend(dirs);
    first.extend(files);
    Ok(first)
}

fn file_mode(meta: &fs::Metadata) -> u32 {
    if crate::fingerprint::is_executable(meta) {
        0o755
    } else {
        0o644
    }
}

fn append_tree<W: Write>(
    tar: &mut RawTar<W>,
    root: &Path,
    rel: &str,
    primary: Option<&str>,
) -> io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for (name, ft) in ordered_children(&dir, primary)? {
        let child_rel = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let path = root.join(&child_rel);
        let entry_name = format!("./{child_rel}");
        if ft.is_symlink() {
            let target = fs::read_link(&path)?;
            tar.symlink(&entry_name, &target.to_string_lossy())?;
        } else if ft.is_dir() {
            tar.dir(&format!("{entry_name}/"), 0o755)?;
            append_tree(tar, root, &child_rel, None)?;
        } else {
            let f = fs::File::open(&path)?;
            let meta = f.metadata()?;
            tar.file(
                &entry_name,
                file_mode(&meta),
                meta.len(),
                io::BufReader::new(f),
            )?;
        }
    }
    Ok(())
}

/// Archives the content of `staging` at `dst` like `tar -c[z]f dst -C staging .`.
pub fn write_dir_archive(
    staging: &Path,
    primary: Option<&str>,
    dst: &Path,
    compress: bool,
) -> Result<(), TarballWriteError> {
    let err = io_err("Writing archive", dst);
    let result = (|| -> io::Result<()> {
        let out = io::BufWriter::new(fs::File::create(dst)?);
        if compress {
            let mut tar = RawTar::new(GzEncoder::new(out, Compression::default()));
            tar.dir("./", 0o755)?;
            append_tree(&mut tar, staging, "", primary)?;
            tar.finish()?.finish()?.flush()
        } else {
            let mut tar = RawTar::new(out);
            tar.dir("./", 0o755)?;
            append_tree(&mut tar, staging, "", primary)?;
            tar.finish()?.flush()
        }
    })();
    result.map_err(err)
}

/// What goes into a release tarball.
#[derive(Debug, Clone)]
pub struct ReleaseTarball<'a> {
    pub manifest: &'a ReleaseManifest,
    /// `(job name, archive path)` in manifest order.
    pub jobs: Vec<(String, PathBuf)>,
    pub packages: Vec<(String, PathBuf)>,
    pub compiled_packages: Vec<(String, PathBuf)>,
    pub license: Option<PathBuf>,
}

/// Writes the release tarball to `dst` (through a temporary file beside it).
pub fn write_release_tarball(t: &ReleaseTarball<'_>, dst: &Path) -> Result<(), TarballWriteError> {
    let parent = dst
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err("Creating", parent))?;
    let tmp = parent.join(format!(".bosh-release-{}.tmp", uuid::Uuid::new_v4()));
    let result = (|| -> Result<(), TarballWriteError> {
        let file = fs::File::create(&tmp).map_err(io_err("Creating", &tmp))?;
        let out = io::BufWriter::new(file);
        let werr = io_err("Writing", &tmp);
        if t.manifest.no_compression {
            let mut w = release_tar(out, t, &tmp)?;
            w.flush().map_err(werr)
        } else {
            let gz = release_tar(GzEncoder::new(out, Compression::default()), t, &tmp)?;
            gz.finish().and_then(|mut w| w.flush()).map_err(werr)
        }
    })();
    match result
        .and_then(|()| fs::rename(&tmp, dst).map_err(io_err("Moving release archive to", dst)))
    {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn release_tar<W: Write>(w: W, t: &ReleaseTarball<'_>, tmp: &Path) -> Result<W, TarballWriteError> {
    let mut tar = RawTar::new(w);
    release_entries(&mut tar, t, tmp)?;
    tar.finish().map_err(io_err("Writing", tmp))
}

fn release_entries<W: Write>(
    tar: &mut RawTar<W>,
    t: &ReleaseTarball<'_>,
    tmp: &Path,
) -> Result<(), TarballWriteError> {
    let werr = |p: &Path| io_err("Writing release archive entry from", p);
    let manifest = t.manifest.to_yaml();
    tar.file(
        "release.MF",
        0o644,
        manifest.len() as u64,
        manifest.as_bytes(),
    )
    .map_err(werr(tmp))?;
    for (dir, list) in [
        ("jobs", &t.jobs),
        ("packages", &t.packages),
        ("compiled_packages", &t.compiled_packages),
    ] {
        if list.is_empty() {
            continue;
        }
        tar.dir(&format!("{dir}/"), 0o755).map_err(werr(tmp))?;
        for (name, path) in list {
            let f = fs::File::open(path).map_err(io_err("Opening archive", path))?;
            let len = f.metadata().map_err(io_err("Opening archive", path))?.len();
            tar.file(
                &format!("{dir}/{name}.tgz"),
                0o644,
                len,
                io::BufReader::new(f),
            )
            .map_err(werr(path))?;
        }
    }
    if let Some(path) = &t.license {
        let f = fs::File::open(path).map_err(io_err("Opening archive", path))?;
        let len = f.metadata().map_err(io_err("Opening archive", path))?.len();
        tar.file("license.tgz", 0o644, len, io::BufReader::new(f))
            .map_err(werr(path))?;
        for (name, data) in license_files(path).map_err(io_err("Reading license archive", path))? {
            tar.file(&name, 0o644, data.len() as u64, &data[..])
                .map_err(werr(path))?;
        }
    }
    Ok(())
}

/// Top-level `LICENSE*` then `NOTICE*` regular files of a license archive, each group sorted.
fn license_files(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut magic = [0u8; 2];
    let is_gzip = fs::File::open(path)?.read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
    let file = io::BufReader::new(fs::File::open(path)?);
    let reader: Box<dyn Read> = if is_gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    let mut out = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if name.contains('/') || !(name.starts_with("LICENSE") || name.starts_with("NOTICE")) {
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push((name, data));
    }
    out.sort_by(|a, b| {
        (!a.0.starts_with("LICENSE"), &a.0).cmp(&(!b.0.starts_with("LICENSE"), &b.0))
    });
    Ok(out)
}
