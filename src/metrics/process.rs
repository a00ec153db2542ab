//! The process's own figures, from `/proc` (Linux; elsewhere they are left out).

/// Resident memory in bytes (`VmRSS` in `/proc/self/status`).
pub(super) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    rss_of(&status)
}

fn rss_of(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line["VmRSS:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Open file descriptors (entries of `/proc/self/fd`, less the one reading it).
pub(super) fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vmrss_in_bytes() {
        let status = "Name:\tresound\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(rss_of(status), Some(1234 * 1024));
        assert_eq!(rss_of("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_memory_and_descriptors() {
        if cfg!(target_os = "linux") {
            assert!(resident_bytes().unwrap() > 0);
            assert!(
                open_fds().unwrap() >= 3,
                "stdin, stdout and stderr at least"
            );
        }
    }
}
