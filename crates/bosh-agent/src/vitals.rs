//! Machine vitals from /proc and statvfs (§6.1). Values are strings on the wire.

use bosh_agent_protocol::Vitals;
use bosh_agent_protocol::heartbeat::{CpuVitals, DiskVitals, MemVitals};
use bosh_agent_protocol::state::Uptime;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// CPU times from `/proc/stat`: (user+nice, system+irq+softirq, iowait, total).
type CpuSample = (u64, u64, u64, u64);

/// Keeps the previous CPU sample so percentages cover the interval between calls.
#[derive(Default)]
pub struct VitalsSampler {
    last_cpu: Mutex<Option<CpuSample>>,
}

impl VitalsSampler {
    pub fn sample(&self, base: &Path) -> Vitals {
        let mut disk = BTreeMap::new();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mounted = |p: &Path| {
            mounts
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&*p.to_string_lossy()))
        };
        if let Some(d) = disk_usage(Path::new("/")) {
            disk.insert("system".to_owned(), d);
        }
        for (key, dir) in [
            ("ephemeral", base.join("data")),
            ("persistent", base.join("store")),
        ] {
            if mounted(&dir)
                && let Some(d) = disk_usage(&dir)
            {
                disk.insert(key.to_owned(), d);
            }
        }
        let (mem, swap) = memory();
        Vitals {
            cpu: self.cpu(),
            disk,
            load: load(),
            mem,
            swap,
            uptime: Uptime {
                secs: uptime_secs(),
            },
        }
    }

    fn cpu(&self) -> CpuVitals {
        let Some(now) = cpu_sample() else {
            return CpuVitals::default();
        };
        let mut last = self.last_cpu.lock().unwrap_or_else(|p| p.into_inner());
        let prev = last.replace(now).unwrap_or((0, 0, 0, 0));
        let total = now.3.saturating_sub(prev.3).max(1) as f64;
        let pct = |a: u64, b: u64| format!("{:.1}", a.saturating_sub(b) as f64 * 100.0 / total);
        CpuVitals {
            user: pct(now.0, prev.0),
            sys: pct(now.1, prev.1),
            wait: pct(now.2, prev.2),
        }
    }
}

fn cpu_sample() -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some((get(0) + get(1), get(2) + get(5) + get(6), get(4), total))
}

fn load() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out: Vec<String> = text.split_whitespace().take(3).map(str::to_owned).collect();
    out.resize(3, "0.00".to_owned());
    out
}

fn meminfo() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

pub fn mem_total_kb() -> Option<u64> {
    meminfo().get("MemTotal").copied()
}

fn memory() -> (MemVitals, MemVitals) {
    let m = meminfo();
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    let pct = |used: u64, total: u64| {
        if total == 0 {
            "0".to_owned()
        } else {
            format!("{:.0}", used as f64 * 100.0 / total as f64)
        }
    };
    let mem_used = get("MemTotal").saturating_sub(get("MemAvailable"));
    let swap_used = get("SwapTotal").saturating_sub(get("SwapFree"));
    (
        MemVitals {
            kb: mem_used.to_string(),
            percent: pct(mem_used, get("MemTotal")),
        },
        MemVitals {
            kb: swap_used.to_string(),
            percent: pct(swap_used, get("SwapTotal")),
        },
    )
}

fn uptime_secs() -> u64 {
    let text = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok())
        .map(|f| f as u64)
        .unwrap_or(0)
}

fn disk_usage(path: &Path) -> Option<DiskVitals> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let pct = |free: u64, total: u64| {
        if total == 0 {
            "0".to_owned()
        } else {
            format!(
                "{:.0}",
                (total - free.min(total)) as f64 * 100.0 / total as f64
            )
        }
    };
    Some(DiskVitals {
        percent: pct(st.blocks_available() as u64, st.blocks() as u64),
        inode_percent: pct(st.files_available() as u64, st.files() as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vitals_come_from_proc() {
        let s = VitalsSampler::default();
        let v = s.sample(Path::new("/nonexistent"));
        assert_eq!(v.load.len(), 3);
        assert!(v.load[0].parse::<f64>().is_ok());
        assert!(v.mem.kb.parse::<u64>().unwrap() > 0);
        assert!(v.disk.contains_key("system"));
        assert!(!v.disk.contains_key("ephemeral"));
        assert!(v.uptime.secs > 0);
        assert!(v.cpu.user.parse::<f64>().is_ok());
    }
}
