import Foundation
import Kernels

/// Which positions of a forward call produce logits.
public enum LogitRows: Sendable, Equatable {
    case none
    case last
    case all
    /// Rows from this index (into the tokens of the call) to the end.
    case from(Int)
}

/// Logits of some positions: `rows` × `vocab`, row-major.
public struct Logits: Sendable {
    public let rows: Int
    public let vocab: Int
    public var values: [Float]

    public init(rows: Int, vocab: Int, values: [Float]) {
        precondition(values.count == rows * vocab, "logits: \(values.count) values for \(rows) × \(vocab)")
        self.rows = rows
        self.vocab = vocab
        self.values = values
    }

    public func row(_ i: Int) -> ArraySlice<Float> { values[i * vocab..<(i + 1) * vocab] }
}

/// A frozen llama-family transformer: weights as the GGUF file stores them.
///
/// Loading goes GGUFFile → ModelConfig → Weights (the matrices stay in the mapping, in their
/// formats); `forward` evaluates tokens against a `KVCache`. Matrix products run on the
/// model's worker threads (`QuantizedProducts`: f32 by default, with activations quantised as
/// llama.cpp does, or prompts f32 and decoded tokens quantised; the last two with an f16 KV
/// cache); attention runs row by row, the same for a decoded
/// token and a prefilled one. A model that does not fit in memory is refused before loading.
/// One forward runs at a time per model (the daemon's scheduler owns it).
public final class Model: @unchecked Sendable {
    public let config: ModelConfig
    public let gguf: GGUFFile
    let weights: Weights
    /// The RoPE tables the layers use (Gemma 3: one for sliding layers, one for global ones), and each layer's.
    let ropes: [RoPETable]
    let ropeOfLayer: [Int]
    let products: QuantizedProducts
    /// How the caches `makeCache` makes store keys and values.
    public let kvPrecision: KVPrecision
    /// Longest run of tokens evaluated in one batch (bounds the scratch memory).
    public var batchSize = Model.defaultBatchSize
    public static let defaultBatchSize = 512

    /// Evaluate long inputs in chunks of `rows()` (asked before each chunk, at most `batchSize`)
    /// and call `between` after each chunk but the last, on the forward's thread: the daemon's
    /// scheduler runs other sequences' decode steps there, so a long prompt or a document being
    /// learned stalls them for one chunk at most. The caches are the caller's; nothing `forward`
    /// holds is touched between chunks, and the results are the same bits as in one batch.
    public struct Chunking {
        public let rows: () -> Int
        public let between: () -> Void
        public init(rows: @escaping () -> Int, between: @escaping () -> Void) {
            self.rows = rows
            self.between = between
        }
    }

    /// Set by the model's one user (the daemon's scheduler); nil: one batch of up to `batchSize`.
    public var chunking: Chunking?

    /// `threads`: the worker threads of matrix products (default: OpenBLAS's count).
    /// `arithmetic`: `.exact` (the default) computes as an f32 engine; `.quantized` as llama.cpp's
    /// CPU kernels on the file (activations quantised per block); `.mixed` a prompt as the f32
    /// engine and each decoded token as llama.cpp. `kvPrecision`: f32 for exact
    /// arithmetic, else f16 (llama.cpp's default), unless given. A model that cannot fit
    /// in `availableMemory` (default: the machine's) with `sequences` caches of `contextTokens`
    /// (default: the model's context) is refused before its weights are touched.
    public init(gguf: GGUFFile, threads: Int? = nil, arithmetic: ProductArithmetic = .exact, kvPrecision: KVPrecision? = nil,
                contextTokens: Int? = nil, sequences: Int = 1, availableMemory: Int? = MachineMemory.available()) throws {
        self.kvPrecision = kvPrecision ?? .matching(arithmetic)
        self.gguf = gguf
        config = try ModelConfig(gguf: gguf)
        try MemoryRequirement(gguf: gguf, config: config, contextTokens: contextTokens ?? config.contextLength,
                              kvPrecision: self.kvPrecision, batch: Self.defaultBatchSize, sequences: sequences).check(available: availableMemory)
        weights = try Weights(gguf: gguf, config: config)
        var ropes: [RoPETable] = [], ropeOfLayer: [Int] = []
        for l in 0..<config.layers {
            let r = config.rope(layer: l)
            if let i = ropes.firstIndex(where: { $0.base == r.base && $0.scale == r.scale }) {
                ropeOfLayer.append(i)
            } else {
                ropeOfLayer.append(ropes.count)
                ropes.append(RoPETable(dims: config.ropeDims, base: r.base, scale: r.scale, factors: weights.ropeFactors))
            }
        }
        self.ropes = ropes
        self.ropeOfLayer = ropeOfLayer
        products = QuantizedProducts(pool: ComputePool(threads: threads ?? BLASThreads.current), arithmetic: arithmetic)
    }

    public convenience init(path: String) throws {
        try self.init(gguf: GGUFFile(path: path))
    }

    /// The kernels the matrix products run ("avx2" or "portable") and their threads.
    public var kernels: (path: String, threads: Int) { (QuantKernels.path, products.pool.threads) }

    /// A cache of the model's precision (`kvPrecision`).
    public func makeCache(capacity: Int? = nil) -> KVCache {
        KVCache(config: config, capacity: capacity, precision: kvPrecision)
    }

    /// Evaluates `tokens` at positions `cache.count…`, appends them to the cache, and
    /// returns the logits asked for. Hidden states go to `tap` in the same pass.
    /// `throughLayer`: stop after that layer (for a tap that reads no deeper; no logits), and
    /// the cache then serves no deeper pass.
    public func forward(
        _ tokens: [Int32], cache: KVCache, logits: LogitRows = .last, tap: HiddenStateTap? = nil, throughLayer: Int? = nil
    ) throws -> Logits {
        let layers = min(config.layers, (throughLayer ?? config.layers - 1) + 1)
        try checkContinuation(tokens, cache: cache, layers: layers)
        precondition(throughLayer == nil || logits == .none, "a partial pass computes no logits")
        let firstLogitRow: Int
        switch logits {
        case .none: firstLogitRow = tokens.count
        case .last: firstLogitRow = tokens.count - 1
        case .all: firstLogitRow = 0
        case let .from(i): firstLogitRow = min(max(0, i), tokens.count)
        }
        var values: [Float] = []
        values.reserveCapacity((tokens.count - firstLogitRow) * config.vocabSize)
        var start = 0
        while start < tokens.count {
            if start > 0 { chunking?.between() }
            var n = max(1, min(batchSize, chunking?.rows() ?? batchSize))
            // A last piece of a few rows would take the exact arithmetic's row dots, not the tiles
            // every other row takes: the rest is split in two instead, so a position's result
            // does not depend on where a prompt was cut (chunks, batches, a reused prefix).
            let rest = tokens.count - start - n
            if n > QuantizedProducts.exactRowsPerDot && rest > 0 && rest <= QuantizedProducts.exactRowsPerDot {
                n = (tokens.count - start + 1) / 2
            }
            let end = min(start + n, tokens.count)
            let rows = min(max(start, firstLogitRow), end)..<end
            let chunkLogits = evaluate(tokens[start..<end], cache: cache,
                                       logitRows: Array((rows.lowerBound - start)..<(rows.upperBound - start)), tap: tap, layers: layers)
            values.append(contentsOf: chunkLogits)
            start = end
        }
        if layers < config.layers { cache.depth = min(cache.depth ?? layers, layers) }
        return Logits(rows: tokens.count - firstLogitRow, vocab: config.vocabSize, values: values)
    }

    /// Evaluates several continuations of what the cache holds in one batch (tree attention):
    /// each branch sees the cached prefix and its own earlier tokens, never another branch, and
    /// its tokens take positions from the prefix's end. Returns every row's logits per branch;
    /// the cache is left holding only the prefix. Scoring the candidates of a question this way
    /// costs one batched pass instead of one small pass per candidate.
    public func forwardBranches(_ branches: [[Int32]], cache: KVCache) throws -> [Logits] {
        if let depth = cache.depth { throw ModelError.shallowCache(layers: depth) }
        let prefix = cache.count
        defer { cache.truncate(to: prefix) }
        var results: [Logits] = []
        var group: [[Int32]] = []
        func flush() throws {
            guard !group.isEmpty else { return }
            let tokens = group.flatMap { $0 }
            guard prefix + tokens.count <= cache.capacity else {
                throw ModelError.contextFull(limit: cache.capacity, requested: prefix + tokens.count)
            }
            var positions: [Int] = [], branchStart: [Int] = []
            for b in group {
                let start = positions.count
                for j in b.indices { positions.append(prefix + j); branchStart.append(start) }
            }
            let values = evaluate(tokens[...], cache: cache, logitRows: Array(tokens.indices), tap: nil,
                                  layout: BranchLayout(positions: positions, branchStart: branchStart))
            cache.truncate(to: prefix)
            var offset = 0
            for b in group {
                let slice = values[offset * config.vocabSize..<(offset + b.count) * config.vocabSize]
                results.append(Logits(rows: b.count, vocab: config.vocabSize, values: Array(slice)))
                offset += b.count
            }
            group = []
        }
        for b in branches {
            guard !b.isEmpty else { throw ModelError.emptyInput }
            for t in b where t < 0 || Int(t) >= config.vocabSize { throw ModelError.tokenOutOfRange(id: t, vocab: config.vocabSize) }
            if group.map(\.count).reduce(0, +) + b.count > batchSize { try flush() }
            group.append(b)
        }
        try flush()
        return results
    }

    /// Where each row of a batch sits: its RoPE position, and the batch row its branch starts at
    /// (a row sees the cached prefix plus rows branchStart…itself).
    struct BranchLayout {
        let positions: [Int]
        let branchStart: [Int]
    }

    /// Rows of a batch that continue one cache: a sequence's new tokens (positions from the
    /// cache's end), or with a layout the branches of one prefix.
    struct Segment {
        let cache: KVCache
        let rows: Range<Int>
        var layout: BranchLayout? = nil

        func position(ofRow i: Int) -> Int { layout?.positions[i - rows.lowerBound] ?? cache.count + i - rows.lowerBound }
    }

    /// Evaluates one new token for each of several sequences in one pass, so every weight is read
    /// once for all of them (continuous batching); returns one row of logits per step, in order.
    /// Each row equals what `forward([token], cache:)` gives alone: the kernels keep every
    /// output's accumulation order whatever the batch (batches of more than
    /// `decodeBatchLimit` rows are split so the exact arithmetic stays on its row dots). `tap`
    /// receives the rows in step order (positions: row indices of the call).
    public func decode(_ steps: [(token: Int32, cache: KVCache)], tap: HiddenStateTap? = nil) throws -> Logits {
        guard !steps.isEmpty else { throw ModelError.emptyInput }
        precondition(Set(steps.map { ObjectIdentifier($0.cache) }).count == steps.count, "one step per cache")
        for (token, cache) in steps {
            if let depth = cache.depth { throw ModelError.shallowCache(layers: depth) }
            guard cache.count < cache.capacity else { throw ModelError.contextFull(limit: cache.capacity, requested: cache.count + 1) }
            guard token >= 0 && Int(token) < config.vocabSize else { throw ModelError.tokenOutOfRange(id: token, vocab: config.vocabSize) }
        }
        var values: [Float] = []
        values.reserveCapacity(steps.count * config.vocabSize)
        var start = 0
        while start < steps.count {
            let group = steps[start..<min(start + Self.decodeBatchLimit, steps.count)]
            let segments = group.indices.map { Segment(cache: steps[$0].cache, rows: ($0 - start)..<($0 - start + 1)) }
            values += evaluate(ArraySlice(group.map(\.token)), segments: segments, logitRows: Array(group.indices.map { $0 - start }),
                               tap: tap, decoded: true)
            start += group.count
        }
        return Logits(rows: steps.count, vocab: config.vocabSize, values: values)
    }

    /// Decoded rows evaluated in one pass at most (`QuantizedProducts.exactRowsPerDot`).
    public static let decodeBatchLimit = QuantizedProducts.exactRowsPerDot

    /// Whether every row of a product is computed alone whatever comes with it (the quantised
    /// arithmetic); otherwise a few rows take row dots where many take sgemm tiles.
    var everyRowAlone: Bool { products.arithmetic == .quantized }

    /// Evaluates the prompts of several sequences, each continuing its own cache, and returns
    /// each one's last row of logits, in order. Prompts that may share a pass do (several
    /// sequences' rows in one batch, each attending over its own cache), so a weight is read
    /// once for all of them: the exact arithmetic dequantises every weight for a prompt, as for
    /// a decode step. Each row equals what `forward(tokens, cache:)` gives alone: a prompt of 16
    /// rows or fewer takes the exact arithmetic's row dots alone, so it is evaluated alone there;
    /// every other piece has more than 16 rows and goes through tiles, whose results do not
    /// depend on the batch. Long passes are cut as `forward` cuts them (`chunking`).
    public func prefill(_ prompts: [(tokens: [Int32], cache: KVCache)]) throws -> Logits {
        guard !prompts.isEmpty else { throw ModelError.emptyInput }
        precondition(Set(prompts.map { ObjectIdentifier($0.cache) }).count == prompts.count, "one prompt per cache")
        for (tokens, cache) in prompts { try checkContinuation(tokens, cache: cache) }
        let minimumPiece = everyRowAlone ? 1 : QuantizedProducts.exactRowsPerDot + 1
        var rows = [[Float]?](repeating: nil, count: prompts.count)
        var shared: [Int] = []
        for (i, prompt) in prompts.enumerated() {
            if prompt.tokens.count >= minimumPiece && prompts.count > 1 {
                shared.append(i)
            } else {
                rows[i] = Array(try forward(prompt.tokens, cache: prompt.cache, logits: .last).values)
            }
        }
        var done = [Int](repeating: 0, count: prompts.count)   // rows of each prompt evaluated
        var pending = shared
        var passes = 0
        while !pending.isEmpty {
            if passes > 0 { chunking?.between() }
            passes += 1
            var budget = max(minimumPiece, min(batchSize, chunking?.rows() ?? batchSize))
            var pieces: [(prompt: Int, range: Range<Int>)] = []
            for i in pending where budget >= minimumPiece {
                let remaining = prompts[i].tokens.count - done[i]
                var n = min(remaining, budget)
                // Never leave a last piece the row dots would take (as `forward` does).
                if n < remaining && remaining - n < minimumPiece { n = remaining - minimumPiece }
                guard n >= minimumPiece else { continue }
                pieces.append((i, done[i]..<done[i] + n))
                budget -= n
            }
            if pieces.isEmpty, let i = pending.first {   // a budget below one piece: the first prompt's, whole
                pieces.append((i, done[i]..<prompts[i].tokens.count))
            }
            var tokens: [Int32] = [], segments: [Segment] = [], lastRows: [Int] = []
            for (i, range) in pieces {
                segments.append(Segment(cache: prompts[i].cache, rows: tokens.count..<tokens.count + range.count))
                tokens += prompts[i].tokens[range]
                if range.upperBound == prompts[i].tokens.count { lastRows.append(tokens.count - 1) }
            }
            let values = evaluate(tokens[...], segments: segments, logitRows: lastRows, tap: nil)
            var finished = 0
            for (i, range) in pieces {
                done[i] = range.upperBound
                guard done[i] == prompts[i].tokens.count else { continue }
                rows[i] = Array(values[finished * config.vocabSize..<(finished + 1) * config.vocabSize])
                finished += 1
            }
            pending.removeAll { done[$0] == prompts[$0].tokens.count }
        }
        return Logits(rows: prompts.count, vocab: config.vocabSize, values: rows.flatMap { $0! })
    }

    /// What `forward` refuses before evaluating anything.
    private func checkContinuation(_ tokens: [Int32], cache: KVCache, layers: Int? = nil) throws {
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        if let depth = cache.depth, (layers ?? config.layers) > depth { throw ModelError.shallowCache(layers: depth) }
        guard cache.count + tokens.count <= cache.capacity else {
            throw ModelError.contextFull(limit: cache.capacity, requested: cache.count + tokens.count)
        }
        for t in tokens where t < 0 || Int(t) >= config.vocabSize {
            throw ModelError.tokenOutOfRange(id: t, vocab: config.vocabSize)
        }
    }

    private func evaluate(
        _ tokens: ArraySlice<Int32>, cache: KVCache, logitRows: [Int], tap: HiddenStateTap?,
        layout: BranchLayout? = nil, layers: Int? = nil
    ) -> [Float] {
        evaluate(tokens, segments: [Segment(cache: cache, rows: 0..<tokens.count, layout: layout)], logitRows: logitRows, tap: tap, layers: layers)
    }

    /// One batch: the transformer over `tokens`, logits for `logitRows` (indices into the batch,
    /// ascending). Each segment's rows continue its own cache (one segment: a sequence, or its
    /// branches). `decoded`: every row is a decoded token (`ProductArithmetic.products(ofRows:decoded:)`).
    /// Several segments without `decoded` are prompts: each logit row is then computed as a
    /// prompt's only one is alone (as a decoded row: one row of a prompt takes the same arithmetic).
    private func evaluate(
        _ tokens: ArraySlice<Int32>, segments: [Segment], logitRows: [Int], tap: HiddenStateTap?,
        layers: Int? = nil, decoded: Bool = false
    ) -> [Float] {
        let c = config
        let arch = c.architecture
        let t = tokens.count, d = c.dim, qd = c.qDim, kvd = c.kvDim, hd = c.headDim, f = c.ffnDim
        let qkvWidth = qd + 2 * kvd
        let halfRope = c.ropeDims / 2
        let tokens = Array(tokens)
        var segmentOfRow = [Int](repeating: 0, count: t)
        for (s, segment) in segments.enumerated() { for i in segment.rows { segmentOfRow[i] = s } }
        let positions = (0..<t).map { segments[segmentOfRow[$0]].position(ofRow: $0) }

        let x = FloatBuffer(count: t * d)            // residual stream [T, D]
        let xn = FloatBuffer(count: t * d)           // normed input [T, D]
        let qkv = FloatBuffer(count: t * qkvWidth)   // [T, Q + 2·kvD]
        let attn = FloatBuffer(count: t * qd)        // attention output [T, Q]
        let gateUp = FloatBuffer(count: t * 2 * f)   // [T, 2F]: gate, then up
        // A block's output before its post-norm (Gemma 3); without post-norms it goes straight into x.
        let blockOut = arch.hasPostNorms ? FloatBuffer(count: t * d) : nil
        let cosTables = ropes.map { _ in FloatBuffer(count: t * halfRope) }
        let sinTables = ropes.map { _ in FloatBuffer(count: t * halfRope) }

        let embeddingScale = Float(d).squareRoot()
        for (i, token) in tokens.enumerated() {
            weights.tokenEmbedding.dequantizeRow(Int(token), into: x.pointer + i * d)
            if arch.scalesEmbedding { for k in 0..<d { x.pointer[i * d + k] *= embeddingScale } }
            for (r, rope) in ropes.enumerated() {
                rope.fill(position: positions[i], cos: cosTables[r].pointer + i * halfRope, sin: sinTables[r].pointer + i * halfRope)
            }
        }
        let visible = segments.map { visibility(rows: $0.rows.count, prefix: $0.cache.count, layout: $0.layout, window: nil) }
        let slidingVisible = c.slidingWindow.map { w in
            segments.map { visibility(rows: $0.rows.count, prefix: $0.cache.count, layout: $0.layout, window: w) }
        }
        let wants = tap?.points ?? []
        let tapPositions = segments.count == 1 ? segments[0].cache.count..<segments[0].cache.count + t : 0..<t
        func report(_ point: TapPoint, _ buffer: FloatBuffer) {
            guard let tap, wants.contains(point) else { return }
            tap.receive(point, positions: tapPositions, values: UnsafeBufferPointer(start: buffer.pointer, count: t * d), dim: d)
        }
        /// Adds a block's output (in `blockOut`) to the stream after its post-norm.
        func addNormed(_ norm: FloatBuffer?) {
            guard let blockOut, let norm else { return }
            rmsNorm(blockOut.pointer, blockOut.pointer, norm.pointer, rows: t, dim: d, eps: c.rmsEps)
            for k in 0..<t * d { x.pointer[k] += blockOut.pointer[k] }
        }
        let queriesScaled = arch.scalesQueries

        for l in 0..<(layers ?? c.layers) {
            let w = weights.layers[l]
            let cosTable = cosTables[ropeOfLayer[l]], sinTable = sinTables[ropeOfLayer[l]]
            // Attention block.
            rmsNorm(xn.pointer, x.pointer, w.attnNorm.pointer, rows: t, dim: d, eps: c.rmsEps)
            products.multiply(xn.pointer, rows: t, decoded: decoded, [.init(w.wq, out: qkv.pointer, ldo: qkvWidth),
                                                    .init(w.wk, out: qkv.pointer + qd, ldo: qkvWidth),
                                                    .init(w.wv, out: qkv.pointer + qd + kvd, ldo: qkvWidth)])
            for i in 0..<t {
                let row = qkv.pointer + i * qkvWidth
                if let b = w.bqkv { for j in 0..<qkvWidth { row[j] += b.pointer[j] } }
                if let qNorm = w.qNorm, let kNorm = w.kNorm {
                    rmsNorm(row, row, qNorm.pointer, rows: c.heads, dim: hd, eps: c.rmsEps)
                    rmsNorm(row + qd, row + qd, kNorm.pointer, rows: c.kvHeads, dim: hd, eps: c.rmsEps)
                }
                let cosRow = cosTable.pointer + i * halfRope, sinRow = sinTable.pointer + i * halfRope
                applyRoPE(row, heads: c.heads, headDim: hd, dims: c.ropeDims, cos: cosRow, sin: sinRow, ordering: c.ropeOrdering)
                applyRoPE(row + qd, heads: c.kvHeads, headDim: hd, dims: c.ropeDims, cos: cosRow, sin: sinRow, ordering: c.ropeOrdering)
                if queriesScaled { for j in 0..<qd { row[j] *= c.attentionScale } }
                let segment = segments[segmentOfRow[i]]
                segment.cache.store(layer: l, position: segment.cache.count + i - segment.rows.lowerBound, keys: row + qd, values: row + qd + kvd)
            }
            for (s, segment) in segments.enumerated() {
                let cache = segment.cache, first = segment.rows.lowerBound
                products.attention(qkv.pointer + first * qkvWidth, qStride: qkvWidth, rows: segment.rows.count, heads: c.heads,
                                   kvHeads: c.kvHeads, headDim: hd, keys: cache.keys(layer: l), values: cache.values(layer: l),
                                   halfPrecision: cache.precision == .f16, kvStride: kvd,
                                   visible: c.isSliding(layer: l) ? slidingVisible![s] : visible[s],
                                   scale: queriesScaled ? 1 : c.attentionScale, out: attn.pointer + first * qd, outStride: qd)
            }
            if let blockOut {
                products.multiply(attn.pointer, rows: t, decoded: decoded, [.init(w.wo, out: blockOut.pointer)])
                addNormed(w.attnPostNorm)
            } else {
                products.multiply(attn.pointer, rows: t, decoded: decoded, [.init(w.wo, out: x.pointer, accumulate: true)])
            }

            // Feed-forward block (SwiGLU, or GeGLU for Gemma).
            rmsNorm(xn.pointer, x.pointer, w.ffnNorm.pointer, rows: t, dim: d, eps: c.rmsEps)
            report(.ffnInput(layer: l), xn)
            products.multiply(xn.pointer, rows: t, decoded: decoded, [.init(w.wGate, out: gateUp.pointer, ldo: 2 * f),
                                                   .init(w.wUp, out: gateUp.pointer + f, ldo: 2 * f)])
            for i in 0..<t {
                let row = gateUp.pointer + i * 2 * f
                switch arch.feedForward {
                case .swiglu: siluMul(row, row + f, count: f)
                case .geglu: geluMul(row, row + f, count: f)
                }
            }
            if let blockOut {
                products.multiply(gateUp.pointer, rows: t, ldx: 2 * f, decoded: decoded, [.init(w.wDown, out: blockOut.pointer)])
                addNormed(w.ffnPostNorm)
            } else {
                products.multiply(gateUp.pointer, rows: t, ldx: 2 * f, decoded: decoded, [.init(w.wDown, out: x.pointer, accumulate: true)])
            }
            report(.residual(layer: l), x)
        }
        for segment in segments { segment.cache.advance(by: segment.rows.count) }

        guard !logitRows.isEmpty else { return [] }
        let r = logitRows.count
        if let first = logitRows.first, logitRows.last == first + r - 1 {
            rmsNorm(xn.pointer, x.pointer + first * d, weights.outputNorm.pointer, rows: r, dim: d, eps: c.rmsEps)
        } else {
            for (k, i) in logitRows.enumerated() {
                rmsNorm(xn.pointer + k * d, x.pointer + i * d, weights.outputNorm.pointer, rows: 1, dim: d, eps: c.rmsEps)
            }
        }
        var result = [Float](repeating: 0, count: r * c.vocabSize)
        let lastRowsOfPrompts = segments.count > 1 && !decoded
        let group = lastRowsOfPrompts ? Self.decodeBatchLimit : r
        result.withUnsafeMutableBufferPointer { buf in
            for k in stride(from: 0, to: r, by: group) {
                products.multiply(xn.pointer + k * d, rows: min(group, r - k), decoded: decoded || lastRowsOfPrompts,
                                  [.init(weights.output, out: buf.baseAddress! + k * c.vocabSize)])
            }
        }
        return result
    }

    /// The keys each row of a batch sees: the cache and the batch up to itself, or with a layout
    /// the prefix and its own branch (`BranchLayout`); with a `window`, only keys fewer than
    /// `window` positions back (sliding-window attention, as llama.cpp masks it).
    private func visibility(rows t: Int, prefix p0: Int, layout: BranchLayout?, window: Int?) -> Visibility {
        guard let layout else {
            let seen = (0..<t).map { Int32(p0 + $0 + 1) }
            return Visibility(seenFrom: window.map { w in seen.map { max(0, $0 - Int32(w)) } }, seen: seen)
        }
        let seen = Array(repeating: Int32(p0), count: t)
        var from = layout.branchStart.map { Int32(p0 + $0) }
        let to = (0..<t).map { Int32(p0 + $0 + 1) }
        guard let window else { return Visibility(seen: seen, from: from, to: to) }
        // Position p sees positions > p − window: in the prefix (slot = position) and in its branch (slot − branch start = offset).
        let seenFrom = layout.positions.map { Int32(min(p0, max(0, $0 - window + 1))) }
        for i in 0..<t { from[i] = max(from[i], Int32(p0 + i - window + 1)) }
        return Visibility(seenFrom: seenFrom, seen: seen, from: from, to: to)
    }
}
