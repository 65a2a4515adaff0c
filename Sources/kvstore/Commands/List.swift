import ArgumentParser
import Foundation
import KVStore

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored contexts.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let contexts = try storeOptions.open().contexts()
        output.emit(contexts) {
            var lines = ["ID                MODEL                     DTYPE  TOKENS  CHUNKS     STORED  NAME"]
            for c in contexts {
                lines.append("\(c.id.prefix(16))  \(c.model.padding(toLength: 24, withPad: " ", startingAt: 0))  \(c.dtype.padding(toLength: 5, withPad: " ", startingAt: 0))  \(String(c.tokens).leftPad(6))  \(String(c.chunks).leftPad(6))  \(Format.bytes(c.storedBytes).leftPad(9))  \(c.name)")
            }
            if contexts.isEmpty { lines.append("(no contexts)") }
            let uncalibrated = Set(contexts.filter(\.uncalibrated).map(\.model)).sorted()
            if !uncalibrated.isEmpty { lines.append("uncalibrated (lossy levels on the default codec profile): \(uncalibrated.joined(separator: ", "))") }
            return lines.joined(separator: "\n")
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
