import KVCodec
import KVTensor
import KVFrames

// Frame streams (include/kvstore.h): FrameReader cuts the body into frames, StreamAssembly checks
// and decodes them, exactly as `kvstore get --remote` does.

/// `kvs_stream`: one response body being read.
final class StreamBox {
    var reader = FrameReader()
    var assembly = StreamAssembly()
    /// The JSON payload the last event points at, kept alive until the next call.
    var json: [UInt8] = []
}

/// The C struct `kvs_event`, laid out field for field.
struct CEvent {
    var kind: Int32 = 0
    var level: Int32 = -1
    var index: Int64 = 0
    var tokenStart: Int64 = 0
    var tokenEnd: Int64 = 0
    var payloadBytes: Int64 = 0
    var json: UnsafePointer<CChar>? = nil
    var jsonLength: Int = 0
}

@_cdecl("kvs_stream_new")
public func kvs_stream_new() -> OpaquePointer { retained(StreamBox()) }

@_cdecl("kvs_stream_free")
public func kvs_stream_free(_ s: OpaquePointer?) { release(s, as: StreamBox.self) }

@_cdecl("kvs_stream_feed")
public func kvs_stream_feed(_ s: OpaquePointer?, _ data: UnsafeRawPointer?, _ length: Int) -> Int32 {
    guarded {
        let box = borrowed(try require(s, "stream"), as: StreamBox.self)
        box.reader.append(try input(data, length))
        return 0
    }
}

@_cdecl("kvs_stream_next")
public func kvs_stream_next(_ s: OpaquePointer?, _ event: UnsafeMutableRawPointer?,
                            _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let box = borrowed(try require(s, "stream"), as: StreamBox.self)
        let event = try require(event, "event")
        box.json = []
        guard let next = try box.reader.next() else { return 0 }
        let (frame, payload) = next
        var e = CEvent(kind: Int32(frame.kind.rawValue), index: Int64(frame.index),
                       tokenStart: Int64(frame.tokens.lowerBound), tokenEnd: Int64(frame.tokens.upperBound),
                       payloadBytes: Int64(payload.count))
        switch try box.assembly.take(frame, payload: payload, decode: kv != nil) {
        case .header, .end:
            box.json = payload
        case .chunk(_, _, let level, let tensor):
            e.level = Int32(level)
            if let kv, let tensor { hand(TensorBox(tensor), to: kv) }
        case .recompute:
            break
        }
        // The array is not touched again until the next call, so its storage stays put.
        e.json = box.json.isEmpty ? nil : box.json.withUnsafeBufferPointer {
            UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)
        }
        e.jsonLength = box.json.count
        event.storeBytes(of: e, as: CEvent.self)
        return 1
    }
}

@_cdecl("kvs_stream_finish")
public func kvs_stream_finish(_ s: OpaquePointer?) -> Int32 {
    guarded {
        let box = borrowed(try require(s, "stream"), as: StreamBox.self)
        guard box.reader.buffered == 0 else {
            throw TransportError.badFrame("the stream was cut off mid-frame (\(box.reader.buffered) bytes left over)")
        }
        try box.assembly.finish()
        return 0
    }
}
