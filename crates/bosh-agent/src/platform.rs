//! OS operations behind a small trait, so the `dummy` platform (a process on a shared host)
//! and a real VM differ only here.

/// What the agent asks of the machine it runs on.
pub trait Platform: Send + Sync {
    fn name(&self) -> &'static str;
    /// Powers the machine off after jobs are stopped (`shutdown` action).
    fn power_off(&self) -> std::io::Result<()>;
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
}

/// The platform for a `-P` name; `None` when unsupported.
pub fn platform_for(name: &str) -> Option<Box<dyn Platform>> {
    match name {
        "dummy" => Some(Box::new(DummyPlatform)),
        "ubuntu" | "linux" => Some(Box::new(LinuxPlatform)),
        _ => None,
    }
}
