//! `TCP_NODELAY` on the connections to PostgreSQL.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` on its sockets (transact-rs/sqlx#4335; the fix,
//! #4336, is merged but not in a release yet). Without it, the kernel holds back the end of
//! any message that does not go out in one TCP segment (over TLS: anything past one 16 KiB
//! record, or one segment of the path's MSS) until the server acknowledges what came before,
//! and the server delays that acknowledgement by 40 ms or more because it is waiting for the
//! rest of the message. A batch's statement waited about 100 ms that way on every write.
//!
//! sqlx does not expose its socket, so each new connection finds the process's TCP sockets
//! to the database's port (Linux: `/proc/self/net/tcp{,6}` gives their inodes,
//! `/proc/self/fd` the descriptors) and sets the option on each. Setting it twice is
//! harmless. Elsewhere this does nothing. Remove once sqlx sets it again.

/// Sets `TCP_NODELAY` on this process's TCP sockets connected to `port`; returns how many.
#[cfg(target_os = "linux")]
pub fn set_on_sockets_to(port: u16) -> usize {
    use std::mem::ManuallyDrop;
    use std::net::TcpStream;
    use std::os::fd::{FromRawFd, RawFd};

    let mut inodes = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(text.lines().skip(1).filter_map(|l| inode_to(l, port)));
        }
    }
    if inodes.is_empty() {
        return 0;
    }
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut set = 0;
    for entry in fds.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        let fd = entry.file_name().to_string_lossy().parse::<RawFd>().ok();
        let (Some(inode), Some(fd)) = (inode, fd) else {
            continue;
        };
        if !inodes.contains(&inode) {
            continue;
        }
        // SAFETY: `fd` is open in this process (it is listed in /proc/self/fd) and is the TCP
        // socket with that inode. `ManuallyDrop` keeps this borrowed handle from closing it.
        // Were it closed and its number reused meanwhile, the call fails (not a socket) or
        // sets the option on another TCP socket of ours; either is harmless.
        let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if stream.set_nodelay(true).is_ok() {
            set += 1;
        }
    }
    set
}

#[cfg(not(target_os = "linux"))]
pub fn set_on_sockets_to(_port: u16) -> usize {
    0
}

/// The inode of a `/proc/net/tcp` line's socket when its remote port is `port`.
/// Line: `sl local_address rem_address st ... uid timeout inode ...`, ports in hex.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn inode_to(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let remote = fields.get(2)?;
    let remote_port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
    (remote_port == port).then(|| fields.get(9)?.parse().ok())?
}

/// The TCP port a PostgreSQL URL connects to (5432 when it names none).
pub fn port_of(url: &str) -> u16 {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .unwrap_or(5432)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_remote_port_and_inode_of_a_proc_line() {
        let line = "   3: 0100007F:A1B2 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1";
        assert_eq!(inode_to(line, 5432), Some(4242));
        assert_eq!(inode_to(line, 5433), None);
        assert_eq!(inode_to("garbage", 5432), None);
    }

    #[test]
    fn the_port_comes_from_the_url() {
        assert_eq!(port_of("postgres://u@db.example:6543/x"), 6543);
        assert_eq!(port_of("postgres://u@db.example/x"), 5432);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sets_nodelay_on_the_sockets_to_the_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server, _) = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        assert!(set_on_sockets_to(port) >= 1);
        assert!(client.nodelay().unwrap());
    }
}
