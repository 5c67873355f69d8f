//! The UDP sockets under the QUIC endpoints, bound here rather than by quinn so that their
//! kernel buffers can be sized.
//!
//! At 100k events/s to a hundred subscribers a server sends ~700 MB/s of datagrams, in
//! bursts: one writer task can hand the kernel a congestion window's worth (several MB)
//! at once, and a subscriber on a busy host may not read its socket for a scheduling
//! quantum. A datagram that finds the buffer full is dropped, and QUIC then waits for a
//! loss timer and halves its congestion window, so the Linux default (212 992 bytes,
//! `net.core.rmem_default`) turns a short stall into milliseconds of latency. Both ends
//! therefore ask for [`SOCKET_BUFFER`] each way. The kernel grants at most
//! `net.core.rmem_max` / `net.core.wmem_max` (4 MiB on these machines; often 208 KiB on a
//! stock host: raise them with sysctl for the full effect).

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The send and receive buffer each QUIC endpoint asks the kernel for: 4 MiB.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// A UDP socket bound to `addr` whose send and receive buffers were asked to be `buffer`
/// bytes (0 keeps the kernel's defaults). A refused size is not an error: the kernel caps
/// it at its maximum.
pub fn bind_udp(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if buffer > 0 {
        // Capped by the kernel, never refused for size; any other failure leaves the
        // default, which still works.
        let _ = socket.set_recv_buffer_size(buffer);
        let _ = socket.set_send_buffer_size(buffer);
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_asked_for_and_the_socket_is_bound() {
        let small = bind_udp("127.0.0.1:0".parse().expect("addr"), 0).expect("binds");
        let big = bind_udp("127.0.0.1:0".parse().expect("addr"), SOCKET_BUFFER).expect("binds");
        assert_ne!(big.local_addr().expect("bound").port(), 0);
        let size = |s: &UdpSocket| socket2::SockRef::from(s).recv_buffer_size().expect("size");
        let max = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        match max {
            Some(max) if max > size(&small) => assert!(
                size(&big) > size(&small),
                "asked for {SOCKET_BUFFER} (kernel max {max}), got {} (default {})",
                size(&big),
                size(&small)
            ),
            _ => eprintln!(
                "net.core.rmem_max is unknown or not above the default buffer: nothing to check"
            ),
        }
    }
}
