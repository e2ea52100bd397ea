import Extraction
import Foundation
import Store
#if canImport(Glibc)
import Glibc
#endif

/// Scans a file or a directory tree, reads each new or changed file, has it extracted and
/// registers the result, as a job with persistent progress. Each file's registration is one
/// transaction, so a kill at any point leaves no half-registered document, and running the job
/// again (resuming) only reads what is not yet registered (size and mtime unchanged → skipped).
public final class Ingester: Sendable {
    public let store: Store
    public let extractor: ExtractorRunner
    public let limits: SafeScanner.Limits

    public init(store: Store, extractor: ExtractorRunner, limits: SafeScanner.Limits = .init()) {
        self.store = store
        self.extractor = extractor
        self.limits = limits
    }

    public struct Summary: Sendable, Equatable, Codable {
        public var added = 0
        public var updated = 0
        public var unchanged = 0
        public var failed = 0
        public var skipped = 0
        /// Documents that now need learning, and superseded versions to forget.
        public var toLearn: [Int64] = []
        public var toForget: [Int64] = []
    }

    public struct Cancelled: Error {}

    /// Ingests `path` (an absolute file or directory) under the job. `source` describes a drive;
    /// nil means an admin path (its own source). `isCancelled` is polled between files.
    /// `waitForSpace`: a write that failed on a full disk (SQLITE_FULL) is done again once it
    /// returns true; false (the job is stopping) ends the job as cancelled, to be resumed.
    public func run(job: Job, path: String, source info: SourceInfo? = nil,
                    progress: @Sendable (Int, Int, String) -> Void = { _, _, _ in },
                    isCancelled: @Sendable () -> Bool = { false },
                    waitForSpace: @Sendable (Error, String) -> Bool = { _, _ in false }) throws -> Summary {
        var summary = Summary()
        do {
            summary = try ingest(job: job, path: path, source: info, progress: progress, isCancelled: isCancelled, waitForSpace: waitForSpace)
            try store.updateJob(job.id, state: .done, current: "")
        } catch is Cancelled {
            try store.updateJob(job.id, state: .cancelled)
            throw Cancelled()
        } catch {
            try store.updateJob(job.id, state: .failed, error: "\(error)")
            throw error
        }
        return summary
    }

    func ingest(job: Job, path: String, source info: SourceInfo?, progress: @Sendable (Int, Int, String) -> Void,
                isCancelled: @Sendable () -> Bool, waitForSpace: @Sendable (Error, String) -> Bool) throws -> Summary {
        // A write on a full disk is done again once there is room (each is one transaction).
        func retrying<T>(_ path: String, _ write: () throws -> T) throws -> T {
            while true {
                do { return try write() } catch where Store.isDiskFull(error) {
                    guard waitForSpace(error, path) else { throw Cancelled() }
                }
            }
        }
        var st = stat()
        guard lstat(path, &st) == 0 else { throw IntakeError("\(path): \(String(cString: strerror(errno)))") }
        let isDirectory = st.st_mode & S_IFMT == S_IFDIR
        guard isDirectory || st.st_mode & S_IFMT == S_IFREG else { throw IntakeError("\(path) is neither a regular file nor a directory") }
        let url = URL(fileURLWithPath: path)
        let scanner = try SafeScanner(root: isDirectory ? path : url.deletingLastPathComponent().path, limits: limits)
        let only = isDirectory ? nil : url.lastPathComponent
        let source = try store.sourceSeen(info ?? .path(path))
        try store.clearSkips(job: job.id)
        try store.updateJob(job.id, state: .running, done: 0, source: source.id)

        var files: [SafeScanner.File] = []
        var summary = Summary()
        func skip(_ path: String, _ reason: String) throws {
            summary.skipped += 1
            try store.addSkip(job: job.id, path: path, reason: reason)
        }
        if let only {
            try scanner.scan(file: { if $0.path == only { files.append($0) } }, skipped: { if $0.path == only { try skip($0.path, $0.reason) } },
                             onlyTopLevel: true)
        } else {
            try scanner.scan(file: { files.append($0) }, skipped: { try skip($0.path, $0.reason) })
        }
        try store.updateJob(job.id, total: files.count)

        for (i, file) in files.enumerated() {
            if isCancelled() { throw Cancelled() }
            progress(i, files.count, file.path)
            if i % 16 == 0 { try retrying(file.path) { try store.updateJob(job.id, done: i, current: file.path) } }
            // No extension (README, notes): read as text if it is text.
            let name = file.path.split(separator: "/").last.map(String.init) ?? file.path
            let guessed = !name.dropFirst().contains(".")
            guard let format = guessed ? "text" : TextExtractor.format(forName: name) else {
                try retrying(file.path) { try skip(file.path, "not a document format the box reads") }
                continue
            }
            if try store.isUnchanged(source: source.id, path: file.path, size: file.size, mtime: file.mtime) {
                summary.unchanged += 1
                continue
            }
            let reading: Store.FileReading
            do {
                reading = try read(file, format: format, guessed: guessed, scanner: scanner, source: source.id)
            } catch {
                // Unreadable now (I/O error, drive pulled, swapped for a non-file): not registered.
                try retrying(file.path) { try skip(file.path, "\(error)") }
                continue
            }
            switch try retrying(file.path, { try store.register(reading) }) {
            case .added(let d):
                if d.state == .failed { summary.failed += 1 } else { summary.added += 1; summary.toLearn.append(d.id) }
            case .updated(let d, let old):
                if d.state == .failed { summary.failed += 1 } else { summary.updated += 1; summary.toLearn.append(d.id) }
                summary.toForget.append(old.id)
            case .unchanged: summary.unchanged += 1
            }
        }
        try store.updateJob(job.id, done: files.count)
        progress(files.count, files.count, "")
        return summary
    }

    /// Hashes the file as it streams, rewinds, and has the helper extract it.
    func read(_ file: SafeScanner.File, format: String, guessed: Bool, scanner: SafeScanner, source: Int64) throws -> Store.FileReading {
        let (fd, size, mtime) = try scanner.open(file)
        defer { close(fd) }
        guard size <= limits.maxFileBytes else { throw IntakeError("grew beyond \(limits.maxFileBytes) bytes during the scan") }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var total: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw IntakeError(errno == EIO ? "I/O error while reading (damaged medium or drive removed)" : "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += Int64(n)
            if total > limits.maxFileBytes { throw IntakeError("grew beyond \(limits.maxFileBytes) bytes while being read") }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw IntakeError("cannot rewind: \(String(cString: strerror(errno)))") }
        let outcome = extractor.extract(fd: fd, format: format, maxInput: limits.maxFileBytes)
        if case .failure(.unreadable) = outcome {
            throw IntakeError("I/O error while extracting (damaged medium or drive removed)")
        }
        if guessed, case .failure = outcome { throw IntakeError("no file-name extension and not text") }
        return Store.FileReading(source: source, path: file.path, size: total, mtime: mtime, format: format,
                                 rawSHA256: SHA256.hex(digest: hasher.finalize()),
                                 outcome: outcome.mapError { Store.ExtractionFailure($0.message) })
    }
}
