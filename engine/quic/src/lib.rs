//! tickwire's QUIC publishing: the wire protocol ([`protocol`], documented byte for byte in
//! `docs/protocol.md`), the transport-independent fan-out agent ([`fanout`]), the QUIC
//! server ([`server`]) and the async client with reconnect and resume ([`client`]).
//!
//! UDP sockets are bound by [`bind_udp`], which sizes their kernel buffers ([`SOCKET_BUFFER`]).
//!
//! Data flows: ring ─► [`fanout::PublisherAgent`] (assigns per-channel sequences, encodes
//! each batch once into a shared `Bytes` frame, offers it to one bounded queue per
//! subscriber, never waits) ─► per-connection writer task ─► QUIC stream ─►
//! [`client::Client`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod client;
pub mod fanout;
pub mod protocol;
pub mod server;
mod udp;

pub use udp::{SOCKET_BUFFER, bind_udp};
