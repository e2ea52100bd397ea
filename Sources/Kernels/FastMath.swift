// A vectorised exp for softmax and SiLU. Foundation's scalar exp costs ~10 ns a call;
// prefill of 512 tokens needs tens of millions of them.

public typealias Vec8 = SIMD8<Float>

/// exp(x) for 8 lanes, relative error < 2e-7 over the f32 range (Cephes-style:
/// x = n·ln2 + r, |r| ≤ ln2/2, degree-6 polynomial for e^r, 2^n through the exponent bits).
@inline(__always)
public func exp8(_ x: Vec8) -> Vec8 {
    let clamped = x.clamped(lowerBound: Vec8(repeating: -87.3), upperBound: Vec8(repeating: 88.7))
    // Adding 1.5·2^23 rounds to an integer in the low mantissa bits: n without a slow
    // per-lane float→int conversion.
    let shifted = clamped * 1.442_695_04 + 12_582_912
    let n = shifted - 12_582_912
    var r = clamped - n * 0.693_359_375       // ln2, high part (exact in f32)
    r = r - n * -2.121_944_4e-4               // ln2, low part
    var p = Vec8(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_95e-3
    p = p * r + 8.333_451_9e-3
    p = p * r + 4.166_579_6e-2
    p = p * r + 1.666_666_5e-1
    p = p * r + 5.000_000_1e-1
    p = p * r * r + r + 1
    // bits(shifted) = 0x4B40_0000 + n, so 2^n = ((bits - 0x4B40_0000 + 127) << 23).
    let bits = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B3F_FF81) &<< 23
    return p * unsafeBitCast(bits, to: Vec8.self)
}

/// Scalar exp through the same polynomial (tails and tests).
@inline(__always)
public func expApprox(_ x: Float) -> Float {
    exp8(Vec8(repeating: x))[0]
}
