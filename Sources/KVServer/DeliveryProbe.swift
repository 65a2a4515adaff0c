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

    /// The kernel's `struct tcp_info` up to `tcpi_notsent_bytes` (glibc's header stops earlier).
    /// `tcpi_bytes_acked` is the u64 at byte offset 120.
    struct KernelTCPInfo: Sendable {
        var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                    UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)
            = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var bytesAcked: UInt64 { words.15 }
    }

    /// Bytes acknowledged so far, or nil when the kernel does not report them.
    func bytesAcked() async -> Int? {
        #if os(Linux)
        let future: EventLoopFuture<KernelTCPInfo> = provider.unsafeGetSocketOption(level: .tcp, name: .tcp_info)
        guard let info = try? await future.get(), info.bytesAcked > 0 else { return nil }
        return Int(info.bytesAcked)
        #else
        return nil
        #endif
    }
}
