//! The open-files limit a broker needs: each partition keeps its active segment's log open,
//! and up to `--sealed-segment-files-max` sealed segments' logs stay open besides, so the
//! common default soft limit of 1,024 stops a broker at a few hundred partitions with EMFILE.
//!
//! At start the soft limit is raised to the hard limit, as Go programs and many servers do,
//! and a limit still too small for `--partitions-max` is logged. This module calls
//! `getrlimit`/`setrlimit`, hence its unsafe code and nothing else.

#![allow(unsafe_code)]

/// Files a partition keeps open at the least, and a margin for sockets and everything else.
const FILES_PER_PARTITION: u64 = 1;
const FILES_BESIDES_PARTITIONS: u64 = 1024;

/// Raises the soft open-files limit to the hard one; returns the limit now in force.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// The open-files limit `partitions_max` partitions need, with `sealed_files_max` sealed
/// segments' files open besides.
pub(crate) fn needed_for(partitions_max: usize, sealed_files_max: usize) -> u64 {
    (partitions_max as u64)
        .saturating_mul(FILES_PER_PARTITION)
        .saturating_add(sealed_files_max as u64)
        .saturating_add(FILES_BESIDES_PARTITIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let limit = raise_open_files_limit().expect("getrlimit works on Linux");
        assert!(limit >= 1024, "{limit}");
        assert_eq!(
            raise_open_files_limit(),
            Some(limit),
            "already at the hard limit"
        );
        assert_eq!(needed_for(10_000, 4096), 15_120);
    }
}
