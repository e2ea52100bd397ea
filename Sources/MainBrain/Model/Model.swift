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

/// A frozen llama-family transformer in f32 over OpenBLAS.
///
/// Loading goes GGUFFile → ModelConfig → Weights; `forward` evaluates tokens against a
/// `KVCache`. One forward runs at a time per model (the daemon's scheduler owns it).
public final class Model: @unchecked Sendable {
    public let config: ModelConfig
    public let gguf: GGUFFile
    let weights: Weights
    let rope: RoPETable
    /// Longest run of tokens evaluated in one batch (bounds the scratch memory).
    public var batchSize = 512

    public init(gguf: GGUFFile) throws {
        self.gguf = gguf
        config = try ModelConfig(gguf: gguf)
        weights = try Weights(gguf: gguf, config: config)
        rope = RoPETable(dims: config.ropeDims, base: config.ropeBase)
        // Every weight now lives in f32 buffers; the mapping's pages are no longer needed.
        gguf.file.dropPages()
    }

    public convenience init(path: String) throws {
        try self.init(gguf: GGUFFile(path: path))
    }

    public func makeCache(capacity: Int? = nil) -> KVCache {
        KVCache(config: config, capacity: capacity)
    }

    /// Evaluates `tokens` at positions `cache.count…`, appends them to the cache, and
    /// returns the logits asked for. Hidden states go to `tap` in the same pass.
    public func forward(
        _ tokens: [Int32], cache: KVCache, logits: LogitRows = .last, tap: HiddenStateTap? = nil
    ) throws -> Logits {
        guard !tokens.isEmpty else { throw ModelError.emptyInput }
        guard cache.count + tokens.count <= cache.capacity else {
            throw ModelError.contextFull(limit: cache.capacity, requested: cache.count + tokens.count)
        }
        for t in tokens where t < 0 || Int(t) >= config.vocabSize {
            throw ModelError.tokenOutOfRange(id: t, vocab: config.vocabSize)
        }
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
            let end = min(start + batchSize, tokens.count)
            let rows = min(max(start, firstLogitRow), end)..<end
            let chunkLogits = evaluate(tokens[start..<end], cache: cache,
                                       logitRows: (rows.lowerBound - start)..<(rows.upperBound - start), tap: tap)
            values.append(contentsOf: chunkLogits)
            start = end
        }
        return Logits(rows: tokens.count - firstLogitRow, vocab: config.vocabSize, values: values)
    }

    /// Evaluates several continuations of what the cache holds in one batch (tree attention):
    /// each branch sees the cached prefix and its own earlier tokens, never another branch, and
    /// its tokens take positions from the prefix's end. Returns every row's logits per branch;
    /// the cache is left holding only the prefix. Scoring the candidates of a question this way
    /// costs one batched pass instead of one small pass per candidate.
    public func forwardBranches(_ branches: [[Int32]], cache: KVCache) throws -> [Logits] {
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
            let values = evaluate(tokens[...], cache: cache, logitRows: 0..<tokens.count, tap: nil,
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

    /// One batch: the transformer over `tokens`, logits for `logitRows` (indices into the batch).
    /// Without a layout the rows are one sequence continuing the cache.
    private func evaluate(
        _ tokens: ArraySlice<Int32>, cache: KVCache, logitRows: Range<Int>, tap: HiddenStateTap?,
        layout: BranchLayout? = nil
    ) -> [Float] {
        let c = config
        let t = tokens.count, d = c.dim, kvd = c.kvDim, hd = c.headDim, f = c.ffnDim
        let qkvWidth = d + 2 * kvd
        let p0 = cache.count
        let s = p0 + t  // keys visible to the last row
        let groupSize = c.heads / c.kvHeads
        let scale = 1 / Float(hd).squareRoot()

        let x = FloatBuffer(count: t * d)            // residual stream [T, D]
        let xn = FloatBuffer(count: t * d)           // normed input [T, D]
        let qkv = FloatBuffer(count: t * qkvWidth)   // [T, D + 2·kvD]
        let attn = FloatBuffer(count: t * d)         // attention output [T, D]
        let scores = FloatBuffer(count: t * s)       // one head's [T, S]
        let gateUp = FloatBuffer(count: t * 2 * f)   // [T, 2F]
        let cosTable = FloatBuffer(count: t * c.ropeDims / 2)
        let sinTable = FloatBuffer(count: t * c.ropeDims / 2)

        for (i, token) in tokens.enumerated() {
            (x.pointer + i * d).update(from: weights.tokenEmbedding.pointer + Int(token) * d, count: d)
            rope.fill(position: layout?.positions[i] ?? p0 + i, cos: cosTable.pointer + i * c.ropeDims / 2, sin: sinTable.pointer + i * c.ropeDims / 2)
        }
        let wants = tap?.points ?? []
        func report(_ point: TapPoint, _ buffer: FloatBuffer) {
            guard let tap, wants.contains(point) else { return }
            tap.receive(point, positions: p0..<s, values: UnsafeBufferPointer(start: buffer.pointer, count: t * d), dim: d)
        }

        for l in 0..<c.layers {
            let w = weights.layers[l]
            // Attention block.
            rmsNorm(xn.pointer, x.pointer, w.attnNorm.pointer, rows: t, dim: d, eps: c.rmsEps)
            matmul(qkv.pointer, xn.pointer, w.wqkv.pointer, rows: t, outFeatures: qkvWidth, inFeatures: d)
            for i in 0..<t {
                let row = qkv.pointer + i * qkvWidth
                if let b = w.bqkv { for j in 0..<qkvWidth { row[j] += b.pointer[j] } }
                let cosRow = cosTable.pointer + i * c.ropeDims / 2, sinRow = sinTable.pointer + i * c.ropeDims / 2
                applyRoPE(row, heads: c.heads, headDim: hd, dims: c.ropeDims, cos: cosRow, sin: sinRow, ordering: c.ropeOrdering)
                applyRoPE(row + d, heads: c.kvHeads, headDim: hd, dims: c.ropeDims, cos: cosRow, sin: sinRow, ordering: c.ropeOrdering)
                cache.keyPointer(layer: l, position: p0 + i).update(from: row + d, count: kvd)
                cache.valuePointer(layer: l, position: p0 + i).update(from: row + d + kvd, count: kvd)
            }
            let keys = cache.keyPointer(layer: l, position: 0)
            let values = cache.valuePointer(layer: l, position: 0)
            for h in 0..<c.heads {
                let g = h / groupSize
                // scores[T, S] = scale · Q_h[T, hd] · K_g[S, hd]ᵀ
                gemm(transA: false, transB: true, m: t, n: s, k: hd, alpha: scale,
                     qkv.pointer + h * hd, lda: qkvWidth, keys + g * hd, ldb: kvd, scores.pointer, ldc: s)
                for i in 0..<t {
                    // Causal: row i sees keys 0…p0+i.
                    let row = scores.pointer + i * s
                    let visible = p0 + i + 1
                    if let layout, layout.branchStart[i] > 0 {
                        // Other branches' keys sit between the prefix and this branch.
                        (row + p0).update(repeating: -.infinity, count: layout.branchStart[i])
                        softmaxInPlace(row, count: visible)
                        (row + p0).update(repeating: 0, count: layout.branchStart[i])
                    } else {
                        softmaxInPlace(row, count: visible)
                    }
                    if visible < s { (row + visible).update(repeating: 0, count: s - visible) }
                }
                // attn[T, hd] (columns of head h) = scores[T, S] · V_g[S, hd]
                gemm(transA: false, transB: false, m: t, n: hd, k: s,
                     scores.pointer, lda: s, values + g * hd, ldb: kvd, attn.pointer + h * hd, ldc: d)
            }
            matmul(x.pointer, attn.pointer, w.wo.pointer, rows: t, outFeatures: d, inFeatures: d, accumulate: true)

            // Feed-forward block (SwiGLU).
            rmsNorm(xn.pointer, x.pointer, w.ffnNorm.pointer, rows: t, dim: d, eps: c.rmsEps)
            report(.ffnInput(layer: l), xn)
            matmul(gateUp.pointer, xn.pointer, w.wGateUp.pointer, rows: t, outFeatures: 2 * f, inFeatures: d)
            for i in 0..<t {
                let row = gateUp.pointer + i * 2 * f
                siluMul(row, row + f, count: f)
            }
            matmul(x.pointer, gateUp.pointer, ldx: 2 * f, w.wDown.pointer, rows: t, outFeatures: d, inFeatures: f,
                   accumulate: true)
            report(.residual(layer: l), x)
        }
        cache.advance(by: t)

        guard !logitRows.isEmpty else { return [] }
        let r = logitRows.count
        rmsNorm(xn.pointer, x.pointer + logitRows.lowerBound * d, weights.outputNorm.pointer, rows: r, dim: d, eps: c.rmsEps)
        var result = [Float](repeating: 0, count: r * c.vocabSize)
        result.withUnsafeMutableBufferPointer { buf in
            matmul(buf.baseAddress!, xn.pointer, weights.output.pointer, rows: r, outFeatures: c.vocabSize, inFeatures: d)
        }
        return result
    }
}
