import ControlAPI
import Foundation
import LearningBrain
import Logging
import MainBrain
import Store

/// The model files the box can serve: those imported into `<state_dir>/models` and the one the
/// configuration names. Importing copies a GGUF file from a drive or any path (resumable: an
/// interrupted copy goes on from where it stopped when the same file is imported again), checks
/// it as the engine would load it and against the machine's memory, records its SHA-256 beside
/// it (`<file>.sha256`, which the daemon checks before loading it) and puts it in place.
final class ModelCatalog: @unchecked Sendable {
    let directory: String
    let configured: String
    let logger: Logger
    /// What a model must fit in beside its caches (`MemoryRequirement`): the daemon's settings.
    let contextTokens: Int
    let slots: Int
    let kvPrecision: KVPrecision
    /// Memory the machine can give a model (MemAvailable, or a test's figure).
    let availableMemory: () -> Int?
    /// Told the path of each model imported (the daemon fits its keyspace).
    var onImported: (String) -> Void = { _ in }
    private let lock = NSLock()
    /// Digests the daemon computed of files without a recorded one (the serving model's).
    private var computedDigests: [String: String] = [:]
    private var imports: [Int: ModelImportStatus] = [:]
    private var importing: Set<String> = []
    private var lastImport = 0

    init(stateDirectory: String, configured: String, contextTokens: Int, slots: Int, kvPrecision: KVPrecision,
         availableMemory: @escaping () -> Int?, logger: Logger) {
        directory = (stateDirectory as NSString).appendingPathComponent("models")
        self.configured = configured
        self.contextTokens = contextTokens
        self.slots = slots
        self.kvPrecision = kvPrecision
        self.availableMemory = availableMemory
        self.logger = logger
    }

    static func id(ofFile path: String) -> String { URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }

    /// Every model file, the configured one first, then the imported ones by id.
    func paths() -> [String] {
        let imported = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".gguf") }.sorted().map { (directory as NSString).appendingPathComponent($0) }
        return [configured].filter { !imported.contains($0) } + imported
    }

    func path(ofModel id: String) -> String? { paths().first { Self.id(ofFile: $0) == id } }

    func isImported(_ path: String) -> Bool { (path as NSString).deletingLastPathComponent == directory }

    func list(serving: String) -> [InstalledModel] {
        paths().map { describe($0, serving: serving) }
    }

    /// A model file as the list shows it; a file the engine would not load says why.
    func describe(_ path: String, serving: String) -> InstalledModel {
        let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? 0
        var model = InstalledModel(id: Self.id(ofFile: path), path: path, fileBytes: bytes, serving: path == serving,
                                   imported: isImported(path))
        model.sha256 = (try? ModelIntegrity.expectedDigest(for: path)) ?? lock.withLock { computedDigests[path] }
        if let sha = model.sha256 { model.keyspaceFitted = hasFit(modelAt: path, sha256: sha) }
        do {
            let summary = try ModelSummary(gguf: GGUFFile(path: path))
            model.architecture = summary.architecture
            model.name = summary.name
            model.parameters = summary.parameters
            model.quantization = summary.quantization
            model.contextLength = summary.contextLength
        } catch {
            model.problem = "\(error)"
        }
        return model
    }

    /// Whether a keyspace fit for this file exists where the token memory looks for one: beside
    /// it, among the imported models, or where the package installs them.
    func hasFit(modelAt path: String, sha256: String) -> Bool {
        [(path as NSString).deletingLastPathComponent, directory, FittedKeyspace.installedDirectory].contains {
            FileManager.default.fileExists(atPath: ($0 as NSString).appendingPathComponent(FittedKeyspace.fileName(modelSHA256: sha256)))
        }
    }

    func remember(digest: String, of path: String) { lock.withLock { computedDigests[path] = digest } }

    /// Checks a model file as the engine would load it and against the machine's memory with
    /// the daemon's context and slots; throws what stops it, in words an administrator can act on.
    func check(_ path: String) throws -> ModelSummary {
        let gguf = try GGUFFile(path: path)
        let summary = try ModelSummary(gguf: gguf)
        try MemoryRequirement(gguf: gguf, config: try ModelConfig(gguf: gguf), contextTokens: contextTokens, kvPrecision: kvPrecision,
                              batch: Model.defaultBatchSize, sequences: slots).check(available: availableMemory())
        return summary
    }

    // MARK: - Import

    struct Refusal: Error, CustomStringConvertible {
        let description: String
        var conflict = false
    }

    /// Starts importing the file at `source` (checked first: a file that is not a model the
    /// engine serves, or that cannot fit in memory, is refused before anything is copied).
    func startImport(source: String) throws -> ModelImportStatus {
        var st = stat()
        guard stat(source, &st) == 0 else {
            throw Refusal(description: "cannot read \(source): \(String(cString: strerror(errno))) (as the daemon's user)")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw Refusal(description: "\(source) is not a regular file") }
        let name = URL(fileURLWithPath: source).lastPathComponent
        let id = Self.id(ofFile: name.hasSuffix(".gguf") ? name : name + ".gguf")
        let target = (directory as NSString).appendingPathComponent(id + ".gguf")
        do {
            _ = try check(source)
        } catch {
            throw Refusal(description: "\(source) cannot be served: \(error)")
        }
        if let existing = path(ofModel: id) {
            throw Refusal(description: "a model named \(id) is already installed (\(existing)); remove it first, or rename the file", conflict: true)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let status: ModelImportStatus = try lock.withLock {
            guard importing.insert(id).inserted else { throw Refusal(description: "\(id) is being imported already", conflict: true) }
            lastImport += 1
            let s = ModelImportStatus(id: lastImport, source: source, model: id, state: .copying, copiedBytes: 0, totalBytes: Int(st.st_size))
            imports[s.id] = s
            return s
        }
        let origin = PartOrigin(source: source, size: Int(st.st_size), mtime: Int(st.st_mtim.tv_sec))
        let t = Thread { [self] in run(status, target: target, origin: origin) }
        t.name = "twinbrain-import"
        t.start()
        return status
    }

    func importStatus(_ id: Int) -> ModelImportStatus? { lock.withLock { imports[id] } }

    private func update(_ id: Int, _ change: (inout ModelImportStatus) -> Void) {
        lock.withLock { change(&imports[id]!) }
    }

    /// What an interrupted copy recorded of its source, to resume only from the same file.
    private struct PartOrigin: Codable, Equatable {
        let source: String
        let size: Int
        let mtime: Int
    }

    private func run(_ status: ModelImportStatus, target: String, origin: PartOrigin) {
        let part = target + ".part", originPath = part + ".source"
        defer { _ = lock.withLock { importing.remove(status.model) } }
        do {
            // Resume only a copy of this very file (same path, size and modification time).
            var resumeAt = 0
            if let data = FileManager.default.contents(atPath: originPath), (try? JSONDecoder().decode(PartOrigin.self, from: data)) == origin,
               let size = (try? FileManager.default.attributesOfItem(atPath: part))?[.size] as? NSNumber, size.intValue <= origin.size {
                resumeAt = size.intValue
            } else {
                try? FileManager.default.removeItem(atPath: part)
                try JSONEncoder().encode(origin).write(to: URL(fileURLWithPath: originPath), options: .atomic)
            }
            update(status.id) { $0.resumedFrom = resumeAt; $0.copiedBytes = resumeAt }
            if resumeAt > 0 { logger.info("import of \(status.source): resuming the copy at \(resumeAt) of \(origin.size) bytes") }
            try copy(from: status.source, to: part, at: resumeAt, total: origin.size) { copied in
                update(status.id) { $0.copiedBytes = copied }
            }
            update(status.id) { $0.state = .verifying }
            let summary: ModelSummary
            do { summary = try check(part) } catch {
                try? FileManager.default.removeItem(atPath: part)
                try? FileManager.default.removeItem(atPath: originPath)
                throw Refusal(description: "the copy of \(status.source) cannot be served (the file changed while it was read?): \(error)")
            }
            let digest = try SHA256.hex(ofFileAt: part)
            try "\(digest)  \(URL(fileURLWithPath: target).lastPathComponent)\n"
                .write(toFile: target + ".sha256", atomically: true, encoding: .utf8)
            guard rename(part, target) == 0 else {
                throw Refusal(description: "cannot put \(target) in place: \(String(cString: strerror(errno)))")
            }
            try? FileManager.default.removeItem(atPath: originPath)
            // A keyspace fitted for this very file, brought beside it, comes along (the token memory runs with it).
            let fit = FittedKeyspace.fileName(modelSHA256: digest)
            let broughtFit = ((status.source as NSString).deletingLastPathComponent as NSString).appendingPathComponent(fit)
            let keptFit = (directory as NSString).appendingPathComponent(fit)
            if FileManager.default.fileExists(atPath: broughtFit) && !FileManager.default.fileExists(atPath: keptFit) {
                try FileManager.default.copyItem(atPath: broughtFit, toPath: keptFit)
            }
            logger.info("imported \(status.source) as \(status.model): \(summary.architecture), \(summary.parameters) parameters, \(summary.quantization), SHA-256 \(digest)")
            let installed = describe(target, serving: "")
            update(status.id) { $0.state = .done; $0.installed = installed }
            onImported(target)
        } catch {
            let reason = Store.isDiskFull(error) || (error as? POSIXError)?.code == .ENOSPC
                ? "the disk holding \(directory) is full: free some space, then import again (the copy resumes)" : "\(error)"
            logger.error("import of \(status.source) failed: \(reason)")
            update(status.id) { $0.state = .failed; $0.error = reason }
        }
    }

    /// Copies `source` into `part` from byte `offset` on, 8 MiB at a time, then syncs it.
    private func copy(from source: String, to part: String, at offset: Int, total: Int, progress: (Int) -> Void) throws {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw Refusal(description: "cannot read \(source): \(String(cString: strerror(errno)))") }
        defer { close(input) }
        let output = open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0o640)
        guard output >= 0 else { throw Refusal(description: "cannot write \(part): \(String(cString: strerror(errno)))") }
        defer { close(output) }
        guard ftruncate(output, off_t(offset)) == 0, lseek(input, off_t(offset), SEEK_SET) == off_t(offset),
              lseek(output, off_t(offset), SEEK_SET) == off_t(offset) else {
            throw Refusal(description: "cannot resume the copy of \(source): \(String(cString: strerror(errno)))")
        }
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var copied = offset
        while copied < total {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw Refusal(description: n == 0 ? "\(source) ended at \(copied) of \(total) bytes (was the drive pulled?); import it again to resume"
                                                  : "cannot read \(source) at \(copied): \(String(cString: strerror(errno))); import it again to resume")
            }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    if errno == ENOSPC || errno == EDQUOT { throw POSIXError(.ENOSPC) }
                    throw Refusal(description: "cannot write \(part): \(String(cString: strerror(errno)))")
                }
                written += w
            }
            copied += n
            progress(copied)
        }
        guard fsync(output) == 0 else { throw Refusal(description: "cannot write \(part): \(String(cString: strerror(errno)))") }
    }

    // MARK: - Remove

    /// Deletes an imported model's file, its recorded digest and its fitted keyspace (when no
    /// other file has the same digest). Never the serving one, nor one the configuration names.
    func remove(_ id: String, serving: String) throws -> String {
        guard let path = path(ofModel: id) else { throw Refusal(description: "no model \(id); `twinbrain models list` shows them") }
        guard path != serving else {
            throw Refusal(description: "\(id) is serving; `twinbrain models use` another model first", conflict: true)
        }
        guard isImported(path) else {
            throw Refusal(description: "\(id) is the configured model (\(path)), not an imported one; set `model` in twinbraind.conf to another file instead",
                          conflict: true)
        }
        let digest = try? ModelIntegrity.expectedDigest(for: path)
        try FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".sha256")
        if let digest, !paths().contains(where: { (try? ModelIntegrity.expectedDigest(for: $0)) == digest }) {
            try? FileManager.default.removeItem(atPath: (directory as NSString).appendingPathComponent(FittedKeyspace.fileName(modelSHA256: digest)))
        }
        return path
    }
}
