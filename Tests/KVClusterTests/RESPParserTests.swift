import KVRESP
import Testing

struct RESPParserTests {
    let parser = RESPParser()

    func parse(_ s: String) throws -> (value: RESPValue, consumed: Int)? { try parser.parse(Array(s.utf8)) }

    @Test func everyReplyType() throws {
        #expect(try parse("+OK\r\n")?.value == .simple("OK"))
        #expect(try parse("-MOVED 3999 127.0.0.1:6381\r\n")?.value == .error("MOVED 3999 127.0.0.1:6381"))
        #expect(try parse(":-42\r\n")?.value == .integer(-42))
        #expect(try parse("$5\r\nhe\r\no\r\n")?.value == .bulk(Array("he\r\no".utf8)))
        #expect(try parse("$0\r\n\r\n")?.value == .bulk([]))
        #expect(try parse("$-1\r\n")?.value == .null)
        #expect(try parse("*-1\r\n")?.value == .null)
        #expect(try parse("*2\r\n:1\r\n*1\r\n$1\r\nx\r\n")?.value == .array([.integer(1), .array([.bulk([120])])]))
    }

    @Test func pipelinedRepliesParseOneAtATime() throws {
        let bytes = Array("+OK\r\n:7\r\n$-1\r\n".utf8)
        var offset = 0
        var values: [RESPValue] = []
        while let (v, n) = try parser.parse(Array(bytes[offset...])) { values.append(v); offset += n }
        #expect(values == [.simple("OK"), .integer(7), .null])
        #expect(offset == bytes.count)
    }

    @Test func everyTruncationAsksForMoreBytes() throws {
        let whole = Array("*3\r\n$3\r\nabc\r\n:12\r\n*1\r\n+x\r\n".utf8)
        #expect(try parser.parse(whole)?.consumed == whole.count)
        for n in 0..<whole.count { #expect(try parser.parse(Array(whole[0..<n])) == nil, "prefix of \(n) bytes") }
    }

    @Test func hostileFramesFailClearlyWithoutAllocating() throws {
        var small = RESPParser.Limits()
        small.maxBulkBytes = 1024
        small.maxArrayCount = 100
        small.maxDepth = 3
        small.maxLineBytes = 64
        let p = RESPParser(limits: small)
        let cases: [(String, String)] = [
            ("$1025\r\n", "bulk length 1025"),
            ("$99999999999999999999\r\n", "bad integer"),
            ("$-2\r\n", "bulk length -2"),
            ("*101\r\n", "array count 101"),
            ("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "nested deeper"),
            ("$3\r\nabcXY", "not followed by CRLF"),
            ("?what\r\n", "unknown RESP type"),
            (":12a\r\n", "bad integer"),
            (":\r\n", "bad integer"),
            ("+a\rb\r\n", "CR not followed by LF"),
            ("+" + String(repeating: "a", count: 100), "line longer than 64"),
        ]
        for (input, message) in cases {
            #expect {
                _ = try p.parse(Array(input.utf8))
            } throws: { error in
                "\(error)".contains(message)
            }
        }
        // A huge declared array that has not arrived is "need more", never a huge allocation.
        #expect(try RESPParser().parse(Array("*1000000\r\n".utf8)) == nil)
    }

    @Test func encoderWritesBulkArrays() {
        #expect(RESPEncoder.command([Array("GET".utf8), Array("k".utf8)]) == Array("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".utf8))
        var out: [UInt8] = []
        RESPEncoder.append([[Array("SET".utf8)], [Array("k".utf8)], [[1, 2], [3]]], to: &out)
        #expect(out == Array("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n".utf8) + [1, 2, 3, 13, 10])
        #expect(try! RESPParser().parse(out)?.value == .array([.bulk(Array("SET".utf8)), .bulk([107]), .bulk([1, 2, 3])]))
    }
}
