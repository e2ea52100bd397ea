import Foundation

// The SwiGLU activation and a stable log-sum-exp (attention's softmax is in CQuant's cq_attention).

/// SwiGLU: gate[i] = silu(gate[i]) · up[i] over n values, silu(g) = g / (1 + e^-g).
public func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    var i = 0
    while i + 8 <= n {
        let gp = UnsafeMutableRawPointer(gate + i)
        let g = gp.loadUnaligned(as: Vec8.self)
        let u = UnsafeRawPointer(up + i).loadUnaligned(as: Vec8.self)
        gp.storeBytes(of: g / (1 + exp8(-g)) * u, as: Vec8.self)
        i += 8
    }
    while i < n { gate[i] = gate[i] / (1 + expApprox(-gate[i])) * up[i]; i += 1 }
}

/// log Σ exp(x[i]) over n values, stable (max subtracted), partial sums in f64.
public func logSumExp(_ x: UnsafePointer<Float>, count n: Int) -> Double {
    var m = -Float.infinity
    for i in 0..<n where x[i] > m { m = x[i] }
    if m == -Float.infinity { return -.infinity }
    let mv = Vec8(repeating: m)
    var sum = 0.0
    var i = 0
    while i + 8 <= n {
        // A block of up to 256 lanes in f32, then into the f64 total.
        var acc = Vec8()
        var j = 0
        while j < 32 && i + 8 <= n {
            acc += exp8(UnsafeRawPointer(x + i).loadUnaligned(as: Vec8.self) - mv)
            i += 8; j += 1
        }
        sum += Double(acc.sum())
    }
    while i < n { sum += Double(expApprox(x[i] - m)); i += 1 }
    return Double(m) + log(sum)
}
