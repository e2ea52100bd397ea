import ControlAPI
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Store

/// The daemon when its store fails its check at start. Rather than exit (and be restarted into
/// the same failure by systemd), it serves one thing: `POST /v1/admin/repair` (`twinbrain
/// repair`), and tells every other request what is wrong and what to run. A repair salvages
/// the store (`StoreRepair`), records itself in the audit log and restarts the daemon, which then
/// loads the model and serves as usual.
struct RepairMode: Sendable {
    let configuration: DaemonConfiguration
    let storePath: String
    /// The store's error at start: what is wrong and what to run.
    let problem: String
    let logger: Logger
    /// Exits or re-executes the daemon once the reply has gone out.
    let restart: @Sendable () -> Void

    var policy: AccessPolicy { AccessPolicy(userGroup: configuration.userGroup, adminGroup: configuration.adminGroup) }

    func router() -> Router<DaemonContext> {
        let router = Router(context: DaemonContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.add(middleware: OnlyRepairMiddleware(message: problem))
        router.post("/v1/admin/repair") { _, context in try await repair(context) }
        return router
    }

    func repair(_ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await policy.authorize(context, needs: .admin)
        logger.notice("repairing the store at the request of uid \(peer.uid)", metadata: ["store": "\(storePath)"])
        let report: StoreRepair.Report
        do {
            report = try await withCheckedThrowingContinuation { continuation in
                Thread.detachNewThread { continuation.resume(with: Result { try StoreRepair.repair(path: storePath) }) }
            }
        } catch {
            logger.error("the repair failed: \(error)")
            throw APIError(.internalError, "the repair failed: \(error). The store is as it was; restore the latest backup of "
                + "\(configuration.stateDirectory)")
        }
        let summary = report.tables.map { "\($0.name) \($0.recovered)" + ($0.unreadable.isEmpty ? "" : " (unreadable \($0.unreadable.joined(separator: ", ")))") }
            .joined(separator: "; ")
        logger.notice("store repaired", metadata: ["recovered": "\(summary)", "documents_lost": "\(report.documentsLost.count)",
                                                   "damaged_copy": "\(report.damagedCopy)"])
        if let store = try? Store(path: storePath) {
            AuditLog(store: store, logger: logger).record(uid: peer.uid, pid: peer.pid, action: "repair",
                                                          detail: "\(summary); \(report.documentsLost.count) versions lost; damaged file kept as \(report.damagedCopy)")
        }
        let reply = RepairResponse(
            repaired: true,
            message: "the store was rebuilt from what could be read; twinbraind restarts and cuts the passages of "
                + "\(report.passagesToRebuild) learned versions again from their texts",
            problem: report.problem, damagedCopy: report.damagedCopy,
            tables: report.tables.map { .init(name: $0.name, recovered: $0.recovered, unreadable: $0.unreadable) },
            passagesToRebuild: report.passagesToRebuild,
            documentsLost: report.documentsLost.map { .init(id: $0.id, source: $0.source, path: $0.path, state: $0.state) },
            orphansDropped: report.orphansDropped, restarting: true)
        let restart = restart
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 0.5) // the reply goes out first
            restart()
        }
        return try API.json(reply)
    }

    /// Restarts into a repaired store: under systemd an exit that `Restart=on-failure` answers
    /// (the activation socket is handed over again); in a terminal the same binary, arguments
    /// and process.
    static func restartDaemon() {
        if ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil {
            Systemd.notify("STOPPING=1\nSTATUS=restarting after a repair")
            exit(75)
        }
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        exit(75) // exec failed: exit, a supervisor restarts
    }
}

/// Every request but the repair gets 503 `store-damaged` with what to do.
struct OnlyRepairMiddleware<Context: RequestContext>: RouterMiddleware {
    let message: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path == "/v1/admin/repair" else { throw APIError(.damaged, message) }
        return try await next(request, context)
    }
}

/// Pings the systemd watchdog while the daemon waits in repair mode.
struct IdleWatchdogService: Service {
    func run() async throws {
        guard let interval = Systemd.watchdogInterval() else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isShuttingDownGracefully {
            Systemd.watchdog()
            try? await Task.sleep(for: interval / 3)
        }
    }
}
