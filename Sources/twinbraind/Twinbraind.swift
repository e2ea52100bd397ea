import ArgumentParser
import ControlAPI
import Foundation
import Hummingbird
import Kernels
import Logging
import MainBrain
import Metrics
import Prometheus
import ServiceLifecycle
import Store

func effectiveThreads(_ c: DaemonConfiguration) -> Int {
    c.threads > 0 ? c.threads : ProcessInfo.processInfo.activeProcessorCount
}

@main
struct Twinbraind: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "twinbraind",
        abstract: "The twinbrain daemon: runs the model and serves the API on a Unix socket.",
        discussion: """
            Reads \(DaemonConfiguration.systemPath) (TOML) unless --config names another file; every \
            key can be overridden by a flag. Under systemd it reports readiness (Type=notify), pings \
            the watchdog and logs to the journal; in a terminal it logs to stderr. \
            --dev keeps the socket, state and model under the current checkout (.cache/), for `make run`.
            """,
        version: twinbrainVersion)

    @Option(help: "Unix socket to serve on.") var socket: String?
    @Option(name: .customLong("state-dir"), help: "Directory for the daemon's state.") var stateDir: String?
    @Option(help: "GGUF model file.") var model: String?
    @Option(help: "Configuration file (TOML).") var config: String?
    @Option(help: "Compute threads (0 = all cores).") var threads: Int?
    @Option(help: "Matrix arithmetic: exact (the default: f32), mixed (prompts f32, decoded tokens quantised: about twice the decoding speed) or quantized (llama.cpp's).") var arithmetic: String?
    @Option(help: "Requests generated at once (1…16), each with a KV cache of the context.") var slots: Int?
    @Option(name: .customLong("queue-depth"), help: "Requests that may wait for a slot.") var queueDepth: Int?
    @Option(name: .customLong("prefix-cache-mib"), help: "Memory for finished prompts' keys and values, reused by prompts that begin the same way (0: off).")
    var prefixCacheMiB: Int?
    @Option(help: "Largest context per request, in tokens.") var context: Int?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
    @Option(name: .customLong("media-root"), help: "A directory whose mounted filesystems are drives to read (repeatable; replaces media_roots).")
    var mediaRoots: [String] = []
    @Flag(help: "Development mode: socket, state and model under ./.cache (no root, no systemd).") var dev = false
    @Flag(name: .customLong("check-config"), help: "Check the configuration and the model file, print what is wrong, and exit.")
    var checkConfig = false
    @Flag(name: .customLong("print-config"), help: "Print the effective configuration as TOML and exit.") var printConfig = false
    @Flag(name: .customLong("debug-stall"), help: .hidden) var debugStall = false
    /// Tests: the memory a model may use, instead of the machine's (a model too large to import).
    @Option(name: .customLong("debug-available-memory-mib"), help: .hidden) var debugAvailableMemoryMiB: Int?
    @Option(name: .customLong("calibration-dir"), help: "Public text to fit the token memory's keyspace on, for a model that came without a fit.")
    var calibrationDir: String?

    func resolveConfiguration() throws -> (DaemonConfiguration, unknownKeys: [String], file: String?) {
        var c = DaemonConfiguration()
        if dev {
            let root = FileManager.default.currentDirectoryPath
            c.socket = root + "/.cache/run/twinbraind.sock"
            c.stateDirectory = root + "/.cache/state"
            c.model = DefaultModel.path() ?? root + "/.cache/models/\(DefaultModel.fileName)"
            c.socketMode = "0600"
            c.calibrationDirectory = root + "/packaging/calibration"
        }
        var file = config
        if file == nil && !dev && FileManager.default.fileExists(atPath: DaemonConfiguration.systemPath) {
            file = DaemonConfiguration.systemPath
        }
        var unknown: [String] = []
        if let file { unknown = try c.load(file: file) }
        if let socket { c.socket = socket }
        if let stateDir { c.stateDirectory = stateDir }
        if let model { c.model = model }
        if let threads { c.threads = threads }
        if let arithmetic {
            guard let a = ProductArithmetic(rawValue: arithmetic) else {
                throw DaemonConfiguration.Problem(description: "--arithmetic is '\(arithmetic)', expected mixed, quantized or exact")
            }
            c.arithmetic = a
        }
        if let queueDepth { c.queueDepth = queueDepth }
        if let prefixCacheMiB { c.prefixCacheMiB = prefixCacheMiB }
        if let slots { c.slots = slots }
        if let context { c.contextTokens = context }
        if let logLevel { c.logLevel = logLevel }
        c.debugAvailableMemoryMiB = debugAvailableMemoryMiB
        if let calibrationDir { c.calibrationDirectory = calibrationDir }
        if !mediaRoots.isEmpty { c.mediaRoots = mediaRoots.map { URL(fileURLWithPath: $0).standardizedFileURL.path } }
        try c.validate()
        return (c, unknown, file)
    }

    func run() async throws {
        let (c, unknownKeys, file): (DaemonConfiguration, [String], String?)
        do { (c, unknownKeys, file) = try resolveConfiguration() } catch {
            throw ValidationError("\(error)")
        }
        if printConfig { print(c.toml); return }
        if checkConfig {
            var problems = unknownKeys.map { "unknown key '\($0)' in \(file ?? "")" }
            do {
                let gguf = try GGUFFile(path: c.model)
                let config = try ModelConfig(gguf: gguf)
                try MemoryRequirement(gguf: gguf, config: config, contextTokens: c.contextTokens,
                                      kvPrecision: .matching(c.arithmetic), batch: Model.defaultBatchSize)
                    .check(available: MachineMemory.available())
            } catch { problems.append("model \(c.model): \(error)") }
            if problems.isEmpty {
                print("configuration OK (\(file ?? "defaults")); model \(c.model)")
                return
            }
            problems.forEach { print($0) }
            throw ExitCode(1)
        }

        let level = Logger.Level(rawValue: c.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler: LogHandler = Systemd.stderrIsJournal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "twinbraind")
        for key in unknownKeys { logger.warning("unknown configuration key '\(key)' in \(file ?? "") is ignored") }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        try FileManager.default.createDirectory(atPath: c.stateDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: (c.socket as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        BLASThreads.set(effectiveThreads(c))

        let state: DaemonState
        do {
            state = try DaemonState(configuration: c, logger: logger, debugStall: debugStall)
        } catch let error as StoreError where error.damaged {
            logger.critical("\(error)")
            let repair = RepairMode(configuration: c, storePath: DaemonState.storePath(c), problem: error.description, logger: logger,
                                    restart: { RepairMode.restartDaemon() })
            let server = makeServer(c, router: repair.router(), logger: logger) {
                Systemd.ready(status: "the store is damaged: waiting for `twinbrain repair`")
            }
            try await ServiceGroup(configuration: .init(services: [.init(service: server), .init(service: IdleWatchdogService())],
                                                        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
            return
        }
        let readiness = Readiness(socket: c.socket)
        let api = API(state: state, registry: registry)
        let server = makeServer(c, router: api.router(), logger: logger) { readiness.serverRunning() }
        Systemd.status("loading \(c.model)")
        let services: [any Service] = [server, ModelService(state: state, readiness: readiness), WatchdogService(state: state),
                                       IntakeLifecycle(intake: state.intake)]
        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        logger.info("stopped")
    }

    /// The HTTP server on the activation socket systemd passed, or on the configured path.
    func makeServer(_ c: DaemonConfiguration, router: Router<DaemonContext>, logger: Logger,
                    onRunning: @escaping @Sendable () -> Void) -> any Service {
        if let fd = Systemd.listenFileDescriptors().first {
            // Socket activation: systemd owns the socket, its mode and group.
            return ActivatedServer(descriptor: fd, responder: router.buildResponder(), logger: logger, onRunning: onRunning)
        }
        let mode = mode_t(c.socketMode, radix: 8) ?? 0o660
        return Application(
            router: router,
            configuration: .init(address: .unixDomainSocket(path: c.socket), serverName: "twinbraind/\(twinbrainVersion)"),
            onServerRunning: { _ in
                chmod(c.socket, mode)
                if let gid = AccessPolicy.gid(c.userGroup) { chown(c.socket, uid_t.max, gid) }
                onRunning()
            },
            logger: logger)
    }
}

/// Starts the intake worker (resuming unfinished jobs) and stops it on shutdown; a job it
/// stops stays unfinished in the store and resumes at the next start.
struct IntakeLifecycle: Service {
    let intake: IntakeService

    func run() async throws {
        try intake.start()
        try? await gracefulShutdown()
        intake.stop()
    }
}

/// Sends READY=1 once the socket serves and the model is loaded, whichever comes last.
final class Readiness: @unchecked Sendable {
    private let lock = NSLock()
    private var serving = false
    private var loaded = false
    let socket: String

    init(socket: String) { self.socket = socket }

    func serverRunning() { update { $0.serving = true } }
    func modelLoaded() { update { $0.loaded = true } }

    private func update(_ change: (Readiness) -> Void) {
        let ready = lock.withLock { () -> Bool in
            let before = serving && loaded
            change(self)
            return !before && serving && loaded
        }
        if ready { Systemd.ready(status: "serving on \(socket)") }
    }
}

/// Loads the model off the event loops, then owns the compute scheduler until shutdown:
/// on SIGTERM it stops taking work and cancels what runs, so the server can drain quickly.
struct ModelService: Service {
    let state: DaemonState
    let readiness: Readiness

    func run() async throws {
        let logger = state.logger
        let start = ContinuousClock.now
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                Thread.detachNewThread {
                    do { try state.load(); continuation.resume() } catch { continuation.resume(throwing: error) }
                }
            }
        } catch {
            logger.critical("cannot load the model: \(error)", metadata: ["model": "\(state.servingPath)"])
            Systemd.status("failed: cannot load the model: \(error)")
            throw error
        }
        logger.info("model loaded", metadata: ["model": "\(state.servingPath)", "seconds": "\(ContinuousClock.now - start)"])
        readiness.modelLoaded()
        try? await gracefulShutdown()
        state.setStopping()
        state.learning.stop()
        Systemd.stopping()
        logger.info("stopping: cancelling running work")
        state.scheduler?.shutdown()
        await state.scheduler?.waitUntilIdle(timeout: .seconds(10))
    }
}

/// Pings the systemd watchdog while the compute loop shows life; a hung loop stops the pings
/// and systemd restarts the service.
struct WatchdogService: Service {
    let state: DaemonState

    func run() async throws {
        guard let interval = Systemd.watchdogInterval() else {
            try? await gracefulShutdown()
            return
        }
        let period = interval / 3
        while !Task.isShuttingDownGracefully {
            let alive = state.phase != .ready || (state.scheduler?.isAlive(within: interval / 2) ?? true)
            if alive {
                Systemd.watchdog()
            } else {
                state.logger.error("compute loop shows no life: withholding watchdog pings")
            }
            try? await Task.sleep(for: period)
        }
    }
}
