import Foundation
import Logging
import Store

/// Admin actions (who, what, when) in the store's audit table; `GET /v1/audit` reads them.
final class AuditLog: Sendable {
    let store: Store
    let logger: Logger

    init(store: Store, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func record(uid: UInt32, pid: Int32, action: String, detail: String = "") {
        do {
            try store.audit(action: action, detail: detail.isEmpty ? "pid \(pid)" : "\(detail) (pid \(pid))", uid: uid, user: Self.userName(uid))
        } catch {
            // The action itself went through; losing its record must be visible in the journal.
            logger.error("could not record '\(action)' by uid \(uid) in the audit log: \(error)")
        }
    }

    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd(), result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return String(cString: entry.pw_name)
    }
}
