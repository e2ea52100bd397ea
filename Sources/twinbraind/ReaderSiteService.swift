import Foundation
import LearningBrain
import Logging
import MainBrain
import Metrics

/// The reader learning on site in the daemon (`ReaderSiteLearning`): after the token memory has
/// learned a document version, its questions are put to its passages, one passage per compute
/// job (requests run in between), and its examples are written to `<state_dir>/reader/<id>.rdx`;
/// once the backlog is learned, the adapter of each shard that changed (a folder of documents,
/// `ReaderSiteLearning.shard`) is fitted again on its versions' examples. It follows the store
/// as the token memory does: at start, files of versions that are not learned (or were made for
/// another reader) are deleted, and learned versions without one are learned again; forgetting
/// a version deletes its file and fits its shard again without it, which gives the adapter of a
/// box that never learned it.
final class ReaderSiteService: @unchecked Sendable {
    let site: ReaderSiteLearning
    let files: DocumentFiles
    let scheduler: ComputeScheduler
    let logger: Logger
    private let lock = NSLock()
    private let fitting = NSLock()
    private var examples: [Int64: (shard: String, examples: [ReaderExample])] = [:]
    /// Shards whose documents changed since they were last fitted.
    private var changed: Set<String> = []

    init(site: ReaderSiteLearning, scheduler: ComputeScheduler, stateDirectory: String, logger: Logger) throws {
        self.site = site
        files = try DocumentFiles(path: (stateDirectory as NSString).appendingPathComponent("reader"), suffix: "rdx")
        self.scheduler = scheduler
        self.logger = logger
    }

    var reader: Reader { site.reader }

    /// Documents adapted to, examples kept (status).
    var status: (documents: Int, examples: Int) {
        lock.withLock { (examples.count, examples.values.reduce(0) { $0 + $1.examples.count }) }
    }

    /// Reads the examples of the learned versions back and fits; returns the learned versions to
    /// learn (again). Runs before the compute thread starts.
    func load(learned: [Int64]) throws -> [Int64] {
        let learnedSet = Set(learned)
        let present = Set(try files.documents())
        for id in present where !learnedSet.contains(id) { try files.remove(id) }
        var missing: [Int64] = [], loaded: [Int64: (shard: String, examples: [ReaderExample])] = [:]
        for id in learned {
            guard present.contains(id) else { missing.append(id); continue }
            do {
                let file = try ReaderExampleFile.decoded(files.read(id), rank: reader.weights.rank, reader: reader.identity)
                loaded[id] = (file.shard, file.examples)
            } catch {
                logger.info("reader examples of document \(id) are not usable (\(error)); learning them again")
                try files.remove(id)
                missing.append(id)
            }
        }
        lock.withLock {
            examples = loaded
            changed = Set(loaded.values.map(\.shard))
        }
        fit()
        logger.info("reader: adapted to \(loaded.count) documents, \(missing.count) to learn")
        return missing
    }

    /// Learns one document version from its passages, a compute job per passage asked about
    /// (`fit` then uses it). `shouldStop`: the daemon stops or the version was forgotten (nothing is kept).
    func learn(document: Int64, path: String, passages: [(header: String, text: String)], shouldStop: () -> Bool) throws {
        let began = Date()
        let (_, contexts) = site.plan(path: path, passages: passages)
        var learned: [ReaderExample] = []
        for context in contexts {
            if shouldStop() { throw CancellationError() }
            learned += try scheduler.runAndWait(activity: "reader: learning document \(document)") { [site] in try site.examples(context) }
        }
        if shouldStop() { throw CancellationError() }
        let shard = ReaderSiteLearning.shard(of: path)
        try files.write(ReaderExampleFile.encoded(learned, document: document, shard: shard, rank: reader.weights.rank, reader: reader.identity),
                        document: document)
        lock.withLock {
            examples[document] = (shard, learned)
            changed.insert(shard)
        }
        Counter(label: "twinbrain_reader_examples_learned_total").increment(by: learned.count)
        let seconds = String(format: "%.2f", Date().timeIntervalSince(began))
        logger.info("reader: learned \(path) (document \(document)): \(learned.count) examples from \(contexts.count) passages in \(seconds) s")
    }

    /// Keeps exactly the learned versions' examples; fits again when any went. Returns those dropped.
    @discardableResult
    func keepOnly(_ learned: Set<Int64>) throws -> Set<Int64> {
        let drop = lock.withLock { Set(examples.keys) }.union(try files.documents()).subtracting(learned)
        guard !drop.isEmpty else { return [] }
        for id in drop { try files.remove(id) }
        lock.withLock {
            for id in drop {
                if let shard = examples[id]?.shard { changed.insert(shard) }
                examples[id] = nil
            }
        }
        fit()
        return drop
    }

    /// Fits the adapter on every kept document's examples, in document order, and reads with it
    /// when it passes its check (else, or with none kept, the shipped reader). Off the compute
    /// thread: the reader swaps its adapter under its own lock. Seconds for a drive's documents,
    /// so it runs once the backlog is learned, not after each document.
    func fit() {
        // One fit at a time (the learning thread and a forget may both ask): a fit begun before a
        // forget must not set its adapter after the forget's own.
        fitting.lock()
        defer { fitting.unlock() }
        let (kept, shards) = lock.withLock { () -> ([Int64: (shard: String, examples: [ReaderExample])], Set<String>) in
            defer { changed = [] }
            return (examples, changed)
        }
        for shard in shards.sorted() {
            let (adapter, check) = ReaderSiteLearning.fit(kept.filter { $0.value.shard == shard }.mapValues(\.examples), rank: reader.weights.rank)
            reader.setAdapter(adapter, for: shard)
            if check.examples > 0 {
                let verdict = adapter == nil ? "reading as shipped" : "reading adapted"
                logger.info("reader: shard \"\(shard)\": on questions it was not fitted on, adapted lands \(check.adapted) of \(check.examples), shipped \(check.shipped): \(verdict)")
            }
        }
    }
}
