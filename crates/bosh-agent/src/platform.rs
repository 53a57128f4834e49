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

/// Real mounts through `mount`/`umount`, read back from `/proc/mounts`. The device must
/// already carry a filesystem.
pub struct LinuxDisks;

impl DiskManager for LinuxDisks {
    fn mount(&self, device: &str, mount_point: &Path) -> std::io::Result<()> {
        if self.mounted_device(mount_point).as_deref() == Some(device) {
            return Ok(());
        }
        std::fs::create_dir_all(mount_point)?;
        run_cmd(
            std::process::Command::new("mount")
                .arg(device)
                .arg(mount_point),
        )
    }

    fn unmount(&self, mount_point: &Path) -> std::io::Result<bool> {
        if self.mounted_device(mount_point).is_none() {
            return Ok(false);
        }
        run_cmd(std::process::Command::new("umount").arg(mount_point))?;
        Ok(true)
    }

    fn mounted_device(&self, mount_point: &Path) -> Option<String> {
        let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
        let want = mount_point.to_string_lossy();
        mounts.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (dev, mp) = (f.next()?, f.next()?);
            (mp == want).then(|| dev.to_owned())
        })
    }
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
