import Foundation

// The SwiGLU and GeGLU activations and a stable log-sum-exp (attention's softmax is in CQuant's cq_attention).

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

/// gate[i] ← GELU(gate[i]) · up[i] (Gemma's GeGLU), GELU in its tanh form computed as
/// llama.cpp's CPU backend does: through a table over f16, the input rounded to f16 and the
/// result stored as f16, exact beyond ±10.
public func geluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    geluHalfTable.withUnsafeBufferPointer { table in
        for i in 0..<n {
            let x = gate[i]
            let g: Float = x <= -10 ? 0 : x >= 10 ? x : table[Int(floatToHalf(x))]
            gate[i] = g * up[i]
        }
    }
}

/// GELU (tanh form) in f32, as ggml_gelu_f32 writes it.
public func gelu(_ x: Float) -> Float {
    0.5 * x * (1 + tanhf(0.797_884_560_802_865_355_88 * x * (1 + 0.044_715 * x * x)))
}

/// GELU of every f16 value, rounded to f16 (ggml's table).
let geluHalfTable: [Float] = (0...0xFFFF).map { halfToFloatExact(floatToHalf(gelu(halfToFloatExact(UInt16($0))))) }

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
