import Dispatch
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

/// One transformer block's weights in f32, fused for fewer, larger BLAS calls.
struct LayerWeights {
    let attnNorm: FloatBuffer       // [D]
    let wqkv: FloatBuffer           // [D + 2·kvD, D]: q rows, then k, then v
    let bqkv: FloatBuffer?          // [D + 2·kvD] (qwen2)
    let wo: FloatBuffer             // [D, D]
    let ffnNorm: FloatBuffer        // [D]
    let wGateUp: FloatBuffer        // [2F, D]: gate rows, then up rows
    let wDown: FloatBuffer          // [D, F]
}

/// All weights of a model, dequantised once at load (an f32 engine computes what
/// llama.cpp computes on the dequantised file).
struct Weights {
    let tokenEmbedding: FloatBuffer // [V, D]
    let outputNorm: FloatBuffer     // [D]
    let output: FloatBuffer         // [V, D]; the embedding itself when tied
    let layers: [LayerWeights]

    init(gguf: GGUFFile, config c: ModelConfig) throws {
        // Check every tensor before any allocation, then dequantise in parallel.
        var jobs: [(info: GGUFTensorInfo, dst: UnsafeMutablePointer<Float>, src: UnsafeRawPointer)] = []
        func need(_ name: TensorName, _ shape: [Int]) throws -> GGUFTensorInfo {
            guard let t = gguf.tensor(named: name.string) else { throw ModelError.missingTensor(name.string) }
            guard t.dims == shape else { throw ModelError.tensorShape(name: name.string, expected: shape, found: t.dims) }
            return t
        }
        func load(_ name: TensorName, _ shape: [Int], into buffer: FloatBuffer, at offset: Int = 0) throws {
            let t = try need(name, shape)
            jobs.append((t, buffer.pointer + offset, gguf.data(of: t)))
        }
        func single(_ name: TensorName, _ shape: [Int]) throws -> FloatBuffer {
            let b = FloatBuffer(count: shape.reduce(1, *))
            try load(name, shape, into: b)
            return b
        }

        let d = c.dim, kv = c.kvDim, f = c.ffnDim
        // Every shape is checked before anything is allocated: sizes then come from tensors
        // that fit in the file, never from metadata alone.
        for (name, shape) in Self.expectedTensors(c) where name != .output || gguf.tensor(named: name.string) != nil {
            _ = try need(name, shape)
        }
        tokenEmbedding = try single(.tokenEmbedding, [d, c.vocabSize])
        outputNorm = try single(.outputNorm, [d])
        output = gguf.tensor(named: TensorName.output.string) == nil
            ? tokenEmbedding : try single(.output, [d, c.vocabSize])
        var layers: [LayerWeights] = []
        for l in 0..<c.layers {
            let wqkv = FloatBuffer(count: (d + 2 * kv) * d)
            try load(.attnQ(l), [d, d], into: wqkv)
            try load(.attnK(l), [d, kv], into: wqkv, at: d * d)
            try load(.attnV(l), [d, kv], into: wqkv, at: (d + kv) * d)
            var bqkv: FloatBuffer?
            if c.architecture.hasQKVBias {
                let b = FloatBuffer(count: d + 2 * kv)
                try load(.attnQBias(l), [d], into: b)
                try load(.attnKBias(l), [kv], into: b, at: d)
                try load(.attnVBias(l), [kv], into: b, at: d + kv)
                bqkv = b
            }
            let gateUp = FloatBuffer(count: 2 * f * d)
            try load(.ffnGate(l), [d, f], into: gateUp)
            try load(.ffnUp(l), [d, f], into: gateUp, at: f * d)
            layers.append(LayerWeights(
                attnNorm: try single(.attnNorm(l), [d]),
                wqkv: wqkv, bqkv: bqkv,
                wo: try single(.attnOutput(l), [d, d]),
                ffnNorm: try single(.ffnNorm(l), [d]),
                wGateUp: gateUp,
                wDown: try single(.ffnDown(l), [f, d])))
        }
        self.layers = layers

        try Self.dequantize(jobs)
    }

    /// The tensors a model of this configuration has, with GGUF shapes (ne0 first).
    /// `output` is optional (tied to the embedding when absent).
    static func expectedTensors(_ c: ModelConfig) -> [(TensorName, [Int])] {
        let d = c.dim, kv = c.kvDim, f = c.ffnDim
        var list: [(TensorName, [Int])] = [(.tokenEmbedding, [d, c.vocabSize]), (.outputNorm, [d]), (.output, [d, c.vocabSize])]
        for l in 0..<c.layers {
            list += [(.attnNorm(l), [d]), (.attnQ(l), [d, d]), (.attnK(l), [d, kv]), (.attnV(l), [d, kv]),
                     (.attnOutput(l), [d, d]), (.ffnNorm(l), [d]), (.ffnGate(l), [d, f]), (.ffnUp(l), [d, f]),
                     (.ffnDown(l), [f, d])]
            if c.architecture.hasQKVBias { list += [(.attnQBias(l), [d]), (.attnKBias(l), [kv]), (.attnVBias(l), [kv])] }
        }
        return list
    }

    private static func dequantize(_ jobs: [(info: GGUFTensorInfo, dst: UnsafeMutablePointer<Float>, src: UnsafeRawPointer)]) throws {
        // Split big tensors into row ranges so both cores stay busy.
        var pieces: [(src: UnsafeRawPointer, dst: UnsafeMutablePointer<Float>, type: GGMLType, count: Int)] = []
        for job in jobs {
            let rowLength = job.info.dims[0]
            let rows = job.info.elementCount / rowLength
            let rowBytes = job.info.byteCount / rows
            let rowsPerPiece = max(1, (1 << 20) / rowLength)
            var r = 0
            while r < rows {
                let n = min(rowsPerPiece, rows - r)
                pieces.append((job.src + r * rowBytes, job.dst + r * rowLength, job.info.type, n * rowLength))
                r += n
            }
        }
        let all = pieces
        DispatchQueue.concurrentPerform(iterations: all.count) { i in
            all[i].type.dequantize(all[i].src, into: all[i].dst, count: all[i].count)
        }
    }
}
