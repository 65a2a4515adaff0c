import ArgumentParser
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct KVStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvstore",
        abstract: "Store, deduplicate and serve LLM KV caches by token prefix.",
        discussion: """
        Exit status: 0 success, 1 error, 3 no stored prefix matched (get), 64 usage error.
        The store is --store DIR, else $KVSTORE_HOME, else $XDG_DATA_HOME/kvstore or ~/.local/share/kvstore.
        """,
        subcommands: [Put.self, Get.self, List.self, Stat.self, Remove.self, Encode.self, Decode.self, Bench.self, Segments.self,
                      GC.self, Pin.self, Unpin.self, Fsck.self, Serve.self, Profile.self, Calibrate.self, SidecarCommand.self]
    )

    /// Past a file-size limit (`ulimit -f`) a write raises SIGXFSZ, whose default kills the process.
    /// Today the commands write on Dispatch's worker threads, which block it, so the write fails with
    /// EFBIG and is reported like a full disk; ignoring it keeps that true from any thread.
    static func main() async {
        signal(SIGXFSZ, SIG_IGN)
        await main(nil)
    }
}
