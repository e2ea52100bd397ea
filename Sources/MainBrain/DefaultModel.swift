import Foundation

/// Where the default model (SmolLM2-135M-Instruct, Q4_1) is looked for.
public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

    /// `$TWINBRAIN_MODEL`, then `.cache/models/` of the checkout (found from the working
    /// directory or the executable), then the installed copy under /usr/share.
    public static func candidates() -> [String] {
        var list: [String] = []
        if let env = ProcessInfo.processInfo.environment["TWINBRAIN_MODEL"], !env.isEmpty { list.append(env) }
        var dirs = [FileManager.default.currentDirectoryPath]
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        dirs.append(exe.path)
        for start in dirs {
            var dir = URL(fileURLWithPath: start)
            for _ in 0..<6 {
                list.append(dir.appendingPathComponent(".cache/models/\(fileName)").path)
                dir.deleteLastPathComponent()
            }
        }
        list.append("/usr/share/twinbrain/models/\(fileName)")
        return list
    }

    /// The first candidate that exists, or nil (run `make model`).
    public static func path() -> String? {
        candidates().first { FileManager.default.fileExists(atPath: $0) }
    }
}
