import Kernels

/// Problems with a GGUF that parsed but is not a model twinbrain can run.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case unsupportedArchitecture(String)
    case missingKey(String)
    case badValue(key: String, value: String)
    case missingTensor(String)
    case tensorShape(name: String, expected: [Int], found: [Int])
    case tensorType(name: String, type: String)
    case contextFull(limit: Int, requested: Int)
    case tokenOutOfRange(id: Int32, vocab: Int)
    case emptyInput
    case insufficientMemory(needed: MemoryRequirement, available: Int)
    /// A cache filled only through `layers` layers (`forward(throughLayer:)`) asked to serve deeper ones.
    case shallowCache(layers: Int)

    public var description: String {
        switch self {
        case let .unsupportedArchitecture(a):
            return "model architecture '\(a)' is not supported (twinbrain runs: \(ModelArchitecture.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .missingKey(k): return "model file lacks the metadata key '\(k)'"
        case let .badValue(k, v): return "model metadata '\(k)' has an unusable value \(v)"
        case let .missingTensor(n): return "model file lacks the tensor '\(n)'"
        case let .tensorShape(n, e, f): return "tensor '\(n)' has shape \(f), expected \(e)"
        case let .tensorType(n, t):
            return "tensor '\(n)' is stored as \(t) in rows the engine cannot multiply (runs F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K "
                + "in whole blocks); requantise the file with llama.cpp's llama-quantize, e.g. to Q4_K_M or Q8_0"
        case let .contextFull(limit, requested):
            return "context is full: \(requested) tokens requested, the limit is \(limit); shorten the input or raise the context size"
        case let .tokenOutOfRange(id, vocab): return "token id \(id) is outside the vocabulary (0..<\(vocab))"
        case let .shallowCache(layers): return "the cache holds only the first \(layers) layers (filled by a partial pass); use a fresh cache"
        case .emptyInput: return "no tokens to evaluate"
        case let .insufficientMemory(needed, available):
            return "the model needs about \(MemoryRequirement.mebibytes(needed.total)) of memory (\(needed)) and this machine has "
                + "\(MemoryRequirement.mebibytes(available)) available; use a smaller model or a smaller quantisation of it (e.g. Q4_K_M), "
                + "or lower the context size"
        }
    }
}

public enum ModelArchitecture: String, Sendable, CaseIterable {
    case llama
    case qwen2

    /// How this family pairs dimensions for RoPE in GGUF files.
    var ropeOrdering: RoPEOrdering {
        switch self {
        case .llama: return .normal
        case .qwen2: return .neox
        }
    }

    /// qwen2 adds biases to q, k and v.
    var hasQKVBias: Bool { self == .qwen2 }
}

/// Hyperparameters of a llama-family transformer, read from GGUF keys `<arch>.*`.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: ModelArchitecture
    public var name: String
    public var layers: Int
    public var dim: Int
    public var ffnDim: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var ropeDims: Int
    public var ropeBase: Float
    public var rmsEps: Float
    public var contextLength: Int
    public var vocabSize: Int

    public var kvDim: Int { kvHeads * headDim }
    public var ropeOrdering: RoPEOrdering { architecture.ropeOrdering }

    public init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        guard let archName = md["general.architecture"]?.string else { throw ModelError.missingKey("general.architecture") }
        guard let arch = ModelArchitecture(rawValue: archName) else { throw ModelError.unsupportedArchitecture(archName) }
        architecture = arch
        name = md["general.name"]?.string ?? archName

        func int(_ key: String, default d: Int? = nil) throws -> Int {
            let full = "\(archName).\(key)"
            guard let v = md[full] else {
                if let d { return d }
                throw ModelError.missingKey(full)
            }
            guard let i = v.int, i > 0, i <= 1 << 24 else { throw ModelError.badValue(key: full, value: v.description) }
            return i
        }
        func float(_ key: String, default d: Float) throws -> Float {
            let full = "\(archName).\(key)"
            guard let v = md[full] else { return d }
            guard let f = v.float, f.isFinite, f > 0 else { throw ModelError.badValue(key: full, value: v.description) }
            return Float(f)
        }
        layers = try int("block_count")
        dim = try int("embedding_length")
        ffnDim = try int("feed_forward_length")
        heads = try int("attention.head_count")
        kvHeads = try int("attention.head_count_kv", default: heads)
        guard dim % heads == 0, heads % kvHeads == 0 else {
            throw ModelError.badValue(key: "\(archName).attention.head_count", value: "\(heads) (kv \(kvHeads), dim \(dim))")
        }
        headDim = dim / heads
        ropeDims = try int("rope.dimension_count", default: headDim)
        guard ropeDims <= headDim, ropeDims % 2 == 0 else {
            throw ModelError.badValue(key: "\(archName).rope.dimension_count", value: String(ropeDims))
        }
        ropeBase = try float("rope.freq_base", default: 10000)
        rmsEps = try float("attention.layer_norm_rms_epsilon", default: 1e-6)
        contextLength = try int("context_length", default: 2048)
        if let tokens = md["tokenizer.ggml.tokens"]?.array {
            vocabSize = tokens.count
        } else {
            vocabSize = try int("vocab_size")
        }
    }
}

/// GGUF tensor names (llama.cpp's llm_tensor), e.g. `.attnNorm(3)` → "blk.3.attn_norm.weight".
public enum TensorName: Hashable, Sendable {
    case tokenEmbedding, outputNorm, output
    case attnNorm(Int), attnQ(Int), attnK(Int), attnV(Int), attnOutput(Int)
    case attnQBias(Int), attnKBias(Int), attnVBias(Int)
    case ffnNorm(Int), ffnGate(Int), ffnUp(Int), ffnDown(Int)

    public var string: String {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .outputNorm: return "output_norm.weight"
        case .output: return "output.weight"
        case let .attnNorm(l): return "blk.\(l).attn_norm.weight"
        case let .attnQ(l): return "blk.\(l).attn_q.weight"
        case let .attnK(l): return "blk.\(l).attn_k.weight"
        case let .attnV(l): return "blk.\(l).attn_v.weight"
        case let .attnOutput(l): return "blk.\(l).attn_output.weight"
        case let .attnQBias(l): return "blk.\(l).attn_q.bias"
        case let .attnKBias(l): return "blk.\(l).attn_k.bias"
        case let .attnVBias(l): return "blk.\(l).attn_v.bias"
        case let .ffnNorm(l): return "blk.\(l).ffn_norm.weight"
        case let .ffnGate(l): return "blk.\(l).ffn_gate.weight"
        case let .ffnUp(l): return "blk.\(l).ffn_up.weight"
        case let .ffnDown(l): return "blk.\(l).ffn_down.weight"
        }
    }
}
