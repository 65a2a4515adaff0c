import Foundation
import KVCodec
import KVTensor
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

    /// schemas/stream-frames.md fixes the level of every kind, the reserved fields and the index of
    /// header and end frames: a header outside that is a broken or hostile peer, not a stream.
    @Test func headersOutsideTheSpecAreRejected() {
        func patched(_ frame: Frame, _ offset: Int, _ bytes: [UInt8]) -> [UInt8] {
            var h = frame.encodedHeader()
            h.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
            return h
        }
        let chunk = Frame(kind: .chunk, level: 0, index: 0, tokens: 0..<4, payloadLength: 10)
        #expect(parseError(patched(chunk, 5, [75])) == "bad stream: chunk frame level 75 is not in 0...4")
        #expect(parseError(patched(chunk, 5, [255])) == "bad stream: chunk frame level 255 is not in 0...4")
        #expect(parseError(patched(chunk, 6, [1, 0])) == "bad stream: frame header has non-zero reserved fields")
        #expect(parseError(patched(chunk, 28, [0, 0, 0, 0x80])) == "bad stream: frame header has non-zero reserved fields")
        #expect(parseError(patched(Frame(kind: .header, payloadLength: 2), 5, [0])) == "bad stream: header frame level 0 is not 255")
        #expect(parseError(patched(Frame(kind: .recompute, index: 1, tokens: 0..<4), 5, [2])) == "bad stream: recompute frame level 2 is not 255")
        #expect(parseError(patched(Frame(kind: .end, payloadLength: 2), 8, [3])) == "bad stream: end frame index 3 is not 0")
        #expect(parseError(patched(Frame(kind: .header, payloadLength: 2), 8, [1])) == "bad stream: header frame index 1 is not 0")
        // What the server sends stays accepted: every level of a chunk, an error frame at the chunk it stopped on.
        for level in CodecLevel.all {
            #expect(parseError(Frame(kind: .chunk, level: level, index: 5, tokens: 0..<4, payloadLength: 1).encodedHeader()) == "parsed")
        }
        #expect(parseError(Frame(kind: .error, index: 2, payloadLength: 2).encodedHeader()) == "parsed")
    }

    /// A chunk frame must say the level its container was encoded at.
    @Test func aChunkFrameWhoseLevelDisagreesWithItsContainerIsRejected() throws {
        let shape = KVShape(layers: 1, kvHeads: 1, headDim: 4)
        let kv = try KVTensor(shape: shape, tokens: 2, dtype: .f16, floats: (0..<16).map { Float($0) })
        let container = try ChunkContainer.encode(kv, level: 0)
        let header = StreamHeader(matchedTokens: 2, queryTokens: 2, chunks: 1, model: "m", dtype: "F16", shape: [1, 1, 4],
                                  chunkTokens: 2, sloMs: 1000, pinnedLevel: nil)
        for (level, outcome) in [(UInt8(0), "ok"), (2, "bad stream: chunk 0 is sent as level 2 but its container is level 0")] {
            var assembly = StreamAssembly()
            _ = try assembly.take(Frame(kind: .header), payload: Array(try JSONEncoder().encode(header)))
            let frame = Frame(kind: .chunk, level: level, index: 0, tokens: 0..<2, payloadLength: container.count)
            do {
                _ = try assembly.take(frame, payload: container)
                #expect(outcome == "ok")
            } catch {
                #expect("\(error)" == outcome)
            }
        }
    }
}
