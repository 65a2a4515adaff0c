import KVStore
import KVFrames
import KVTransport

/// The JSON answer of `/v1/lookup`. A miss is always the same bytes, whether nothing was stored,
/// the tenant has no such model, or another tenant holds the prefix.
struct LookupResult: Codable, Sendable, Equatable {
    struct Chunk: Codable, Sendable, Equatable {
        var index: Int
        var start: Int
        var end: Int
        var levels: [LevelSize]
    }

    var matchedTokens: Int
    var queryTokens: Int
    var chunks: [Chunk]

    enum CodingKeys: String, CodingKey {
        case matchedTokens = "matched_tokens", queryTokens = "query_tokens", chunks
    }

    init(match: PrefixMatch, queryTokens: Int) {
        matchedTokens = match.tokens
        self.queryTokens = queryTokens
        chunks = match.chunks.enumerated().map { i, c in
            Chunk(index: i, start: c.range.lowerBound, end: c.range.upperBound,
                  levels: c.record.levels.map { LevelSize(level: $0.level, bytes: $0.bytes) }.sorted { $0.level < $1.level })
        }
    }
}
