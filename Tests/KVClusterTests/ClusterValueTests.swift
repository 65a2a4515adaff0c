import KVCluster
import KVCodec
import KVRESP
import KVStore
import KVTensor
import Testing

/// Pure parts of the cluster tier: hash slots, slot maps, record headers, URLs.
struct ClusterValueTests {
    @Test func crc16KnownVectors() {
        #expect(HashSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(HashSlot.crc16([UInt8]()) == 0)
        // Slots the Redis Cluster spec and redis-cli report.
        #expect(HashSlot.slot("foo") == 12182)
        #expect(HashSlot.slot("bar") == 5061)
        #expect(HashSlot.slot("hello") == 866)
    }

    @Test func hashTagsRouteByTheTaggedPart() {
        #expect(HashSlot.slot("{user1000}.following") == HashSlot.slot("user1000"))
        #expect(HashSlot.slot("{user1000}.followers") == HashSlot.slot("{user1000}.following"))
        #expect(HashSlot.slot("foo{}{bar}") == HashSlot.slot("foo{}{bar}"))
        #expect(HashSlot.slot("foo{}{bar}") != HashSlot.slot("bar"))        // empty tag: the whole key
        #expect(HashSlot.slot("foo{{bar}}zap") == HashSlot.slot("{bar"))
    }

    @Test func slotMapFromClusterSlots() throws {
        func node(_ host: String, _ port: Int64) -> RESPValue { .array([.bulk(Array(host.utf8)), .integer(port), .bulk(Array("id".utf8))]) }
        let reply: RESPValue = .array([
            .array([.integer(0), .integer(5460), node("127.0.0.1", 7000), node("127.0.0.1", 7003)]),
            .array([.integer(5461), .integer(10922), node("", 7001)]),
            .array([.integer(10923), .integer(16383), node("127.0.0.1", 7002)]),
        ])
        let map = try SlotMap(clusterSlots: reply, fallbackHost: "10.0.0.9")
        #expect(map.node(slot: 0) == "127.0.0.1:7000")
        #expect(map.node(slot: 5461) == "10.0.0.9:7001")
        #expect(map.node(slot: 16383) == "127.0.0.1:7002")
        #expect(map.coversAllSlots)
        #expect(map.nodes.count == 3)
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterSlots: .array([.array([.integer(0), .integer(99999), node("h", 1)])]), fallbackHost: "h") }
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterSlots: .simple("OK"), fallbackHost: "h") }
    }

    @Test func slotMapFromClusterShards() throws {
        func node(_ ip: String, _ endpoint: String, _ port: Int64, _ role: String) -> RESPValue {
            .array(["id", "x", "port", nil, "ip", ip, "endpoint", endpoint, "role", role, "health", "online"].map { name -> RESPValue in
                name.map { .bulk(Array($0.utf8)) } ?? .integer(port)
            })
        }
        func shard(_ slots: [Int64], _ nodes: [RESPValue]) -> RESPValue {
            .array([.bulk(Array("slots".utf8)), .array(slots.map { .integer($0) }), .bulk(Array("nodes".utf8)), .array(nodes)])
        }
        let reply: RESPValue = .array([
            shard([0, 100, 200, 5460], [node("127.0.0.1", "127.0.0.1", 7003, "replica"), node("127.0.0.1", "127.0.0.1", 7000, "master")]),
            shard([101, 199, 5461, 10922], [node("", "?", 7001, "master")]),
            shard([10923, 16383], [node("10.0.0.2", "", 7002, "master")]),
            shard([], [node("127.0.0.1", "127.0.0.1", 7009, "master")]),          // a master without slots
        ])
        let map = try SlotMap(clusterShards: reply, fallbackHost: "10.0.0.9")
        #expect(map.node(slot: 0) == "127.0.0.1:7000" && map.node(slot: 5460) == "127.0.0.1:7000")
        #expect(map.node(slot: 150) == "10.0.0.9:7001" && map.node(slot: 10922) == "10.0.0.9:7001")
        #expect(map.node(slot: 16383) == "10.0.0.2:7002")
        #expect(map.coversAllSlots && map.nodes.count == 3)
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterShards: .array([shard([0, 99999], [node("h", "h", 1, "master")])]), fallbackHost: "h") }
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterShards: .array([shard([0, 5], [node("h", "h", 1, "replica")])]), fallbackHost: "h") }
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterShards: .array([shard([0], [node("h", "h", 1, "master")])]), fallbackHost: "h") }
        #expect(throws: ClusterError.self) { _ = try SlotMap(clusterShards: .simple("OK"), fallbackHost: "h") }
    }

    @Test func recordHeaderRoundTripAndRejections() throws {
        let kv = try KVTensor(shape: KVShape(layers: 1, kvHeads: 1, headDim: 8), tokens: 8, dtype: .f16,
                              floats: (0..<128).map { Float($0 % 17) / 4 })
        let payload = try ChunkContainer.encode(kv, level: 2)
        let value = TierRecordHeader(payload: payload, level: 2).encoded() + payload
        #expect(value.count == TierRecordHeader.size + payload.count)
        #expect(TierRecordHeader.verifiedPayload(value, level: 2) == payload)
        #expect(TierRecordHeader.verifiedPayload(value, level: 0) == nil)               // another level's record
        #expect(TierRecordHeader.verifiedPayload(Array(value.dropLast()), level: 2) == nil)   // truncated
        var flipped = value
        flipped[flipped.count - 3] ^= 1
        #expect(TierRecordHeader.verifiedPayload(flipped, level: 2) == nil)             // payload changed
        var badMagic = value
        badMagic[0] = 0
        #expect(TierRecordHeader.parse(badMagic) == nil)
        var huge = value
        huge[15] = 0xFF                                                                  // length 2^63-ish
        #expect(TierRecordHeader.parse(huge) == nil)
        #expect(TierRecordHeader.parse(value.prefix(47)) == nil)
    }

    @Test func clusterURLs() throws {
        let u = try ClusterURL("redis://app:s%40cret@127.0.0.1:7000,127.0.0.1:7001")
        #expect(u.seeds == ["127.0.0.1:7000", "127.0.0.1:7001"])
        #expect(u.user == "app")
        #expect(u.password == "s@cret")
        let plain = try ClusterURL("10.0.0.1:6379")
        #expect(plain.seeds == ["10.0.0.1:6379"] && plain.user == nil && plain.password == nil)
        #expect(try ClusterURL("redis://:pw@[::1]:7000").seeds == ["[::1]:7000"])
        #expect(throws: ClusterError.self) { _ = try ClusterURL("redis://") }
        #expect(throws: ClusterError.self) { _ = try ClusterURL("redis://host") }
        #expect(throws: ClusterError.self) { _ = try ClusterURL("host:99999") }
    }
}
