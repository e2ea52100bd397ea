import Foundation
import LearningBrain
import MainBrain

/// A system under evaluation. The baselines live here; `knn-fixed`, `learning-brain` (the learning
/// brain's token memory without and with its gate) and `hybrid` (passages and gated memory, as the
/// daemon runs them) in LearningBrainSystems.swift.
public protocol EvalSystem: AnyObject {
    var id: String { get }
    /// Learns the customer documents (RAG indexes them, the learning brain memorises them).
    func learn(_ documents: [FreshDocsCorpus.Document]) throws
    /// Logits of a window of a token stream, for positions `first…tokens.count-2` (each predicts
    /// the next token). The task runner chooses the windows; the system may add context.
    func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits
    /// Σ log p(candidate tokens | prompt) for each candidate.
    func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double]
    /// Greedy continuation of a prompt (T8; T9 stops at the end of generation).
    func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32]
    /// An open question answered as the system would answer a user (T9): `chatPrompt` is the
    /// question as a user message in the chat template, `question` its text.
    func answer(chatPrompt: [Int32], question: String, maxTokens: Int) throws -> OpenAnswer
    /// Forgets documents exactly; nil when the system cannot (T6 then reports "unsupported").
    var forgetting: ((_ ids: [String]) throws -> Void)? { get }
    /// What the system retrieved since the trace was last cleared (chunks, memory entries), so
    /// T6 can check that a forgetting system retrieves exactly what a never-taught one does;
    /// nil when it retrieves nothing.
    var retrievalTrace: RetrievalTrace? { get }
    /// What learning did besides the timings FreshDocs takes (T7), for the results; nil for none.
    var learningFigures: [String: Any]? { get }
}

extension EvalSystem {
    public var learningFigures: [String: Any]? { nil }

    public func generate(prompt: [Int32], maxTokens: Int) throws -> [Int32] {
        try generate(prompt: prompt, maxTokens: maxTokens, stopAtEnd: false)
    }

    /// The reply alone: no evidence, no sources.
    public func answer(chatPrompt: [Int32], question: String, maxTokens: Int) throws -> OpenAnswer {
        OpenAnswer(tokens: try generate(prompt: chatPrompt, maxTokens: maxTokens, stopAtEnd: true))
    }
}

/// Greedy decoding of a prompt with the engine's generator (and a predictor mixed in).
func greedy(_ generator: Generator, prompt: [Int32], maxTokens: Int, stopAtEnd: Bool, predictor: NextTokenPredictor? = nil) throws -> [Int32] {
    try greedyResult(generator, prompt: prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd, predictor: predictor).ids
}

/// `greedy`, with the generation's timings.
func greedyResult(_ generator: Generator, prompt: [Int32], maxTokens: Int, stopAtEnd: Bool, predictor: NextTokenPredictor? = nil) throws
    -> GenerationResult {
    var request = GenerationRequest(prompt: prompt)
    request.maxTokens = maxTokens
    request.sampling = .greedy
    request.stopAtEndOfGeneration = stopAtEnd
    return try generator.generate(request, predictor: predictor)
}

/// Provenance of everything a system retrieved, in order ("docs/a.txt@128" = the chunk of
/// docs/a.txt starting at token 128). Recording is off until a task turns it on.
public final class RetrievalTrace {
    public var isRecording = false
    public private(set) var entries: [String] = []
    public init() {}
    public func record(_ entry: @autoclosure () -> String) { if isRecording { entries.append(entry()) } }
    public func take() -> [String] { defer { entries = [] }; return entries }
}

/// Names → systems. `base` is always there; other modules add theirs.
public enum SystemRegistry {
    public typealias Factory = (Model, Tokenizer) throws -> EvalSystem
    nonisolated(unsafe) public static var factories: [String: Factory] = [
        "base": { model, tokenizer in BaseSystem(model: model, tokenizer: tokenizer) },
        "bm25-rag": { model, tokenizer in RAGSystem(id: "bm25-rag", model: model, tokenizer: tokenizer, retriever: BM25Retriever()) },
        "vector-rag": { model, tokenizer in
            RAGSystem(id: "vector-rag", model: model, tokenizer: tokenizer, retriever: HiddenStateRetriever(model: model))
        },
        "knn-fixed": { model, tokenizer in KNNSystem(model: model, tokenizer: tokenizer) },
        "learning-brain": { model, tokenizer in KNNSystem(id: "learning-brain", model: model, tokenizer: tokenizer, gated: true) },
        "hybrid": { model, tokenizer in try HybridSystem(model: model, tokenizer: tokenizer) },
        "hybrid-reader": { model, tokenizer in
            guard let weights = try readerWeights(for: model) else {
                throw CorpusError("no reader is fitted for this model: run `make reader`, or pass --reader FILE")
            }
            return try HybridSystem(id: "hybrid-reader", model: model, tokenizer: tokenizer, reader: Reader(weights: weights))
        },
        "hybrid-reader-site": { model, tokenizer in
            guard let weights = try readerWeights(for: model) else {
                throw CorpusError("no reader is fitted for this model: run `make reader`, or pass --reader FILE")
            }
            return try HybridSystem(id: "hybrid-reader-site", model: model, tokenizer: tokenizer, reader: Reader(weights: weights),
                                    adaptsOnSite: true)
        },
        "gold-passage": { model, tokenizer in try GoldPassageSystem(model: model, tokenizer: tokenizer) },
    ]

    /// A reader's weights (`twinbrain.reader/1`) to use instead of the one shipped for the model.
    nonisolated(unsafe) public static var readerFile: String?

    static func readerWeights(for model: Model) throws -> ReaderWeights? {
        if let readerFile {
            do { return try ReaderWeights(json: Data(contentsOf: URL(fileURLWithPath: readerFile))) } catch {
                throw CorpusError("--reader \(readerFile) is not a \(ReaderWeights.format) record (\(error)); write one with fit-reader --weights-out")
            }
        }
        return ReaderWeights.shipped(forShape: FittedKeyspace.shape(model.config)) { Hashing.fileSHA256(model.gguf.file.path) }
    }

    public static func check(_ id: String) throws {
        guard factories[id] != nil else {
            throw CorpusError("unknown system '\(id)' (available: \(factories.keys.sorted().joined(separator: ", ")))")
        }
    }

    public static func make(_ id: String, model: Model, tokenizer: Tokenizer) throws -> EvalSystem {
        try check(id)
        return try factories[id]!(model, tokenizer)
    }
}

/// The main brain alone.
public final class BaseSystem: EvalSystem {
    public let id = "base"
    let model: Model
    let scorer: Scorer
    let generator: Generator

    public init(model: Model, tokenizer: Tokenizer) {
        self.model = model
        scorer = Scorer(model: model)
        generator = Generator(model: model, tokenizer: tokenizer)
    }

    public func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32] {
        try greedy(generator, prompt: prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd)
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {}

    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        let cache = model.makeCache(capacity: tokens.count)
        return try model.forward(Array(tokens.dropLast()), cache: cache, logits: .from(first))
    }

    public func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] {
        try scorer.logLikelihood(context: prompt, continuations: candidates).map(\.logProbability)
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? { nil }
    public var retrievalTrace: RetrievalTrace? { nil }
}
