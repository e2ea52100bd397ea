import Foundation
import LearningBrain
import Logging
import MainBrain
import Metrics
import Store

/// The learning brain's token memory in the daemon: one entry per learned token (the main
/// brain's last-layer FFN input → the next token), kept in RAM for search and on disk as one
/// segment per document version under `<state_dir>/memory`. Only the compute thread touches the
/// memory (learning a piece, forgetting, generating through it are all scheduler jobs), so
/// interactive requests run between learning pieces and never see a half-changed memory.
///
/// The store says which versions are learned; the memory follows it: at start, segments of
/// versions that are not learned are deleted and learned versions without a (readable) segment
/// are learned again, so a kill at any point ends in the same memory as an uninterrupted run.
final class TokenMemoryService: @unchecked Sendable {
    let knn: KNNLanguageModel
    let segments: MemorySegmentDirectory
    let scheduler: ComputeScheduler
    let logger: Logger
    private let lock = NSLock()
    private var documents: Set<Int64> = []
    private var entries = 0

    /// nil when the model has no fitted keyspace (projection and gate): the memory would have no
    /// calibrated way to stay out of general use, so it is not used at all (passage recall
    /// still works).
    init?(model: Model, scheduler: ComputeScheduler, stateDirectory: String, modelSHA256: @escaping () -> String?, logger: Logger) throws {
        let fitted: FittedKeyspace
        do {
            guard let found = try FittedKeyspace.forModel(model, directories: [(stateDirectory as NSString).appendingPathComponent("models")],
                                                          modelSHA256: modelSHA256) else {
                logger.warning("no fitted memory keyspace for this model (\(model.config.name)): the token memory is off; passage recall works")
                return nil
            }
            fitted = found
        } catch {
            logger.error("\(error); the token memory is off, passage recall works")
            return nil
        }
        knn = KNNLanguageModel(model: model, fitted: fitted)
        segments = try MemorySegmentDirectory(path: (stateDirectory as NSString).appendingPathComponent("memory"),
                                              keyspace: knn.keyspace)
        self.scheduler = scheduler
        self.logger = logger
    }

    var status: (documents: Int, entries: Int) { lock.withLock { (documents.count, entries) } }

    /// Loads the segments of the learned versions and deletes the rest; returns the learned
    /// versions whose memory must be learned (again). Runs before the compute thread starts.
    func load(learned: [Int64]) throws -> [Int64] {
        let learnedSet = Set(learned)
        var missing: [Int64] = []
        let present = Set(try segments.documents())
        for id in present where !learnedSet.contains(id) { try segments.remove(id) }
        for id in learned {
            guard present.contains(id) else { missing.append(id); continue }
            do {
                knn.memory.append(try segments.read(id))
            } catch {
                logger.error("token memory of document \(id) is unusable (\(error)); learning it again")
                try segments.remove(id)
                missing.append(id)
            }
        }
        publish(Set(learned).subtracting(missing))
        logger.info("token memory: \(knn.memory.count) entries of \(learned.count - missing.count) documents loaded, \(missing.count) to learn")
        return missing
    }

    private func publish(_ documents: Set<Int64>) {
        let count = knn.memory.count
        lock.withLock { self.documents = documents; entries = count }
        Gauge(label: "twinbrain_memory_entries").record(count)
    }

    /// Learns a document version piece by piece, each piece a compute job (requests run in
    /// between), then writes its segment. Blocks the calling (learning) thread. A failure, a
    /// stop, or `shouldStop` (the daemon stops, the document was forgotten) takes back what was
    /// added, so the memory never holds part of a document for long.
    func learn(document: Int64, tokens: [Int32], shouldStop: () -> Bool) throws {
        let pieces = knn.pieces(count: tokens.count)
        do {
            for piece in pieces {
                if shouldStop() { throw CancellationError() }
                try scheduler.runAndWait(activity: "learning document \(document)") { [knn] in
                    try knn.learn(document: document, tokens: tokens, piece: piece)
                }
            }
            try scheduler.runAndWait(activity: "saving the memory of document \(document)") { [self] in
                try segments.write(knn.memory.segment(document: document))
                publish(lock.withLock { documents.union([document]) })
            }
        } catch {
            try? scheduler.runAndWait(activity: "dropping a half-learned document") { [self] in
                knn.forget(documents: [document])
                publish(lock.withLock { documents.subtracting([document]) })
            }
            throw error
        }
        Counter(label: "twinbrain_memory_entries_learned_total").increment(by: max(0, tokens.count - 1))
    }

    /// Makes the memory hold exactly `learned`: entries and segments of any other version
    /// (forgotten, superseded, or forgotten while it was being learned) go. Returns the versions
    /// that were dropped.
    @discardableResult
    func keepOnly(_ learned: Set<Int64>) throws -> Set<Int64> {
        try scheduler.runAndWait(activity: "letting go of forgotten documents") { [self] in
            let drop = Set(knn.memory.documents).union(lock.withLock { documents }).subtracting(learned)
            guard !drop.isEmpty else { return [] }
            knn.forget(documents: drop)
            for id in drop { try segments.remove(id) }
            publish(lock.withLock { documents.subtracting(drop) })
            return drop
        }
    }

    var holdsDocuments: Bool { lock.withLock { !documents.isEmpty } }
}

extension ComputeScheduler {
    /// Runs `work` on the compute thread and waits for it, from a thread that may block (never
    /// an event loop). A full queue is waited out; a stopping scheduler throws.
    func runAndWait<T>(activity: String, _ work: @escaping () throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        var result: Result<T, Error> = .failure(CancellationError())
        let job = Job { [self] _, job in
            defer { done.signal() }
            guard !job.isCancelled else { return }
            setActivity(activity)
            result = Result { try work() }
        }
        while true {
            do {
                try submit(job)
                break
            } catch SubmitError.overloaded {
                usleep(200_000)
            }
        }
        done.wait()
        return try result.get()
    }
}
