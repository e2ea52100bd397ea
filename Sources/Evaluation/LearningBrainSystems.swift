import Foundation
import LearningBrain
import MainBrain
import Store

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
        if gated, let fitted = FittedKeyspace.shipped(for: model) {
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
        try learn(documents, numbers: documents.indices.map { Int64(documentIDs.count + $0 + 1) })
    }

    /// Learns documents under the given numbers (the hybrid's: its store's document ids, so both
    /// channels name a document alike, as in the daemon).
    func learn(_ documents: [FreshDocsCorpus.Document], numbers: [Int64]) throws {
        for (d, number) in zip(documents, numbers) {
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

    /// The corpus id of a learned document's number, and back.
    func name(of number: Int64) -> String? { documentNames[number] }
    func number(of name: String) -> Int64? { documentIDs[name] }

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
    public func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32] {
        try generate(prompt: prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd) { _, _ in }.ids
    }

    /// `generate`, telling `step` each step's neighbours and the memory's weight.
    /// `reading`: the reader wrapped around the memory (it calls the memory itself).
    func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool, reading: ReadingPredictor? = nil,
                  step: @escaping ([TokenMemory.Neighbor], Double) -> Void) throws -> GenerationResult {
        knn.onGenerationStep = { [unowned self] neighbours, weight in
            record(neighbours)
            step(neighbours, weight)
        }
        defer { knn.onGenerationStep = nil }
        return try greedyResult(generator, prompt: prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd, predictor: reading ?? knn)
    }
}

/// `hybrid`: what the daemon does, with the daemon's own code. Documents go into a temporary
/// store (SQLite, FTS5) as the daemon learns them (`DocumentPassageBuilder.records`), passages
/// are recalled by `Recall` (the relevance floor, the relative floor, `Recall.defaultLimit`
/// passages) and put before the text or into the user turn by `KnowledgeContext`; the gated
/// token memory of `learning-brain` joins every position, passages included in its context.
/// Reading text (T1, T2, T5), recall reads the last 64 tokens every 32 (as the floor was
/// fitted) and the best passage goes before the text. One trace records both channels, so T6
/// checks both.
public final class HybridSystem: EvalSystem {
    public let id: String
    /// `hybrid-reader`: the learning brain's reader joins the answers (T9), as in the daemon.
    let reader: Reader?
    let model: Model
    let memory: KNNSystem
    let tokenizer: Tokenizer
    let chatTemplate: ChatTemplate?
    let passages: PassageStore
    public let retrievalTrace: RetrievalTrace?

    /// `hybrid-reader-site`: the reader also adapts to the learned documents (`ReaderSiteLearning`).
    let site: ReaderSiteLearning?
    private var siteExamples: [Int64: (shard: String, examples: [ReaderExample])] = [:]
    private var siteQuestions: [[String: String]] = []
    private var seconds = ["passages_and_memory": 0.0, "reader_questions": 0.0, "reader_fit": 0.0]

    init(id: String = "hybrid", model: Model, tokenizer: Tokenizer, reader: Reader? = nil, adaptsOnSite: Bool = false) throws {
        self.id = id
        self.reader = reader
        self.model = model
        self.tokenizer = tokenizer
        chatTemplate = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        let trace = RetrievalTrace()
        retrievalTrace = trace
        memory = KNNSystem(id: "hybrid", model: model, tokenizer: tokenizer, gated: true, trace: trace)
        passages = try PassageStore(tokenizer: tokenizer)
        if adaptsOnSite, let reader {
            guard let chatTemplate else { throw CorpusError("\(id): the reader reads chat prompts, and this model has no usable chat template") }
            site = ReaderSiteLearning(model: model, tokenizer: tokenizer, template: chatTemplate, reader: reader)
        } else {
            site = nil
        }
    }

    public func learn(_ documents: [FreshDocsCorpus.Document]) throws {
        var began = Date()
        let numbers = try passages.learn(documents)
        try memory.learn(documents, numbers: numbers)
        seconds["passages_and_memory", default: 0] += Date().timeIntervalSince(began)
        guard let site, let reader else { return }
        began = Date()
        for (d, number) in zip(documents, numbers) {
            let records = DocumentPassageBuilder.standard.records(of: d.text, tokenizer: tokenizer)
            let learned = try site.learn(path: d.id, passages: records.map { ($0.header, $0.text) })
            siteExamples[number] = (ReaderSiteLearning.shard(of: d.id), learned.examples)
            siteQuestions += learned.questions.map { ["doc": d.id, "kind": $0.kind.rawValue, "question": $0.question, "answer": $0.answer] }
        }
        seconds["reader_questions", default: 0] += Date().timeIntervalSince(began)
        began = Date()
        refit(reader, shards: Set(documents.map { ReaderSiteLearning.shard(of: $0.id) }))
        seconds["reader_fit", default: 0] += Date().timeIntervalSince(began)
    }

    public var forgetting: ((_ ids: [String]) throws -> Void)? {
        { [unowned self] ids in
            try passages.forget(ids)
            try memory.forgetting?(ids)
            if let reader, site != nil {
                for id in ids { if let number = memory.number(of: id) { siteExamples[number] = nil } }
                refit(reader, shards: Set(ids.map(ReaderSiteLearning.shard(of:))))
            }
        }
    }

    private var siteChecks: [String: ReaderAdapterFitting.Check] = [:]

    /// Fits the shards' adapters again (a forget retrains its documents' shards only).
    func refit(_ reader: Reader, shards: Set<String>) {
        for shard in shards {
            let fitted = ReaderSiteLearning.fit(siteExamples.filter { $0.value.shard == shard }.mapValues(\.examples), rank: reader.weights.rank)
            reader.setAdapter(fitted.adapter, for: shard)
            siteChecks[shard] = fitted.check
        }
    }

    /// What on-site learning cost and wrote (`reader_site` in the results).
    public var learningFigures: [String: Any]? {
        guard site != nil else { return nil }
        let examples = siteExamples.values.flatMap(\.examples)
        return ["documents": siteExamples.count, "questions": siteQuestions.count, "examples": examples.count,
                "unanswerable_examples": examples.filter { !$0.answerable }.count, "seconds": seconds, "asked": siteQuestions,
                "shards": siteChecks.mapValues { c in
                    ["examples": c.examples, "adapted_lands": c.adapted, "shipped_lands": c.shipped, "adapter_used": c.helps] as [String: Any]
                }]
    }

    /// The daemon's recall for a question or a stretch of text (recorded in the trace).
    func recall(_ text: String, continuing: Bool = false, limit: Int = Recall.defaultLimit) throws -> Recall {
        let r = try continuing ? Recall(continuing: text, index: passages.store, limit: limit)
            : Recall(question: text, index: passages.store, limit: limit)
        for p in r.passages { retrievalTrace?.record("\(p.path)@\(p.lines.map { "\($0.lowerBound)" } ?? "?")") }
        return r
    }

    public func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits {
        try RAGSystem.windowLogits(tokens, from: first, model: model, prefix: { [self] a in
            let text = tokenizer.decode(Array(tokens[max(0, a + 1 - RecallFloorFitting.windowTokens)...a]))
            return KnowledgeContext.prefixText(try recall(text, limit: 1).recalled).map { tokenizer.encode($0) } ?? []
        }, step: { [memory] input, cache, first in try memory.mixed(input, cache: cache, from: first) })
    }

    public func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] {
        try memory.candidateScores(prompt: knowledgePrompt(prompt).prompt, candidates: candidates)
    }

    public func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32] {
        try memory.generate(prompt: knowledgePrompt(prompt).prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd)
    }

    /// The reply with the memory joined; the evidence and the sources as the daemon gives them
    /// (`KnowledgeUse`: the recalled passages' lines against the question and the reply; the
    /// recalled documents and those the memory drew on enough).
    public func answer(chatPrompt: [Int32], question: String, maxTokens: Int) throws -> OpenAnswer {
        let (prompt, recall) = try knowledgePrompt(chatPrompt)
        let use = KnowledgeUse(recall: recall, memory: nil)
        let reading = reader.flatMap { reader in
            recall.reading(model: model, tokenizer: tokenizer, template: chatTemplate, reader: reader, inner: MemoryJoin(memory.knn), question: question)
        }
        let result = try memory.generate(prompt: prompt, maxTokens: maxTokens, stopAtEnd: true, reading: reading) { use.tally($0, weight: $1) }
        let tokens = result.ids
        let evidence = recall.evidence(answer: tokenizer.decode(tokens)).map { e in
            ([e.citation, e.header].filter { !$0.isEmpty } + [e.text]).joined(separator: "\n")
        }
        return OpenAnswer(tokens: tokens, evidence: evidence, sources: use.cited().compactMap { memory.name(of: $0.documentId) },
                          passages: recall.passages.map { ($0.path, $0.header + "\n" + $0.text) },
                          reading: reader == nil ? nil : Self.note(reading?.decision ?? .unread),
                          prefillSeconds: result.prefillSeconds, readerSeconds: reading?.readSeconds)
    }

    static func note(_ decision: ReadingPredictor.Decision) -> (decision: String, span: String?) {
        switch decision {
        case let .stated(span): return ("stated", span.text)
        case let .silent(span): return ("silent", span?.text)
        case let .unsure(span): return ("unsure", span?.text)
        case .unread: return ("unread", nil)
        }
    }

    /// The prompt as the daemon builds it: in a conversation, recall reads the last user message
    /// (the system message's words would count against every passage) and the passages go into
    /// it (`KnowledgeContext.userText`); a plain prompt gets them before it.
    func knowledgePrompt(_ prompt: [Int32]) throws -> (prompt: [Int32], recall: Recall) {
        let rendered = tokenizer.decode(prompt, renderSpecial: true)
        guard let message = chatTemplate?.lastUserMessage(inRendered: rendered) else {
            let recall = try recall(rendered, continuing: true)
            return ((KnowledgeContext.prefixText(recall.recalled).map { tokenizer.encode($0) } ?? []) + prompt, recall)
        }
        let question = String(rendered[message])
        let recall = try recall(question)
        guard let text = KnowledgeContext.userText(recall.recalled, question: question) else { return (prompt, recall) }
        return (tokenizer.encode(rendered.replacingCharacters(in: message, with: text), parseSpecial: true), recall)
    }
}

/// A temporary store (SQLite, FTS5, deleted with this object) holding a corpus's documents as
/// the daemon learns them: registered, cut into passages along their structure, indexed.
final class PassageStore {
    let store: Store
    let tokenizer: Tokenizer
    private let directory: URL
    private let source: Int64
    private var ids: [String: Int64] = [:]

    init(tokenizer: Tokenizer) throws {
        self.tokenizer = tokenizer
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("twinbrain-passages-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        store = try Store(path: directory.appendingPathComponent("state.sqlite").path)
        source = try store.sourceSeen(.path("/freshdocs")).id
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// Learns documents; returns their store ids.
    @discardableResult
    func learn(_ documents: [FreshDocsCorpus.Document]) throws -> [Int64] {
        try documents.map { d in
            let reading = Store.FileReading(source: source, path: d.id, size: Int64(d.text.utf8.count), mtime: 0, format: "text",
                                            rawSHA256: SHA256.hex(Data(d.text.utf8)), outcome: .success(d.text))
            guard case let .added(document) = try store.register(reading),
                  try store.learn(document: document.id, passages: DocumentPassageBuilder.standard.records(of: d.text, tokenizer: tokenizer))
            else { throw CorpusError("\(d.id) could not be learned (a duplicate document id?)") }
            ids[d.id] = document.id
            return document.id
        }
    }

    func forget(_ documents: [String]) throws {
        _ = try store.forget(documents: documents.compactMap { ids[$0] })
    }
}

/// What recall finds over a corpus's learned documents, candidate by candidate (`twinbrain-eval
/// recall`): to see why a question recalls what it does. Passages only (no token memory).
public final class RecallProbe {
    public struct Candidate {
        /// "path:first–last".
        public let passage: String
        public let path: String
        public let header: String
        public let bm25: Double
        /// The share of the question's content words the passage holds (`PassageRelevance`).
        public let share: Double
        public let recalled: Bool
    }

    let passages: PassageStore

    public init(corpus: FreshDocsCorpus, tokenizer: Tokenizer) throws {
        passages = try PassageStore(tokenizer: tokenizer)
        try passages.learn(corpus.learned)
    }

    /// The question's content words, every BM25 candidate best first, and the passages recall
    /// keeps as shipped (`continuing`: a plain prompt's recall, which may keep passages that are
    /// no candidates: those after the prompt's end).
    public func probe(_ text: String, continuing: Bool) throws -> (words: [String], candidates: [Candidate], recalled: [String]) {
        let limit = Recall.defaultLimit
        let recall = try continuing ? Recall(continuing: text, index: passages.store, limit: limit)
            : Recall(question: text, index: passages.store, limit: limit)
        let chosen = Set(recall.passages.map(\.passageId))
        let found = try Recall.candidates(for: text, index: passages.store, limit: limit)
        let name = { (h: PassageHit) in "\(h.path):\(h.lines.map { "\($0.lowerBound)–\($0.upperBound)" } ?? "?")" }
        return (found.words, found.hits.map {
            Candidate(passage: name($0.hit), path: $0.hit.path, header: $0.hit.header, bm25: $0.hit.score, share: $0.share,
                      recalled: chosen.contains($0.hit.passageId))
        }, recall.passages.map(name))
    }
}

/// `gold-passage`: the ceiling of prompting. The main brain alone, given the one passage of the
/// question's document that holds the gold answer (the best BM25 match among those) in the
/// daemon's prompt: what the reply states when recall is perfect and there is nothing else to read.
final class GoldPassageSystem: EvalSystem, ItemAware {
    let id = "gold-passage"
    let model: Model
    let tokenizer: Tokenizer
    let chatTemplate: ChatTemplate?
    let passages: PassageStore
    let base: BaseSystem
    var currentItem: FreshDocsCorpus.Item?

    init(model: Model, tokenizer: Tokenizer) throws {
        self.model = model
        self.tokenizer = tokenizer
        chatTemplate = try? ChatTemplate(source: model.gguf.metadata["tokenizer.chat_template"]?.string, tokenizer: tokenizer)
        passages = try PassageStore(tokenizer: tokenizer)
        base = BaseSystem(model: model, tokenizer: tokenizer)
    }

    func learn(_ documents: [FreshDocsCorpus.Document]) throws { try passages.learn(documents) }
    func windowLogits(_ tokens: [Int32], from first: Int) throws -> Logits { try base.windowLogits(tokens, from: first) }
    func candidateScores(prompt: [Int32], candidates: [[Int32]]) throws -> [Double] { try base.candidateScores(prompt: prompt, candidates: candidates) }
    func generate(prompt: [Int32], maxTokens: Int, stopAtEnd: Bool) throws -> [Int32] {
        try base.generate(prompt: prompt, maxTokens: maxTokens, stopAtEnd: stopAtEnd)
    }
    var forgetting: ((_ ids: [String]) throws -> Void)? { nil }
    var retrievalTrace: RetrievalTrace? { nil }

    func answer(chatPrompt: [Int32], question: String, maxTokens: Int) throws -> OpenAnswer {
        guard let item = currentItem, let chatTemplate else { return OpenAnswer(tokens: try generate(prompt: chatPrompt, maxTokens: maxTokens, stopAtEnd: true)) }
        let gold = item.candidates[item.answer]
        let hits = try Recall.candidates(for: question, index: passages.store, limit: 16).hits.map(\.hit)
        guard let hit = hits.first(where: { $0.path == item.doc && GoldMatch.contains($0.header + "\n" + $0.text, gold: gold) }) else {
            return OpenAnswer(tokens: try generate(prompt: chatPrompt, maxTokens: maxTokens, stopAtEnd: true))
        }
        let title = hit.header.isEmpty ? hit.path : "\(hit.path) (\(hit.header))"
        let text = KnowledgeContext.userText([.init(title: title, text: hit.text)], question: question)!
        let prompt = tokenizer.encode(chatTemplate.render([ChatMessage(role: "user", content: text)]), parseSpecial: true)
        return OpenAnswer(tokens: try generate(prompt: prompt, maxTokens: maxTokens, stopAtEnd: true),
                          passages: [(hit.path, hit.header + "\n" + hit.text)])
    }
}

extension FittedKeyspace {
    /// The model's fitted keyspace for measurements: nil without one; one that exists but cannot
    /// be used is said on standard error (the measurement then runs with the memory closed).
    public static func shipped(for model: Model) -> FittedKeyspace? {
        do {
            return try forModel(model)
        } catch {
            FileHandle.standardError.write(Data("warning: \(error)\n".utf8))
            return nil
        }
    }
}
