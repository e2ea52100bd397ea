// OpenAI-compatible bodies for /v1/chat/completions and /v1/completions: the subset twinbrain
// honours (model, messages/prompt, max_tokens, temperature, top_p, seed, stop, stream, n = 1).

/// `stop` is a string or a list of strings.
public struct StopSequences: Codable, Sendable, Equatable {
    public var values: [String]
    public init(_ values: [String]) { self.values = values }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { values = [] }
        else if let s = try? c.decode(String.self) { values = [s] }
        else { values = try c.decode([String].self) }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(values)
    }
}

/// `prompt` is a string or a list of one string.
public struct PromptText: Codable, Sendable, Equatable {
    public var text: String
    public init(_ text: String) { self.text = text }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { text = s; return }
        let list = try c.decode([String].self)
        guard list.count == 1 else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "prompt: exactly one prompt per request is supported")
        }
        text = list[0]
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }
}

public struct OpenAIChatRequest: Codable, Sendable {
    public var model: String?
    public var messages: [ChatMessageBody]
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    public var temperature: Float?
    public var topP: Float?
    public var seed: UInt64?
    public var stop: StopSequences?
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    public var n: Int?
    /// twinbrain's extension: false = the main brain alone (no recalled documents).
    public var knowledge: Bool?

    enum CodingKeys: String, CodingKey {
        case model, messages, maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens"
        case temperature, topP = "top_p", seed, stop, stream, streamOptions = "stream_options", n, knowledge
    }
}

public struct OpenAICompletionRequest: Codable, Sendable {
    public var model: String?
    public var prompt: PromptText
    public var maxTokens: Int?
    public var temperature: Float?
    public var topP: Float?
    public var seed: UInt64?
    public var stop: StopSequences?
    public var stream: Bool?
    public var streamOptions: StreamOptions?
    public var n: Int?
    /// twinbrain's extension: false = the main brain alone (no recalled documents).
    public var knowledge: Bool?

    enum CodingKeys: String, CodingKey {
        case model, prompt, maxTokens = "max_tokens", temperature, topP = "top_p", seed, stop, stream
        case streamOptions = "stream_options", n, knowledge
    }
}

public struct StreamOptions: Codable, Sendable {
    public var includeUsage: Bool?
    enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
}

public struct OpenAIUsage: Codable, Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    public init(prompt: Int, completion: Int) { promptTokens = prompt; completionTokens = completion; totalTokens = prompt + completion }
    enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens" }
}

public struct OpenAIChatResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var message: ChatMessageBody
        public var finishReason: String?
        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason" }
    }
    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: OpenAIUsage
    /// twinbrain's extension: the documents recalled for the answer (see `GenerateResponse.sources`).
    public var sources: [KnowledgeSource]?
    /// twinbrain's extension: the lines that support the answer (see `GenerateResponse.evidence`).
    public var evidence: [EvidenceLine]?

    public init(id: String, created: Int, model: String, text: String, finishReason: String, usage: OpenAIUsage,
                sources: [KnowledgeSource]? = nil, evidence: [EvidenceLine]? = nil) {
        self.id = id; self.created = created; self.model = model; self.usage = usage; self.sources = sources
        self.evidence = evidence
        choices = [Choice(index: 0, message: ChatMessageBody(role: "assistant", content: text), finishReason: finishReason)]
    }
}

public struct OpenAIChatChunk: Codable, Sendable {
    public struct Delta: Codable, Sendable {
        public var role: String?
        public var content: String?
    }
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var delta: Delta
        public var finishReason: String?
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason" }
    }
    public var id: String
    public var object = "chat.completion.chunk"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: OpenAIUsage?
    /// twinbrain's extension, on the chunk that finishes the choice.
    public var sources: [KnowledgeSource]?
    /// twinbrain's extension: the lines that support the answer (see `GenerateResponse.evidence`).
    public var evidence: [EvidenceLine]?

    public init(id: String, created: Int, model: String, role: String? = nil, content: String?, finishReason: String?,
                usage: OpenAIUsage? = nil, sources: [KnowledgeSource]? = nil, evidence: [EvidenceLine]? = nil) {
        self.id = id; self.created = created; self.model = model; self.usage = usage; self.sources = sources
        self.evidence = evidence
        choices = [Choice(index: 0, delta: Delta(role: role, content: content), finishReason: finishReason)]
    }

    /// The last chunk when usage was asked for: no choices, only usage.
    public init(id: String, created: Int, model: String, usage: OpenAIUsage) {
        self.id = id; self.created = created; self.model = model; self.usage = usage
        choices = []
    }
}

public struct OpenAICompletionResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var text: String
        public var finishReason: String?
        enum CodingKeys: String, CodingKey { case index, text, finishReason = "finish_reason" }
    }
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: OpenAIUsage?
    /// twinbrain's extension: the documents recalled for the completion (on the last chunk when streamed).
    public var sources: [KnowledgeSource]?
    /// twinbrain's extension: the lines that support the answer (see `GenerateResponse.evidence`).
    public var evidence: [EvidenceLine]?

    public init(id: String, created: Int, model: String, text: String, finishReason: String?, usage: OpenAIUsage?,
                sources: [KnowledgeSource]? = nil, evidence: [EvidenceLine]? = nil) {
        self.id = id; self.created = created; self.model = model; self.usage = usage; self.sources = sources
        self.evidence = evidence
        choices = [Choice(index: 0, text: text, finishReason: finishReason)]
    }
}
