// Rotary position embeddings. Two pairings exist: "normal" rotates adjacent pairs
// (x[2i], x[2i+1]) (llama in GGUF, whose converter permutes q/k), "NeoX" rotates
// (x[i], x[i + d/2]) (qwen2 and most HF-native layouts).

import Foundation

public enum RoPEOrdering: Sendable { case normal, neox }

/// Cos/sin of θ = scale · pos · base^(-2i/dims) / factor_i for i < dims/2, computed as ggml does
/// (θ multiplied by the per-pair step one pair after another, in f32, then by the linear
/// scaling factor) so positions agree to the last bit.
public struct RoPETable {
    public let dims: Int
    public let base: Float
    /// Linear position scaling (1 / factor); 1 for none.
    public let scale: Float
    /// Per-pair frequency factors (Llama 3's `rope_freqs`): pair i's angle is divided by factors[i].
    public let factors: [Float]?

    public init(dims: Int, base: Float, scale: Float = 1, factors: [Float]? = nil) {
        precondition(factors == nil || factors!.count == dims / 2, "one factor per rotated pair")
        self.dims = dims
        self.base = base
        self.scale = scale
        self.factors = factors
    }

    /// cos and sin for one position: out arrays of dims/2.
    public func fill(position: Int, cos cosOut: UnsafeMutablePointer<Float>, sin sinOut: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2.0 / Float(dims))
        var theta = Float(position)
        for i in 0..<dims / 2 {
            let angle = scale * (factors.map { theta / $0[i] } ?? theta)
            cosOut[i] = cosf(angle)
            sinOut[i] = sinf(angle)
            theta *= thetaScale
        }
    }
}

/// Rotates `heads` heads of size `headDim` in place, the first `dims` values of each.
/// x: [heads, headDim] for one position; cos/sin: [dims/2].
@inline(__always)
public func applyRoPE(
    _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, dims: Int,
    cos: UnsafePointer<Float>, sin: UnsafePointer<Float>, ordering: RoPEOrdering
) {
    let half = dims / 2
    for h in 0..<heads {
        let v = x + h * headDim
        switch ordering {
        case .normal:
            for i in 0..<half {
                let a = v[2 * i], b = v[2 * i + 1]
                v[2 * i] = a * cos[i] - b * sin[i]
                v[2 * i + 1] = a * sin[i] + b * cos[i]
            }
        case .neox:
            for i in 0..<half {
                let a = v[i], b = v[i + half]
                v[i] = a * cos[i] - b * sin[i]
                v[i + half] = a * sin[i] + b * cos[i]
            }
        }
    }
}
