import ControlAPI
import Foundation
import Hummingbird
import Metrics
import NIOCore
import Prometheus

/// The request context: Hummingbird's core storage plus the connection, for SO_PEERCRED.
struct DaemonContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Builds the /v1 router. One file per area: this one (info, shared checks),
/// Router+Native.swift (/v1/generate, /v1/chat), Router+OpenAI.swift.
struct API: Sendable {
    let state: DaemonState
    let registry: PrometheusCollectorRegistry

    func router() -> Router<DaemonContext> {
        let router = Router(context: DaemonContext.self)
        // Outermost first: metrics see the final status of every reply, errors included.
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: JSONErrorMiddleware())
        router.get("/v1/health") { _, _ in try health() }
        router.get("/v1/status") { request, context in try await status(request, context) }
        router.get("/v1/models") { request, context in try await models(request, context) }
        router.get("/v1/metrics") { request, context in try await metrics(request, context) }
        router.post("/v1/generate") { request, context in try await nativeGenerate(request, context) }
        router.post("/v1/chat") { request, context in try await nativeChat(request, context) }
        router.post("/v1/chat/completions") { request, context in try await openAIChat(request, context) }
        router.post("/v1/completions") { request, context in try await openAICompletion(request, context) }
        router.post("/v1/admin/repair") { request, context in try await checkStore(request, context) }
        addIntakeRoutes(to: router)
        addModelRoutes(to: router)
        addSearchRoutes(to: router)
        if state.debugStall {
            router.post("/v1/debug/stall") { request, context in try await debugStall(request, context) }
        }
        return router
    }

    // MARK: - Shared checks

    /// The caller's credentials and access, or 403 naming the group the call needs.
    @discardableResult
    func authorize(_ context: DaemonContext, needs: AccessLevel) async throws -> (PeerCredentials, AccessLevel) {
        try await state.policy.authorize(context, needs: needs)
    }

    /// The scheduler once the model is loaded. A request that arrives while the model loads
    /// (the one that woke a socket-activated daemon, say) waits for it, up to a limit;
    /// after that, and while stopping, the answer is 503 with Retry-After.
    func readyScheduler(wait: Duration = .seconds(30)) async throws -> ComputeScheduler {
        let deadline = ContinuousClock.now + wait
        while state.phase == .loading && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(25))
        }
        switch state.phase {
        case .loading: throw APIError(.loading, "the model is still loading; retry shortly", retryAfter: 2)
        case .stopping: throw APIError(.stopping, "twinbraind is shutting down", retryAfter: 5)
        case .ready:
            guard let scheduler = state.scheduler else { throw APIError(.loading, "the model is still loading", retryAfter: 2) }
            return scheduler
        }
    }

    /// Reads and decodes a JSON body within the size limit.
    func decode<T: Decodable>(_ type: T.Type, from body: RequestBody) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await body.collect(upTo: state.configuration.maxBodyBytes)
        } catch {
            throw APIError(.bodyTooLarge, "the body is larger than the limit of \(state.configuration.maxBodyBytes) bytes")
        }
        guard buffer.readableBytes > 0 else { throw APIError(.badRequest, "the body is empty; send a JSON object") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView))
        } catch {
            throw APIError.decoding(error)
        }
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    // MARK: - Information

    func health() throws -> Response {
        switch state.phase {
        case .ready: return try Self.json(HealthResponse(status: "ok"))
        case .loading:
            var r = try Self.json(HealthResponse(status: "loading"), status: .serviceUnavailable)
            r.headers[.retryAfter] = "2"
            return r
        case .stopping: return try Self.json(HealthResponse(status: "stopping"), status: .serviceUnavailable)
        }
    }

    func status(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, level) = try await authorize(context, needs: .user)
        let snapshot = state.scheduler?.snapshot ?? .init(activity: state.phase == .loading ? "loading the model" : "idle")
        let counts = try state.store.documentCounts(), stored = try state.store.passageCounts(), memory = state.memory?.status
        let readerSite = state.readerSite?.status
        let body = StatusResponse(
            version: twinbrainVersion, state: state.phase.rawValue, activity: snapshot.activity,
            model: state.modelInfo, uptimeSeconds: Date().timeIntervalSince(state.started),
            queue: .init(running: snapshot.running, waiting: snapshot.waiting, capacity: state.configuration.queueDepth,
                         slots: state.configuration.slots, slotsInUse: snapshot.slotsInUse, meanBatch: snapshot.meanBatch,
                         tokensPerSecond: snapshot.tokensPerSecond, tokensPerSecondPerRequest: snapshot.tokensPerSecondPerSequence),
            residentMemoryMiB: residentMemoryMiB(), threads: effectiveThreads(state.configuration),
            caller: Caller(uid: peer.uid, pid: peer.pid, access: level.rawValue),
            intake: .init(driveEvents: state.intake.drives.eventSource, mediaRoots: state.configuration.mediaRoots,
                          drivesPresent: try state.store.sources().filter { $0.kind == "drive" && $0.state == .present }.count,
                          documents: Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) }),
                          jobsRunning: state.intake.jobsRunning),
            learning: .init(documentsLearned: counts[.learned] ?? 0, documentsWaiting: counts[.extracted] ?? 0,
                            passages: stored.passages, current: state.learning.activity,
                            memoryEntries: memory?.entries, memoryDocuments: memory?.documents,
                            readerDocuments: readerSite?.documents, readerExamples: readerSite?.examples,
                            paused: state.learning.pausedReason ?? state.intake.pausedReason, keyspaceFit: state.keyspaceFitProgress))
        return try Self.json(body)
    }

    func models(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        _ = try await readyScheduler()
        let created = Int(state.started.timeIntervalSince1970)
        return try Self.json(ModelList(data: [.init(id: state.modelID, created: created)]))
    }

    func metrics(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let snapshot = state.scheduler?.snapshot ?? .init()
        Gauge(label: "twinbrain_queue_waiting").record(snapshot.waiting)
        Gauge(label: "twinbrain_queue_running").record(snapshot.running)
        Gauge(label: "twinbrain_slots").record(state.configuration.slots)
        Gauge(label: "twinbrain_slots_in_use").record(snapshot.slotsInUse)
        Gauge(label: "twinbrain_decode_batch_mean").record(snapshot.meanBatch)
        Gauge(label: "twinbrain_generated_tokens_per_second").record(snapshot.tokensPerSecond)
        Gauge(label: "twinbrain_generated_tokens_per_second_per_request").record(snapshot.tokensPerSecondPerSequence)
        Gauge(label: "twinbrain_resident_memory_bytes").record(residentMemoryMiB() * 1024 * 1024)
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                        body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }

    /// `POST /v1/admin/repair` while the daemon serves: the store opened and checked ok at start,
    /// so this checks it again and says whether a restart into repair mode is needed.
    func checkStore(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let problem = try state.store.integrityProblem()
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "repair-check", detail: problem ?? "ok")
        guard let problem else {
            return try Self.json(RepairResponse(repaired: false, message: "the store checks ok: nothing to repair"))
        }
        return try Self.json(RepairResponse(
            repaired: false, message: "the store is damaged: restart twinbraind (systemctl restart twinbraind); it then waits "
                + "in repair mode for `twinbrain repair`", problem: problem))
    }

    /// Test hook (only with `--debug-stall`): blocks the compute loop so the watchdog stops.
    func debugStall(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let seconds = Double(request.uri.queryParameters.get("seconds") ?? "") ?? 60
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "debug-stall", detail: "\(seconds) s")
        try await readyScheduler().stall(seconds: seconds)
        return try Self.json(HealthResponse(status: "stalling for \(seconds) s"))
    }
}

/// Counts requests and their latency by route and status.
struct MetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now()
        let response = try await next(request, context)
        let route = context.endpointPath ?? "unknown"
        Counter(label: "twinbrain_requests_total", dimensions: [("route", route), ("status", String(response.status.code))]).increment()
        Timer(label: "twinbrain_request_duration_seconds", dimensions: [("route", route)])
            .recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds))
        return response
    }
}
