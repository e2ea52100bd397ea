import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs `twinbrain-extract` on one open file: the descriptor becomes the helper's stdin, the
/// helper's stdout is read up to a cap, and a helper that outlives its wall-clock budget is
/// killed. Whatever the file does to the helper, the caller gets text or a per-file error.
public struct ExtractorRunner: Sendable {
    public struct Limits: Sendable {
        public var timeout: Double = 60
        public var maxOutputBytes = 64 << 20
        public var memoryBytes = 2 << 30
        public var cpuSeconds = 60
        public init() {}
    }

    public let helper: String
    public let limits: Limits

    public init(helper: String? = nil, limits: Limits = Limits()) throws {
        guard let path = helper ?? Self.locateHelper() else {
            throw IntakeError("twinbrain-extract was not found beside \(CommandLine.arguments[0]) or in /usr/lib/twinbrain; "
                + "set TWINBRAIN_EXTRACT to its path")
        }
        self.helper = path
        self.limits = limits
    }

    /// $TWINBRAIN_EXTRACT, then beside the running executable (a build tree, /usr/bin), then the package's libexec.
    static func locateHelper() -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["TWINBRAIN_EXTRACT"] { candidates.append(env) }
        if let exe = Bundle.main.executableURL?.resolvingSymlinksInPath().deletingLastPathComponent() {
            candidates.append(exe.appendingPathComponent("twinbrain-extract").path)
            candidates.append(exe.deletingLastPathComponent().appendingPathComponent("twinbrain-extract").path)
        }
        candidates.append("/usr/lib/twinbrain/twinbrain-extract")
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    public enum Failure: Error, Equatable, Sendable {
        case unsupported(String), malformed(String), tooLarge(String), unreadable(String), crashed(String), timedOut(Double)

        public var message: String {
            switch self {
            case .unsupported(let m), .malformed(let m), .tooLarge(let m), .unreadable(let m), .crashed(let m): return m
            case .timedOut(let s): return "extraction took longer than \(Int(s)) s and was stopped"
            }
        }
    }

    public func extract(fd: Int32, format: String, maxInput: Int64) -> Result<String, Failure> {
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(helper, ["--format", format, "--max-input", String(maxInput), "--memory",
                                                    String(limits.memoryBytes), "--cpu", String(limits.cpuSeconds)],
                                           environment: ["PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"], stdin: fd)
        } catch {
            return .failure(.crashed("\(error)"))
        }

        let deadline = Date().addingTimeInterval(limits.timeout)
        var output = Data(), message = Data(), overflow = false
        let outFD = child.stdout, errFD = child.stderr
        var open: Set<Int32> = [outFD, errFD]
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while !open.isEmpty {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { break }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1) * 1000))
            if n < 0 && errno != EINTR { break }
            for f in fds where f.revents != 0 {
                let count = read(f.fd, &buffer, buffer.count)
                if count <= 0 { open.remove(f.fd); continue }
                if f.fd == outFD {
                    if output.count + count > limits.maxOutputBytes { overflow = true; open.removeAll(); break }
                    output.append(contentsOf: buffer[0..<count])
                } else if message.count < 4096 {
                    message.append(contentsOf: buffer[0..<min(count, 4096 - message.count)])
                }
            }
        }
        if overflow { child.kill() }
        // A helper still running at the deadline (pipes open or not) is killed.
        let (termination, killed) = child.wait(killingAt: deadline)
        let timedOut = killed || (!open.isEmpty && !overflow)
        if overflow { return .failure(.tooLarge("more than \(limits.maxOutputBytes) bytes of text")) }
        if timedOut { return .failure(.timedOut(limits.timeout)) }
        let why = String(decoding: message, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let status: Int32
        switch termination {
        case let .signalled(signal):
            let hint = signal == SIGXCPU ? " (CPU time limit)" : signal == SIGKILL ? " (killed)" : ""
            return .failure(.crashed("the extractor died on this file with signal \(signal)\(hint)"))
        case let .exited(code): status = code
        }
        switch status {
        case 0:
            guard let text = String(data: output, encoding: .utf8) else { return .failure(.malformed("the extractor returned invalid UTF-8")) }
            return .success(text)
        case 2: return .failure(.unsupported(why))
        case 3: return .failure(.malformed(why))
        case 4: return .failure(.tooLarge(why))
        case 5: return .failure(.unreadable(why))
        default: return .failure(.crashed("the extractor failed (status \(status))\(why.isEmpty ? "" : ": " + why)"))
        }
    }
}
