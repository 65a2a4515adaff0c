import Testing
import KVCodec
import KVTensor
import TestSupport

@Suite struct ContainerTests {
    @Test func xxhash64MatchesReferenceVectors() {
        // Reference values from the xxhash C library (Python binding).
        let long = (0..<768).map { UInt8($0 % 256) }
        let cases: [([UInt8], UInt64, UInt64)] = [
            ([], 0, 0xEF46_DB37_51D8_E999), (Array("a".utf8), 0, 0xD24E_C4F1_A98C_6E5B),
            (Array("abc".utf8), 0, 0x44BC_2CF5_AD77_0999), (long, 0, 0x8E03_C838_C596_036F),
            ([], 7, 0x95F0_626F_6F0A_4409), (Array("abc".utf8), 7, 0x9E75_5206_1566_76D7), (long, 7, 0xB1E1_0F6C_5294_CD6B),
        ]
        for (input, seed, expected) in cases {
            #expect(XXHash64.hash(input, seed: seed) == expected, "\(input.count) bytes, seed \(seed)")
        }
    }

    @Test func losslessLevelIsBitExactOnRealKVOfEveryDType() throws {
        for file in ["smollm2_ctx96_f16.safetensors", "smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors"] {
            let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv
            let bytes = try ChunkContainer.encode(kv, level: CodecLevel.lossless)
            #expect(try ChunkContainer.decode(bytes) == kv, "\(file)")
            #expect(try ChunkContainer.encode(kv, level: CodecLevel.lossless) == bytes, "deterministic")
        }
    }

    @Test func bytePlanesMatchTheirDefinitionForEveryWidthAndTail() {
        var rng = TestRNG(s: 77)
        for width in [1, 2, 4] {
            for n in [0, 1, 15, 16, 17, 33, 100] {
                let bytes = (0..<(n * width)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let planes = BytePlanes.split(bytes, width: width)
                var expected = [UInt8](repeating: 0, count: bytes.count)
                for i in 0..<n { for b in 0..<width { expected[b * n + i] = bytes[i * width + b] } }
                #expect(planes == expected, "width \(width), \(n) elements")
                #expect(BytePlanes.join(planes, width: width) == bytes, "width \(width), \(n) elements")
            }
        }
    }

    @Test func everyTruncationAndHeaderCorruptionIsAnError() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<8)
        let bytes = try ChunkContainer.encode(kv, level: CodecLevel.lossless)
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            #expect(throws: CodecError.self) { try ChunkContainer.decode(Array(bytes[0..<cut])) }
        }
        for i in 0..<ChunkHeader.size {
            var bad = bytes
            bad[i] ^= 0x5A
            #expect(throws: CodecError.self, "header byte \(i)") { try ChunkContainer.decode(bad) }
        }
        var payload = bytes
        payload[bytes.count - 3] ^= 1
        #expect(throws: CodecError.corrupt("checksum mismatch")) { try ChunkContainer.decode(payload) }
    }

    @Test func contextFileRoundTripsAndRejectsTrailingBytes() throws {
        let ctx = try TestSupport.realContext()
        let file = try ContextFile.encode(ctx, level: 0, chunkTokens: 40)
        #expect(try ContextFile.decode(file) == ctx)
        #expect(throws: CodecError.corrupt("1 trailing bytes")) { try ContextFile.decode(file + [0]) }
        #expect(throws: CodecError.self) { try ContextFile.decode(Array(file.prefix(30))) }
    }

    /// Threads change the speed, never the bytes: chunks keep their order and every error is the
    /// one of the first failing chunk.
    @Test func contextFilesCodeTheSameOnAnyNumberOfThreads() throws {
        let ctx = try TestSupport.realContext()
        for level: UInt8 in [0, 2] {
            let one = try ContextFile.encode(ctx, level: level, chunkTokens: 16)
            for threads in [2, 3, 64] {
                #expect(try ContextFile.encode(ctx, level: level, chunkTokens: 16, threads: threads) == one, "level \(level), \(threads) threads")
                #expect(try ContextFile.decode(one, threads: threads) == ContextFile.decode(one), "level \(level), \(threads) threads")
            }
        }
        var damaged = try ContextFile.encode(ctx, level: 0, chunkTokens: 16)
        damaged[damaged.count - 5] ^= 1 // inside the last chunk's payload
        #expect(throws: CodecError.corrupt("checksum mismatch")) { try ContextFile.decode(damaged, threads: 4) }
        #expect(try Parallel.map(7, threads: 3) { $0 * $0 } == [0, 1, 4, 9, 16, 25, 36])
        struct Boom: Error, Equatable { let i: Int }
        #expect(throws: Boom(i: 2)) { try Parallel.map(9, threads: 4) { i -> Int in if i == 2 || i == 5 { throw Boom(i: i) }; return i } }
    }

    @Test func levelListsParseOrSayWhatIsWrong() throws {
        #expect(try CodecLevel.parseList("0,2,4") == [0, 2, 4])
        #expect(try CodecLevel.parseList(" 1, 3") == [1, 3])
        #expect(throws: CodecLevel.ListError(description: "level 5 is not in 0...4")) { try CodecLevel.parseList("0,5") }
        #expect(throws: CodecLevel.ListError(description: "level x is not in 0...4")) { try CodecLevel.parseList("x") }
        #expect(throws: CodecLevel.ListError(description: "levels must list 1 to 5 levels, e.g. 0,2")) { try CodecLevel.parseList("") }
        #expect(throws: CodecLevel.ListError(description: "levels must list 1 to 5 levels, e.g. 0,2")) { try CodecLevel.parseList("0,1,2,3,4,0") }
        #expect(try CodecLevel.parseList(CodecLevel.storedByDefaultText) == CodecLevel.storedByDefault)
    }
}
