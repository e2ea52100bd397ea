import ControlAPI
import Foundation
import LearningBrain
import Logging
import MainBrain
import Metrics
import Store

/// What every request handler shares: configuration, the loaded model (once loaded), the
/// compute scheduler, the access policy, the store, the intake and the learning brain.
final class DaemonState: @unchecked Sendable {
    enum Phase: String { case loading, ready, stopping }

    let configuration: DaemonConfiguration
    let policy: AccessPolicy
    let started = Date()
    let logger: Logger
    let debugStall: Bool
    let audit: AuditLog
    let store: Store
    let intake: IntakeService
    let learning: LearningService
    let catalog: ModelCatalog
    private let lock = NSLock()
    /// The model file serving (or loading): the one chosen with `twinbrain models use`, kept in
    /// the store across restarts, else the configured one.
    private var _servingPath: String
    private var switching = false
    private var _phase = Phase.loading
    private var _scheduler: ComputeScheduler?
    private var _modelInfo: StatusResponse.ModelInfo?
    private var _template: ChatTemplate?
    private var _templateError: String?
    private var _memory: TokenMemoryService?
    private var _reader: Reader?
    private var _readerSite: ReaderSiteService?
    private var _keyspaceFit: KeyspaceFitService?
    /// Fits for imported models that do not serve (each on its own model instance).
    private var importFits: [KeyspaceFitService] = []

    /// Opens the store (`<state_dir>/twinbrain.sqlite`); a damaged one stops the start with
    /// an error that says what to do.
    init(configuration: DaemonConfiguration, logger: Logger, debugStall: Bool) throws {
        self.configuration = configuration
        policy = AccessPolicy(userGroup: configuration.userGroup, adminGroup: configuration.adminGroup)
        self.logger = logger
        self.debugStall = debugStall
        store = try Store(path: Self.storePath(configuration))
        audit = AuditLog(store: store, logger: logger)
        intake = IntakeService(store: store, stateDirectory: configuration.stateDirectory, mediaRoots: configuration.mediaRoots, logger: logger)
        learning = LearningService(store: store, stateDirectory: configuration.stateDirectory, logger: logger)
        intake.onJobFinished = { [learning] in learning.wake() }
        let catalog = ModelCatalog(stateDirectory: configuration.stateDirectory, configured: configuration.model,
                               contextTokens: configuration.contextTokens, slots: configuration.slots,
                               kvPrecision: .matching(configuration.arithmetic),
                               availableMemory: { configuration.debugAvailableMemoryMiB.map { $0 << 20 } ?? MachineMemory.available() },
                               logger: logger)
        self.catalog = catalog
        _servingPath = configuration.model
        if let chosen = try store.setting(Self.servingModelSetting) {
            if FileManager.default.fileExists(atPath: chosen) {
                _servingPath = chosen
            } else {
                logger.warning("the model chosen with `twinbrain models use` (\(chosen)) is gone: serving the configured \(configuration.model)")
            }
        }
        catalog.onImported = { [weak self] path in self?.fitImported(path) }
    }

    static let servingModelSetting = "serving_model"
    var servingPath: String { lock.withLock { _servingPath } }

    static func storePath(_ configuration: DaemonConfiguration) -> String {
        (configuration.stateDirectory as NSString).appendingPathComponent("twinbrain.sqlite")
    }

    var phase: Phase { lock.withLock { _phase } }
    var scheduler: ComputeScheduler? { lock.withLock { _scheduler } }
    var modelInfo: StatusResponse.ModelInfo? { lock.withLock { _modelInfo } }
    /// The token memory, once the model is loaded (nil without a fitted gate for the model).
    var memory: TokenMemoryService? { lock.withLock { _memory } }
    /// The learning brain's reader (nil: none fitted for the model's file, or turned off).
    var reader: Reader? { lock.withLock { _reader } }
    /// The reader's learning on this box's documents (nil: no reader, or `reader_adapts = false`).
    var readerSite: ReaderSiteService? { lock.withLock { _readerSite } }
    /// The token memory's keyspace being fitted for the serving model (nil: none running).
    var keyspaceFit: KeyspaceFitService? { lock.withLock { _keyspaceFit } }

    /// How far a running keyspace fit is (the serving model's, else an imported one's), for status.
    var keyspaceFitProgress: String? {
        let (serving, imported) = lock.withLock { (_keyspaceFit, importFits) }
        if let progress = serving?.progress { return progress }
        for fit in imported { if let progress = fit.progress { return "\(ModelCatalog.id(ofFile: fit.model.gguf.file.path)): \(progress)" } }
        return nil
    }

    /// The model's id in API replies: its file name without `.gguf`.
    var modelID: String { modelInfo?.id ?? "" }

    func setStopping() {
        let fits = lock.withLock {
            _phase = .stopping
            return [_keyspaceFit].compactMap { $0 } + importFits
        }
        fits.forEach { $0.stop() }
    }

    /// Loads the serving model and starts the compute thread and learning. Runs off the event
    /// loops: at start, and again for a model switch (`switchModel`).
    func load() throws {
        let path = servingPath
        let checkedDigest = try ModelIntegrity.check(path)
        // The keyspace and the reader are found by the file's digest: hashed at most once, and
        // only when one of them might exist.
        let digest = ModelDigest(path: path, known: checkedDigest)
        let gguf = try GGUFFile(path: path)
        let model = try Model(gguf: gguf, threads: configuration.threads > 0 ? configuration.threads : nil,
                              arithmetic: configuration.arithmetic, contextTokens: configuration.contextTokens,
                              sequences: configuration.slots)
        let tokenizer = try Tokenizer(gguf: gguf)
        var template: ChatTemplate?
        var templateError: String?
        do {
            template = try ChatTemplate(source: gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer,
                                        override: configuration.chatTemplate)
        } catch {
            templateError = "\(error)"
        }
        let scheduler = ComputeScheduler(generator: Generator(model: model, tokenizer: tokenizer), capacity: configuration.queueDepth,
                                         slots: configuration.slots, prefixCacheBytes: configuration.prefixCacheMiB << 20)
        // The memory is read back before the compute thread starts: nothing else touches it yet.
        let memory: TokenMemoryService?, relearn: [Int64]
        do {
            memory = configuration.tokenMemory
                ? try TokenMemoryService(model: model, scheduler: scheduler, stateDirectory: configuration.stateDirectory,
                                         modelSHA256: digest.value, logger: logger)
                : nil
            relearn = try memory?.load(learned: store.learnedDocumentIDs()) ?? []
        } catch {
            throw DaemonConfiguration.Problem(description: "cannot open the token memory under \(configuration.stateDirectory)/memory: "
                + "\(error). Make the state directory writable by twinbraind, or set token_memory = false to run without it.")
        }
        // Readers are fitted per model file: the file is hashed only when one was fitted for its shape.
        let reader = configuration.reader
            ? ReaderWeights.shipped(forShape: FittedKeyspace.shape(model.config), sha256: digest.value).map(Reader.init)
            : nil
        if configuration.reader, reader == nil { logger.info("no reader is fitted for \(path): replies are the main brain's own words") }
        var readerSite: ReaderSiteService?, readerRelearn: [Int64] = []
        if let reader, let template, configuration.readerAdapts {
            do {
                let site = try ReaderSiteService(site: ReaderSiteLearning(model: model, tokenizer: tokenizer, template: template, reader: reader),
                                                 scheduler: scheduler, stateDirectory: configuration.stateDirectory, logger: logger)
                readerRelearn = try site.load(learned: store.learnedDocumentIDs())
                readerSite = site
            } catch {
                throw DaemonConfiguration.Problem(description: "cannot open the reader's examples under \(configuration.stateDirectory)/reader: "
                    + "\(error). Make the state directory writable by twinbraind, or set reader_adapts = false to run without them.")
            }
        }
        scheduler.start()
        learning.start(tokenizer: tokenizer, memory: memory, relearn: relearn, readerSite: readerSite, readerRelearn: readerRelearn)
        let keyspaceFit = memory == nil ? keyspaceFitting(model: model, tokenizer: tokenizer, scheduler: scheduler, digest: digest) : nil
        if let known = digest.known { catalog.remember(digest: known, of: path) }
        let id = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let info = StatusResponse.ModelInfo(id: id, path: path, architecture: model.config.architecture.rawValue,
                                            layers: model.config.layers, contextLength: model.config.contextLength,
                                            vocabSize: model.config.vocabSize, kernels: model.kernels.path,
                                            threads: model.kernels.threads, arithmetic: configuration.arithmetic.rawValue,
                                            kvCache: model.kvPrecision.rawValue)
        lock.withLock {
            _scheduler = scheduler
            _modelInfo = info
            _template = template
            _templateError = templateError
            _memory = memory
            _reader = reader
            _readerSite = readerSite
            _keyspaceFit = keyspaceFit
            _phase = .ready
        }
        keyspaceFit?.start()
    }

    /// Fits the keyspace of a model just imported, beside the serving one, so its token memory is
    /// ready when it is chosen: a model of its own (when memory allows; else it is fitted when it
    /// serves) whose forwards yield to the serving model's requests between chunks.
    func fitImported(_ path: String) {
        guard configuration.tokenMemory, KeyspaceFitService.calibrationPresent(configuration.calibrationDirectory), path != servingPath,
              phase == .ready, let scheduler, let sha = try? ModelIntegrity.expectedDigest(for: path) else { return }
        guard !catalog.hasFit(modelAt: path, sha256: sha) else { return }
        do {
            let gguf = try GGUFFile(path: path)
            let model = try Model(gguf: gguf, threads: configuration.threads > 0 ? configuration.threads : nil, arithmetic: configuration.arithmetic,
                                  contextTokens: 1024)
            scheduler.lendChunking(to: model)
            let service = KeyspaceFitService(model: model, tokenizer: try Tokenizer(gguf: gguf), scheduler: scheduler,
                                             calibration: configuration.calibrationDirectory,
                                             target: (catalog.directory as NSString).appendingPathComponent(FittedKeyspace.fileName(modelSHA256: sha)),
                                             modelSHA256: sha, logger: logger) {}
            // Once it ends, its model instance goes.
            service.onEnd = { [weak self, weak service] in
                guard let self else { return }
                self.lock.withLock { self.importFits.removeAll { $0 === service } }
            }
            let started: Bool = lock.withLock {
                guard _phase == .ready, !switching else { return false }
                importFits.append(service)
                return true
            }
            if started { service.start() }
        } catch {
            logger.info("the keyspace of \(path) is fitted when it serves: \(error)")
        }
    }

    /// A fit of the token memory's keyspace for a model without one, when the calibration text is
    /// there and no fit of this daemon's for the file exists yet (one that exists but does not
    /// load is not fitted again and again). When it is done the model is loaded again, with it.
    private func keyspaceFitting(model: Model, tokenizer: Tokenizer, scheduler: ComputeScheduler, digest: ModelDigest) -> KeyspaceFitService? {
        guard configuration.tokenMemory, KeyspaceFitService.calibrationPresent(configuration.calibrationDirectory),
              let sha = digest.value() else { return nil }
        let target = (catalog.directory as NSString).appendingPathComponent(FittedKeyspace.fileName(modelSHA256: sha))
        guard !FileManager.default.fileExists(atPath: target) else { return nil }
        let path = servingPath
        return KeyspaceFitService(model: model, tokenizer: tokenizer, scheduler: scheduler, calibration: configuration.calibrationDirectory,
                                  target: target, modelSHA256: sha, logger: logger) { [weak self] in
            guard let self else { return }
            Task {
                do { try await self.switchModel(to: path, reason: "its token memory's keyspace is fitted") } catch {
                    self.logger.error("cannot load \(path) again with its fitted keyspace: \(error); it turns on at the next start")
                }
            }
        }
    }

    /// Serves the model at `path` from now on, without a restart: learning stops after its
    /// current piece, every queued and running request finishes on the old model while new ones
    /// wait (`API.readyScheduler`: up to 30 s, then 503 `loading` with Retry-After), then the new
    /// model loads with its own token memory and reader, and learning goes on with it. The choice
    /// is kept across restarts. A model that fails to load leaves the old one serving.
    func switchModel(to path: String, reason: String? = nil) async throws {
        let previous: String = try lock.withLock {
            guard _phase == .ready, !switching else { throw APIError(.loading, "a model is loading; retry shortly", retryAfter: 2) }
            switching = true
            _phase = .loading
            return _servingPath
        }
        defer { lock.withLock { switching = false } }
        if let reason {
            logger.info("loading \(path) again (\(reason)); requests in flight finish first")
        } else {
            logger.info("switching models: \(previous) → \(path); requests in flight finish first")
        }
        Systemd.status("loading \(path)")
        let fits = lock.withLock {
            defer { importFits = [] }
            return [_keyspaceFit].compactMap { $0 } + importFits
        }
        await Self.onThread {
            fits.forEach { $0.stopAndWait() }
            self.learning.stopAndWait()
        }
        if let old = scheduler {
            await old.waitUntilIdle(timeout: .seconds(600))
            old.shutdown()
            await old.waitUntilIdle(timeout: .seconds(10))
        }
        do {
            lock.withLock { _servingPath = path }
            try await Self.onThread { try self.load() }
            try store.setSetting(Self.servingModelSetting, path == configuration.model ? nil : path)
            Systemd.status("serving \(path) on \(configuration.socket)")
            logger.info("serving \(path)")
        } catch {
            logger.error("cannot switch to \(path): \(error); serving \(previous) again")
            lock.withLock { _servingPath = previous }
            do { try await Self.onThread { try self.load() } } catch let again {
                logger.critical("cannot load \(previous) again: \(again)")
                Systemd.status("failed: cannot load a model: \(again)")
            }
            throw error
        }
    }

    /// Runs blocking work on a thread of its own (never the event loops or the cooperative pool).
    static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread { continuation.resume(with: Result { try work() }) }
        }
    }

    static func onThread(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { work(); continuation.resume() }
        }
    }

    func chatTemplate() throws -> ChatTemplate {
        try lock.withLock {
            if let _template { return _template }
            throw APIError(.badRequest, _templateError ?? "the model has no chat template")
        }
    }

    /// Tokens of context one request may use: the configured limit, within the model's.
    var contextLimit: Int {
        min(configuration.contextTokens, modelInfo?.contextLength ?? configuration.contextTokens)
    }
}

/// A model file's SHA-256, computed on first use and kept.
final class ModelDigest: @unchecked Sendable {
    private let path: String
    private let lock = NSLock()
    private var computed: String??

    init(path: String, known: String?) {
        self.path = path
        computed = known.map { .some($0) }
    }

    /// The digest if it was computed (or known) already; never hashes.
    var known: String? { lock.withLock { computed ?? nil } }

    func value() -> String? {
        lock.withLock {
            if let computed { return computed }
            let digest = try? ModelIntegrity.digest(of: path)
            computed = .some(digest)
            return digest
        }
    }
}

/// Resident memory of this process (VmRSS), MiB.
func residentMemoryMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return (line.split(separator: " ").compactMap { Double($0) }.first ?? 0) / 1024
    }
    return 0
}
