// The native /v1 API's request and response bodies (JSON, snake_case keys).
// Documented in docs/api.md; the daemon and the CLI both use these types.

/// The socket path a client uses when none is given: `$TWINBRAIN_SOCKET`, else the system one.
public enum ControlSocket {
    public static let systemPath = "/run/twinbrain/twinbraind.sock"
    public static let environmentVariable = "TWINBRAIN_SOCKET"
}

/// Sampling and length settings shared by every generating endpoint. Absent fields take the
/// daemon's defaults.
public struct GenerationOptions: Codable, Sendable, Equatable {
    public var maxTokens: Int?
    public var temperature: Float?
    public var topK: Int?
    public var topP: Float?
    public var minP: Float?
    public var repeatPenalty: Float?
    public var seed: UInt64?
    public var stop: [String]?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case maxTokens = "max_tokens", temperature, topK = "top_k", topP = "top_p", minP = "min_p"
        case repeatPenalty = "repeat_penalty", seed, stop
    }
}

/// `POST /v1/generate`: continue a text.
public struct GenerateRequest: Codable, Sendable, Equatable {
    public var prompt: String
    public var stream: Bool?
    /// Whether the learning brain joins in (default true); false = the main brain alone.
    public var knowledge: Bool?
    public var options: GenerationOptions

    public init(prompt: String, stream: Bool? = nil, knowledge: Bool? = nil, options: GenerationOptions = .init()) {
        self.prompt = prompt
        self.stream = stream
        self.knowledge = knowledge
        self.options = options
    }

    enum CodingKeys: String, CodingKey { case prompt, stream, knowledge }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        prompt = try c.decode(String.self, forKey: .prompt)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        knowledge = try c.decodeIfPresent(Bool.self, forKey: .knowledge)
        options = try GenerationOptions(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(prompt, forKey: .prompt)
        try c.encodeIfPresent(stream, forKey: .stream)
        try c.encodeIfPresent(knowledge, forKey: .knowledge)
        try options.encode(to: encoder)
    }
}

public struct ChatMessageBody: Codable, Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

/// `POST /v1/chat`: answer the last message of a conversation.
public struct ChatRequest: Codable, Sendable, Equatable {
    public var messages: [ChatMessageBody]
    public var stream: Bool?
    /// Whether the learning brain joins in (default true); false = the main brain alone.
    public var knowledge: Bool?
    public var options: GenerationOptions

    public init(messages: [ChatMessageBody], stream: Bool? = nil, knowledge: Bool? = nil, options: GenerationOptions = .init()) {
        self.messages = messages
        self.stream = stream
        self.knowledge = knowledge
        self.options = options
    }

    enum CodingKeys: String, CodingKey { case messages, stream, knowledge }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        messages = try c.decode([ChatMessageBody].self, forKey: .messages)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        knowledge = try c.decodeIfPresent(Bool.self, forKey: .knowledge)
        options = try GenerationOptions(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(messages, forKey: .messages)
        try c.encodeIfPresent(stream, forKey: .stream)
        try c.encodeIfPresent(knowledge, forKey: .knowledge)
        try options.encode(to: encoder)
    }
}

/// A document whose knowledge went into an answer.
public struct KnowledgeSource: Codable, Sendable, Equatable {
    public var documentId: Int64
    public var path: String
    public var version: Int
    public var sourceId: Int64
    /// The drive's label, or its key ("fs:<uuid>", "path:/srv/docs").
    public var source: String
    /// This document's share of what was recalled (the weights of one answer sum to 1).
    public var weight: Double
    /// Passages of it that went into the context.
    public var passages: Int
    /// Generated tokens the token memory shaped with entries of it.
    public var memoryTokens: Int

    public init(documentId: Int64, path: String, version: Int, sourceId: Int64, source: String, weight: Double, passages: Int,
                memoryTokens: Int = 0) {
        self.documentId = documentId
        self.path = path
        self.version = version
        self.sourceId = sourceId
        self.source = source
        self.weight = weight
        self.passages = passages
        self.memoryTokens = memoryTokens
    }

    enum CodingKeys: String, CodingKey {
        case documentId = "document_id", path, version, sourceId = "source_id", source, weight, passages, memoryTokens = "memory_tokens"
    }
}

/// Lines of a learned document that support an answer: what a user reads to check it.
public struct EvidenceLine: Codable, Sendable, Equatable {
    public var documentId: Int64
    public var path: String
    /// The drive's label, or its key.
    public var source: String
    /// "docs/redis.txt:27–31" (page too for paged text: "manual.pdf p. 4:12").
    public var citation: String
    public var lineStart: Int?
    public var lineEnd: Int?
    public var page: Int?
    /// The headings the lines sit under, outermost first (a changelog entry's header line).
    public var headings: [String]
    public var text: String
    /// The words the reply states verbatim from these lines (the learning brain's reader copied them).
    public var quoted: String?

    public init(documentId: Int64, path: String, source: String, citation: String, lineStart: Int?, lineEnd: Int?, page: Int?,
                headings: [String], text: String, quoted: String? = nil) {
        self.documentId = documentId
        self.path = path
        self.source = source
        self.citation = citation
        self.lineStart = lineStart
        self.lineEnd = lineEnd
        self.page = page
        self.headings = headings
        self.text = text
        self.quoted = quoted
    }

    enum CodingKeys: String, CodingKey {
        case documentId = "document_id", path, source, citation, lineStart = "line_start", lineEnd = "line_end", page, headings, text,
             quoted
    }
}

/// Token counts and timings of one generation.
public struct GenerationUsage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    /// Leading prompt tokens not evaluated again: their keys and values were kept from an
    /// earlier request that began the same way (absent from older daemons).
    public var promptTokensReused: Int?
    public var completionTokens: Int
    /// Seconds waiting in the queue, prefilling the prompt, and generating.
    public var queueSeconds: Double
    public var prefillSeconds: Double
    public var generateSeconds: Double

    public init(promptTokens: Int, promptTokensReused: Int? = nil, completionTokens: Int, queueSeconds: Double, prefillSeconds: Double,
                generateSeconds: Double) {
        self.promptTokens = promptTokens
        self.promptTokensReused = promptTokensReused
        self.completionTokens = completionTokens
        self.queueSeconds = queueSeconds
        self.prefillSeconds = prefillSeconds
        self.generateSeconds = generateSeconds
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", promptTokensReused = "prompt_tokens_reused", completionTokens = "completion_tokens"
        case queueSeconds = "queue_s", prefillSeconds = "prefill_s", generateSeconds = "generate_s"
    }
}

/// The whole reply of a non-streamed generation, and the last line of a streamed one.
public struct GenerateResponse: Codable, Sendable, Equatable {
    public var text: String
    /// "stop" (end of turn or a stop string), "length" (max tokens or context), "cancelled".
    public var stopReason: String
    public var model: String
    public var usage: GenerationUsage
    /// The documents the learning brain recalled for this answer, best first (recalled passages' documents by their best passage, then the memory's by weight); empty when
    /// nothing matched, absent when the request turned knowledge off.
    public var sources: [KnowledgeSource]?
    /// The lines of the recalled passages that best support the answer; empty when nothing
    /// cleared the relevance floor (the answer is the model's alone), absent with knowledge off.
    public var evidence: [EvidenceLine]?
    /// What the learning brain's reader made of the question: "stated" (the reply is a span of
    /// the evidence), "silent" (the documents do not say; also when it read passages below recall's
    /// floor), "unsure" (the reply is the main brain's); absent when it did not read.
    public var reader: String?

    public init(text: String, stopReason: String, model: String, usage: GenerationUsage, sources: [KnowledgeSource]? = nil,
                evidence: [EvidenceLine]? = nil, reader: String? = nil) {
        self.text = text
        self.stopReason = stopReason
        self.model = model
        self.usage = usage
        self.sources = sources
        self.evidence = evidence
        self.reader = reader
    }

    enum CodingKeys: String, CodingKey { case text, stopReason = "stop_reason", model, usage, sources, evidence, reader }
}

/// One line of a streamed (NDJSON) reply: text pieces, then a final line with `done`.
public struct StreamLine: Codable, Sendable, Equatable {
    public var text: String?
    public var done: Bool?
    public var result: GenerateResponse?
    public var error: ErrorBody.Detail?

    public init(text: String? = nil, done: Bool? = nil, result: GenerateResponse? = nil, error: ErrorBody.Detail? = nil) {
        self.text = text
        self.done = done
        self.result = result
        self.error = error
    }
}

/// `GET /v1/health`.
public struct HealthResponse: Codable, Sendable, Equatable {
    /// "ok" when serving, "loading" while the model loads (HTTP 503).
    public var status: String
    public init(status: String) { self.status = status }
}

/// `GET /v1/status`.
public struct StatusResponse: Codable, Sendable, Equatable {
    public struct ModelInfo: Codable, Sendable, Equatable {
        public var id: String
        public var path: String
        public var architecture: String
        public var layers: Int
        public var contextLength: Int
        public var vocabSize: Int
        /// The engine: its kernels ("avx2" or "portable"), worker threads, matrix arithmetic
        /// ("mixed", "quantized" or "exact") and KV cache precision ("f16" or "f32").
        public var kernels: String?
        public var threads: Int?
        public var arithmetic: String?
        public var kvCache: String?
        public init(id: String, path: String, architecture: String, layers: Int, contextLength: Int, vocabSize: Int,
                    kernels: String? = nil, threads: Int? = nil, arithmetic: String? = nil, kvCache: String? = nil) {
            self.id = id; self.path = path; self.architecture = architecture
            self.layers = layers; self.contextLength = contextLength; self.vocabSize = vocabSize
            self.kernels = kernels; self.threads = threads; self.arithmetic = arithmetic; self.kvCache = kvCache
        }
        enum CodingKeys: String, CodingKey {
            case id, path, architecture, layers, contextLength = "context_length", vocabSize = "vocab_size"
            case kernels, threads, arithmetic, kvCache = "kv_cache"
        }
    }
    public struct Queue: Codable, Sendable, Equatable {
        public var running: Int
        public var waiting: Int
        public var capacity: Int
        /// Requests generated at once at most (`slots`), and those generating now.
        public var slots: Int?
        public var slotsInUse: Int?
        /// Sequences one decode step advanced, on average since the start.
        public var meanBatch: Double?
        /// Tokens generated per second over the last 10 s: by all requests, and per request.
        public var tokensPerSecond: Double?
        public var tokensPerSecondPerRequest: Double?
        public init(running: Int, waiting: Int, capacity: Int, slots: Int? = nil, slotsInUse: Int? = nil, meanBatch: Double? = nil,
                    tokensPerSecond: Double? = nil, tokensPerSecondPerRequest: Double? = nil) {
            self.running = running; self.waiting = waiting; self.capacity = capacity
            self.slots = slots; self.slotsInUse = slotsInUse; self.meanBatch = meanBatch
            self.tokensPerSecond = tokensPerSecond; self.tokensPerSecondPerRequest = tokensPerSecondPerRequest
        }
        enum CodingKeys: String, CodingKey {
            case running, waiting, capacity, slots, slotsInUse = "slots_in_use", meanBatch = "mean_batch"
            case tokensPerSecond = "tokens_per_s", tokensPerSecondPerRequest = "tokens_per_s_per_request"
        }
    }
    public var version: String
    /// "loading", "ready" or "stopping".
    public var state: String
    /// What the compute loop is doing now, in words ("idle", "generating 12/256 tokens").
    public var activity: String
    public var model: ModelInfo?
    public var uptimeSeconds: Double
    public var queue: Queue
    public var residentMemoryMiB: Double
    public var threads: Int
    /// The caller as the daemon sees it, and what it may do.
    public var caller: Caller
    public var intake: Intake?

    /// Drives and documents.
    public struct Intake: Codable, Sendable, Equatable {
        /// Where drive events come from: "udev", or "kernel (udevd is not running)", or "none".
        public var driveEvents: String
        public var mediaRoots: [String]
        public var drivesPresent: Int
        /// Documents by state (extracted, learned, failed, …).
        public var documents: [String: Int]
        public var jobsRunning: Int
        public init(driveEvents: String, mediaRoots: [String], drivesPresent: Int, documents: [String: Int], jobsRunning: Int) {
            self.driveEvents = driveEvents; self.mediaRoots = mediaRoots; self.drivesPresent = drivesPresent
            self.documents = documents; self.jobsRunning = jobsRunning
        }
        enum CodingKeys: String, CodingKey {
            case driveEvents = "drive_events", mediaRoots = "media_roots", drivesPresent = "drives_present", documents, jobsRunning = "jobs_running"
        }
    }

    public var learning: Learning?

    /// What the learning brain holds, and what it is learning now.
    public struct Learning: Codable, Sendable, Equatable {
        /// Documents learned, and extracted ones waiting to be learned.
        public var documentsLearned: Int
        public var documentsWaiting: Int
        /// Passages in the recall index.
        public var passages: Int
        /// The document being learned now (its path), if any.
        public var current: String?
        /// The token memory: entries, and the document versions they come from; nil when it is off
        /// (no gate fitted for the model, or `token_memory = false`).
        public var memoryEntries: Int?
        public var memoryDocuments: Int?
        /// The reader's on-site learning: document versions it adapted to, and the questions'
        /// examples it keeps; nil when it is off (no reader, or `reader_adapts = false`).
        public var readerDocuments: Int?
        public var readerExamples: Int?
        /// Why learning waits, when it does: the state directory's disk is full; it resumes by itself.
        public var paused: String?
        /// While the token memory's keyspace is fitted for a model that came without one: how far
        /// the fit is ("scoring related text 3/18"); the memory turns on when it is done.
        public var keyspaceFit: String?
        public init(documentsLearned: Int, documentsWaiting: Int, passages: Int, current: String?,
                    memoryEntries: Int? = nil, memoryDocuments: Int? = nil, readerDocuments: Int? = nil, readerExamples: Int? = nil,
                    paused: String? = nil, keyspaceFit: String? = nil) {
            self.documentsLearned = documentsLearned; self.documentsWaiting = documentsWaiting
            self.passages = passages; self.current = current
            self.memoryEntries = memoryEntries; self.memoryDocuments = memoryDocuments
            self.readerDocuments = readerDocuments; self.readerExamples = readerExamples
            self.paused = paused; self.keyspaceFit = keyspaceFit
        }
        enum CodingKeys: String, CodingKey {
            case documentsLearned = "documents_learned", documentsWaiting = "documents_waiting", passages, current
            case memoryEntries = "memory_entries", memoryDocuments = "memory_documents"
            case readerDocuments = "reader_documents", readerExamples = "reader_examples", paused, keyspaceFit = "keyspace_fit"
        }
    }

    public init(version: String, state: String, activity: String, model: ModelInfo?, uptimeSeconds: Double,
                queue: Queue, residentMemoryMiB: Double, threads: Int, caller: Caller, intake: Intake? = nil,
                learning: Learning? = nil) {
        self.version = version; self.state = state; self.activity = activity; self.model = model
        self.uptimeSeconds = uptimeSeconds; self.queue = queue; self.residentMemoryMiB = residentMemoryMiB
        self.threads = threads; self.caller = caller; self.intake = intake; self.learning = learning
    }

    enum CodingKeys: String, CodingKey {
        case version, state, activity, model, uptimeSeconds = "uptime_s", queue
        case residentMemoryMiB = "rss_mib", threads, caller, intake, learning
    }
}

/// Who is calling (from the socket's peer credentials) and what they may do.
public struct Caller: Codable, Sendable, Equatable {
    public var uid: UInt32
    public var pid: Int32
    /// "admin" (may change knowledge and configuration) or "user" (may read and ask).
    public var access: String
    public init(uid: UInt32, pid: Int32, access: String) { self.uid = uid; self.pid = pid; self.access = access }
}

/// `GET /v1/models`, in OpenAI's shape.
public struct ModelList: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var ownedBy = "twinbrain"
        public init(id: String, created: Int) { self.id = id; self.created = created }
        enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
    }
    public var object = "list"
    public var data: [Entry]
    public init(data: [Entry]) { self.data = data }
}
