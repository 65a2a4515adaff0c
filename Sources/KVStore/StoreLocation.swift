import Foundation

/// Where the embedded default store lives: `$KVSTORE_HOME`, else `$XDG_DATA_HOME/kvstore`,
/// else `~/.local/share/kvstore`.
public enum StoreLocation {
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let home = environment["KVSTORE_HOME"], !home.isEmpty { return home }
        if let xdg = environment["XDG_DATA_HOME"], !xdg.isEmpty { return xdg + "/kvstore" }
        let home = environment["HOME"] ?? NSHomeDirectory()
        return home + "/.local/share/kvstore"
    }
}
