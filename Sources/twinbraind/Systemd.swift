import CSystemd
import Foundation
import Logging

/// The systemd notify protocol (sd_notify). Outside systemd (`NOTIFY_SOCKET` unset) every call
/// does nothing, so the daemon runs the same in a terminal.
enum Systemd {
    static func notify(_ state: String) {
        _ = sd_notify(0, state)
    }

    static func ready(status: String) { notify("READY=1\nSTATUS=\(status)") }
    static func status(_ text: String) { notify("STATUS=\(text)") }
    static func stopping() { notify("STOPPING=1\nSTATUS=stopping") }
    static func watchdog() { notify("WATCHDOG=1") }

    /// The watchdog period systemd expects pings within (`WatchdogSec=`), or nil when off.
    static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec))
    }

    /// Listening sockets passed by socket activation (`.socket` units), as file descriptors.
    static func listenFileDescriptors() -> [Int32] {
        let n = sd_listen_fds(1)
        guard n > 0 else { return [] }
        return (0..<n).map { SD_LISTEN_FDS_START + $0 }
    }

    /// Whether stderr goes to the journal (systemd sets `JOURNAL_STREAM` for services).
    static var stderrIsJournal: Bool {
        ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
    }
}

/// A swift-log handler writing structured entries to the journal (sd_journal_sendv):
/// MESSAGE, PRIORITY, SYSLOG_IDENTIFIER and every metadata key as an upper-case field.
struct JournalLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?, source: String,
             file: String, function: String, line: UInt) {
        var fields = [
            "MESSAGE=\(message)",
            "PRIORITY=\(Self.priority(level))",
            "SYSLOG_IDENTIFIER=twinbraind",
            "CODE_FILE=\(file)", "CODE_LINE=\(line)", "CODE_FUNC=\(function)",
        ]
        for (key, value) in metadata.merging(extra ?? [:], uniquingKeysWith: { $1 }) {
            let name = key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
            fields.append("TWINBRAIN_\(String(name))=\(value)")
        }
        let strings = fields.map { strdup($0)! }
        defer { strings.forEach { free($0) } }
        var vectors = strings.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0)) }
        _ = sd_journal_sendv(&vectors, Int32(vectors.count))
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }
}
