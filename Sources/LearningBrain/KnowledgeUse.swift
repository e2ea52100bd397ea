import Foundation
import MainBrain
import Store

/// What the learning brain gave one answer: the passages recalled before generating, and the
/// token memory's part, tallied step by step while generating; from them the documents to cite
/// (`recall.evidence` gives the lines). The daemon and FreshDocs's `hybrid` use it alike.
public final class KnowledgeUse: @unchecked Sendable {
    public let recall: Recall
    /// The memory joined to the generation (nil: none, or it holds nothing).
    public let memory: KNNLanguageModel?
    private let lock = NSLock()
    /// Per document: the memory weight its entries carried (λ times their votes), and the
    /// generated tokens they shaped (a quarter of the step's votes or more).
    private var memoryWeights: [Int64: (weight: Double, tokens: Int)] = [:]

    public init(recall: Recall, memory: KNNLanguageModel?) {
        self.recall = recall
        self.memory = memory
    }

    /// The reader and the question it reads for (a chat's last user message), when one joins.
    public var reading: (reader: Reader, question: String)?
    /// The reader's part in the answer, once generation has begun.
    public private(set) var reader: ReadingPredictor?

    /// The generation's predictor, reporting to this answer: the reader around the memory, the
    /// memory alone, or nil (the main brain alone).
    /// `template`: the chat template, for the reader to read near misses in a prompt of their own.
    public func predictor(model: Model, tokenizer: Tokenizer, template: ChatTemplate? = nil) -> NextTokenPredictor? {
        let join = memory.map { MemoryJoin($0) { [self] neighbours, weight in tally(neighbours, weight: weight) } }
        guard let reading else { return join }
        reader = recall.reading(model: model, tokenizer: tokenizer, template: template, reader: reading.reader, inner: join,
                                question: reading.question)
        return reader ?? join
    }

    /// One generation step's neighbours and the memory's weight in it.
    public func tally(_ neighbours: [TokenMemory.Neighbor], weight: Double) {
        guard weight > 0, !neighbours.isEmpty else { return }
        // Each neighbour's part of the step is its vote in the memory's distribution.
        var share: [Int64: Double] = [:]
        for (n, vote) in zip(neighbours, KNNLanguageModel.votes(neighbours)) { share[n.document, default: 0] += vote }
        lock.withLock {
            for (document, part) in share {
                memoryWeights[document, default: (0, 0)].weight += weight * part
                if part >= 0.25 { memoryWeights[document, default: (0, 0)].tokens += 1 }
            }
        }
    }

    /// A document the token memory alone drew on is cited only when its entries carried at
    /// least this share of the memory's weight in the answer: a few stray votes (1–3% each)
    /// named ten documents beside the one the answer came from.
    public static let memorySourceShare = 0.25

    /// A document an answer drew on.
    public struct Cited: Sendable, Equatable {
        public var documentId: Int64
        /// Its share of the answer's knowledge (the weights of one answer sum to 1).
        public var weight: Double
        public var passages: Int
        public var memoryTokens: Int
        /// A recalled passage of it (names its path, version and source), when one was recalled.
        public var passage: PassageHit?
    }

    /// The documents cited: every document a recalled passage came from, and those whose
    /// memory share passes `memorySourceShare`; each channel's shares (passages, and memory
    /// among the cited documents) averaged over the channels that contributed, so the weights
    /// sum to 1. Best first: the documents of recalled passages in the order of their best
    /// passage, then the memory's by weight (the memory also votes for the boilerplate an answer
    /// shares with other documents, so its weight alone put the answering document second in 1
    /// question of 10 on FreshDocs).
    public func cited() -> [Cited] {
        let passages = recall.shares
        let allMemory = lock.withLock { memoryWeights }
        let allTotal = allMemory.values.reduce(0) { $0 + $1.weight }
        let memory = allMemory.filter { passages[$0.key] != nil || $0.value.weight >= Self.memorySourceShare * allTotal }
        let memoryTotal = memory.values.reduce(0) { $0 + $1.weight }
        let channels = Double((passages.isEmpty ? 0 : 1) + (memoryTotal > 0 ? 1 : 0))
        guard channels > 0 else { return [] }
        var rank: [Int64: Int] = [:]
        for (i, p) in recall.passages.enumerated() where rank[p.documentId] == nil { rank[p.documentId] = i }
        return Set(passages.keys).union(memory.keys).map { id in
            Cited(documentId: id,
                  weight: ((passages[id]?.share ?? 0) + (memoryTotal > 0 ? (memory[id]?.weight ?? 0) / memoryTotal : 0)) / channels,
                  passages: passages[id]?.passages ?? 0, memoryTokens: memory[id]?.tokens ?? 0,
                  passage: recall.passages.first { $0.documentId == id })
        }.sorted { a, b in
            let ra = rank[a.documentId] ?? Int.max, rb = rank[b.documentId] ?? Int.max
            if ra != rb { return ra < rb }
            return a.weight != b.weight ? a.weight > b.weight : a.documentId < b.documentId
        }
    }
}
