import Testing
@testable import KVFrames
@testable import KVTransport

struct FrameTests {
    @Test func headerRoundTrips() throws {
        let f = Frame(kind: .chunk, level: 3, index: 7, tokens: 1792..<2048, payloadLength: 123_456)
        let bytes = f.encodedHeader()
        #expect(bytes.count == Frame.headerSize)
        #expect(try bytes.withUnsafeBytes { try Frame.parseHeader($0) } == f)
    }

    @Test func readerReassemblesFramesSplitAnywhere() throws {
        let frames: [(Frame, [UInt8])] = [
            (Frame(kind: .header, payloadLength: 5), Array("{\"a\"}".utf8)),
            (Frame(kind: .chunk, level: 0, index: 0, tokens: 0..<256, payloadLength: 3000), (0..<3000).map { UInt8($0 % 251) }),
            (Frame(kind: .recompute, index: 1, tokens: 256..<300), []),
            (Frame(kind: .end, payloadLength: 2), Array("{}".utf8)),
        ]
        let stream = frames.flatMap { $0.0.encodedHeader() + $0.1 }
        for piece in [1, 7, 31, 32, 33, 1000, stream.count] {
            var reader = FrameReader()
            var got: [(Frame, [UInt8])] = []
            var i = 0
            while i < stream.count {
                reader.append(stream[i..<min(i + piece, stream.count)])
                i += piece
                while let f = try reader.next() { got.append((f.frame, f.payload)) }
            }
            #expect(got.map(\.0) == frames.map(\.0), "piece \(piece)")
            #expect(got.map(\.1) == frames.map(\.1), "piece \(piece)")
            #expect(reader.finished && reader.buffered == 0)
        }
    }

    func parseError(_ bytes: [UInt8]) -> String {
        do {
            _ = try bytes.withUnsafeBytes { try Frame.parseHeader($0) }
            return "parsed"
        } catch { return "\(error)" }
    }

    @Test func badHeadersAreRejectedWithAReason() {
        var header = Frame(kind: .chunk, level: 0, index: 0, tokens: 0..<4, payloadLength: 10).encodedHeader()
        #expect(parseError(Array(header[0..<10])) == "bad stream: frame header needs 32 bytes, got 10")
        var bad = header
        bad[0] = 0x58
        #expect(parseError(bad) == "bad stream: bad frame magic (not a kvstore stream)")
        bad = header
        bad[4] = 9
        #expect(parseError(bad) == "bad stream: unknown frame kind 9")
        header[20..<28] = [0, 0, 0, 0, 1, 0, 0, 0]  // 2^32 bytes
        #expect(parseError(header) == "bad stream: frame payload of 4294967296 bytes exceeds 1073741824")
        let reversed = Frame(kind: .chunk, level: 0, index: 0, tokens: 0..<4).encodedHeader()
        var r = reversed
        r[12] = 9  // start 9 > end 4
        #expect(parseError(r) == "bad stream: frame token range 9..<4 is reversed")
        var rc = Frame(kind: .recompute, tokens: 0..<4).encodedHeader()
        rc[20] = 1
        #expect(parseError(rc) == "bad stream: recompute frame carries 1 payload bytes")
    }
}
