import Foundation
import MainBrain

/// In-context retrieval baselines (the protocol's bm25-rag and vector-rag): the learned
/// documents are cut into chunks of 128 tokens every 64; retrieved chunks are prepended to the
/// context and never scored.
public final class RAGSystem: EvalSystem {
    public let id: String
    let model: Model
    let tokenizer: Tokenizer
    let retriever: Retriever
    let scorer: Scorer
    let generator: Generator
    static let chunkLength = 128, chunkStride = 64, block = 32

    private(set) var chunks: [[Int32]] = []

    init(id: String, model: Model, tokenizer: Tokenizer, retriever: Retriever) {
        self.id = id
        self.model = model
        self.tokenizer = tokenizer
        self.retriever = retriever
        scorer = Scorer(model: model)
        generator = Generator(model: model, tokenizer: tokenizer)
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {
        chunks = []
        for d in documents {
            let t = tokenizer.encode(d.text)
            guard !t.isEmpty else { continue }
            var start = 0
            repeat {
                chunks.append(Array(t[start..<min(start + Self.chunkLength, t.count)]))
                start += Self.chunkStride
            } while start + Self.chunkStride < t.count
        }
        try retriever.index(chunks.map { tokenizer.decode($0) }, tokens: chunks)
    }

    func retrieve(_ query: [Int32], count: Int) throws -> [Int32] {
        guard !chunks.isEmpty, !query.isEmpty else { return [] }
        return try retriever.top(text: tokenizer.decode(query), tokens: query, count: count).flatMap { chunks[$0] }
    }

    /// Every 32 positions: retrieve with the last 32 tokens, prepend the top chunk, score the block.
    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        var values: [Float] = []
        let end = tokens.count - 1
        var a = first
        while a < end {
            let b = min(a + Self.block, end)
            let prefix = try retrieve(Array(tokens[max(0, a + 1 - Self.block)...a]), count: 1)
            let input = prefix + tokens[0..<b]
            let l = try model.forward(input, cache: model.makeCache(capacity: input.count), logits: .from(prefix.count + a))
            values += l.values
            a = b
        }
        return Logits(rows: end - first, vocab: model.config.vocabSize, values: values)
    }

    /// Items: the prompt is the query; the top 2 chunks go before it.
    public func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] {
        let context = try retrieve(prompt, count: 2) + prompt
        return try scorer.logLikelihood(context: context, continuations: candidates).map(\.logProbability)
    }

    public func generate(prompt: [Int32], maxTokens: Int) throws -> [Int32] {
        var request = GenerationRequest(prompt: try retrieve(prompt, count: 1) + prompt)
        request.maxTokens = maxTokens
        request.sampling = .greedy
        request.stopAtEndOfGeneration = false
        return try generator.generate(request).ids
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? { nil }
}

/// Finds the chunks most relevant to a query.
protocol Retriever: AnyObject {
    func index(_ texts: [String], tokens: [[Int32]]) throws
    func top(text: String, tokens: [Int32], count: Int) throws -> [Int]
}

/// Okapi BM25 (k1 1.2, b 0.75) over lower-cased words.
final class BM25Retriever: Retriever {
    let k1 = 1.2, b = 0.75
    private var postings: [String: [(chunk: Int, tf: Int)]] = [:]
    private var lengths: [Int] = []
    private var averageLength = 1.0

    static func terms(_ text: String) -> [String] {
        text.lowercased().split { !($0.isLetter || $0.isNumber || $0 == "_") }.map(String.init)
    }

    func index(_ texts: [String], tokens: [[Int32]]) throws {
        postings = [:]
        lengths = []
        for (i, text) in texts.enumerated() {
            let words = Self.terms(text)
            lengths.append(words.count)
            var counts: [String: Int] = [:]
            for w in words { counts[w, default: 0] += 1 }
            for (w, c) in counts { postings[w, default: []].append((i, c)) }
        }
        averageLength = max(1, Double(lengths.reduce(0, +)) / Double(max(1, lengths.count)))
    }

    func top(text: String, tokens: [Int32], count: Int) throws -> [Int] {
        var scores: [Int: Double] = [:]
        let n = Double(lengths.count)
        for term in Set(Self.terms(text)) {
            guard let list = postings[term] else { continue }
            let idf = log(1 + (n - Double(list.count) + 0.5) / (Double(list.count) + 0.5))
            for (chunk, tf) in list {
                let f = Double(tf)
                scores[chunk, default: 0] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * Double(lengths[chunk]) / averageLength))
            }
        }
        return scores.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(count).map(\.key)
    }
}

/// Cosine similarity of mean-pooled main-brain hidden states (the residual stream two thirds of
/// the way up): no separate embedding model exists offline.
final class HiddenStateRetriever: Retriever {
    let model: Model
    let layer: Int
    private var embeddings: [[Float]] = []

    init(model: Model) {
        self.model = model
        layer = model.config.layers * 2 / 3
    }

    func embed(_ tokens: [Int32]) throws -> [Float] {
        guard !tokens.isEmpty else { return [] }
        let tap = HiddenStateRecorder(points: [.residual(layer: layer)])
        _ = try model.forward(tokens, cache: model.makeCache(capacity: tokens.count), logits: .none, tap: tap)
        let states = tap.states[.residual(layer: layer)]!, d = tap.dim
        var mean = [Float](repeating: 0, count: d)
        for r in 0..<tokens.count { for k in 0..<d { mean[k] += states[r * d + k] } }
        let norm = max(1e-12, mean.reduce(0) { $0 + $1 * $1 }.squareRoot())
        return mean.map { $0 / norm }
    }

    func index(_ texts: [String], tokens: [[Int32]]) throws {
        embeddings = try tokens.map(embed)
    }

    func top(text: String, tokens: [Int32], count: Int) throws -> [Int] {
        let q = try embed(tokens)
        let scores = embeddings.map { e in zip(e, q).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        return scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(count).map { $0 }
    }
}

/// BM25 over whole texts, for tests and tools: the index of the best text for a query.
public struct BM25Probe {
    public init() {}
    public func best(for query: String, in texts: [String]) throws -> Int? {
        let r = BM25Retriever()
        try r.index(texts, tokens: [])
        return try r.top(text: query, tokens: [], count: 1).first
    }
}
