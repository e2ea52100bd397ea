import Foundation

/// Admin actions, one JSON line each (who, what, when), appended to `<state_dir>/audit.log`.
/// (The SQLite store of the intake issue will take these over.)
final class AuditLog: @unchecked Sendable {
    let path: String
    private let lock = NSLock()

    init(stateDirectory: String) {
        path = (stateDirectory as NSString).appendingPathComponent("audit.log")
    }

    func record(uid: UInt32, pid: Int32, action: String, detail: String = "") {
        let entry: [String: Any] = ["time": ISO8601DateFormatter().string(from: Date()), "uid": Int(uid), "pid": Int(pid),
                                    "action": action, "detail": detail]
        guard var line = try? JSONSerialization.data(withJSONObject: entry, options: [.sortedKeys]) else { return }
        line.append(0x0A)
        lock.withLock {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            guard fd >= 0 else { return }
            defer { close(fd) }
            _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
    }
}
