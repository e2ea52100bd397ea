// Weight matrices read in place from the GGUF mapping, in their stored format.
import CBLAS
import CQuant

/// Threads the engine computes on, created once (no thread is made per token).
public final class ComputePool: @unchecked Sendable {
    let pool: OpaquePointer
    public var threads: Int { Int(cq_pool_threads(pool)) }

    public init(threads: Int) {
        pool = cq_pool_create(Int32(max(1, threads)))
    }

    deinit { cq_pool_destroy(pool) }
}

/// The kernels this process runs: "avx2" or "portable".
public enum QuantKernels {
    public static var path: String { String(cString: cq_kernel_path()) }
    /// Forces the portable kernels (tests compare the two; benchmarks time both).
    public static func forcePortable(_ on: Bool) { cq_force_portable(on ? 1 : 0) }
}

/// A [rows, cols] weight matrix of one GGUF type, row-major as the file stores it.
public struct QuantizedMatrix: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let cols: Int
    public let data: UnsafeRawPointer
    public let rowBytes: Int

    /// Nil when rows of this type and length cannot be read (`cols` not a whole number of blocks).
    public init?(type: GGMLType, rows: Int, cols: Int, data: UnsafeRawPointer) {
        guard cq_supported(Int32(type.rawValue)) != 0, cols % type.blockSize == 0,
              let rowBytes = type.byteCount(elements: cols) else { return nil }
        self.type = type
        self.rows = rows
        self.cols = cols
        self.data = data
        self.rowBytes = rowBytes
    }

    /// Row `r` as f32.
    public func dequantizeRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        cq_dequantize(Int32(type.rawValue), data + r * rowBytes, out, cols)
    }

    /// Rows `range` as f32 into out[range.count][cols], shared out over `pool`'s workers if given.
    public func dequantizeRows(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>, pool: ComputePool? = nil) {
        cq_dequantize_rows(pool?.pool, Int32(type.rawValue), data + range.lowerBound * rowBytes, rowBytes, Int32(range.count),
                           Int32(cols), out)
    }

    /// One row times activations quantised for this type (`quantizeActivations`).
    public func dot(row r: Int, quantized x: UnsafeRawPointer) -> Float {
        cq_vec_dot(Int32(type.rawValue), Int32(cols), data + r * rowBytes, x)
    }

    /// Bytes `quantizeActivations` writes for `cols` activations.
    public var activationBytes: Int { cq_activation_bytes(Int32(type.rawValue), Int32(cols)) }

    public func quantizeActivations(_ x: UnsafePointer<Float>, into out: UnsafeMutableRawPointer) {
        cq_quantize_activation(Int32(type.rawValue), x, Int32(cols), out)
    }
}

/// How matrix products treat the activations.
public enum ProductArithmetic: String, Sendable {
    /// Quantised per block as llama.cpp's CPU path quantises them (Q8_0, Q8_1, Q8_K), integer
    /// dot products: what llama.cpp computes on the file, at its speed.
    case quantized
    /// f32, times each weight row dequantised: what an f32 engine computes (the arithmetic of
    /// the llama.cpp reference outputs, ../shared/reference). Several times slower.
    case exact
    /// A prompt (more than one row) in f32 as `.exact`, through dequantised tiles and sgemm, and
    /// each decoded token quantised as `.quantized`: prompts and first tokens as the f32 engine
    /// computes them (its perplexity is the lower), decoding at llama.cpp's speed.
    case mixed

    /// The arithmetic a product of `rows` activation rows is computed in; `decoded`: the rows are
    /// decoded tokens of several sequences (a batch of decode steps), never a prompt.
    public func products(ofRows rows: Int, decoded: Bool = false) -> ProductArithmetic {
        switch self {
        case .mixed: rows > 1 && !decoded ? .exact : .quantized
        default: self
        }
    }
}

/// Products of activations with quantised weights. `.quantized`: activations quantised as
/// llama.cpp's CPU path quantises them, one dot product per output on the pool whether a call
/// brings one row (decode) or many (prefill), so a position's result does not depend on its
/// batch. `.exact`: f32, row dots on the pool for a few rows, dequantised weight tiles and
/// sgemm for many. `.mixed`: `.exact` for a prompt, `.quantized` for a decoded token. One per
/// thread of use: it owns its scratch.
public final class QuantizedProducts: @unchecked Sendable {
    public let pool: ComputePool
    public let arithmetic: ProductArithmetic
    private var scratch = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
    private var scratchBytes = 64

    public init(pool: ComputePool, arithmetic: ProductArithmetic = .quantized) {
        self.pool = pool
        self.arithmetic = arithmetic
    }

    deinit {
        scratch.deallocate()
        tile?.deallocate()
    }

    /// Exact products of more rows than this go through dequantised weight tiles and sgemm
    /// (f32 either way; only the order of summation differs). Writing and re-reading a tile
    /// costs the same whatever the rows, so below this each weight row is dequantised on its
    /// own and dotted with the few (measured on the default Q4_1 and a 1.5B Q4_K_M: the tiles
    /// overtake between 16 and 32 rows on both).
    public static let exactRowsPerDot = 16
    /// f32 elements of a dequantised weight tile (16 MiB: big enough for sgemm).
    public static let tileElements = 1 << 22
    private var tile: UnsafeMutablePointer<Float>?

    private func multiplyByTiles(_ x: UnsafePointer<Float>, rows t: Int, ldx: Int, _ target: Target) {
        let w = target.weights
        let tile = self.tile ?? UnsafeMutablePointer<Float>.allocate(capacity: Self.tileElements)
        self.tile = tile
        let tileRows = max(1, min(w.rows, Self.tileElements / w.cols))
        var r0 = 0
        while r0 < w.rows {
            let n = min(tileRows, w.rows - r0)
            // On the pool (OpenBLAS's threads and the pool's take turns, each yielding when idle):
            // portable and on this thread alone, it was two thirds of a 16-token 1.5B prompt.
            w.dequantizeRows(r0..<r0 + n, into: tile, pool: pool)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(t), Int32(n), Int32(w.cols),
                        1, x, Int32(ldx), tile, Int32(w.cols), target.accumulate ? 1 : 0, target.out + r0, Int32(target.ldo))
            r0 += n
        }
    }

    /// One output of a product: out[t, 0..<w.rows] (row stride ldo) (+)= x[t] · wᵀ.
    public struct Target {
        public let weights: QuantizedMatrix
        public let out: UnsafeMutablePointer<Float>
        public let ldo: Int
        public let accumulate: Bool
        public init(_ weights: QuantizedMatrix, out: UnsafeMutablePointer<Float>, ldo: Int? = nil, accumulate: Bool = false) {
            self.weights = weights
            self.out = out
            self.ldo = ldo ?? weights.rows
            self.accumulate = accumulate
        }
    }

    /// x: [t, cols] (row stride ldx) against every target (all of `cols` columns). `decoded`: the
    /// rows are decoded tokens (see `ProductArithmetic.products(ofRows:decoded:)`).
    public func multiply(_ x: UnsafePointer<Float>, rows t: Int, ldx: Int? = nil, decoded: Bool = false, _ targets: [Target]) {
        guard let cols = targets.first?.weights.cols, t > 0 else { return }
        precondition(targets.allSatisfy { $0.weights.cols == cols }, "targets of one product share their input width")
        let arithmetic = arithmetic.products(ofRows: t, decoded: decoded)
        if arithmetic == .exact && t > Self.exactRowsPerDot {
            for target in targets { multiplyByTiles(x, rows: t, ldx: ldx ?? cols, target) }
            return
        }
        let need = cq_matmul_scratch_bytes(Int32(cols), Int32(t))
        if need > scratchBytes {
            scratch.deallocate()
            scratch = UnsafeMutableRawPointer.allocate(byteCount: need, alignment: 64)
            scratchBytes = need
        }
        let jobs = targets.map { target in
            cq_matmul_job(type: Int32(target.weights.type.rawValue), rows: Int32(target.weights.rows), weights: target.weights.data,
                          row_bytes: target.weights.rowBytes, out: target.out, ldo: target.ldo, accumulate: target.accumulate ? 1 : 0)
        }
        jobs.withUnsafeBufferPointer { jobs in
            cq_matmul(pool.pool, x, Int32(t), ldx ?? cols, Int32(cols), jobs.baseAddress, Int32(jobs.count),
                      arithmetic == .exact ? 1 : 0, scratch)
        }
    }
}

/// The keys each query row of an attention call sees: positions [0, seen[i]), then
/// [from[i], to[i]) when given (a branch's own rows after a shared prefix).
public struct Visibility {
    /// Row i sees cache positions seenFrom[i] (0 when nil) ..< seen[i], then from[i] ..< to[i].
    public var seenFrom: [Int32]?
    public var seen: [Int32]
    public var from: [Int32]?
    public var to: [Int32]?
    public init(seenFrom: [Int32]? = nil, seen: [Int32], from: [Int32]? = nil, to: [Int32]? = nil) {
        self.seenFrom = seenFrom
        self.seen = seen
        self.from = from
        self.to = to
    }
}

extension QuantizedProducts {
    /// Attention on the pool, row by row in a fixed order (`cq_attention`): a row's result does
    /// not depend on the rows that came with it. Keys and values are f32, or f16 when
    /// `halfPrecision` (queries and weights are then rounded to f16, as llama.cpp's CPU path does).
    public func attention(_ q: UnsafePointer<Float>, qStride: Int, rows: Int, heads: Int, kvHeads: Int, headDim: Int,
                          keys: UnsafeRawPointer, values: UnsafeRawPointer, halfPrecision: Bool, kvStride: Int, visible: Visibility,
                          scale: Float, out: UnsafeMutablePointer<Float>, outStride: Int) {
        func withOptional<R>(_ a: [Int32]?, _ body: (UnsafePointer<Int32>?) -> R) -> R {
            guard let a else { return body(nil) }
            return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
        let ranges = visible.from != nil && visible.to != nil
        visible.seen.withUnsafeBufferPointer { seen in
            withOptional(visible.seenFrom) { seenFrom in
                withOptional(ranges ? visible.from : nil) { from in
                    withOptional(ranges ? visible.to : nil) { to in
                        cq_attention(pool.pool, q, qStride, Int32(rows), Int32(heads), Int32(kvHeads), Int32(headDim), keys, values,
                                     halfPrecision ? 1 : 0, kvStride, seenFrom, seen.baseAddress, from, to, scale, out, outStride)
                    }
                }
            }
        }
    }
}
