import Foundation

/// Token id lists as queries carry them: a JSON array of integer ids in 0...Int32.max.
public enum TokenList {
    /// Parses a JSON array of ids, refusing more than `maxTokens`, non-integers and ids out of range.
    public static func parseJSON(_ bytes: [UInt8], maxTokens: Int = KVTensor.maxTokens) throws -> [Int32] {
        guard let array = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [Any] else {
            throw TensorError.badShape("token query is not a JSON array of integers")
        }
        guard array.count <= maxTokens else { throw TensorError.tooLarge("token query holds \(array.count) tokens, at most \(maxTokens)") }
        var out: [Int32] = []
        out.reserveCapacity(array.count)
        for (i, v) in array.enumerated() {
            guard let n = v as? NSNumber, !SafetensorsFile.CFGetTypeIDIfBool(n) else { throw outOfRange(i) }
            let d = n.doubleValue
            guard d == d.rounded(), d >= 0, d <= Double(Int32.max) else { throw outOfRange(i) }
            out.append(Int32(d))
        }
        return out
    }

    static func outOfRange(_ i: Int) -> TensorError { .badShape("token \(i) of the query is not an id in 0...\(Int32.max)") }
}
