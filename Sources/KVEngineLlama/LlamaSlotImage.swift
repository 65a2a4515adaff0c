import Dispatch
import KVCodec
import KVTensor

extension LlamaSlotFile {
    /// The bytes of the slot file holding `tokens` at positions 0..<n with the KV of `parts` in
    /// order (a prefix's chunks as decoded, their token counts adding up to n), for an engine laid
    /// out as `layout`. Byte for byte `LlamaSlotFile(context:layout:).encoded()` of the joined
    /// context, but built in one buffer straight from the parts, with no joined copy in between;
    /// the layers' K and V planes (and V's transposition) are filled on up to `threads` threads.
    public static func encoded(tokens: [Int32], parts: [KVTensor], layout: LlamaEngineLayout, threads: Int = 1) throws -> [UInt8] {
        guard let first = parts.first else { throw LlamaStateError.mismatch("no KV to write") }
        let shape = first.shape, dtype = first.dtype
        guard dtype == layout.dtype, GGMLType.of(dtype) != nil else {
            throw LlamaStateError.mismatch("context KV is \(dtype.rawValue), the engine's KV cache \(layout.dtype.rawValue)")
        }
        let type = layout.cacheType
        guard !(layout.isQuantized && (layout.vTransposed || shape.kvHeads != 1)) else {
            throw LlamaStateError.mismatch("\(GGMLType.name(type)) rows need V row-major and the storage shape, not \(shape)")
        }
        guard parts.allSatisfy({ $0.shape == shape && $0.dtype == dtype }) else {
            throw LlamaStateError.mismatch("the parts differ in shape or element type")
        }
        let n = parts.reduce(0) { $0 + $1.tokens }
        guard n == tokens.count, n > 0, n <= KVTensor.maxTokens else {
            throw LlamaStateError.mismatch("\(n) cells of KV for \(tokens.count) tokens")
        }
        let layers = shape.layers, row = shape.rowElements, element = dtype.byteWidth
        let rowBytes = row * element, planeBytes = n * rowBytes

        // Everything before the planes: file header, tokens, stream 0's cells, v_trans, n_layer.
        var head = ByteWriter(capacity: 32 + 16 * n)
        head.append(Self.magic)
        head.append(Self.version)
        head.append(UInt32(n))
        for t in tokens { head.append(t) }
        head.append(layout.streamCount)
        head.append(UInt32(n))
        for p in 0..<Int32(n) {
            head.append(p)
            head.append(UInt32(1))
            head.append(Int32(0))
        }
        head.append(UInt32(layout.vTransposed ? 1 : 0))
        head.append(UInt32(layers))
        let planesStart = head.bytes.count
        let planeStride = 12 + planeBytes
        let size = planesStart + 2 * layers * planeStride + 4 * (Int(layout.streamCount) - 1)
        let offsets = parts.reduce(into: [0]) { $0.append($0.last! + $1.tokens) }
        let vTransposed = layout.vTransposed

        return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            let base = UnsafeMutableRawPointer(buffer.baseAddress!)
            head.bytes.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            // Streams other than 0 hold no cells.
            for s in 1..<max(1, Int(layout.streamCount)) {
                base.storeBytes(of: UInt32(0), toByteOffset: planesStart + 2 * layers * planeStride + 4 * (s - 1), as: UInt32.self)
            }
            let address = Int(bitPattern: base)
            let workers = max(1, min(threads, 2 * layers))
            // Plane i: K of layer i for i < layers, else V of layer i - layers (the file's order).
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                let base = UnsafeMutableRawPointer(bitPattern: address)!
                for i in stride(from: w, to: 2 * layers, by: workers) {
                    let isV = i >= layers, l = isV ? i - layers : i
                    let plane = base + planesStart + i * planeStride
                    plane.storeBytes(of: type.littleEndian, as: Int32.self)
                    if isV && vTransposed {
                        plane.storeBytes(of: UInt32(element).littleEndian, toByteOffset: 4, as: UInt32.self)
                        plane.storeBytes(of: UInt32(row).littleEndian, toByteOffset: 8, as: UInt32.self)
                    } else {
                        plane.storeBytes(of: UInt64(rowBytes).littleEndian, toByteOffset: 4, as: UInt64.self)
                    }
                    let data = plane + 12
                    for (p, part) in parts.enumerated() {
                        let partPlane = part.tokens * rowBytes
                        part.bytes.withUnsafeBytes { src in
                            let from = src.baseAddress! + (2 * l + (isV ? 1 : 0)) * partPlane
                            if isV && vTransposed {
                                // File: element j of every cell, then j + 1; the part: every element of a cell, then the next cell.
                                transpose(from, into: data, cells: part.tokens, firstCell: offsets[p], totalCells: n, row: row, element: element)
                            } else {
                                (data + offsets[p] * rowBytes).copyMemory(from: from, byteCount: partPlane)
                            }
                        }
                    }
                }
            }
            count = size
        }
    }

    /// Cells `firstCell..<firstCell + cells` of a transposed V plane (`row` lines of `totalCells`
    /// values) from `cells` rows of `row` values.
    static func transpose(_ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer, cells: Int, firstCell: Int,
                          totalCells: Int, row: Int, element: Int) {
        func run<T>(_: T.Type) {
            for j in 0..<row {
                let line = dst + (j * totalCells + firstCell) * element
                for c in 0..<cells {
                    line.storeBytes(of: src.loadUnaligned(fromByteOffset: (c * row + j) * element, as: T.self),
                                    toByteOffset: c * element, as: T.self)
                }
            }
        }
        element == 4 ? run(UInt32.self) : run(UInt16.self)
    }
}
