import Foundation
import Kernels

/// Log-probabilities and perplexity over the main brain: the evaluation is built on these.
public struct Scorer {
    public let model: Model

    public init(model: Model) { self.model = model }

    /// log p(id) under `logits` (a log-softmax in f64).
    public static func logProbability(_ logits: ArraySlice<Float>, of id: Int32) -> Double {
        logits.withUnsafeBufferPointer { row in
            Double(row[Int(id)]) - logSumExp(row.baseAddress!, count: row.count)
        }
    }

    public struct ContinuationScore: Sendable, Equatable {
        /// Σ log p(token | everything before it).
        public var logProbability: Double
        /// Whether every token was the argmax (the continuation is the greedy one).
        public var isGreedy: Bool
        public var tokenCount: Int
    }

    /// Scores each continuation after the shared `context`: the context is evaluated once, and
    /// the candidates together in one batch on top of it (`Model.forwardBranches`).
    public func logLikelihood(context: [Int32], continuations: [[Int32]]) throws -> [ContinuationScore] {
        guard !context.isEmpty else { throw ModelError.emptyInput }
        let longest = continuations.map(\.count).reduce(0, +)
        let cache = model.makeCache(capacity: context.count + min(longest, model.batchSize))
        let contextLogits = try model.forward(context, cache: cache, logits: .last)
        // Logits after each candidate token but the last predict the next one.
        let runs = continuations.filter { $0.count > 1 }.map { Array($0.dropLast()) }
        var branchLogits = try model.forwardBranches(runs, cache: cache).makeIterator()
        var scores: [ContinuationScore] = []
        for continuation in continuations {
            guard let first = continuation.first else {
                scores.append(ContinuationScore(logProbability: 0, isGreedy: true, tokenCount: 0)); continue
            }
            var total = Self.logProbability(contextLogits.row(0), of: first)
            var greedy = Sampler.argmax(contextLogits.row(0)) == first
            if continuation.count > 1, let l = branchLogits.next() {
                for i in 1..<continuation.count {
                    total += Self.logProbability(l.row(i - 1), of: continuation[i])
                    greedy = greedy && Sampler.argmax(l.row(i - 1)) == continuation[i]
                }
            }
            scores.append(ContinuationScore(logProbability: total, isGreedy: greedy, tokenCount: continuation.count))
        }
        return scores
    }

    public struct PerplexityResult: Sendable, Equatable {
        public var perplexity: Double { exp(meanNLL) }
        public var meanNLL: Double
        public var tokensScored: Int
        /// Negative log-likelihood (nats) of every scored token, in order.
        public var nll: [Double]
    }

    /// Sliding-window perplexity: windows of `window` tokens every `stride`; the first window
    /// scores all its tokens (but the first), each later one only its tokens not scored before.
    public func slidingPerplexity(_ tokens: [Int32], window: Int, stride: Int,
                                  progress: (Int, Int) -> Void = { _, _ in }) throws -> PerplexityResult {
        precondition(window > 0 && stride > 0 && stride <= window, "window \(window), stride \(stride)")
        guard tokens.count >= 2 else { throw ModelError.emptyInput }
        let cache = model.makeCache(capacity: window)
        var nll: [Double] = []
        var scoredUpTo = 1  // tokens before this index are scored (token 0 never is)
        var begin = 0
        while scoredUpTo < tokens.count {
            let end = min(begin + window, tokens.count)
            cache.clear()
            let firstTarget = max(scoredUpTo, begin + 1)
            // Logits at position p predict token p+1.
            let l = try model.forward(Array(tokens[begin..<end - 1]), cache: cache, logits: .from(firstTarget - 1 - begin))
            for (row, target) in (firstTarget..<end).enumerated() {
                nll.append(-Self.logProbability(l.row(row), of: tokens[target]))
            }
            scoredUpTo = end
            progress(end, tokens.count)
            begin += stride
        }
        return PerplexityResult(meanNLL: nll.reduce(0, +) / Double(nll.count), tokensScored: nll.count, nll: nll)
    }

    /// llama.cpp's `llama-perplexity -c N`: non-overlapping chunks of N tokens, each from an
    /// empty cache, scoring the second half of each chunk (positions N/2 … N-1).
    public func chunkedPerplexity(_ tokens: [Int32], chunk: Int,
                                  progress: (Int, Int) -> Void = { _, _ in }) throws -> PerplexityResult {
        precondition(chunk >= 4, "chunk \(chunk)")
        let chunks = tokens.count / chunk
        guard chunks > 0 else { throw ModelError.emptyInput }
        let cache = model.makeCache(capacity: chunk)
        let first = chunk / 2
        var nll: [Double] = []
        for c in 0..<chunks {
            cache.clear()
            let slice = Array(tokens[c * chunk..<(c + 1) * chunk])
            let l = try model.forward(slice, cache: cache, logits: .from(first))
            for (row, target) in (first + 1..<chunk).enumerated() {
                nll.append(-Self.logProbability(l.row(row), of: slice[target]))
            }
            progress(c + 1, chunks)
        }
        return PerplexityResult(meanNLL: nll.reduce(0, +) / Double(nll.count), tokensScored: nll.count, nll: nll)
    }
}
