import ControlAPI
import Foundation
import LearningBrain
import Logging
import MainBrain
import Metrics
import Store

/// Learns extracted documents on its own thread, as soon as they are registered: each version
/// is cut into passages of main-brain tokens and stored with its index in one transaction
/// (which also drops the passages of the version it superseded), so a kill at any point
/// leaves a document either learned or waiting, never half-learned, and the next start goes
/// on with what waits. Then the token memory learns it (piece by piece on the compute thread)
/// and drops the superseded version's entries.
final class LearningService: @unchecked Sendable {
    let store: Store
    let logger: Logger
    let chunker = PassageChunker.standard
    private let condition = NSCondition()
    private var tokenizer: Tokenizer?
    private var memory: TokenMemoryService?
    /// Learned versions whose token memory is missing (found at start).
    private var relearn: [Int64] = []
    private var stopping = false
    private var current: String?
    /// Documents that failed to learn in this run (logged once; tried again after a restart).
    private var failed: Set<Int64> = []
    private var thread: Thread?

    init(store: Store, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// Starts learning with the main brain's tokenizer (once the model is loaded).
    func start(tokenizer: Tokenizer, memory: TokenMemoryService?, relearn: [Int64]) {
        condition.withLock {
            self.tokenizer = tokenizer
            self.memory = memory
            self.relearn = relearn
        }
        let t = Thread { [weak self] in self?.loop() }
        t.name = "twinbrain-learning"
        thread = t
        t.start()
    }

    /// New documents may wait: look now rather than at the next poll.
    func wake() { condition.withLock { condition.signal() } }

    func stop() {
        condition.withLock {
            stopping = true
            condition.broadcast()
        }
    }

    /// The document being learned now, if any (status).
    var activity: String? { condition.withLock { current } }

    private func loop() {
        for id in condition.withLock({ relearn }) {
            guard let tokenizer = condition.withLock({ self.tokenizer }), !condition.withLock({ stopping }) else { return }
            do {
                guard let d = try store.document(id: id), d.state == .learned else { continue }
                memorise(d, tokens: tokenizer.encode(try text(of: d)))
            } catch {
                logger.error("cannot read document \(id) to learn its token memory again: \(error)")
            }
        }
        letGoOfUnlearned()
        while true {
            let (tokenizer, stop, skip) = condition.withLock { (self.tokenizer, stopping, failed) }
            guard !stop, let tokenizer else { return }
            let waiting: [Document]
            do {
                waiting = try store.documentsToLearn(limit: 16 + skip.count).filter { !skip.contains($0.id) }
            } catch {
                logger.error("cannot read the documents waiting to be learned: \(error)")
                waiting = []
            }
            if waiting.isEmpty {
                // Intake wakes us after each registration; the poll is only a safety net.
                condition.withLock { if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 2)) } }
                continue
            }
            // Passages first (questions can use a document as soon as they are stored), then the
            // token memory, which takes compute time between requests.
            var learned: [(Document, [Int32])] = []
            for document in waiting {
                if condition.withLock({ stopping }) { return }
                if let tokens = learn(document, tokenizer: tokenizer) { learned.append((document, tokens)) }
            }
            for (document, tokens) in learned {
                if condition.withLock({ stopping }) { return }
                memorise(document, tokens: tokens)
            }
            if !learned.isEmpty { letGoOfUnlearned() }
        }
    }

    /// Learns a version's passages; returns its tokens when it was learned.
    private func learn(_ document: Document, tokenizer: Tokenizer) -> [Int32]? {
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        let start = Date()
        do {
            // No text: forgotten (or superseded and dropped) since it was listed; learn() refuses it below.
            let tokens = tokenizer.encode(try text(of: document))
            let passages = chunker.passages(tokens, tokenizer: tokenizer).map {
                PassageRecord(tokenOffset: $0.tokenOffset, tokens: $0.tokens.count, text: $0.text)
            }
            guard try store.learn(document: document.id, passages: passages) else { return nil }
            Counter(label: "twinbrain_documents_learned_total").increment()
            Counter(label: "twinbrain_passages_learned_total").increment(by: passages.count)
            let ms = Int(Date().timeIntervalSince(start) * 1000)
            logger.info("learned \(document.path) (document \(document.id), version \(document.version)): \(passages.count) passages in \(ms) ms")
            return tokens
        } catch {
            condition.withLock { _ = failed.insert(document.id) }
            logger.error("cannot learn \(document.path) (document \(document.id)): \(error); it is tried again after a restart")
            return nil
        }
    }
}

extension LearningService {
    func text(of document: Document) throws -> String {
        try document.textSha256.flatMap { try store.text(sha256: $0) } ?? ""
    }

    /// The token memory learns a learned version. A failure leaves the memory without the
    /// document; the next start learns it again.
    func memorise(_ document: Document, tokens: [Int32]) {
        guard let memory = condition.withLock({ self.memory }) else { return }
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        let start = Date()
        do {
            try memory.learn(document: document.id, tokens: tokens, shouldStop: { [weak self] in
                guard let self, !condition.withLock({ self.stopping }) else { return true }
                return (try? store.document(id: document.id))??.state != .learned
            })
            let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
            logger.info("memorised \(document.path) (document \(document.id)): \(max(0, tokens.count - 1)) entries in \(seconds) s")
        } catch is CancellationError {
            logger.info("stopped memorising \(document.path) (stopping, or it was forgotten)")
        } catch {
            logger.error("cannot memorise \(document.path) (document \(document.id)): \(error); it is learned again at the next start")
        }
    }

    /// The memory lets go of every version the store no longer has learned (superseded by one
    /// just learned, forgotten meanwhile).
    func letGoOfUnlearned() {
        guard let memory = condition.withLock({ self.memory }) else { return }
        do {
            let dropped = try memory.keepOnly(Set(try store.learnedDocumentIDs()))
            if !dropped.isEmpty { logger.info("token memory: let go of \(dropped.count) superseded or forgotten document versions") }
        } catch {
            logger.error("token memory: cannot let go of superseded or forgotten documents: \(error)")
        }
    }
}

/// Passage recall for one question: the learned passages that match its content words, the
/// prompt that puts them before the question, and the documents to cite.
struct Recall {
    var passages: [PassageHit] = []

    /// A relevant passage joins only if its BM25 score is at least this share of the best
    /// one's: the tail of weak matches stays out of the context.
    static let relativeFloor = 0.5

    /// The passages BM25 ranks first that hold enough of the question (`PassageRelevance.floor`):
    /// text that only shares a few common words with the documents gets none.
    init(question: String, store: Store, limit: Int) throws {
        guard limit > 0 else { return }
        let words = QueryWords.content(of: question)
        let hits = try store.searchPassages(words: words, limit: limit)
        guard !hits.isEmpty else { return }
        let counts = try store.passageFrequencies(words: words)
        let relevant = hits.filter { hit in
            PassageRelevance.share(of: words, holding: PassageRelevance.stems(QueryWords.words(in: hit.text)),
                                   containing: counts.containing, passages: counts.passages) >= PassageRelevance.floor
        }
        guard let best = relevant.first?.score, best > 0 else { return }
        passages = relevant.filter { $0.score >= Self.relativeFloor * best }
    }

    /// Each recalled document's share of the recalled passages' scores (they sum to 1), and its passages.
    var shares: [Int64: (share: Double, passages: Int)] {
        let total = passages.reduce(0) { $0 + $1.score }
        var out: [Int64: (share: Double, passages: Int)] = [:]
        for p in passages {
            out[p.documentId, default: (0, 0)].share += total > 0 ? p.score / total : 0
            out[p.documentId, default: (0, 0)].passages += 1
        }
        return out
    }

    /// How the context names a passage's document: its path on the drive (the source and
    /// version go to `sources`; in the prompt they only distract a small model).
    static func title(_ p: PassageHit) -> String { p.path }

    var recalled: [KnowledgeContext.Recalled] { passages.map { .init(title: Self.title($0), text: $0.text) } }

    /// The conversation with the recalled passages in its last user turn (the history as sent).
    func messages(_ messages: [ChatMessageBody]) -> [ChatMessageBody] {
        guard let last = messages.lastIndex(where: { $0.role == "user" }),
              let text = KnowledgeContext.userText(recalled, question: messages[last].content) else { return messages }
        var out = messages
        out[last].content = text
        return out
    }

    /// A plain text prompt with the recalled passages before it.
    func prompt(_ prompt: String) -> String {
        guard let context = KnowledgeContext.prefixText(recalled) else { return prompt }
        return context + prompt
    }

    /// Keeps the best `count` passages (to fit a context).
    func keeping(_ count: Int) -> Recall {
        var r = self
        r.passages = Array(passages.prefix(count))
        return r
    }
}

/// What the learning brain gave one answer: the passages recalled before generating, and the
/// token memory's part, gathered step by step on the compute thread while generating.
final class KnowledgeUse: @unchecked Sendable {
    let recall: Recall
    let memory: TokenMemoryService?
    private let lock = NSLock()
    /// Per document: the memory weight its entries carried (λ times their votes), and the
    /// generated tokens they shaped (a quarter of the step's votes or more).
    private var memoryWeights: [Int64: (weight: Double, tokens: Int)] = [:]

    init(recall: Recall, memory: TokenMemoryService?) {
        self.recall = recall
        self.memory = memory
    }

    /// The memory as the generation's predictor (nil when it holds nothing), reporting to this answer.
    func predictor() -> NextTokenPredictor? {
        guard let memory, memory.holdsDocuments else { return nil }
        memory.knn.onGenerationStep = { [self] neighbours, weight in
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
        return memory.knn
    }

    func generationEnded() { memory?.knn.onGenerationStep = nil }

    /// The documents cited: each channel's shares (passages, memory) averaged over the channels
    /// that contributed, so the weights sum to 1; most weight first.
    func sources(store: Store) -> [KnowledgeSource] {
        let passages = recall.shares
        let memory = lock.withLock { memoryWeights }
        let memoryTotal = memory.values.reduce(0) { $0 + $1.weight }
        let channels = Double((passages.isEmpty ? 0 : 1) + (memoryTotal > 0 ? 1 : 0))
        guard channels > 0 else { return [] }
        var out: [KnowledgeSource] = []
        for id in Set(passages.keys).union(memory.keys) {
            let weight = ((passages[id]?.share ?? 0) + (memoryTotal > 0 ? (memory[id]?.weight ?? 0) / memoryTotal : 0)) / channels
            if let hit = recall.passages.first(where: { $0.documentId == id }) {
                out.append(KnowledgeSource(documentId: id, path: hit.path, version: hit.version, sourceId: hit.sourceId,
                                           source: hit.sourceLabel ?? hit.sourceKey, weight: weight,
                                           passages: passages[id]?.passages ?? 0, memoryTokens: memory[id]?.tokens ?? 0))
            } else if let d = try? store.document(id: id), let s = try? store.source(id: d.sourceId) {
                out.append(KnowledgeSource(documentId: id, path: d.path, version: d.version, sourceId: s.id, source: s.label ?? s.key,
                                           weight: weight, passages: 0, memoryTokens: memory[id]?.tokens ?? 0))
            }
        }
        return out.sorted { $0.weight != $1.weight ? $0.weight > $1.weight : $0.documentId < $1.documentId }
    }
}
