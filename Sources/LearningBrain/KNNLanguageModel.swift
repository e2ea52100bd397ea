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
public final class KNNLanguageModel: NextTokenPredictor {
    public let model: Model
    public let memory: TokenMemory
    public let tapPoint: TapPoint
    /// Maps hidden states to keys (nil: the hidden states themselves are the keys).
    public let projection: KeyProjection?
    public static let defaultNeighbours = 16
    public var neighbours = defaultNeighbours
    public var lambda: Float = 0.25
    /// When set, the memory's weight per token comes from the gate instead of `lambda`.
    public var gate: MemoryGate?
    /// Told the neighbours and the memory's weight (λ) of every generation step (`nextLogits`):
    /// provenance for traces and sources.
    public var onGenerationStep: StepReport?
    /// Learning runs the main brain over a document in pieces of `pieceLength` tokens, each
    /// after the first starting `pieceOverlap` tokens before the first entry it keeps: every key
    /// sees at least that much of the document before it (unless it is nearer the start), and
    /// the overlap is what learning costs beyond one prefill of the document.
    public var pieceLength = 1024
    public var pieceOverlap = 128

    public init(model: Model, projection: KeyProjection? = nil) {
        precondition(projection.map { $0.inputDimension == model.config.dim } ?? true)
        self.model = model
        self.projection = projection
        tapPoint = .ffnInput(layer: model.config.layers - 1)
        memory = TokenMemory(dimension: projection?.outputDimension ?? model.config.dim)
    }

    /// The SHA-256 of the fitted keyspace's file this memory uses (`FittedKeyspace.digest`).
    public var keyspaceDigest: String?

    /// What the keys mean, for segment files: the fitted keyspace's digest, or for keys of no
    /// fitted file the model's shape, the tap and the projection (at most 32 bytes). Keys of
    /// another keyspace are never mixed with these.
    public var keyspace: String {
        if let keyspaceDigest { return keyspaceDigest }
        let c = model.config
        return "\(c.architecture.rawValue) L\(c.layers) d\(c.dim) f\(c.layers - 1) \(projection?.name ?? "raw")"
    }

    /// Memory keys of hidden-state rows.
    public func keys(_ states: [Float]) -> [Float] { projection?.project(states) ?? states }

    /// One forward pass of learning: the main brain runs over `run` and the entries of `kept`
    /// (positions whose next token is known) are stored.
    public struct Piece: Equatable, Sendable {
        public let run: Range<Int>
        public let kept: Range<Int>
    }

    /// How a document of `count` tokens is learned (see `pieceLength`).
    public func pieces(count: Int) -> [Piece] {
        Self.pieces(count: count, length: pieceLength, overlap: pieceOverlap)
    }

    public static func pieces(count: Int, length: Int, overlap: Int) -> [Piece] {
        precondition(overlap >= 0 && overlap < length, "pieces of \(length) overlapping by \(overlap)")
        guard count >= 2 else { return [] }
        var out: [Piece] = [], begin = 0, firstKept = 0
        while firstKept < count - 1 {
            let end = min(begin + length, count)
            let keptEnd = min(end, count - 1)   // the last token has no next token
            out.append(Piece(run: begin..<end, kept: firstKept..<keptEnd))
            firstKept = keptEnd
            begin = firstKept - overlap
        }
        return out
    }

    /// Memorises a document's tokens under its id.
    public func learn(document: Int64, tokens: [Int32]) throws {
        for piece in pieces(count: tokens.count) { try learn(document: document, tokens: tokens, piece: piece) }
    }

    /// Learns one piece (a caller that must stay interruptible learns piece by piece).
    public func learn(document: Int64, tokens: [Int32], piece: Piece) throws {
        let recorder = HiddenStateRecorder(points: [tapPoint])
        _ = try model.forward(Array(tokens[piece.run]), cache: model.makeCache(capacity: piece.run.count), logits: .none, tap: recorder)
        let states = recorder.states[tapPoint]!, d = recorder.dim
        let rows = (piece.kept.lowerBound - piece.run.lowerBound)..<(piece.kept.upperBound - piece.run.lowerBound)
        memory.append(keys: keys(Array(states[rows.lowerBound * d..<rows.upperBound * d])),
                      values: piece.kept.map { tokens[$0 + 1] }, document: document, positions: piece.kept.map { Int32($0) })
    }

    public func forget(documents: Set<Int64>) { memory.remove(documents: documents) }

    /// The main brain's logits and its hidden states at the tap (the queries, before any
    /// projection) for the rows of `input` from `first` (relative to `input`, which continues
    /// what `cache` holds). `extraTap` also receives the pass's states (the reader's layer), so
    /// another part of the learning brain reads the same prefill.
    public func mainBrain(_ input: [Int32], cache: KVCache, from first: Int, extraTap: HiddenStateTap? = nil) throws
        -> (logits: Logits, queries: [Float])
    {
        let recorder = HiddenStateRecorder(points: [tapPoint])
        let logits = try model.forward(input, cache: cache, logits: .from(first), tap: extraTap.map { FanTap([recorder, $0]) } ?? recorder)
        let states = recorder.states[tapPoint]!
        return (logits, Array(states[(min(first, input.count) * recorder.dim)...]))
    }

    /// One generation step: the main brain on `input`, the last row mixed with the memory.
    public func nextLogits(_ input: [Int32], cache: KVCache) throws -> Logits {
        try step(input, cache: cache, extraTap: nil, report: onGenerationStep)
    }

    public var decodeTap: TapPoint? { tapPoint }

    public func decoded(_ logits: Logits, state: ArraySlice<Float>?) -> Logits {
        decoded(logits, state: state, report: onGenerationStep)
    }

    func step(_ input: [Int32], cache: KVCache, extraTap: HiddenStateTap?, report: StepReport?) throws -> Logits {
        let (logits, queries) = try mainBrain(input, cache: cache, from: input.count - 1, extraTap: extraTap)
        return mixed(logits, queries: queries, report: report)
    }

    func decoded(_ logits: Logits, state: ArraySlice<Float>?, report: StepReport?) -> Logits {
        mixed(logits, queries: Array(state!), report: report)
    }

    private func mixed(_ logits: Logits, queries: [Float], report: StepReport?) -> Logits {
        let (mixed, found, weights) = mix(logits, queries: queries)
        report?(found[0], weights[0])
        return mixed
    }

    /// What a generation step tells its listener: the neighbours and the memory's weight (λ).
    public typealias StepReport = ([TokenMemory.Neighbor], Double) -> Void

    /// Neighbours of a decode step's states searched together (`prepare`), each taken once by
    /// the `mix` of the same state.
    private var prepared: [(query: [Float], found: [TokenMemory.Neighbor])] = []

    /// The neighbours of each query row: searched now, or by `prepare` for this very state.
    private func nearest(_ queries: [Float], rows: Int) -> [[TokenMemory.Neighbor]] {
        guard memory.count > 0 else { return Array(repeating: [], count: rows) }
        if rows == 1, let i = prepared.firstIndex(where: { $0.query == queries }) { return [prepared.remove(at: i).found] }
        return memory.search(keys(queries), k: neighbours)
    }

    /// Each neighbour's vote (they sum to 1): exp(−(d − d₁)/d₁), d₁ the nearest distance.
    public static func votes(_ neighbours: [TokenMemory.Neighbor]) -> [Double] {
        guard let nearest = neighbours.first else { return [] }
        let tau = Double(max(nearest.distance, 1e-6))
        let w = neighbours.map { exp(-(Double($0.distance) - Double(nearest.distance)) / tau) }
        let total = w.reduce(0, +)
        return w.map { $0 / total }
    }

    /// The memory's next-token distribution: the neighbours' votes summed per next token.
    static func memoryDistribution(_ neighbours: [TokenMemory.Neighbor]) -> [Int32: Double] {
        var p: [Int32: Double] = [:]
        for (n, vote) in zip(neighbours, votes(neighbours)) { p[n.value, default: 0] += vote }
        return p
    }

    /// Squared norms of query rows (hidden states): the gate reads the nearest distance relative
    /// to the size of the query as the main brain made it.
    func squaredNorms(_ queries: [Float], rows: Int) -> [Float] {
        let d = model.config.dim
        return (0..<rows).map { r in (0..<d).reduce(Float(0)) { $0 + queries[r * d + $1] * queries[r * d + $1] } }
    }

    /// The memory weight for a row: the gate's when there is one, else the fixed λ.
    func weight(_ neighbours: [TokenMemory.Neighbor], queryNorm: Float) -> Double {
        guard let nearest = neighbours.first else { return 0 }
        guard let gate else { return Double(lambda) }
        return Double(gate.lambda(relativeDistance: nearest.distance / max(queryNorm, 1e-12)))
    }

    /// Log-probabilities (as logits rows) of the mixture, and the neighbours each row used.
    /// `queries` are the hidden states at the tap, one row per logits row. A row whose weight
    /// is 0 is the main brain's log-softmax, untouched by the memory.
    public func mix(_ logits: Logits, queries: [Float])
        -> (logProbabilities: Logits, neighbours: [[TokenMemory.Neighbor]], weights: [Double])
    {
        let found = nearest(queries, rows: logits.rows)
        let queryNorms = squaredNorms(queries, rows: logits.rows)
        var out = [Float](repeating: 0, count: logits.values.count)
        var weights = [Double](repeating: 0, count: logits.rows)
        let vocab = logits.vocab
        for r in 0..<logits.rows {
            let row = logits.row(r)
            let lse = row.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: vocab) }
            let mem = weight(found[r], queryNorm: queryNorms[r])
            weights[r] = mem
            let memoryP = mem > 0 ? Self.memoryDistribution(found[r]) : [:]
            // log p = log((1 − λ)·p_main) for every token the memory does not vote for; only
            // the few it votes for need the full mixture.
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
        return (Logits(rows: logits.rows, vocab: vocab, values: out), found, weights)
    }

    /// What the gate is fitted on, per row: the nearest distance relative to the query, the
    /// main brain's probability of the actual next token and the memory's (λ = 1), and for the
    /// tokens the memory votes for, both probabilities (what the KL divergence from the main
    /// brain at any λ follows from).
    public struct Evidence: Sendable {
        public var relativeDistance: Float
        public var mainProbability: Double
        public var memoryProbability: Double
        public var votedMain: [Double]
        public var votedMemory: [Double]
        public init(relativeDistance: Float, mainProbability: Double, memoryProbability: Double,
                    votedMain: [Double] = [], votedMemory: [Double] = []) {
            self.relativeDistance = relativeDistance
            self.mainProbability = mainProbability
            self.memoryProbability = memoryProbability
            self.votedMain = votedMain
            self.votedMemory = votedMemory
        }

        /// KL(p_main ‖ (1 − λ)·p_main + λ·p_memory) in nats: the tokens the memory does not
        /// vote for each lose the same factor (1 − λ).
        public func divergence(lambda: Double) -> Double {
            guard lambda > 0 else { return 0 }
            var kl = -log(1 - lambda) * max(0, 1 - votedMain.reduce(0, +))
            for (p, q) in zip(votedMain, votedMemory) where p > 0 { kl += p * log(p / ((1 - lambda) * p + lambda * q)) }
            return max(0, kl)
        }
    }

    public func evidence(_ logits: Logits, queries: [Float], targets: [Int32]) -> [Evidence] {
        precondition(targets.count == logits.rows)
        guard memory.count > 0 else { return [] }
        let found = memory.search(keys(queries), k: neighbours)
        let queryNorms = squaredNorms(queries, rows: logits.rows)
        return (0..<logits.rows).map { r in
            let row = logits.row(r)
            let lse = row.withUnsafeBufferPointer { logSumExp($0.baseAddress!, count: logits.vocab) }
            let memoryP = Self.memoryDistribution(found[r])
            let voted = memoryP.keys.sorted()
            return Evidence(relativeDistance: found[r][0].distance / max(queryNorms[r], 1e-12),
                            mainProbability: exp(Double(row[row.startIndex + Int(targets[r])]) - lse),
                            memoryProbability: memoryP[targets[r]] ?? 0,
                            votedMain: voted.map { exp(Double(row[row.startIndex + Int($0)]) - lse) },
                            votedMemory: voted.map { memoryP[$0]! })
        }
    }
}

/// One generation's use of the shared token memory: its steps report to its own listener (the
/// answer's tally), so generations decoded together keep their provenance apart.
public final class MemoryJoin: NextTokenPredictor {
    public let knn: KNNLanguageModel
    let report: KNNLanguageModel.StepReport?
    /// Also receives the main brain's states of the next `nextLogits` pass (the reader's layer).
    public var extraTap: HiddenStateTap?

    /// `report`: nil reports to the memory's own `onGenerationStep`.
    public init(_ knn: KNNLanguageModel, report: KNNLanguageModel.StepReport? = nil) {
        self.knn = knn
        self.report = report
    }

    public func nextLogits(_ input: [Int32], cache: KVCache) throws -> Logits {
        try knn.step(input, cache: cache, extraTap: extraTap, report: report ?? knn.onGenerationStep)
    }

    public var decodeTap: TapPoint? { knn.tapPoint }

    public var decodeSharing: DecodeSharing? { knn }

    public func decoded(_ logits: Logits, state: ArraySlice<Float>?) -> Logits {
        knn.decoded(logits, state: state, report: report ?? knn.onGenerationStep)
    }
}

/// When the token memory speaks, and how loudly: λ = `lambdaMax` while the nearest entry is
/// within `inner` (squared distance relative to the query's squared norm), falling linearly to 0
/// at `radius`, and exactly 0 beyond it, where the output is the main brain's own. Fitted once
/// on public text (`twinbrain-eval fit-gate`), never on customer data, so forgetting stays exact.
public struct MemoryGate: Codable, Sendable, Equatable {
    public var lambdaMax: Float
    public var inner: Float
    public var radius: Float

    public init(lambdaMax: Float, inner: Float, radius: Float) {
        precondition(lambdaMax >= 0 && lambdaMax < 1 && inner >= 0 && inner <= radius)
        self.lambdaMax = lambdaMax
        self.inner = inner
        self.radius = radius
    }

    public func lambda(relativeDistance r: Float) -> Float {
        if r >= radius { return 0 }
        if r <= inner { return lambdaMax }
        return lambdaMax * (radius - r) / (radius - inner)
    }

    enum CodingKeys: String, CodingKey { case lambdaMax = "lambda_max", inner, radius }
}

extension KNNLanguageModel: DecodeSharing {
    public var decodeSharing: DecodeSharing? { self }

    /// Searches the memory once for the states of several sessions' decode step: each block of
    /// keys is read once for all of them, and each query is searched as alone (its key projected
    /// alone, at most `TokenMemory.queriesAlone` at a time), so each session's neighbours are
    /// the ones it finds alone.
    public func prepare(states: [ArraySlice<Float>]) {
        guard memory.count > 0 else { return }
        for group in stride(from: 0, to: states.count, by: TokenMemory.queriesAlone) {
            let rows = states[group..<min(group + TokenMemory.queriesAlone, states.count)].map { Array($0) }
            let found = memory.search(rows.flatMap { keys($0) }, k: neighbours)
            prepared += zip(rows, found).map { ($0, $1) }
        }
    }

    public func release() { prepared.removeAll() }
}
