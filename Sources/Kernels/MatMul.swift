// Matrix products over OpenBLAS. Weights are stored as GGUF stores them: row-major
// [out, in], so every product is activations times the transposed weight.
import CBLAS

/// x: [T, D] (row stride ldx), w: [N, D] -> out: [T, N] (row stride ldo); out = x·wᵀ (+ out if accumulate).
@inline(__always)
public func matmul(
    _ out: UnsafeMutablePointer<Float>, ldo: Int? = nil,
    _ x: UnsafePointer<Float>, ldx: Int? = nil,
    _ w: UnsafePointer<Float>, rows t: Int, outFeatures n: Int, inFeatures d: Int,
    accumulate: Bool = false
) {
    if t == 1 {
        // A single row is a matrix-vector product: sgemv streams w once.
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(d), 1, w, Int32(d), x, 1,
                    accumulate ? 1 : 0, out, 1)
        return
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(t), Int32(n), Int32(d),
                1, x, Int32(ldx ?? d), w, Int32(d), accumulate ? 1 : 0, out, Int32(ldo ?? n))
}

/// General sgemm on row-major operands: c[m, n] = alpha · op(a)[m, k] · op(b)[k, n] + beta · c.
@inline(__always)
public func gemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
    _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int
) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Scalar reference for `matmul`: out[t, n] = Σ_d x[t, d] · w[n, d], summed in f64.
public func matmulReference(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
    rows t: Int, outFeatures n: Int, inFeatures d: Int
) {
    for i in 0..<t {
        for j in 0..<n {
            var s = 0.0
            for k in 0..<d { s += Double(x[i * d + k]) * Double(w[j * d + k]) }
            out[i * n + j] = Float(s)
        }
    }
}

/// OpenBLAS's thread count for every following call in this process.
public enum BLASThreads {
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var current: Int { Int(openblas_get_num_threads()) }
}
