import ControlAPI
import Foundation
import Hummingbird
import LearningBrain
import MainBrain
import Metrics
import NIOCore

/// What the compute thread reports about one generation.
enum GenerationEvent: Sendable {
    case text(String)
    case finished(GenerationResult, queueSeconds: Double)
}

/// A generation handed to the compute thread: its events, and the job to cancel.
struct GenerationRun: Sendable {
    let events: AsyncThrowingStream<GenerationEvent, Error>
    let job: ComputeScheduler.Job
}

/// Lets a handler cancel a job that may not exist yet (the client can go before it is queued).
final class CancelBox: @unchecked Sendable {
    private let lock = NSLock()
    private var job: ComputeScheduler.Job?
    private var cancelled = false
    func attach(_ job: ComputeScheduler.Job) {
        lock.withLock { self.job = job; if cancelled { job.cancel() } }
    }
    func cancel() { lock.withLock { cancelled = true; job?.cancel() } }
}

extension API {
    /// A validated engine request from the prompt tokens and the API options. Without a
    /// temperature in the request, an answer drawn from recalled passages takes the most likely
    /// words (temperature 0): sampled, the default small model wanders from the excerpts and
    /// invents; greedy, it quotes them. Other answers sample at the engine's default.
    func makeRequest(prompt: [Int32], options o: GenerationOptions, knowledge: KnowledgeUse?) throws -> GenerationRequest {
        let c = state.configuration
        let limit = state.contextLimit
        guard !prompt.isEmpty else { throw APIError(.badRequest, "the prompt is empty") }
        guard prompt.count < limit else {
            throw APIError(.contextExceeded, "the prompt is \(prompt.count) tokens; the context holds \(limit): shorten it")
        }
        if let m = o.maxTokens, !(1...c.maxTokensLimit).contains(m) {
            throw APIError(.badRequest, "max_tokens must be 1…\(c.maxTokensLimit), got \(m)")
        }
        if let t = o.temperature, !(t >= 0 && t <= 10) { throw APIError(.badRequest, "temperature must be 0…10, got \(t)") }
        if let p = o.topP, !(p > 0 && p <= 1) { throw APIError(.badRequest, "top_p must be in (0, 1], got \(p)") }
        if let p = o.minP, !(p >= 0 && p <= 1) { throw APIError(.badRequest, "min_p must be 0…1, got \(p)") }
        if let k = o.topK, k < 0 { throw APIError(.badRequest, "top_k must be 0 (off) or more, got \(k)") }
        if let r = o.repeatPenalty, !(r > 0 && r <= 10) { throw APIError(.badRequest, "repeat_penalty must be in (0, 10], got \(r)") }
        if let stop = o.stop, stop.count > 16 || stop.contains(where: { $0.isEmpty || $0.utf8.count > 256 }) {
            throw APIError(.badRequest, "stop takes at most 16 non-empty strings of at most 256 bytes")
        }
        var request = GenerationRequest(prompt: prompt)
        request.maxTokens = min(o.maxTokens ?? c.defaultMaxTokens, limit - prompt.count)
        var s = SamplingParameters()
        if let t = o.temperature { s.temperature = t } else if knowledge?.recall.passages.isEmpty == false { s.temperature = 0 }
        if let k = o.topK { s.topK = k }
        if let p = o.topP { s.topP = p }
        if let p = o.minP { s.minP = p }
        if let r = o.repeatPenalty { s.repetitionPenalty = r }
        s.seed = o.seed
        request.sampling = s
        request.stopStrings = o.stop ?? []
        return request
    }

    /// Queues a generation; 429 with Retry-After when the queue is full. `owner`: the caller's
    /// uid (slots are shared fairly between callers).
    /// With `knowledge`, the token memory joins every step (on the compute thread, the memory's only user).
    func start(_ request: GenerationRequest, scheduler: ComputeScheduler, knowledge: KnowledgeUse?, owner: UInt32?,
               cancel: CancelBox? = nil) throws -> GenerationRun {
        let (events, continuation) = AsyncThrowingStream<GenerationEvent, Error>.makeStream()
        let template = try? state.chatTemplate()
        let job = ComputeScheduler.Job(owner: owner, generation: .init(begin: { generator in
            let predictor = knowledge?.predictor(model: generator.model, tokenizer: generator.tokenizer, template: template)
            return generator.session(request, predictor: predictor) { continuation.yield(.text($0)) }
        }, end: { outcome, queued in
            switch outcome {
            case let .success(result):
                Counter(label: "twinbrain_prompt_tokens_total").increment(by: result.promptTokens)
                Counter(label: "twinbrain_prompt_tokens_reused_total").increment(by: result.reusedPromptTokens)
                Counter(label: "twinbrain_generated_tokens_total").increment(by: result.ids.count)
                Timer(label: "twinbrain_prefill_seconds").recordSeconds(result.prefillSeconds)
                continuation.yield(.finished(result, queueSeconds: queued))
                continuation.finish()
            case let .failure(error):
                continuation.finish(throwing: error)
            }
        }))
        continuation.onTermination = { _ in job.cancel() }
        cancel?.attach(job)
        do {
            try scheduler.submit(job)
        } catch ComputeScheduler.SubmitError.overloaded(let waiting) {
            Counter(label: "twinbrain_rejected_total").increment()
            throw APIError(.overloaded, "twinbraind is busy (\(waiting) requests waiting); retry later", retryAfter: 2)
        } catch {
            // The scheduler stopped between the request's arrival and now: a model switch
            // (the next model serves in seconds) or the daemon's shutdown.
            if state.phase == .loading { throw APIError(.loading, "twinbraind is switching models; retry shortly", retryAfter: 1) }
            throw APIError(.stopping, "twinbraind is shutting down", retryAfter: 5)
        }
        return GenerationRun(events: events, job: job)
    }

    /// Runs a whole (non-streamed) generation; the client closing its connection cancels it.
    func generateWhole(_ generation: GenerationRequest, scheduler: ComputeScheduler, knowledge: KnowledgeUse?, owner: UInt32?,
                       request: Request) async throws -> (text: String, result: GenerationResult, queueSeconds: Double)
    {
        let cancel = CancelBox()
        return try await request.body.consumeWithInboundCloseHandler { _ in
            try await collect(start(generation, scheduler: scheduler, knowledge: knowledge, owner: owner, cancel: cancel))
        } onInboundClosed: { cancel.cancel() }
    }

    /// Waits for the whole generation.
    func collect(_ run: GenerationRun) async throws -> (text: String, result: GenerationResult, queueSeconds: Double) {
        var text = ""
        do {
            for try await event in run.events {
                switch event {
                case let .text(piece): text += piece
                case let .finished(result, queued): return (text, result, queued)
                }
            }
        } catch let error as ModelError {
            throw APIError(.contextExceeded, "\(error)")
        }
        throw APIError(.internalError, "generation ended without a result")
    }

    func usage(_ result: GenerationResult, queueSeconds: Double) -> GenerationUsage {
        GenerationUsage(promptTokens: result.promptTokens, promptTokensReused: result.reusedPromptTokens, completionTokens: result.ids.count,
                        queueSeconds: queueSeconds,
                        prefillSeconds: result.prefillSeconds, generateSeconds: result.generateSeconds)
    }

    /// A streamed body of lines; a client that goes away cancels the generation.
    func streamingResponse(contentType: String, _ run: GenerationRun, leading: [String] = [],
                           lines: @escaping @Sendable (GenerationEvent) throws -> [String],
                           failure: @escaping @Sendable (Error) -> String?,
                           trailer: [String] = []) -> Response {
        let body = ResponseBody { writer in
            var completed = false
            defer { if !completed { run.job.cancel() } }
            for line in leading { try await writer.write(ByteBuffer(string: line)) }
            do {
                for try await event in run.events {
                    for line in try lines(event) { try await writer.write(ByteBuffer(string: line)) }
                }
            } catch let error where !(error is CancellationError) {
                // Headers are gone already: report the failure in the stream itself.
                if let line = failure(error) { try await writer.write(ByteBuffer(string: line)) }
            }
            for line in trailer { try await writer.write(ByteBuffer(string: line)) }
            completed = true
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: contentType, .cacheControl: "no-cache"], body: body)
    }

    // MARK: - Native endpoints

    func nativeGenerate(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .user)
        let scheduler = try await readyScheduler()
        let body = try await decode(GenerateRequest.self, from: request.body)
        let (prompt, knowledge) = try knowledgePrompt(body.prompt, knowledge: body.knowledge, scheduler: scheduler)
        return try await native(makeRequest(prompt: prompt, options: body.options, knowledge: knowledge), knowledge: knowledge,
                                stream: body.stream ?? false, scheduler: scheduler, owner: peer.uid, request: request)
    }

    func nativeChat(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .user)
        let scheduler = try await readyScheduler()
        let body = try await decode(ChatRequest.self, from: request.body)
        let (prompt, knowledge) = try knowledgeChatPrompt(body.messages, knowledge: body.knowledge, scheduler: scheduler)
        return try await native(makeRequest(prompt: prompt, options: body.options, knowledge: knowledge), knowledge: knowledge,
                                stream: body.stream ?? false, scheduler: scheduler, owner: peer.uid, request: request)
    }

    func chatPrompt(_ messages: [ChatMessageBody], scheduler: ComputeScheduler) throws -> [Int32] {
        guard !messages.isEmpty else { throw APIError(.badRequest, "messages is empty") }
        let roles: Set = ["system", "user", "assistant"]
        for (i, m) in messages.enumerated() where !roles.contains(m.role) {
            throw APIError(.badRequest, "messages[\(i)].role '\(m.role)' is not one of system, user, assistant")
        }
        let text = try state.chatTemplate().render(messages.map { ChatMessage(role: $0.role, content: $0.content) })
        return scheduler.generator.tokenizer.encode(text, parseSpecial: true)
    }

    // MARK: - Joint inference

    /// Passages recalled for a question or for a plain prompt to continue (`Recall` in
    /// LearningBrain: the code FreshDocs's hybrid runs), or nil when the request turned knowledge off.
    func recall(_ text: String, continuing: Bool = false, knowledge: Bool?) throws -> Recall? {
        guard knowledge ?? true else { return nil }
        let limit = state.configuration.knowledgePassages
        return try continuing ? Recall(continuing: text, index: state.store, limit: limit) : Recall(question: text, index: state.store, limit: limit)
    }

    /// The chat prompt with the passages recalled for the last user message (fewer when the
    /// context cannot hold them all and room for an answer), and the knowledge to generate with.
    func knowledgeChatPrompt(_ messages: [ChatMessageBody], knowledge: Bool?, scheduler: ComputeScheduler) throws
        -> (prompt: [Int32], knowledge: KnowledgeUse?)
    {
        let question = messages.last(where: { $0.role == "user" })?.content ?? ""
        guard let recall = try recall(question, knowledge: knowledge) else {
            return (try chatPrompt(messages, scheduler: scheduler), nil)
        }
        return try fitting(recall, question: question) { try chatPrompt($0.messages(messages), scheduler: scheduler) }
    }

    /// A plain prompt with the passages recalled for it before it.
    func knowledgePrompt(_ prompt: String, knowledge: Bool?, scheduler: ComputeScheduler) throws
        -> (prompt: [Int32], knowledge: KnowledgeUse?)
    {
        let tokenizer = scheduler.generator.tokenizer
        guard let recall = try recall(prompt, continuing: true, knowledge: knowledge) else { return (tokenizer.encode(prompt), nil) }
        return try fitting(recall) { tokenizer.encode($0.prompt(prompt)) }
    }

    /// The prompt with as many of the recalled passages as leave `answerRoom` tokens free.
    /// A `question` (the last user message of a chat) is read by the reader.
    private func fitting(_ recall: Recall, question: String? = nil, answerRoom: Int = 128, _ build: (Recall) throws -> [Int32]) throws
        -> ([Int32], KnowledgeUse)
    {
        for n in stride(from: recall.passages.count, to: -1, by: -1) {
            let kept = recall.keeping(n), prompt = try build(kept)
            if n == 0 || prompt.count + answerRoom <= state.contextLimit {
                let use = KnowledgeUse(recall: kept, memory: state.memory)
                if let question, let reader = state.reader { use.reading = (reader, question) }
                return (prompt, use)
            }
        }
        preconditionFailure("n == 0 always returns")
    }

    private func native(_ generation: GenerationRequest, knowledge: KnowledgeUse?, stream: Bool, scheduler: ComputeScheduler,
                        owner: UInt32, request: Request) async throws -> Response {
        let model = state.modelID, store = state.store
        if stream {
            let run = try start(generation, scheduler: scheduler, knowledge: knowledge, owner: owner)
            let encoder = JSONEncoder()
            return streamingResponse(contentType: "application/x-ndjson", run, lines: { event in
                switch event {
                case let .text(piece):
                    return [String(decoding: try encoder.encode(StreamLine(text: piece)), as: UTF8.self) + "\n"]
                case let .finished(result, queued):
                    let done = GenerateResponse(text: result.text, stopReason: result.stopReason.rawValue, model: model,
                                                usage: usage(result, queueSeconds: queued), sources: knowledge?.sources(store: store),
                                                evidence: knowledge?.evidence(answer: result.text), reader: knowledge?.readerDecision)
                    return [String(decoding: try encoder.encode(StreamLine(done: true, result: done)), as: UTF8.self) + "\n"]
                }
            }, failure: { error in
                let e = ErrorBody(code: .internalError, message: "\(error)").error
                return String(decoding: (try? encoder.encode(StreamLine(error: e))) ?? Data(), as: UTF8.self) + "\n"
            })
        }
        let (_, result, queued) = try await generateWhole(generation, scheduler: scheduler, knowledge: knowledge, owner: owner,
                                                          request: request)
        return try Self.json(GenerateResponse(text: result.text, stopReason: result.stopReason.rawValue, model: model,
                                              usage: usage(result, queueSeconds: queued), sources: knowledge?.sources(store: store),
                                              evidence: knowledge?.evidence(answer: result.text), reader: knowledge?.readerDecision))
    }
}
