import NIOCore

/// Reads how many bytes the peer has acknowledged on a TCP connection (Linux `tcp_info`
/// `tcpi_bytes_acked`): what the link really delivered, as opposed to what the socket accepted
/// into its buffers (a tbf queue and the send buffer can hold a megabyte or more).
struct DeliveryProbe: Sendable {
    let provider: any SocketOptionProvider

    init?(channel: (any Channel)?) {
        #if os(Linux)
        guard let p = channel as? any SocketOptionProvider else { return nil }
        provider = p
        #else
        return nil
        #endif
    }

    /// The kernel's `struct tcp_info` up to `tcpi_sndbuf_limited` (glibc's header stops earlier).
    /// `tcpi_bytes_acked` is the u64 at byte offset 120, `tcpi_rwnd_limited` (µs the sender was held
    /// back by the peer's receive window, Linux ≥ 4.10; 0 before) the u64 at 176.
    struct KernelTCPInfo: Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64)
            = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var bytesAcked: UInt64 { words.15 }
        var receiveWindowLimitedMicroseconds: UInt64 { words.22 }
    }

    struct Delivery: Sendable {
        /// Bytes the peer acknowledged so far.
        var acked: Int
        /// Seconds so far during which the peer's receive window, not the link, held the sender back.
        var receiverLimited: Double
    }

    /// What the connection delivered so far, or nil when the kernel does not report it.
    func delivery() async -> Delivery? {
        #if os(Linux)
        let future: EventLoopFuture<KernelTCPInfo> = provider.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        guard let info = try? await future.get(), info.bytesAcked > 0 else { return nil }
        return Delivery(acked: Int(info.bytesAcked), receiverLimited: Double(info.receiveWindowLimitedMicroseconds) / 1e6)
        #else
        return nil
        #endif
    }
}
