import Foundation
import LearningBrain
import MainBrain

/// `knn-fixed`: the token memory mixed in with a fixed λ = 0.25 and no gate (the classic kNN-LM),
/// through the learning brain's `KNNLanguageModel`; `learning-brain`: the same memory behind the
/// key projection and gate fitted on public text (`FittedKeyspace`). Its trace records every neighbour it used,
/// by document and position, so T6 can check forgetting is exact.
public final class KNNSystem: EvalSystem {
    public let id: String
    let knn: KNNLanguageModel
    let tokenizer: Tokenizer
    let generator: Generator
    public let retrievalTrace: RetrievalTrace?
    private var documentIDs: [String: Int64] = [:]
    private var documentNames: [Int64: String] = [:]

    /// `gated`: the learning brain as shipped (projected keys, fitted gate; a model without a fit
    /// keeps the memory closed: the main brain's output exactly). Otherwise the classic kNN-LM
    /// with a fixed λ over the hidden states themselves.
    init(id: String = "knn-fixed", model: Model, tokenizer: Tokenizer, lambda: Float = 0.25, gated: Bool = false,
         trace: RetrievalTrace = RetrievalTrace()) {
        self.id = id
        retrievalTrace = trace
        if gated, let fitted = FittedKeyspace.forModel(model.config) {
            knn = KNNLanguageModel(model: model, fitted: fitted)
        } else {
            knn = KNNLanguageModel(model: model)
            knn.lambda = lambda
            // The classic configuration, as measured in the development run: pieces of 512
            // tokens overlapping by half.
            knn.pieceLength = 512
            knn.pieceOverlap = 256
            if gated { knn.gate = MemoryGate(lambdaMax: 0, inner: 0, radius: 0) }
        }
        self.tokenizer = tokenizer
        generator = Generator(model: model, tokenizer: tokenizer)
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {
        for d in documents {
            let number = Int64(documentIDs.count + 1)
            documentIDs[d.id] = number
            documentNames[number] = d.id
            try knn.learn(document: number, tokens: tokenizer.encode(d.text))
        }
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? {
        { [unowned self] ids in knn.forget(documents: Set(ids.compactMap { documentIDs[$0] })) }
    }

    /// Mixed log-probabilities for the rows of `input` from `first`, continuing `cache`.
    func mixed(_ input: [Int32], cache: KVCache, from first: Int) throws -> Logits {
        let (logits, queries) = try knn.mainBrain(input, cache: cache, from: first)
        let (mixed, neighbours, _) = knn.mix(logits, queries: queries)
        neighbours.forEach(record)
        return mixed
    }

    func record(_ neighbours: [TokenMemory.Neighbor]) {
        guard let trace = retrievalTrace, trace.isRecording else { return }
        for n in neighbours { trace.record("\(documentNames[n.document] ?? "?")@\(n.position)") }
    }

    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        let input = Array(tokens.dropLast())
        return try mixed(input, cache: knn.model.makeCache(capacity: input.count), from: first)
    }

    public func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] {
        try candidates.map { candidate in
            guard !candidate.isEmpty else { return 0 }
            let input = prompt + candidate.dropLast()
            let rows = try mixed(input, cache: knn.model.makeCache(capacity: input.count), from: prompt.count - 1)
            return candidate.enumerated().reduce(0.0) { $0 + Scorer.logProbability(rows.row($1.offset), of: $1.element) }
        }
    }

    /// Greedy decoding with the mixture at every step (the engine's generator, the memory as its predictor).
    public func generate(prompt: [Int32], maxTokens: Int) throws -> [Int32] {
        var request = GenerationRequest(prompt: prompt)
        request.maxTokens = maxTokens
        request.sampling = .greedy
        request.stopAtEndOfGeneration = false
        knn.onGenerationStep = { [unowned self] neighbours, _ in record(neighbours) }
        defer { knn.onGenerationStep = nil }
        return try generator.generate(request, predictor: knn).ids
    }
}

/// `hybrid`: what the daemon does. Retrieved passages go before the text as in `bm25-rag` (the
/// daemon recalls them with SQLite FTS5's BM25 and its query words; here the baseline's BM25 over
/// the same 128-token passages), but only those above the daemon's relevance floor
/// (`PassageRelevance`), judged on the last 64 tokens when it reads text (as the floor was
/// fitted: 32 tokens say too little to tell related text from text that shares a few
/// words), and the gated token memory of `learning-brain` joins every position,
/// passages included in its context. One trace records both, so T6 checks both.
public final class HybridSystem: EvalSystem {
    public let id = "hybrid"
    let passages: RAGSystem
    let memory: KNNSystem
    let tokenizer: Tokenizer
    let chatTemplate: ChatTemplate?
    public var retrievalTrace: RetrievalTrace? { passages.retrievalTrace }

    init(model: Model, tokenizer: Tokenizer) {
        self.tokenizer = tokenizer
        chatTemplate = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        let trace = RetrievalTrace()
        passages = RAGSystem(id: "hybrid", model: model, tokenizer: tokenizer,
                             retriever: BM25Retriever(relevanceFloor: PassageRelevance.floor),
                             queryTokens: RecallFloorFitting.windowTokens, context: .named, trace: trace)
        memory = KNNSystem(id: "hybrid", model: model, tokenizer: tokenizer, gated: true, trace: trace)
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {
        try passages.learn(documents)
        try memory.learn(documents)
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? {
        { [unowned self] ids in
            try passages.forget(ids)
            try memory.forgetting?(ids)
        }
    }

    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        try passages.windowLogits(tokens, from: first) { [memory] input, cache, first in try memory.mixed(input, cache: cache, from: first) }
    }

    public func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] {
        try memory.candidateScores(prompt: knowledgePrompt(prompt, passages: 2), candidates: candidates)
    }

    public func generate(prompt: [Int32], maxTokens: Int) throws -> [Int32] {
        try memory.generate(prompt: knowledgePrompt(prompt, passages: 1), maxTokens: maxTokens)
    }

    /// The prompt as the daemon builds it: in a conversation, recall reads the last user message
    /// (the system message's words would count against every passage) and the passages go into
    /// it (`KnowledgeContext.userText`); a plain prompt gets them before it.
    func knowledgePrompt(_ prompt: [Int32], passages count: Int) throws -> [Int32] {
        let rendered = tokenizer.decode(prompt, renderSpecial: true)
        guard let message = chatTemplate?.lastUserMessage(inRendered: rendered) else {
            return try passages.retrieve(prompt, count: count) + prompt
        }
        let question = String(rendered[message])
        let found = try passages.retrieveChunks(tokenizer.encode(question), count: count)
        guard let text = KnowledgeContext.userText(passages.recalled(found), question: question) else { return prompt }
        return tokenizer.encode(rendered.replacingCharacters(in: message, with: text), parseSpecial: true)
    }
}
