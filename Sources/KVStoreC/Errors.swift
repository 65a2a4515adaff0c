#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KVCodec
import KVEngineLlama
import KVStore
import KVTensor
import KVFrames

/// The C ABI's error codes (include/kvstore.h) and the per-thread last-error message.
enum CError {
    static let argument: Int32 = -1, truncated: Int32 = -2, corrupt: Int32 = -3, unsupported: Int32 = -4
    static let limit: Int32 = -5, stream: Int32 = -6, server: Int32 = -7, `internal`: Int32 = -8

    /// A caller mistake (null pointer, bad level, small buffer).
    struct Argument: Error, CustomStringConvertible { let description: String }

    /// Each thread's message lives in one malloc'd C string, freed when replaced or at thread exit.
    static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k) { free($0) }
        return k
    }()

    static func setMessage(_ message: String) {
        free(pthread_getspecific(key))
        pthread_setspecific(key, strdup(message))
    }

    static var current: UnsafePointer<CChar> {
        if let p = pthread_getspecific(key) { return UnsafePointer(p.assumingMemoryBound(to: CChar.self)) }
        return emptyMessage
    }

    nonisolated(unsafe) static let emptyMessage: UnsafePointer<CChar> = UnsafePointer(strdup("")!)

    static func code(for error: Error) -> Int32 {
        switch error {
        case is Argument, is CodecProfile.Invalid: return argument
        case let e as CodecError:
            switch e {
            case .truncated: return truncated
            case .corrupt: return corrupt
            case .unsupported, .nonFinite: return unsupported
            case .limit: return limit
            case .compression: return `internal`
            }
        case let e as TransportError:
            if case .http = e { return server }
            return stream
        case let e as TensorError:
            switch e {
            case .unknownDType: return unsupported
            case .truncated: return truncated
            case .tooLarge: return limit
            default: return corrupt
            }
        case let e as LlamaStateError:
            switch e {
            case .truncated: return truncated
            case .unsupported: return unsupported
            case .malformed: return corrupt
            case .mismatch: return argument
            case .io: return `internal`
            }
        case let e as StoreError:
            switch e {
            case .corruptBlob, .missingBlob: return corrupt
            case .invalidInput, .config, .notFound: return argument
            default: return `internal`
            }
        default: return `internal`
        }
    }

    static func message(for error: Error) -> String {
        // The server's own words for an error frame, without the HTTP wrapper.
        if case TransportError.http(_, let message) = error { return message }
        return "\(error)"
    }
}

/// Runs `body`, turning a thrown error into its code and this thread's message.
@inline(__always)
func guarded(_ body: () throws -> Int32) -> Int32 {
    do {
        return try body()
    } catch {
        CError.setMessage(CError.message(for: error))
        return CError.code(for: error)
    }
}

func require<T>(_ value: T?, _ name: String) throws -> T {
    guard let value else { throw CError.Argument(description: "\(name) is NULL") }
    return value
}
