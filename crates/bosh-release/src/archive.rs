//! Defensive reading of tar and tar.gz archives.
//!
//! Archives come from users and the network, so every entry is checked before anything is
//! written: no absolute paths, no `..`, no links of either kind, no device or fifo files,
//! and a cap on the total unpacked size. Gzip is detected by its magic bytes, not by the
//! file name, because release tarballs may be plain tar (`no_compression`).

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

/// Caps on what one archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Total bytes of regular-file content across the archive.
    pub max_total_bytes: u64,
    /// Number of entries (directories included).
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    /// Generous enough for real releases and stemcells (tens of GB), small enough to stop
    /// a decompression bomb from filling a disk.
    fn default() -> Self {
        ExtractLimits {
            max_total_bytes: 64 * 1024 * 1024 * 1024,
            max_entries: 1_000_000,
        }
    }
}

/// What an entry is, after the hostile kinds have been refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
}

/// One accepted entry: its path with any `./` prefix removed (`""` for the root entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits only (setuid, setgid and sticky bits are dropped).
    pub mode: u32,
    pub size: u64,
}

/// Why an archive was refused or could not be read. Each entry-specific variant names the
/// entry as it is written in the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading archive")]
    Read {
        #[source]
        source: io::Error,
    },
    #[error("archive entry '{entry}' is unreadable")]
    EntryRead {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("archive entry '{entry}' has an absolute path")]
    AbsolutePath { entry: String },
    #[error("archive entry '{entry}' has a '..' path component")]
    ParentDir { entry: String },
    #[error("archive entry '{entry}' has an unusable path")]
    BadPath { entry: String },
    #[error("archive entry '{entry}' is a symbolic link (links are not allowed)")]
    Symlink { entry: String },
    #[error("archive entry '{entry}' is a hard link (links are not allowed)")]
    HardLink { entry: String },
    #[error("archive entry '{entry}' is a {kind} (only regular files and directories are allowed)")]
    Special { entry: String, kind: &'static str },
    #[error("archive entry '{entry}' takes the unpacked size past the limit of {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
    #[error("archive has more than {limit} entries (at '{entry}')")]
    TooManyEntries { entry: String, limit: u64 },
    #[error("archive entry '{entry}' would overwrite something that is not a regular file")]
    Collision { entry: String },
    #[error("writing archive entry '{entry}' to {path}")]
    Write {
        entry: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Wraps `reader` in a gzip decoder when the stream starts with the gzip magic bytes.
pub fn decompressed<'a, R: Read + 'a>(reader: R) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut buf = BufReader::new(reader);
    let head = buf
        .fill_buf()
        .map_err(|source| ArchiveError::Read { source })?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}

/// Opens an archive file, decompressing it if it is gzipped.
pub fn open(path: &Path) -> Result<Box<dyn Read>, ArchiveError> {
    let file = fs::File::open(path).map_err(|source| ArchiveError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    decompressed(file)
}

/// Checks an entry's path and returns it relative, without `./` components.
fn clean_path(raw: &str) -> Result<String, ArchiveError> {
    let entry = || raw.to_string();
    if raw.starts_with('/') || raw.starts_with('\\') {
        return Err(ArchiveError::AbsolutePath { entry: entry() });
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Err(ArchiveError::AbsolutePath { entry: entry() });
            }
            Component::ParentDir => return Err(ArchiveError::ParentDir { entry: entry() }),
            Component::CurDir => {}
            Component::Normal(p) => match p.to_str() {
                Some(s) => parts.push(s),
                None => return Err(ArchiveError::BadPath { entry: entry() }),
            },
        }
    }
    Ok(parts.join("/"))
}

/// Reads every entry of a (possibly gzipped) tar stream, refusing hostile ones, and calls
/// `visit` with each accepted entry and a reader of its content. Nothing is written.
pub fn scan<R, F>(reader: R, limits: &ExtractLimits, mut visit: F) -> Result<(), ArchiveError>
where
    R: Read,
    F: FnMut(&EntryInfo, &mut dyn Read) -> Result<(), ArchiveError>,
{
    let stream = decompressed(reader)?;
    let mut archive = tar::Archive::new(stream);
    let entries = archive
        .entries()
        .map_err(|source| ArchiveError::Read { source })?;
    let mut total: u64 = 0;
    let mut count: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|source| ArchiveError::Read { source })?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => return Err(ArchiveError::Symlink { entry: raw }),
            tar::EntryType::Link => return Err(ArchiveError::HardLink { entry: raw }),
            // pax global headers carry no file.
            tar::EntryType::XGlobalHeader => continue,
            other => {
                let kind = match other {
                    tar::EntryType::Char => "character device",
                    tar::EntryType::Block => "block device",
                    tar::EntryType::Fifo => "fifo",
                    tar::EntryType::GNUSparse => "sparse file",
                    _ => "special entry",
                };
                return Err(ArchiveError::Special { entry: raw, kind });
            }
        };
        count += 1;
        if count > limits.max_entries {
            return Err(ArchiveError::TooManyEntries {
                entry: raw,
                limit: limits.max_entries,
            });
        }
        let path = clean_path(&raw)?;
        let mode = header.mode().unwrap_or(0o644) & 0o777;
        let size = entry.size();
        if kind == EntryKind::File {
            // Checked against the header first, then against the bytes actually read.
            if size > limits.max_total_bytes.saturating_sub(total) {
                return Err(ArchiveError::TooLarge {
                    entry: raw,
                    limit: limits.max_total_bytes,
                });
            }
            total += size;
        }
        let info = EntryInfo {
            path,
            kind,
            mode,
            size,
        };
        visit(&info, &mut entry)?;
        // Drain whatever the visitor left so read errors surface here, naming the entry.
        io::copy(&mut entry, &mut io::sink())
            .map_err(|source| ArchiveError::EntryRead { entry: raw, source })?;
    }
    Ok(())
}

/// Lists an archive's entries without extracting it.
pub fn list(path: &Path, limits: &ExtractLimits) -> Result<Vec<EntryInfo>, ArchiveError> {
    list_reader(open(path)?, limits)
}

/// Lists the entries of a (possibly gzipped) tar stream.
pub fn list_reader<R: Read>(
    reader: R,
    limits: &ExtractLimits,
) -> Result<Vec<EntryInfo>, ArchiveError> {
    let mut out = Vec::new();
    scan(reader, limits, |info, _| {
        out.push(info.clone());
        Ok(())
    })?;
    Ok(out)
}

/// Reads the content of the regular files whose cleaned paths `want` accepts, up to
/// `max_bytes` each, without extracting anything else.
pub fn read_files<R: Read>(
    reader: R,
    limits: &ExtractLimits,
    max_bytes: u64,
    mut want: impl FnMut(&str) -> bool,
) -> Result<Vec<(String, Vec<u8>)>, ArchiveError> {
    let mut out = Vec::new();
    scan(reader, limits, |info, content| {
        if info.kind == EntryKind::File && want(&info.path) {
            if info.size > max_bytes {
                return Err(ArchiveError::TooLarge {
                    entry: info.path.clone(),
                    limit: max_bytes,
                });
            }
            let mut buf = Vec::new();
            content
                .take(max_bytes + 1)
                .read_to_end(&mut buf)
                .map_err(|source| ArchiveError::EntryRead {
                    entry: info.path.clone(),
                    source,
                })?;
            out.push((info.path.clone(), buf));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Extracts an archive file into `dest` (created if missing), returning the accepted
/// entries. On error, `dest` may hold a partial extraction but nothing outside it is touched.
pub fn extract(
    path: &Path,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<Vec<EntryInfo>, ArchiveError> {
    extract_reader(open(path)?, dest, limits)
}

/// Extracts a (possibly gzipped) tar stream into `dest`.
pub fn extract_reader<R: Read>(
    reader: R,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<Vec<EntryInfo>, ArchiveError> {
    let mkdir_err = |entry: &str, path: &Path| {
        let entry = entry.to_string();
        let path = path.to_path_buf();
        move |source| ArchiveError::Write {
            entry,
            path,
            source,
        }
    };
    fs::create_dir_all(dest).map_err(mkdir_err("", dest))?;
    let mut out = Vec::new();
    scan(reader, limits, |info, content| {
        if info.path.is_empty() {
            return Ok(());
        }
        let target = dest.join(&info.path);
        ensure_real_dirs(dest, &info.path)?;
        match info.kind {
            EntryKind::Dir => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(ArchiveError::Collision {
                            entry: info.path.clone(),
                        });
                    }
                    Err(_) => fs::create_dir(&target).map_err(mkdir_err(&info.path, &target))?,
                }
                set_mode(&target, info.mode | 0o700).map_err(mkdir_err(&info.path, &target))?;
            }
            EntryKind::File => {
                if let Ok(m) = fs::symlink_metadata(&target)
                    && !m.is_file()
                {
                    return Err(ArchiveError::Collision {
                        entry: info.path.clone(),
                    });
                }
                let mut file = fs::File::create(&target).map_err(mkdir_err(&info.path, &target))?;
                // The tar reader stops at the header's size, so this cannot exceed what the
                // size check in `scan` allowed.
                let mut buf = [0u8; 64 * 1024];
                loop {
                    let n = content
                        .read(&mut buf)
                        .map_err(|source| ArchiveError::EntryRead {
                            entry: info.path.clone(),
                            source,
                        })?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&buf[..n])
                        .map_err(mkdir_err(&info.path, &target))?;
                }
                set_mode(&target, info.mode).map_err(mkdir_err(&info.path, &target))?;
            }
        }
        out.push(info.clone());
        Ok(())
    })?;
    Ok(out)
}

/// Creates the parent directories of `rel` under `dest`, refusing to pass through anything
/// that is not a real directory (a pre-existing symlink would lead outside `dest`).
fn ensure_real_dirs(dest: &Path, rel: &str) -> Result<(), ArchiveError> {
    let mut cur = dest.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        cur.push(part);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ArchiveError::Collision {
                    entry: rel.to_string(),
                });
            }
            Err(_) => fs::create_dir(&cur).map_err(|source| ArchiveError::Write {
                entry: rel.to_string(),
                path: cur.clone(),
                source,
            })?,
        }
    }
    Ok(())
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_strips_dot_prefixes_and_refuses_escapes() {
        assert_eq!(clean_path("./jobs/a.tgz").unwrap(), "jobs/a.tgz");
        assert_eq!(clean_path("jobs/./a.tgz").unwrap(), "jobs/a.tgz");
        assert_eq!(clean_path("./").unwrap(), "");
        assert!(matches!(
            clean_path("/etc/passwd"),
            Err(ArchiveError::AbsolutePath { .. })
        ));
        assert!(matches!(
            clean_path("a/../../b"),
            Err(ArchiveError::ParentDir { .. })
        ));
        assert!(matches!(
            clean_path("./.."),
            Err(ArchiveError::ParentDir { .. })
        ));
    }
}
