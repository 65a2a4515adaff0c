import KVCodec
import KVTensor

/// A llama.cpp sequence state file (`llama_state_seq_save_file`, what llama-server writes for
/// `POST /slots/{id}?action=save`): u32 magic 'ggsq', u32 version 3, u32 token count, the tokens
/// as i32, then the sequence state (`LlamaSequenceState`).
public struct LlamaSlotFile: Sendable, Equatable {
    public static let magic: UInt32 = 0x6767_7371   // 'ggsq' (LLAMA_STATE_SEQ_MAGIC)
    public static let version: UInt32 = 3           // LLAMA_STATE_SEQ_VERSION

    /// The tokens the engine saved with the state (llama-server: the slot's cached tokens).
    public var tokens: [Int32]
    public var state: LlamaSequenceState

    public init(tokens: [Int32], state: LlamaSequenceState) {
        self.tokens = tokens
        self.state = state
    }

    public init(decoding bytes: [UInt8], shape: KVShape) throws {
        self = try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            try LlamaSequenceState.need(r, 12, "slot file header")
            let magic: UInt32 = r.read()
            let version: UInt32 = r.read()
            guard magic == Self.magic else { throw LlamaStateError.malformed("slot file magic 0x\(String(magic, radix: 16)), expected 0x67677371 ('ggsq')") }
            guard version == Self.version else { throw LlamaStateError.unsupported("slot file version \(version), this reader knows \(Self.version)") }
            let n = Int(r.read() as UInt32)
            try LlamaSequenceState.need(r, n * 4, "\(n) tokens")
            var tokens = [Int32](repeating: 0, count: n)
            for i in 0..<n { tokens[i] = r.read() }
            let state = try LlamaSequenceState(decoding: UnsafeRawBufferPointer(rebasing: raw[r.offset...]), shape: shape)
            return LlamaSlotFile(tokens: tokens, state: state)
        }
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 12 + tokens.count * 4 + state.encodedSize)
        w.append(Self.magic)
        w.append(Self.version)
        w.append(UInt32(tokens.count))
        for t in tokens { w.append(t) }
        state.append(to: &w)
        return w.bytes
    }

    public static func read(_ path: String, shape: KVShape) throws -> LlamaSlotFile {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path) } catch let e as TensorError { throw LlamaStateError.io(e.detail) }
        return try LlamaSlotFile(decoding: bytes, shape: shape)
    }
}

extension LlamaSlotFile {
    /// The text tokens a slot file holds. llama-server (this commit) writes its packed
    /// `server_tokens` state in the token field: -1, version 1, u32 count, the tokens, u32 media
    /// count (then media chunks); `llama_state_seq_save_file` callers write plain tokens. Both are read;
    /// media (images, audio) are refused.
    public func textTokens() throws -> [Int32] {
        guard tokens.first == -1 else { return tokens }
        guard tokens.count >= 4, tokens[1] == 1 else {
            throw LlamaStateError.unsupported("llama-server token state version \(tokens.count > 1 ? tokens[1] : -1)")
        }
        let n = Int(UInt32(bitPattern: tokens[2]))
        guard n <= tokens.count - 4 else { throw LlamaStateError.truncated("token state claims \(n) tokens, \(tokens.count - 4) present") }
        guard tokens[3 + n] == 0, tokens.count == 4 + n else {
            throw LlamaStateError.unsupported("the slot holds media chunks (multimodal prompt)")
        }
        return Array(tokens[3..<(3 + n)])
    }
}
