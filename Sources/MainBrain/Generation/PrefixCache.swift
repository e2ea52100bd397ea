import Kernels

/// The KV caches of finished generations, so that a prompt beginning as an earlier one did (the
/// system prompt, a conversation's earlier turns) evaluates only the rest. Least recently used
/// first out, within `byteLimit`. One user at a time (the daemon's compute thread).
///
/// Reuse never changes an answer: a position is taken only where evaluating it again would give
/// the same bits. With the quantised arithmetic every row is computed alone, so all of them.
/// With the exact (and mixed) arithmetic, prompt rows go through sgemm tiles while a decoded
/// row or a piece of 16 rows or fewer takes row dots, a different order of summation: only
/// positions of prompts evaluated as tiles are kept, and the rest of a prompt is evaluated as
/// tiles too (more than 16 rows), reusing a little less when needed.
public final class PrefixCache {
    struct Entry {
        let tokens: [Int32]
        /// Leading positions that may be reused.
        let reusable: Int
        let cache: KVCache
        let bytes: Int
        var lastUse: UInt64
    }

    public let byteLimit: Int
    let config: ModelConfig
    let everyRowAlone: Bool
    private var entries: [Entry] = []
    private var clock: UInt64 = 0
    /// Bytes of the positions held.
    public private(set) var bytes = 0
    public var count: Int { entries.count }

    public init(model: Model, byteLimit: Int) {
        self.byteLimit = byteLimit
        config = model.config
        everyRowAlone = model.products.arithmetic == .quantized
    }

    /// Fills `cache` with the longest reusable prefix of `prompt` (at most `limit` positions) an
    /// entry holds; returns its length (0: none, and the cache is untouched). At least one
    /// position is left to evaluate.
    public func restore(_ prompt: [Int32], into cache: KVCache, limit: Int = .max) -> Int {
        var best = 0, index = -1
        for (i, entry) in entries.enumerated() {
            let limit = min(entry.reusable, prompt.count, limit)
            var common = 0
            while common < limit && entry.tokens[common] == prompt[common] { common += 1 }
            if common > best { (best, index) = (common, i) }
        }
        var reused = min(best, prompt.count - 1, cache.capacity)
        if !everyRowAlone && prompt.count - reused <= QuantizedProducts.exactRowsPerDot {
            reused = prompt.count - QuantizedProducts.exactRowsPerDot - 1
        }
        guard reused > 0, index >= 0 else { return 0 }
        cache.copyPrefix(of: entries[index].cache, positions: reused)
        clock += 1
        entries[index].lastUse = clock
        return reused
    }

    /// Keeps what a finished session's cache holds, as far as it may be reused; older entries
    /// make room, and an entry the new one extends goes.
    public func keep(_ session: GenerationSession) {
        let cache = session.cache
        guard byteLimit > 0, cache.depth == nil, session.isFinished else { return }
        let tokens = Array((session.request.prompt + session.result.ids).prefix(cache.count))
        let prompt = session.request.prompt.count
        let reusable = everyRowAlone ? tokens.count : (prompt > QuantizedProducts.exactRowsPerDot ? min(prompt, tokens.count) : 0)
        guard reusable > 1 else { return }
        let bytes = KVCache.bytes(config: config, positions: cache.count, precision: cache.precision)
        guard bytes <= byteLimit else { return }
        entries.removeAll { old in
            let covered = old.reusable <= reusable && old.tokens.prefix(old.reusable).elementsEqual(tokens.prefix(old.reusable))
            if covered { self.bytes -= old.bytes }
            return covered
        }
        clock += 1
        entries.append(Entry(tokens: tokens, reusable: reusable, cache: cache, bytes: bytes, lastUse: clock))
        self.bytes += bytes
        while self.bytes > byteLimit, let oldest = entries.indices.min(by: { entries[$0].lastUse < entries[$1].lastUse }) {
            self.bytes -= entries[oldest].bytes
            entries.remove(at: oldest)
        }
    }

    public func removeAll() {
        entries.removeAll()
        bytes = 0
    }
}
