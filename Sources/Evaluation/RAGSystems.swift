import Foundation
import LearningBrain
import MainBrain

/// In-context retrieval baselines (the protocol's bm25-rag and vector-rag): the learned
/// documents are cut into chunks of 128 tokens every 64 (`PassageChunker.standard`, the
/// classic RAG cut; the box cuts along structure); retrieved chunks are prepended to the
/// context and never scored.
public final class RAGSystem: EvalSystem {
    public let id: String
    let model: Model
    let tokenizer: Tokenizer
    let retriever: Retriever
    let scorer: Scorer
    let generator: Generator
    public let retrievalTrace: RetrievalTrace?
    static let block = 32
    /// Perplexity: how many of the last tokens make the query (the protocol's baselines: one block).
    let queryTokens: Int
    /// How retrieved chunks go before the text: as they are (the protocol's baselines), or as the
    /// daemon puts passages before a plain prompt, named by their document (`KnowledgeContext`).
    enum Context { case raw, named }
    let context: Context

    struct Chunk { let document: String; let offset: Int; let tokens: [Int32] }
    private(set) var chunks: [Chunk] = []

    init(id: String, model: Model, tokenizer: Tokenizer, retriever: Retriever, queryTokens: Int = block, context: Context = .raw,
         trace: RetrievalTrace = RetrievalTrace()) {
        self.id = id
        self.queryTokens = queryTokens
        self.context = context
        retrievalTrace = trace
        self.model = model
        self.tokenizer = tokenizer
        self.retriever = retriever
        scorer = Scorer(model: model)
        generator = Generator(model: model, tokenizer: tokenizer)
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {
        var added: [Chunk] = []
        for d in documents {
            let t = tokenizer.encode(d.text)
            for r in PassageChunker.standard.ranges(count: t.count) {
                added.append(Chunk(document: d.id, offset: r.lowerBound, tokens: Array(t[r])))
            }
        }
        try retriever.add(added.map { tokenizer.decode($0.tokens) }, tokens: added.map(\.tokens))
        chunks += added
    }

    /// Drops the documents' chunks; the index keeps the others in their order, so the state is
    /// the one learning only the others would have built.
    func forget(_ ids: [String]) throws {
        let forgotten = Set(ids)
        let keep = chunks.indices.filter { !forgotten.contains(chunks[$0].document) }
        retriever.retain(keep)
        chunks = keep.map { chunks[$0] }
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? { { [unowned self] ids in try self.forget(ids) } }

    /// The chunks retrieved for a query, best first (recorded in the trace).
    func retrieveChunks(_ query: [Int32], count: Int) throws -> [Chunk] {
        guard !chunks.isEmpty, !query.isEmpty else { return [] }
        return try retriever.top(text: tokenizer.decode(query), tokens: query, count: count).map { i in
            retrievalTrace?.record("\(chunks[i].document)@\(chunks[i].offset)")
            return chunks[i]
        }
    }

    /// The tokens that go before the text for a query (none when nothing is retrieved).
    func retrieve(_ query: [Int32], count: Int) throws -> [Int32] {
        let found = try retrieveChunks(query, count: count)
        switch context {
        case .raw: return found.flatMap(\.tokens)
        case .named: return KnowledgeContext.prefixText(recalled(found)).map { tokenizer.encode($0) } ?? []
        }
    }

    /// Chunks as the daemon names recalled passages: by their document.
    func recalled(_ chunks: [Chunk]) -> [KnowledgeContext.Recalled] {
        chunks.map { .init(title: $0.document, text: tokenizer.decode($0.tokens)) }
    }

    /// Every 32 positions: retrieve with the last `queryTokens` tokens, prepend the top chunk, score the block.
    /// When the block retrieves the chunk the previous one did, the previous pass's KV cache
    /// already holds chunk + window so far, and only the new block is run (same result, causal).
    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        try windowLogits(tokens, from: first) { [model] input, cache, first in try model.forward(input, cache: cache, logits: .from(first)) }
    }

    func windowLogits(_ tokens: [Int32], from first: Int,
                      step: (_ input: [Int32], _ cache: KVCache, _ first: Int) throws -> Logits) throws -> Logits {
        try Self.windowLogits(tokens, from: first, model: model, prefix: { [self] a in
            try retrieve(Array(tokens[max(0, a + 1 - queryTokens)...a]), count: 1)
        }, step: step)
    }

    /// The block loop: `prefix(a)` gives what goes before the text for the block after position
    /// `a`, `step` runs the model (`hybrid` mixes the token memory into each).
    static func windowLogits(_ tokens: [Int32], from first: Int, model: Model, prefix: (_ a: Int) throws -> [Int32],
                             step: (_ input: [Int32], _ cache: KVCache, _ first: Int) throws -> Logits) throws -> Logits {
        var values: [Float] = []
        let end = tokens.count - 1
        var a = first
        var previous: (prefix: [Int32], cache: KVCache)?
        while a < end {
            let b = min(a + block, end)
            let prefix = try prefix(a)
            let l: Logits
            if let p = previous, p.prefix == prefix {
                l = try step(Array(tokens[a..<b]), p.cache, 0)
            } else {
                let input = prefix + tokens[0..<b]
                let cache = model.makeCache(capacity: prefix.count + end)
                l = try step(input, cache, prefix.count + a)
                previous = (prefix, cache)
            }
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

    public func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32] {
        try greedy(generator, prompt: try retrieve(prompt, count: 1) + prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd)
    }

    /// RAG as a user meets it: the top 2 chunks for the question, named by their document, in
    /// the user turn (`KnowledgeContext`); the sources are their documents.
    public func answer(chatPrompt: [Int32], question: String, maxTokens: Int) throws -> OpenAnswer {
        let found = try retrieveChunks(tokenizer.encode(question), count: 2)
        guard let template = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer),
              let text = KnowledgeContext.userText(recalled(found), question: question) else {
            return OpenAnswer(tokens: try greedy(generator, prompt: chatPrompt, maxTokens: maxTokens, stopAtEnd: true))
        }
        let prompt = tokenizer.encode(template.render([ChatMessage(role: "user", content: text)]), parseSpecial: true)
        var sources: [String] = []
        for c in found where !sources.contains(c.document) { sources.append(c.document) }
        return OpenAnswer(tokens: try greedy(generator, prompt: prompt, maxTokens: maxTokens, stopAtEnd: true), sources: sources,
                          passages: found.map { ($0.document, tokenizer.decode($0.tokens)) })
    }
}

/// Finds the chunks most relevant to a query.
protocol Retriever: AnyObject {
    /// Appends chunks to the index.
    func add(_ texts: [String], tokens: [[Int32]]) throws
    /// Keeps only these chunks (ascending indices), renumbered 0…; scores afterwards are exactly
    /// those of an index built from them alone.
    func retain(_ keep: [Int])
    func top(text: String, tokens: [Int32], count: Int) throws -> [Int]
}

/// Okapi BM25 (k1 1.2, b 0.75) over lower-cased words (the baselines; the hybrid recalls with
/// the daemon's own code over SQLite FTS5).
final class BM25Retriever: Retriever {
    let k1 = 1.2, b = 0.75
    /// Term counts per chunk: the postings are rebuilt from them when chunks are forgotten.
    private var chunkTerms: [[String: Int]] = []
    private var postings: [String: [(chunk: Int, tf: Int)]] = [:]
    private var lengths: [Int] = []
    private var averageLength = 1.0

    static func terms(_ text: String) -> [String] { QueryWords.words(in: text) }

    func add(_ texts: [String], tokens: [[Int32]]) throws {
        for text in texts {
            let words = Self.terms(text)
            var counts: [String: Int] = [:]
            for w in words { counts[w, default: 0] += 1 }
            for (w, c) in counts { postings[w, default: []].append((chunkTerms.count, c)) }
            chunkTerms.append(counts)
            lengths.append(words.count)
        }
        averageLength = max(1, Double(lengths.reduce(0, +)) / Double(max(1, lengths.count)))
    }

    func retain(_ keep: [Int]) {
        let kept = keep.map { (chunkTerms[$0], lengths[$0]) }
        chunkTerms = []
        postings = [:]
        lengths = []
        for (counts, length) in kept {
            for (w, c) in counts { postings[w, default: []].append((chunkTerms.count, c)) }
            chunkTerms.append(counts)
            lengths.append(length)
        }
        averageLength = max(1, Double(lengths.reduce(0, +)) / Double(max(1, lengths.count)))
    }

    func top(text: String, tokens: [Int32], count: Int) throws -> [Int] {
        var scores: [Int: Double] = [:]
        // Sorted terms: the sums are added in the same order in every process and every state.
        for term in Set(Self.terms(text)).sorted() {
            guard let list = postings[term] else { continue }
            let idf = PassageRelevance.weight(containing: list.count, passages: lengths.count)
            for (chunk, tf) in list {
                let f = Double(tf)
                scores[chunk, default: 0] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * Double(lengths[chunk]) / averageLength))
            }
        }
        return Array(scores.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(count).map(\.key))
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

    func add(_ texts: [String], tokens: [[Int32]]) throws {
        embeddings += try tokens.map(embed)
    }

    func retain(_ keep: [Int]) {
        embeddings = keep.map { embeddings[$0] }
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
        try r.add(texts, tokens: [])
        return try r.top(text: query, tokens: [], count: 1).first
    }
}
