//! Process-level helpers: the open-files limit, RSS and CPU readings.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new soft limit.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return None;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    Some(lim.rlim_cur as u64)
}

/// `VmRSS` of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    read_rss(&format!("/proc/{pid}/status"))
}

/// `VmRSS` of this process in KiB.
pub fn self_rss_kib() -> Option<u64> {
    read_rss("/proc/self/status")
}

/// `VmHWM` (peak RSS) of process `pid` in KiB, from `/proc/<pid>/status`.
pub fn hwm_kib(pid: u32) -> Option<u64> {
    read_status_kib(&format!("/proc/{pid}/status"), "VmHWM:")
}

fn read_rss(path: &str) -> Option<u64> {
    read_status_kib(path, "VmRSS:")
}

fn read_status_kib(path: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Busy CPU time of the whole machine (all cores, every state but idle and iowait), in seconds,
/// from the first line of `/proc/stat`.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let busy = f.iter().sum::<u64>() - f.get(3)? - f.get(4)?;
    Some(busy as f64 / clk_tck()?)
}

fn clk_tck() -> Option<f64> {
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// CPU time (user + system) process `pid` has used, in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    read_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time (user + system) this process has used, in seconds.
pub fn self_cpu_seconds() -> Option<f64> {
    read_cpu("/proc/self/stat")
}

fn read_cpu(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at ')'; utime and stime are
    // fields 14 and 15 of the line, so 12 and 13 after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clk_tck()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_rss() {
        assert!(super::self_rss_kib().unwrap() > 0);
        assert!(super::hwm_kib(std::process::id()).unwrap() > 0);
        assert!(super::machine_busy_seconds().unwrap() > 0.0);
    }

    #[test]
    fn reads_own_cpu() {
        let before = super::self_cpu_seconds().unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::self_cpu_seconds().unwrap() >= before);
    }
}
