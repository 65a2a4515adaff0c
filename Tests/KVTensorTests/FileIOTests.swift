import Testing
@testable import KVTensor
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FileIOTests {
    @Test func aFullDeviceIsReportedAsNoSpaceByErrnoNotByMessage() throws {
        let fd = open("/dev/full", O_WRONLY)
        try #require(fd >= 0, "/dev/full is not available")
        defer { close(fd) }
        #expect(throws: TensorError.noSpace("cannot write /dev/full: No space left on device")) {
            try FileIO.writeAll(fd, [1, 2, 3], path: "/dev/full")
        }
    }

    @Test func otherWriteFailuresStayIOErrors() {
        do {
            try FileIO.writeAtomically([[1]], to: "/nonexistent-dir/file")
            Issue.record("wrote into a missing directory")
        } catch TensorError.io(let message) {
            #expect(message.hasPrefix("cannot create /nonexistent-dir/.tmp-"), "\(message)")
            #expect(message.hasSuffix(": No such file or directory"), "\(message)")
        } catch {
            Issue.record("expected an I/O error, got \(error)")
        }
    }
}
