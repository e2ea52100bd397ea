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
/// on with what waits.
final class LearningService: @unchecked Sendable {
    let store: Store
    let logger: Logger
    let chunker = PassageChunker.standard
    private let condition = NSCondition()
    private var tokenizer: Tokenizer?
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
    func start(tokenizer: Tokenizer) {
        condition.withLock { self.tokenizer = tokenizer }
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
            for document in waiting {
                if condition.withLock({ stopping }) { return }
                learn(document, tokenizer: tokenizer)
            }
        }
    }

    private func learn(_ document: Document, tokenizer: Tokenizer) {
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        let start = Date()
        do {
            // No text: forgotten (or superseded and dropped) since it was listed; learn() refuses it below.
            let text = try document.textSha256.flatMap { try store.text(sha256: $0) } ?? ""
            let passages = chunker.passages(tokenizer.encode(text), tokenizer: tokenizer).map {
                PassageRecord(tokenOffset: $0.tokenOffset, tokens: $0.tokens.count, text: $0.text)
            }
            guard try store.learn(document: document.id, passages: passages) else { return }
            Counter(label: "twinbrain_documents_learned_total").increment()
            Counter(label: "twinbrain_passages_learned_total").increment(by: passages.count)
            let ms = Int(Date().timeIntervalSince(start) * 1000)
            logger.info("learned \(document.path) (document \(document.id), version \(document.version)): \(passages.count) passages in \(ms) ms")
        } catch {
            condition.withLock { _ = failed.insert(document.id) }
            logger.error("cannot learn \(document.path) (document \(document.id)): \(error); it is tried again after a restart")
        }
    }
}

/// Passage recall for one question: the learned passages that match its content words, the
/// prompt that puts them before the question, and the documents to cite.
struct Recall {
    var passages: [PassageHit] = []

    /// A passage joins only if its BM25 score is at least this share of the best one's: the
    /// tail of weak matches (one common word) stays out of the context.
    static let relativeFloor = 0.5

    init(question: String, store: Store, limit: Int) throws {
        guard limit > 0 else { return }
        let hits = try store.searchPassages(words: QueryWords.content(of: question), limit: limit)
        guard let best = hits.first?.score, best > 0 else { return }
        passages = hits.filter { $0.score >= Self.relativeFloor * best }
    }

    /// Each recalled document once, weighted by its share of the recalled passages' scores.
    var sources: [KnowledgeSource] {
        let total = passages.reduce(0) { $0 + $1.score }
        var order: [Int64] = [], byDocument: [Int64: (hit: PassageHit, score: Double, count: Int)] = [:]
        for p in passages {
            if byDocument[p.documentId] == nil { order.append(p.documentId); byDocument[p.documentId] = (p, 0, 0) }
            byDocument[p.documentId]!.score += p.score
            byDocument[p.documentId]!.count += 1
        }
        return order.map { id in
            let (hit, score, count) = byDocument[id]!
            return KnowledgeSource(documentId: id, path: hit.path, version: hit.version, sourceId: hit.sourceId,
                                   source: hit.sourceLabel ?? hit.sourceKey, weight: total > 0 ? score / total : 0, passages: count)
        }.sorted { $0.weight > $1.weight }
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
