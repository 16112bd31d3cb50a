//! The open files the manager may hold: two sockets per session (RTP and
//! RTCP) besides a few of its own. The limit (`RLIMIT_NOFILE`), not the
//! port range, is often what caps sessions: a shell's soft limit of 1,024
//! allows about 380, and `make soak` found a port range of 20,000 pairs
//! behind a limit of 20,000 files, which ran out at 9,872 sessions.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Files kept for everything but sessions: gRPC connections, recordings,
/// prompts being played, the runtime's own.
pub const RESERVED: u64 = 256;

/// Raises the soft limit on open files to the hard limit, as the Go
/// runtime and most servers do at start, and returns the limit in force
/// afterwards (`None`: unlimited).
pub fn raise() -> Option<u64> {
    let now = getrlimit(Resource::Nofile);
    if now.current != now.maximum {
        // refused only if the hard limit moved under us; the soft one stays
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: now.maximum,
                maximum: now.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current
}

/// Sessions an open-files limit of `limit` leaves room for.
pub fn sessions_allowed(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED) / 2
}

/// Whether a failed `bind` ran out of file descriptors (the process's or
/// the system's), rather than finding the port taken.
pub fn out_of_files(e: &std::io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::MFILE.raw_os_error())
        || code == Some(rustix::io::Errno::NFILE.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_files_a_session_after_the_reserve() {
        assert_eq!(sessions_allowed(1024), 384);
        assert_eq!(sessions_allowed(20_000), 9_872);
        assert_eq!(sessions_allowed(100), 0);
    }

    #[test]
    fn emfile_is_told_from_a_taken_port() {
        assert!(out_of_files(&std::io::Error::from_raw_os_error(24)));
        assert!(out_of_files(&std::io::Error::from_raw_os_error(23)));
        assert!(!out_of_files(&std::io::Error::from(
            std::io::ErrorKind::AddrInUse
        )));
    }

    #[test]
    fn raising_keeps_a_limit_in_force() {
        let before = getrlimit(Resource::Nofile);
        let after = raise();
        assert_eq!(after, before.maximum, "soft limit raised to the hard one");
    }
}
