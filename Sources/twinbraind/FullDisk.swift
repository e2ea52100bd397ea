import Foundation
import Logging

/// Waiting out a full disk under the state directory (the store, the memory, the reader's
/// examples): learning and intake both pause on it, say why in the status and the journal, and
/// resume by themselves once `resumeFreeBytes` are free, doing the failed write again (nothing
/// half-written was kept).
struct FullDisk: Sendable {
    let stateDirectory: String
    let logger: Logger
    /// Free space at which a pause ends.
    static let resumeFreeBytes: UInt64 = 16 << 20

    /// Free bytes for twinbraind on the state directory's filesystem (nil when it cannot be read).
    func freeBytes() -> UInt64? {
        var s = statvfs()
        guard statvfs(stateDirectory, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }

    /// Why `what` waits, for the status and the journal.
    func reason(_ what: String) -> String {
        let free = freeBytes().map { "\($0 >> 20) MiB free" } ?? "free space unknown"
        return "the disk holding \(stateDirectory) is full (\(free)); \(what) resumes by itself once \(Self.resumeFreeBytes >> 20) MiB are free"
    }

    /// Looks every `sleep` call (the caller's wait, about 5 s, that returns true when it must
    /// stop) until there is room: true then, false when told to stop.
    func wait(sleep: () -> Bool) -> Bool {
        while true {
            if sleep() { return false }
            if let bytes = freeBytes(), bytes >= Self.resumeFreeBytes {
                logger.notice("resuming: \(bytes >> 20) MiB free on the disk holding \(stateDirectory)")
                return true
            }
        }
    }
}
