import ControlAPI
import Foundation
import Hummingbird
import NIOCore
import Store

/// Sources, documents, ingest jobs, forgetting, audit. Reading is for users; changing what the
/// box knows (ingest, forget) and reading the audit log are for admins.
extension API {
    func addIntakeRoutes(to router: Router<DaemonContext>) {
        router.get("/v1/sources") { _, context in try await sources(context) }
        router.delete("/v1/sources/:id") { _, context in try await forgetSource(context) }
        router.get("/v1/documents") { request, context in try await documents(request, context) }
        router.get("/v1/documents/:id") { request, context in try await document(request, context) }
        router.delete("/v1/documents/:id") { _, context in try await forgetDocument(context) }
        router.post("/v1/ingest") { request, context in try await ingest(request, context) }
        router.get("/v1/jobs") { _, context in try await jobs(context) }
        router.get("/v1/jobs/:id") { _, context in try await job(context) }
        router.get("/v1/jobs/:id/events") { _, context in try await jobEvents(context) }
        router.get("/v1/audit") { request, context in try await auditEntries(request, context) }
    }

    func id(_ context: DaemonContext) throws -> Int64 {
        guard let raw = context.parameters.get("id"), let id = Int64(raw), id > 0 else {
            throw APIError(.badRequest, "the id in the path must be a positive integer")
        }
        return id
    }

    func sources(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let live: [Document.State] = [.discovered, .extracted, .learned, .failed]
        let sources = try state.store.sources()
        let bodies = try sources.map { Self.body($0, documents: try state.store.documents(.init(source: $0.id, states: live), limit: 0).total) }
        return try Self.json(SourceList(sources: bodies))
    }

    func documents(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let q = request.uri.queryParameters
        var filter = Store.DocumentFilter()
        if let s = q.get("source") {
            guard let id = Int64(s) else { throw APIError(.badRequest, "source must be a source id (see GET /v1/sources)") }
            filter.source = id
        }
        if let s = q.get("state") {
            var states: [Document.State] = []
            for name in s.split(separator: ",") {
                guard let state = Document.State(rawValue: String(name)) else {
                    throw APIError(.badRequest, "unknown state '\(name)' (one of \(Document.State.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                states.append(state)
            }
            filter.states = states
        } else if q.get("all") == nil {
            // Current knowledge by default; ?all=1 includes superseded and forgotten versions.
            filter.states = [.discovered, .extracted, .learned, .failed]
        }
        filter.pathContains = q.get("path")
        let limit = Int(q.get("limit") ?? "100") ?? -1, offset = Int(q.get("offset") ?? "0") ?? -1
        guard (1...1000).contains(limit), offset >= 0 else { throw APIError(.badRequest, "limit must be 1…1000 and offset ≥ 0") }
        let (page, total) = try state.store.documents(filter, limit: limit, offset: offset)
        return try Self.json(DocumentList(documents: page.map { Self.body($0) }, total: total, limit: limit, offset: offset))
    }

    func document(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        guard let d = try state.store.document(id: try id(context)) else { throw APIError(.notFound, "no document \(try id(context))") }
        let text = request.uri.queryParameters.get("include") == "text" ? try d.textSha256.flatMap { try state.store.text(sha256: $0) } : nil
        return try Self.json(Self.body(d, text: text))
    }

    func ingest(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let body = try await decode(IngestRequest.self, from: request.body)
        guard body.path.hasPrefix("/") else { throw APIError(.badRequest, "path must be absolute (the daemon has its own working directory)") }
        var st = stat()
        guard lstat(body.path, &st) == 0 else {
            throw APIError(.badRequest, "cannot read \(body.path): \(String(cString: strerror(errno))) (as the daemon's user)")
        }
        let job: Job
        do { job = try state.intake.submit(path: body.path) } catch where Store.isDiskFull(error) {
            throw APIError(.unavailable, "the disk holding \(state.configuration.stateDirectory) is full: free some space, then ingest again")
        }
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "ingest", detail: "\(body.path) (job \(job.id))")
        return try Self.json(Self.body(job), status: .accepted)
    }

    func forgetDocument(_ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let id = try id(context)
        guard let d = try state.store.document(id: id) else { throw APIError(.notFound, "no document \(id)") }
        let forgotten = try state.store.forget(documents: [id])
        try await forgetMemory()
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "forget-document", detail: "\(id) \(d.path)")
        return try Self.json(ForgetResponse(forgotten: forgotten.map(\.id)))
    }

    func forgetSource(_ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let id = try id(context)
        guard let s = try state.store.source(id: id) else { throw APIError(.notFound, "no source \(id)") }
        let forgotten = try state.store.forget(source: id)
        try await forgetMemory()
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "forget-source", detail: "\(id) \(s.label ?? s.key)")
        return try Self.json(ForgetResponse(forgotten: forgotten.map(\.id)))
    }

    /// The token memory and the reader let go of what the store no longer has learned, and the
    /// kept prompts (whose keys and values may hold its excerpts) are dropped, before the forget
    /// is answered: a forgotten document is out of RAM and disk when the client hears so.
    func forgetMemory() async throws {
        let (memory, readerSite, scheduler) = (state.memory, state.readerSite, state.scheduler)
        let store = state.store
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            // runAndWait blocks: never on an event loop.
            DispatchQueue.global().async {
                continuation.resume(with: Result {
                    let learned = Set(try store.learnedDocumentIDs())
                    try memory?.keepOnly(learned)
                    try readerSite?.keepOnly(learned)
                    try scheduler?.forgetPrefixes()
                })
            }
        }
    }

    func jobs(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        return try Self.json(JobList(jobs: try state.store.jobs().map { Self.body($0) }))
    }

    func job(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let id = try id(context)
        guard let job = try state.store.job(id: id) else { throw APIError(.notFound, "no job \(id)") }
        return try Self.json(Self.body(job, skipped: try state.store.skips(job: id)))
    }

    /// NDJSON: the job as it changes (at most every 200 ms), ending with its final state.
    func jobEvents(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .user)
        let id = try id(context)
        guard try state.store.job(id: id) != nil else { throw APIError(.notFound, "no job \(id)") }
        let store = state.store
        let body = ResponseBody { writer in
            var last: JobBody?
            while true {
                guard let job = try store.job(id: id) else { break }
                let current = Self.body(job)
                if current != last {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    var line = try encoder.encode(current)
                    line.append(0x0A)
                    try await writer.write(ByteBuffer(bytes: line))
                    last = current
                }
                if current.isFinished { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: body)
    }

    func auditEntries(_ request: Request, _ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .admin)
        let limit = Int(request.uri.queryParameters.get("limit") ?? "100") ?? 100
        let entries = try state.store.auditEntries(limit: max(1, min(limit, 10_000)))
        return try Self.json(AuditList(entries: entries.map {
            AuditEntryBody(time: $0.time.timeIntervalSince1970, user: $0.user, action: $0.action, detail: $0.detail)
        }))
    }

    // MARK: Store records → wire bodies

    static func body(_ s: Source, documents: Int) -> SourceBody {
        SourceBody(id: s.id, kind: s.kind, label: s.label, uuid: s.uuid, fstype: s.fstype, device: s.device, mountPoint: s.mountPoint,
                   state: s.state.rawValue, firstSeen: s.firstSeen.timeIntervalSince1970, lastSeen: s.lastSeen.timeIntervalSince1970,
                   documents: documents)
    }

    static func body(_ d: Document, text: String? = nil) -> DocumentBody {
        DocumentBody(id: d.id, sourceId: d.sourceId, path: d.path, size: d.size, mtime: d.mtime, format: d.format, sha256: d.rawSha256,
                     textSha256: d.textSha256, version: d.version, state: d.state.rawValue, error: d.error,
                     created: d.created.timeIntervalSince1970, updated: d.updated.timeIntervalSince1970, text: text)
    }

    static func body(_ j: Job, skipped: [Skip]? = nil) -> JobBody {
        JobBody(id: j.id, kind: j.kind, target: j.target, sourceId: j.sourceId, state: j.state.rawValue, done: j.done, total: j.total,
                current: j.current, error: j.error, created: j.created.timeIntervalSince1970, updated: j.updated.timeIntervalSince1970,
                skipped: skipped?.map { SkipBody(path: $0.path, reason: $0.reason) })
    }
}
