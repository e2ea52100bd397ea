// RMSNorm (llama, qwen2): y = x / sqrt(mean(x²) + eps) · w.

/// x: [T, D], w: [D] -> out: [T, D]. `out` may alias `x`.
public func rmsNorm(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
    rows t: Int, dim d: Int, eps: Float
) {
    for row in 0..<t {
        let xi = x + row * d
        let oi = out + row * d
        // Summed in f64 like ggml's rms_norm (ggml_float), so long rows lose nothing.
        var sum = 0.0
        var acc = Vec8()
        var k = 0
        while k + 8 <= d {
            let v = UnsafeRawPointer(xi + k).loadUnaligned(as: Vec8.self)
            acc += v * v
            if k & 63 == 56 { sum += Double(acc.sum()); acc = Vec8() }
            k += 8
        }
        sum += Double(acc.sum())
        while k < d { sum += Double(xi[k] * xi[k]); k += 1 }
        let scale = Float(1.0 / (sum / Double(d) + Double(eps)).squareRoot())
        for k in 0..<d { oi[k] = xi[k] * scale * w[k] }
    }
}

/// Scalar reference for `rmsNorm`.
public func rmsNormReference(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
    rows t: Int, dim d: Int, eps: Float
) {
    for row in 0..<t {
        var sum = 0.0
        for k in 0..<d { sum += Double(x[row * d + k]) * Double(x[row * d + k]) }
        let scale = Float(1.0 / (sum / Double(d) + Double(eps)).squareRoot())
        for k in 0..<d { out[row * d + k] = x[row * d + k] * scale * w[k] }
    }
}
