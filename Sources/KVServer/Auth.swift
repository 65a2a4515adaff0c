import Foundation
import KVStore
import KVTensor

/// Who a request acts for. Its `salt` is the namespace salt of everything it stores and reads,
/// so tenants' prefix chains never meet.
public struct Tenant: Sendable, Equatable {
    public var name: String
    public var salt: String?

    /// Without --auth-tokens every request is this tenant, sharing the CLI's unsalted namespaces.
    public static let local = Tenant(name: "local", salt: nil)
}

/// Bearer tokens read from a file of `TOKEN TENANT` lines (`#` comments, blank lines ignored).
/// Tokens are looked up by SHA-256, so comparing them takes the same time whatever they hold.
public struct TokenTable: Sendable {
    private let tenants: [Hash32: Tenant]

    public var count: Int { tenants.count }

    public init(lines text: String, source: String = "tokens") throws {
        var map: [Hash32: Tenant] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else { throw ServeError("\(source):\(n + 1): expected `TOKEN TENANT`") }
            guard parts[0].utf8.count >= 16 else { throw ServeError("\(source):\(n + 1): token shorter than 16 characters") }
            let key = Hash32.sha256(Array(parts[0].utf8))
            guard map[key] == nil else { throw ServeError("\(source):\(n + 1): token listed twice") }
            // The tenant name is the salt, prefixed so no tenant shares the unsalted local namespace.
            map[key] = Tenant(name: String(parts[1]), salt: "tenant:" + parts[1])
        }
        guard !map.isEmpty else { throw ServeError("\(source) lists no tokens") }
        tenants = map
    }

    public init(file: String) throws {
        let bytes = try FileIO.readAll(file, limit: 1 << 20)
        try self.init(lines: String(decoding: bytes, as: UTF8.self), source: file)
    }

    /// The tenant for an `Authorization` header value, or nil.
    public func tenant(authorization: String?) -> Tenant? {
        guard let value = authorization, value.hasPrefix("Bearer ") else { return nil }
        let token = value.dropFirst(7).trimmingCharacters(in: .whitespaces)
        return tenants[Hash32.sha256(Array(token.utf8))]
    }
}

/// A configuration problem that stops `serve` from starting.
public struct ServeError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ message: String) { description = message }
}
