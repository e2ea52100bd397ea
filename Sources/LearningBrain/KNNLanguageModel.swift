import Foundation
import Kernels
import MainBrain

/// The classic kNN-LM (Khandelwal et al. 2020) over the main brain: learning a document stores
/// one memory entry per token (key = the main brain's FFN input of its last layer at that
/// position, value = the next token); predicting mixes the main brain's distribution with one
/// built from the k nearest entries: p = (1 − λ)·p_main + λ·p_memory, p_memory ∝ Σ exp(−d/τ) over
/// the neighbours voting for each token, τ = the query's nearest distance (so the temperature
/// follows the typical scale of distances). The main brain is never changed.
///
/// This is the fixed-λ baseline (`knn-fixed`); the gated learning brain builds on the same memory.
public final class KNNLanguageModel {
    public let model: Model
    public let memory: TokenMemory
    public let tapPoint: TapPoint
    public var neighbours = 16
    public var lambda: Float = 0.25
    /// Learning runs the main brain over documents in pieces of this many tokens.
    public static let chunk = 512

    public init(model: Model) {
        self.model = model
        tapPoint = .ffnInput(layer: model.config.layers - 1)
        memory = TokenMemory(dimension: model.config.dim)
    }

    /// Memorises a document's tokens under its id. Each token's key sees up to `chunk` tokens
    /// of the document before it (pieces overlap by half, and the second half of each is kept).
    public func learn(document: Int64, tokens: [Int32]) throws {
        guard tokens.count >= 2 else { return }
        let half = Self.chunk / 2
        var begin = 0, firstKept = 0
        while firstKept < tokens.count - 1 {
            let end = min(begin + Self.chunk, tokens.count)
            let recorder = HiddenStateRecorder(points: [tapPoint])
            _ = try model.forward(Array(tokens[begin..<end]), cache: model.makeCache(capacity: end - begin), logits: .none, tap: recorder)
            let states = recorder.states[tapPoint]!, d = recorder.dim
            let keptEnd = min(end, tokens.count - 1)   // the last token has no next token
            guard keptEnd > firstKept else { break }
            let rows = (firstKept - begin)..<(keptEnd - begin)
            memory.append(keys: Array(states[rows.lowerBound * d..<rows.upperBound * d]),
                          values: (firstKept..<keptEnd).map { tokens[$0 + 1] }, document: document,
                          positions: (firstKept..<keptEnd).map { Int32($0) })
            firstKept = keptEnd
            begin = max(begin + half, firstKept - half)
        }
    }

    public func forget(documents: Set<Int64>) { memory.remove(documents: documents) }

    /// The main brain's logits and its keys for the rows of `input` from `first` (relative to
    /// `input`, which continues what `cache` holds).
    public func mainBrain(_ input: [Int32], cache: KVCache, from first: Int) throws -> (logits: Logits, queries: [Float]) {
        let recorder = HiddenStateRecorder(points: [tapPoint])
        let logits = try model.forward(input, cache: cache, logits: .from(first), tap: recorder)
        let states = recorder.states[tapPoint]!
        return (logits, Array(states[(min(first, input.count) * recorder.dim)...]))
    }

    /// Log-probabilities (as logits rows) of the mixture, and the neighbours each row used.
    public func mix(_ logits: Logits, queries: [Float]) -> (logProbabilities: Logits, neighbours: [[TokenMemory.Neighbor]]) {
        let found = memory.count == 0 ? Array(repeating: [], count: logits.rows) : memory.search(queries, k: neighbours)
        var out = [Float](repeating: 0, count: logits.values.count)
        let vocab = logits.vocab
        for r in 0..<logits.rows {
            let row = logits.row(r)
            let lse = row.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: vocab) }
            var memoryP: [Int32: Double] = [:]
            if let nearest = found[r].first {
                let tau = Double(max(nearest.distance, 1e-6))
                var total = 0.0
                for n in found[r] {
                    let w = exp(-(Double(n.distance) - Double(nearest.distance)) / tau)
                    memoryP[n.value, default: 0] += w
                    total += w
                }
                for key in memoryP.keys { memoryP[key]! /= total }
            }
            // log p = log((1 − λ)·p_main) for every token the memory does not vote for; only
            // the few it votes for need the full mixture.
            let mem = memoryP.isEmpty ? 0 : Double(lambda)
            let shift = Float(log(1 - mem) - lse)
            let base = r * vocab
            row.withUnsafeBufferPointer { src in
                for v in 0..<vocab { out[base + v] = src[v] + shift }
                for (token, q) in memoryP {
                    let v = Int(token)
                    out[base + v] = Float(log((1 - mem) * exp(Double(src[v]) - lse) + mem * q))
                }
            }
        }
        return (Logits(rows: logits.rows, vocab: vocab, values: out), found)
    }
}
