import Kernels

/// An owned, 64-byte aligned f32 buffer.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int

    public init(count: Int, zeroed: Bool = false) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// One transformer block's weights: matrices as the file stores them (read in place from the
/// mapping), norms and biases in f32.
struct LayerWeights {
    let attnNorm: FloatBuffer       // [D]
    let wq: QuantizedMatrix         // [Q, D]  (Q = heads × head size)
    let wk: QuantizedMatrix         // [kvD, D]
    let wv: QuantizedMatrix         // [kvD, D]
    let bqkv: FloatBuffer?          // [Q + 2·kvD] (qwen2)
    let qNorm: FloatBuffer?         // [head size] (gemma3)
    let kNorm: FloatBuffer?         // [head size] (gemma3)
    let wo: QuantizedMatrix         // [D, Q]
    let attnPostNorm: FloatBuffer?  // [D] (gemma3)
    let ffnNorm: FloatBuffer        // [D]
    let wGate: QuantizedMatrix      // [F, D]
    let wUp: QuantizedMatrix        // [F, D]
    let wDown: QuantizedMatrix      // [D, F]
    let ffnPostNorm: FloatBuffer?   // [D] (gemma3)
}

/// All weights of a model. Matrices stay in the file's formats (F32, F16, BF16, Q4_0, Q4_1,
/// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K, mixed as the file mixes them): a decoded token reads
/// the file's bytes, not a copy inflated to f32.
struct Weights {
    let tokenEmbedding: QuantizedMatrix // [V, D]
    let outputNorm: FloatBuffer         // [D]
    let output: QuantizedMatrix         // [V, D]; the embedding itself when tied
    /// Llama 3's RoPE frequency factors: each pair's angle is divided by its factor.
    let ropeFactors: [Float]?           // [ropeDims / 2]
    let layers: [LayerWeights]

    init(gguf: GGUFFile, config c: ModelConfig) throws {
        func need(_ name: TensorName, _ shape: [Int]) throws -> GGUFTensorInfo {
            guard let t = gguf.tensor(named: name.string) else { throw ModelError.missingTensor(name.string) }
            guard t.dims == shape else { throw ModelError.tensorShape(name: name.string, expected: shape, found: t.dims) }
            return t
        }
        func matrix(_ name: TensorName, _ shape: [Int]) throws -> QuantizedMatrix {
            let t = try need(name, shape)
            guard let m = QuantizedMatrix(type: t.type, rows: shape[1], cols: shape[0], data: gguf.data(of: t)) else {
                throw ModelError.tensorType(name: name.string, type: t.type.description)
            }
            return m
        }
        func vector(_ name: TensorName, _ count: Int, into buffer: FloatBuffer? = nil, at offset: Int = 0) throws -> FloatBuffer {
            let t = try need(name, [count])
            let b = buffer ?? FloatBuffer(count: count)
            t.type.dequantize(gguf.data(of: t), into: b.pointer + offset, count: count)
            return b
        }

        let d = c.dim, q = c.qDim, kv = c.kvDim, f = c.ffnDim, hd = c.headDim
        // Every shape is checked before anything is read: sizes then come from tensors that fit
        // in the file, never from metadata alone. A tensor the engine would not read is refused:
        // without it the model would compute something else, silently.
        let expected = Self.expectedTensors(c)
        let optional: Set<TensorName> = [.output, .ropeFactors]
        for (name, shape) in expected where !optional.contains(name) || gguf.tensor(named: name.string) != nil {
            _ = try need(name, shape)
        }
        let known = Set(expected.map(\.0.string))
        if let extra = gguf.tensors.first(where: { !known.contains($0.name) }) { throw ModelError.unexpectedTensor(extra.name) }
        tokenEmbedding = try matrix(.tokenEmbedding, [d, c.vocabSize])
        outputNorm = try vector(.outputNorm, d)
        output = gguf.tensor(named: TensorName.output.string) == nil ? tokenEmbedding : try matrix(.output, [d, c.vocabSize])
        if c.architecture.mayHaveRoPEFactors, gguf.tensor(named: TensorName.ropeFactors.string) != nil {
            let factors = try vector(.ropeFactors, c.ropeDims / 2)
            ropeFactors = Array(UnsafeBufferPointer(start: factors.pointer, count: c.ropeDims / 2))
            guard ropeFactors!.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw ModelError.badValue(key: TensorName.ropeFactors.string, value: "a factor that is not a positive number")
            }
        } else {
            ropeFactors = nil
        }
        layers = try (0..<c.layers).map { l in
            var bqkv: FloatBuffer?
            if c.architecture.hasQKVBias {
                let b = FloatBuffer(count: q + 2 * kv)
                _ = try vector(.attnQBias(l), q, into: b)
                _ = try vector(.attnKBias(l), kv, into: b, at: q)
                _ = try vector(.attnVBias(l), kv, into: b, at: q + kv)
                bqkv = b
            }
            let a = c.architecture
            return LayerWeights(
                attnNorm: try vector(.attnNorm(l), d),
                wq: try matrix(.attnQ(l), [d, q]), wk: try matrix(.attnK(l), [d, kv]), wv: try matrix(.attnV(l), [d, kv]),
                bqkv: bqkv,
                qNorm: a.hasQKNorm ? try vector(.attnQNorm(l), hd) : nil,
                kNorm: a.hasQKNorm ? try vector(.attnKNorm(l), hd) : nil,
                wo: try matrix(.attnOutput(l), [q, d]),
                attnPostNorm: a.hasPostNorms ? try vector(.attnPostNorm(l), d) : nil,
                ffnNorm: try vector(.ffnNorm(l), d),
                wGate: try matrix(.ffnGate(l), [d, f]), wUp: try matrix(.ffnUp(l), [d, f]),
                wDown: try matrix(.ffnDown(l), [f, d]),
                ffnPostNorm: a.hasPostNorms ? try vector(.ffnPostNorm(l), d) : nil)
        }
    }

    /// The tensors a model of this configuration has, with GGUF shapes (ne0 first).
    /// `output` is optional (tied to the embedding when absent), and so is `ropeFactors`.
    static func expectedTensors(_ c: ModelConfig) -> [(TensorName, [Int])] {
        let d = c.dim, q = c.qDim, kv = c.kvDim, f = c.ffnDim, hd = c.headDim
        var list: [(TensorName, [Int])] = [(.tokenEmbedding, [d, c.vocabSize]), (.outputNorm, [d]), (.output, [d, c.vocabSize])]
        if c.architecture.mayHaveRoPEFactors { list.append((.ropeFactors, [c.ropeDims / 2])) }
        for l in 0..<c.layers {
            list += [(.attnNorm(l), [d]), (.attnQ(l), [d, q]), (.attnK(l), [d, kv]), (.attnV(l), [d, kv]),
                     (.attnOutput(l), [q, d]), (.ffnNorm(l), [d]), (.ffnGate(l), [d, f]), (.ffnUp(l), [d, f]),
                     (.ffnDown(l), [f, d])]
            if c.architecture.hasQKVBias { list += [(.attnQBias(l), [q]), (.attnKBias(l), [kv]), (.attnVBias(l), [kv])] }
            if c.architecture.hasQKNorm { list += [(.attnQNorm(l), [hd]), (.attnKNorm(l), [hd])] }
            if c.architecture.hasPostNorms { list += [(.attnPostNorm(l), [d]), (.ffnPostNorm(l), [d])] }
        }
        return list
    }
}
