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
    let passageBuilder = DocumentPassageBuilder.standard
    private let condition = NSCondition()
    private var tokenizer: Tokenizer?
    private var memory: TokenMemoryService?
    /// Learned versions whose token memory is missing (found at start).
    private var relearn: [Int64] = []
    private var stopping = false
    private var current: String?
    /// Documents that failed to learn in this run (logged once; tried again after a restart).
    private var failed: Set<Int64> = []
    /// Learned versions waiting for the token memory, oldest first (the learning thread's own).
    private var backlog: [Document] = []
    /// The reader's on-site learning, behind the token memory, and its backlog (the learning thread's own).
    private var readerSite: ReaderSiteService?
    private var readerBacklog: [Document] = []
    private var readerRelearn: [Int64] = []
    private var thread: Thread?
    /// Whether the learning thread is in its loop.
    private var looping = false
    /// Why learning waits, when it does (the disk is full), for status.
    private var paused: String?
    /// The state directory's filesystem, on which a full disk pauses learning.
    let disk: FullDisk

    init(store: Store, stateDirectory: String, logger: Logger) {
        self.store = store
        disk = FullDisk(stateDirectory: stateDirectory, logger: logger)
        self.logger = logger
    }

    /// Starts learning with the main brain's tokenizer (once the model is loaded), or again with
    /// another model's after `stopAndWait`.
    func start(tokenizer: Tokenizer, memory: TokenMemoryService?, relearn: [Int64], readerSite: ReaderSiteService? = nil, readerRelearn: [Int64] = []) {
        condition.withLock {
            self.tokenizer = tokenizer
            self.memory = memory
            self.relearn = relearn
            self.readerSite = readerSite
            self.readerRelearn = readerRelearn
            stopping = false
            failed = []
            backlog = []
            readerBacklog = []
            looping = true
        }
        let t = Thread { [weak self] in
            self?.loop()
            self?.condition.withLock {
                self?.looping = false
                self?.condition.broadcast()
            }
        }
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

    /// Stops and waits until the learning thread has left its loop (its current piece done):
    /// before the model changes under it. Blocks.
    func stopAndWait() {
        stop()
        condition.withLock { while looping { condition.wait() } }
    }

    /// The document being learned now, if any (status).
    var activity: String? { condition.withLock { current } }

    /// Why learning is paused, if it is (status).
    var pausedReason: String? { condition.withLock { paused } }

    /// Whether `error` says the disk is full: SQLite's, or a memory or reader file's (ENOSPC, EDQUOT).
    static func isDiskFull(_ error: Error) -> Bool {
        Store.isDiskFull(error) || (error as? DocumentFiles.FileError)?.isDiskFull == true
    }

    /// After a write failed on a full disk: learning pauses (`FullDisk`), then the caller does the
    /// same work again. False when the daemon stops meanwhile.
    func waitForSpace(after error: Error, learning what: String) -> Bool {
        let reason = disk.reason("learning \(what)")
        logger.error("learning paused: \(reason) (\(error))")
        condition.withLock { paused = reason }
        defer { condition.withLock { paused = nil } }
        return disk.wait {
            condition.withLock {
                if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 5)) }
                return stopping
            }
        }
    }

    /// Passages first: every waiting document's passages are stored (milliseconds each) before
    /// the token memory learns the next one, and between the pieces of the one it is learning
    /// (seconds each), so a plugged drive answers from all of its documents while the memory
    /// learns behind. A kill loses only the memory's backlog, which the next start finds missing
    /// and learns again.
    private func loop() {
        guard let tokenizer = condition.withLock({ self.tokenizer }) else { return }
        recutOldPassages(tokenizer: tokenizer)
        backlog = learnedDocuments(condition.withLock { relearn }, for: "its token memory")
        readerBacklog = learnedDocuments(condition.withLock { readerRelearn }, for: "the reader's questions on it")
        letGoOfUnlearned()
        while !condition.withLock({ stopping }) {
            if learnWaitingPassages(tokenizer: tokenizer) {
                letGoOfUnlearned()
            } else if !backlog.isEmpty {
                let document = backlog.removeFirst()
                memorise(document, tokenizer: tokenizer)
                if readerSite != nil { readerBacklog.append(document) }
                if backlog.isEmpty { letGoOfUnlearned() }
            } else if !readerBacklog.isEmpty {
                adaptReader(to: readerBacklog.removeFirst(), tokenizer: tokenizer)
                if readerBacklog.isEmpty { readerSite?.fit() }
            } else {
                // Intake wakes us after each registration; the poll is only a safety net.
                condition.withLock { if !stopping { _ = condition.wait(until: Date(timeIntervalSinceNow: 2)) } }
            }
        }
    }

    /// The documents of these ids still learned, to learn `what` again.
    private func learnedDocuments(_ ids: [Int64], for what: String) -> [Document] {
        ids.compactMap { id in
            do {
                guard let d = try store.document(id: id), d.state == .learned else { return nil }
                return d
            } catch {
                logger.error("cannot read document \(id) to learn \(what) again: \(error)")
                return nil
            }
        }
    }

    /// Learns the passages of every document waiting for them (their memory joins the backlog);
    /// true when it learned any.
    @discardableResult
    private func learnWaitingPassages(tokenizer: Tokenizer) -> Bool {
        var any = false
        while !condition.withLock({ stopping }) {
            let skip = condition.withLock { failed }
            let waiting: [Document]
            do {
                waiting = try store.documentsToLearn(limit: 16 + skip.count).filter { !skip.contains($0.id) }
            } catch {
                logger.error("cannot read the documents waiting to be learned: \(error)")
                return any
            }
            if waiting.isEmpty { return any }
            for document in waiting where learn(document, tokenizer: tokenizer) {
                backlog.append(document)
                any = true
            }
        }
        return any
    }

    /// Learns a version's passages; true when it was learned. A full disk pauses it (`waitForSpace`).
    private func learn(_ document: Document, tokenizer: Tokenizer) -> Bool {
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        let start = Date()
        while true {
        do {
            // No text: forgotten (or superseded and dropped) since it was listed; learn() refuses it below.
            let passages = passageBuilder.records(of: try text(of: document), tokenizer: tokenizer)
            guard try store.learn(document: document.id, passages: passages) else { return false }
            Counter(label: "twinbrain_documents_learned_total").increment()
            Counter(label: "twinbrain_passages_learned_total").increment(by: passages.count)
            let ms = Int(Date().timeIntervalSince(start) * 1000)
            logger.info("learned \(document.path) (document \(document.id), version \(document.version)): \(passages.count) passages in \(ms) ms")
            return true
        } catch where Self.isDiskFull(error) {
            guard waitForSpace(after: error, learning: document.path) else { return false }
        } catch {
            condition.withLock { _ = failed.insert(document.id) }
            logger.error("cannot learn \(document.path) (document \(document.id)): \(error); it is tried again after a restart")
            return false
        }
        }
    }
}

extension LearningService {
    /// Documents learned with passages of an earlier format get the current ones (their token
    /// memory stays as it is).
    func recutOldPassages(tokenizer: Tokenizer) {
        do {
            let old = try store.documentsWithOldPassages()
            guard !old.isEmpty else { return }
            for d in old {
                if condition.withLock({ stopping }) { return }
                _ = try store.recutPassages(document: d.id, passages: passageBuilder.records(of: try text(of: d), tokenizer: tokenizer))
            }
            logger.info("cut the passages of \(old.count) documents learned by an earlier version again")
        } catch {
            logger.error("cannot cut the passages of documents learned by an earlier version again: \(error)")
        }
    }

    func text(of document: Document) throws -> String {
        try document.textSha256.flatMap { try store.text(sha256: $0) } ?? ""
    }

    /// The token memory learns a learned version; between its pieces, waiting documents get
    /// their passages. A failure leaves the memory without the document; the next start learns it again.
    func memorise(_ document: Document, tokenizer: Tokenizer) {
        guard let memory = condition.withLock({ self.memory }) else { return }
        let tokens: [Int32]
        do { tokens = tokenizer.encode(try text(of: document)) } catch {
            logger.error("cannot read \(document.path) (document \(document.id)) to memorise it: \(error)")
            return
        }
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        let start = Date()
        do {
            try memory.learn(document: document.id, tokens: tokens, shouldStop: { [weak self] in
                guard let self, !condition.withLock({ self.stopping }) else { return true }
                learnWaitingPassages(tokenizer: tokenizer)
                condition.withLock { self.current = document.path }  // learning passages named its own document
                return (try? store.document(id: document.id))??.state != .learned
            })
            let seconds = String(format: "%.2f", Date().timeIntervalSince(start))
            logger.info("memorised \(document.path) (document \(document.id)): \(max(0, tokens.count - 1)) entries in \(seconds) s")
        } catch is CancellationError {
            logger.info("stopped memorising \(document.path) (stopping, or it was forgotten)")
        } catch where Self.isDiskFull(error) {
            if waitForSpace(after: error, learning: "the token memory of \(document.path)") { memorise(document, tokenizer: tokenizer) }
        } catch {
            logger.error("cannot memorise \(document.path) (document \(document.id)): \(error); it is learned again at the next start")
        }
    }

    /// The memory and the reader let go of every version the store no longer has learned
    /// (superseded by one just learned, forgotten meanwhile).
    func letGoOfUnlearned() {
        let (memory, readerSite) = condition.withLock { (self.memory, self.readerSite) }
        guard memory != nil || readerSite != nil else { return }
        do {
            let learned = Set(try store.learnedDocumentIDs())
            if let dropped = try memory?.keepOnly(learned), !dropped.isEmpty {
                logger.info("token memory: let go of \(dropped.count) superseded or forgotten document versions")
            }
            if let dropped = try readerSite?.keepOnly(learned), !dropped.isEmpty {
                logger.info("reader: let go of the questions on \(dropped.count) superseded or forgotten document versions")
            }
        } catch {
            logger.error("cannot let go of superseded or forgotten documents: \(error)")
        }
    }

    /// The reader learns a learned version's layout from questions on its passages (after its
    /// passages and token memory). A failure leaves the reader without it; the next start tries again.
    func adaptReader(to document: Document, tokenizer: Tokenizer) {
        guard let readerSite = condition.withLock({ self.readerSite }) else { return }
        condition.withLock { current = document.path }
        defer { condition.withLock { current = nil } }
        do {
            let passages = passageBuilder.records(of: try text(of: document), tokenizer: tokenizer).map { ($0.header, $0.text) }
            try readerSite.learn(document: document.id, path: document.path, passages: passages, shouldStop: { [weak self] in
                guard let self, !condition.withLock({ self.stopping }) else { return true }
                learnWaitingPassages(tokenizer: tokenizer)
                condition.withLock { self.current = document.path }
                return (try? store.document(id: document.id))??.state != .learned
            })
            letGoOfUnlearned()
        } catch is CancellationError {
            logger.info("reader: stopped learning \(document.path) (stopping, or it was forgotten)")
        } catch where Self.isDiskFull(error) {
            if waitForSpace(after: error, learning: "the reader's questions on \(document.path)") { adaptReader(to: document, tokenizer: tokenizer) }
        } catch {
            logger.error("reader: cannot learn \(document.path) (document \(document.id)): \(error); it is learned again at the next start")
        }
    }
}

extension Recall {
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
}

extension KnowledgeUse {
    /// The learning brain's part of one answer, with the daemon's token memory (when it holds documents).
    convenience init(recall: Recall, memory: TokenMemoryService?) {
        self.init(recall: recall, memory: memory.flatMap { $0.holdsDocuments ? $0.knn : nil })
    }

    /// The documents cited, as the wire names them.
    func sources(store: Store) -> [KnowledgeSource] {
        cited().compactMap { c in
            if let hit = c.passage {
                return KnowledgeSource(documentId: c.documentId, path: hit.path, version: hit.version, sourceId: hit.sourceId,
                                       source: hit.sourceLabel ?? hit.sourceKey, weight: c.weight, passages: c.passages,
                                       memoryTokens: c.memoryTokens)
            }
            guard let d = try? store.document(id: c.documentId), let s = try? store.source(id: d.sourceId) else { return nil }
            return KnowledgeSource(documentId: c.documentId, path: d.path, version: d.version, sourceId: s.id, source: s.label ?? s.key,
                                   weight: c.weight, passages: 0, memoryTokens: c.memoryTokens)
        }
    }

    /// The reader's decision as the wire names it (nil: it did not read).
    var readerDecision: String? {
        switch reader?.decision {
        case .stated: return "stated"
        case .silent: return "silent"
        case .unsure: return "unsure"
        case .unread, nil: return nil
        }
    }

    /// Evidence lines as the wire names them (their source from the passage they came from).
    static func wire(_ e: EvidenceLines, passages: [PassageHit]) -> EvidenceLine {
        let hit = passages.first { $0.documentId == e.documentId }
        return EvidenceLine(documentId: e.documentId, path: e.path, source: hit.map { $0.sourceLabel ?? $0.sourceKey } ?? "",
                            citation: e.citation, lineStart: e.lines?.lowerBound, lineEnd: e.lines?.upperBound, page: e.page,
                            headings: API.headings(e.header), text: e.text)
    }

    /// The evidence lines, as the wire names them; the first that holds the span the reader
    /// stated is marked with it.
    func evidence(answer: String) -> [EvidenceLine] {
        var lines = recall.evidence(answer: answer).map { Self.wire($0, passages: recall.passages) }
        if case let .stated(span) = reader?.decision,
           let i = lines.firstIndex(where: { $0.text.contains(span.text) || $0.headings.contains { $0.contains(span.text) } }) {
            lines[i].quoted = span.text
        }
        return lines
    }
}
