import Foundation

/// How the next token is chosen. `temperature <= 0` means greedy (argmax).
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float = 0.8
    public var topK: Int = 40              // 0: off
    public var topP: Float = 0.95          // 1: off
    public var minP: Float = 0.05          // 0: off
    public var repetitionPenalty: Float = 1.0  // 1: off
    public var repetitionWindow: Int = 64
    public var seed: UInt64? = nil

    public init() {}
    public static var greedy: SamplingParameters { var p = SamplingParameters(); p.temperature = 0; return p }
}

/// xoshiro256** seeded through SplitMix64: the same seed gives the same text on every machine.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }
}

/// Chooses tokens from logits: repetition penalty → top-k → top-p → min-p → temperature → draw
/// (llama.cpp's default chain order).
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var rng: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        rng = SeededGenerator(seed: parameters.seed ?? UInt64.random(in: 0...UInt64.max))
    }

    public static func argmax(_ logits: ArraySlice<Float>) -> Int32 {
        var best = logits.startIndex
        for i in logits.indices where logits[i] > logits[best] { best = i }
        return Int32(best - logits.startIndex)
    }

    /// The `k` largest logits, largest first (of equal ones, the lower id first): one pass instead
    /// of sorting the vocabulary, which took milliseconds per token and request.
    public static func top(_ k: Int, of logits: [Float]) -> [(id: Int32, logit: Float)] {
        var best: [(id: Int32, logit: Float)] = []
        best.reserveCapacity(k + 1)
        for (i, l) in logits.enumerated() {
            if best.count == k, !(l > best[k - 1].logit) { continue }
            var j = best.count
            while j > 0 && best[j - 1].logit < l { j -= 1 }
            best.insert((Int32(i), l), at: j)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    /// Picks the next token; `history` is the sequence so far (for the repetition penalty).
    public mutating func sample(_ logitsIn: ArraySlice<Float>, history: [Int32]) -> Int32 {
        let p = parameters
        var logits = Array(logitsIn)
        if p.repetitionPenalty != 1 {
            // CTRL-style penalty over the recent window, each token once.
            for id in Set(history.suffix(p.repetitionWindow)) where Int(id) < logits.count {
                let l = logits[Int(id)]
                logits[Int(id)] = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty
            }
        }
        if p.temperature <= 0 { return Sampler.argmax(logits[...]) }

        var candidates: [(id: Int32, logit: Float)]
        if p.topK > 0 && p.topK < logits.count {
            candidates = Self.top(p.topK, of: logits)
        } else {
            candidates = logits.indices.map { (id: Int32($0), logit: logits[$0]) }
            candidates.sort { $0.logit > $1.logit }
        }
        // Softmax over what is left (at the unit temperature, as the filters are defined).
        func probabilities(_ c: [(id: Int32, logit: Float)], temperature: Float) -> [Double] {
            let m = Double(c[0].logit)
            let e = c.map { exp((Double($0.logit) - m) / Double(temperature)) }
            let sum = e.reduce(0, +)
            return e.map { $0 / sum }
        }
        if p.topP < 1 {
            let probs = probabilities(candidates, temperature: 1)
            var cumulative = 0.0
            var keep = candidates.count
            for (i, q) in probs.enumerated() {
                cumulative += q
                if cumulative >= Double(p.topP) { keep = i + 1; break }
            }
            candidates.removeLast(candidates.count - keep)
        }
        if p.minP > 0 {
            let probs = probabilities(candidates, temperature: 1)
            let threshold = probs[0] * Double(p.minP)
            let keep = max(1, probs.prefix { $0 >= threshold }.count)
            candidates.removeLast(candidates.count - keep)
        }
        let probs = probabilities(candidates, temperature: p.temperature)
        let r = Double(rng.next() >> 11) / Double(1 << 53)
        var cumulative = 0.0
        for (i, q) in probs.enumerated() {
            cumulative += q
            if r < cumulative { return candidates[i].id }
        }
        return candidates[candidates.count - 1].id
    }
}
