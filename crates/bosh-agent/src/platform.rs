//! OS operations behind a small trait, so the `dummy` platform (a process on a shared host)
//! and a real VM differ only here.

use std::path::Path;

/// What the agent asks of the machine it runs on.
pub trait Platform: Send + Sync {
    fn name(&self) -> &'static str;
    /// Powers the machine off after jobs are stopped (`shutdown` action).
    fn power_off(&self) -> std::io::Result<()>;
    /// Disk operations for the persistent-disk actions.
    fn disks(&self) -> &dyn DiskManager;
    /// Creates an ephemeral ssh user with `home` (`ssh setup`); the dummy platform only
    /// creates the home directory.
    fn create_user(&self, _user: &str, home: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(home)
    }
    /// Deletes an ephemeral ssh user and its home (`ssh cleanup`).
    fn delete_user(&self, _user: &str, home: &Path) -> std::io::Result<()> {
        match std::fs::remove_dir_all(home) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
    /// The host's public ssh key, `""` when there is none.
    fn host_public_key(&self) -> String {
        String::new()
    }
}

/// Mounting persistent disks; `device` is the path from the disk's settings hint.
pub trait DiskManager: Send + Sync {
    /// Mounts `device` at `mount_point` (formatting it first where the platform needs to).
    fn mount(&self, device: &str, mount_point: &Path) -> std::io::Result<()>;
    /// Unmounts whatever is at `mount_point`; false when nothing was mounted.
    fn unmount(&self, mount_point: &Path) -> std::io::Result<bool>;
    /// The device mounted at `mount_point`, if any.
    fn mounted_device(&self, mount_point: &Path) -> Option<String>;
}

/// Dummy disks: a disk hint is a directory on the host, "mounted" as a symlink at the mount
/// point.
pub struct SymlinkDisks;

impl DiskManager for SymlinkDisks {
    fn mount(&self, device: &str, mount_point: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(device)?;
        if let Some(current) = self.mounted_device(mount_point) {
            if current == device {
                return Ok(());
            }
            return Err(std::io::Error::other(format!(
                "{} already holds {current}",
                mount_point.display()
            )));
        }
        if mount_point.is_dir() {
            // An empty placeholder dir is replaced; a non-empty one refuses the mount.
            std::fs::remove_dir(mount_point)?;
        }
        if let Some(parent) = mount_point.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(device, mount_point)
    }

    fn unmount(&self, mount_point: &Path) -> std::io::Result<bool> {
        if self.mounted_device(mount_point).is_none() {
            return Ok(false);
        }
        std::fs::remove_file(mount_point)?;
        Ok(true)
    }

    fn mounted_device(&self, mount_point: &Path) -> Option<String> {
        let meta = std::fs::symlink_metadata(mount_point).ok()?;
        if !meta.file_type().is_symlink() {
            return None;
        }
        std::fs::read_link(mount_point)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// Real mounts through `mount`/`umount`, read back from `/proc/self/mountinfo`. A block
/// device must already carry a filesystem. A directory (what the docker and warden CPIs hand
/// over: a volume bound at `/warden-cpi-dev/<cid>`) is bind-mounted, as the real agent does
/// with `BindMountPersistentDisk`.
pub struct LinuxDisks;

impl DiskManager for LinuxDisks {
    fn mount(&self, device: &str, mount_point: &Path) -> std::io::Result<()> {
        if self.mounted_device(mount_point).as_deref() == Some(device) {
            return Ok(());
        }
        std::fs::create_dir_all(mount_point)?;
        let mut cmd = std::process::Command::new("mount");
        if Path::new(device).is_dir() {
            cmd.arg("--bind");
        }
        run_cmd(cmd.arg(device).arg(mount_point))
    }

    fn unmount(&self, mount_point: &Path) -> std::io::Result<bool> {
        if self.mounted_device(mount_point).is_none() {
            return Ok(false);
        }
        run_cmd(std::process::Command::new("umount").arg(mount_point))?;
        Ok(true)
    }

    fn mounted_device(&self, mount_point: &Path) -> Option<String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        mounted_source(&mountinfo, &mount_point.to_string_lossy())
    }
}

/// One line of `/proc/self/mountinfo`: what is mounted where.
struct MountEntry<'a> {
    /// `major:minor` of the filesystem.
    dev: &'a str,
    /// The directory of that filesystem shown at the mount point (`/` for a whole device).
    root: &'a str,
    mount_point: String,
    source: &'a str,
}

fn parse_mountinfo(text: &str) -> Vec<MountEntry<'_>> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let source = right.split(' ').nth(1)?;
            Some(MountEntry {
                dev: f.get(2)?,
                root: f.get(3)?,
                mount_point: unescape_octal(f.get(4)?),
                source,
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let code = (b[i] == b'\\' && i + 4 <= b.len())
            .then(|| std::str::from_utf8(&b[i + 1..i + 4]).ok())
            .flatten()
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match code {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What is mounted at `mount_point` (the last, visible mount there): the device for a
/// whole-device mount; for a bind mount, the other mount point showing the same directory of
/// the same filesystem (the CPI's `/warden-cpi-dev/<cid>`), which is the disk's hint path.
fn mounted_source(mountinfo: &str, mount_point: &str) -> Option<String> {
    let entries = parse_mountinfo(mountinfo);
    let here = entries
        .iter()
        .rev()
        .find(|e| e.mount_point == mount_point)?;
    if here.root == "/" {
        return Some(here.source.to_owned());
    }
    entries
        .iter()
        .find(|e| e.mount_point != mount_point && e.dev == here.dev && e.root == here.root)
        .map(|e| e.mount_point.clone())
        .or_else(|| Some(here.root.to_owned()))
}

fn run_cmd(cmd: &mut std::process::Command) -> std::io::Result<()> {
    let out = cmd.output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// `-P dummy`: the "VM" is the agent process, so powering off is just exiting.
pub struct DummyPlatform;

impl Platform for DummyPlatform {
    fn name(&self) -> &'static str {
        "dummy"
    }
    fn power_off(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn disks(&self) -> &dyn DiskManager {
        &SymlinkDisks
    }
}

/// `-P ubuntu`: a real VM.
pub struct LinuxPlatform;

impl Platform for LinuxPlatform {
    fn name(&self) -> &'static str {
        "ubuntu"
    }
    fn power_off(&self) -> std::io::Result<()> {
        std::process::Command::new("shutdown")
            .args(["-P", "0"])
            .status()
            .map(|_| ())
    }
    fn disks(&self) -> &dyn DiskManager {
        &LinuxDisks
    }
    fn create_user(&self, user: &str, home: &Path) -> std::io::Result<()> {
        if let Some(parent) = home.parent() {
            std::fs::create_dir_all(parent)?;
        }
        run_cmd(
            std::process::Command::new("useradd")
                .args([
                    "-m",
                    "-s",
                    "/bin/bash",
                    "-G",
                    "vcap,admin,bosh_sudoers,bosh_sshers",
                ])
                .arg("-d")
                .arg(home)
                .arg(user),
        )
    }
    fn delete_user(&self, user: &str, _home: &Path) -> std::io::Result<()> {
        run_cmd(std::process::Command::new("userdel").args(["-r", user]))
    }
    fn host_public_key(&self) -> String {
        std::fs::read_to_string("/etc/ssh/ssh_host_rsa_key.pub")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }
}

/// The platform for a `-P` name; `None` when unsupported.
pub fn platform_for(name: &str) -> Option<Box<dyn Platform>> {
    match name {
        "dummy" => Some(Box::new(DummyPlatform)),
        "ubuntu" | "linux" => Some(Box::new(LinuxPlatform)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A docker container's mountinfo: the root overlay, a volume bound at
    /// `/warden-cpi-dev/vol-1`, the agent's bind mount of it at the store, a block device.
    const MOUNTINFO: &str = "\
100 90 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/x
110 100 254:0 /var/lib/docker/volumes/vol-eph/_data /var/vcap/data rw - ext4 /dev/vda rw
111 100 254:0 /var/lib/docker/volumes/vol-1/_data /warden-cpi-dev/vol-1 rw - ext4 /dev/vda rw
112 100 254:0 /var/lib/docker/volumes/vol-2/_data /warden-cpi-dev/vol\\0402 rw - ext4 /dev/vda rw
120 100 254:0 /var/lib/docker/volumes/vol-1/_data /var/vcap/store rw - ext4 /dev/vda rw
121 100 8:16 / /var/vcap/store_migration_target rw - ext4 /dev/sdb rw
";

    #[test]
    fn bind_mounts_resolve_to_the_cpi_path_and_devices_to_themselves() {
        assert_eq!(
            mounted_source(MOUNTINFO, "/var/vcap/store").as_deref(),
            Some("/warden-cpi-dev/vol-1")
        );
        assert_eq!(
            mounted_source(MOUNTINFO, "/var/vcap/store_migration_target").as_deref(),
            Some("/dev/sdb")
        );
        assert_eq!(mounted_source(MOUNTINFO, "/var/vcap/nothing"), None);
        let entries = parse_mountinfo(MOUNTINFO);
        assert!(
            entries
                .iter()
                .any(|e| e.mount_point == "/warden-cpi-dev/vol 2")
        );
    }
}
