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
    /// A tensor the engine would not read: computing without it would be a different model.
    case unexpectedTensor(String)
    /// Metadata that changes the computation in a way the engine does not implement.
    case unsupportedFeature(key: String, value: String)

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
        case let .unexpectedTensor(n):
            return "model file has the tensor '\(n)', which twinbrain does not compute with; running without it would give a different "
                + "model, so it is refused (twinbrain runs: \(ModelArchitecture.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .unsupportedFeature(k, v):
            return "model metadata '\(k)' = \(v) changes how the model computes, and twinbrain does not implement it; "
                + "the model is refused rather than run differently"
        case .emptyInput: return "no tokens to evaluate"
        case let .insufficientMemory(needed, available):
            return "the model needs about \(MemoryRequirement.mebibytes(needed.total)) of memory (\(needed)) and this machine has "
                + "\(MemoryRequirement.mebibytes(available)) available; use a smaller model or a smaller quantisation of it (e.g. Q4_K_M), "
                + (needed.sequences > 1 ? "or lower the context size or the sequences served at once (slots)" : "or lower the context size")
        }
    }
}

public enum ModelArchitecture: String, Sendable, CaseIterable {
    case llama
    case qwen2
    case qwen3
    case gemma3

    /// How this family pairs dimensions for RoPE in GGUF files.
    var ropeOrdering: RoPEOrdering {
        switch self {
        case .llama: return .normal
        case .qwen2, .qwen3, .gemma3: return .neox
        }
    }

    /// qwen2 adds biases to q, k and v.
    var hasQKVBias: Bool { self == .qwen2 }
    /// Qwen3 and Gemma 3 normalise each head's query and key (RMSNorm over the head) before RoPE.
    var hasQKNorm: Bool { self == .qwen3 || self == .gemma3 }
    /// Llama 3.1+ files carry per-pair RoPE frequency factors (`rope_freqs.weight`: llama3 scaling).
    var mayHaveRoPEFactors: Bool { self == .llama }
    /// Gemma 3 also normalises each block's output (attention, feed-forward) before adding it to the stream.
    var hasPostNorms: Bool { self == .gemma3 }
    /// Gemma's feed-forward gates with GELU (tanh form); llama's and qwen2's with SiLU.
    var feedForward: FeedForward { self == .gemma3 ? .geglu : .swiglu }
    /// Gemma multiplies token embeddings by √dim.
    var scalesEmbedding: Bool { self == .gemma3 }
    /// Gemma scales the queries before the dot products (as llama.cpp computes it); the others
    /// scale the dot products, which rounds differently.
    var scalesQueries: Bool { self == .gemma3 }

    /// Metadata keys (after `<arch>.`) this family may carry that the engine reads or that do not change the math.
    var knownKeys: Set<String> {
        var keys: Set<String> = ["context_length", "embedding_length", "block_count", "feed_forward_length", "vocab_size",
                                 "attention.head_count", "attention.head_count_kv", "attention.layer_norm_rms_epsilon",
                                 "attention.key_length", "attention.value_length", "rope.freq_base", "rope.dimension_count",
                                 "rope.scaling.type", "rope.scaling.factor", "rope.scaling.original_context_length",
                                 "rope.scaling.finetuned", "expert_count", "expert_used_count"]
        if self == .gemma3 { keys.insert("attention.sliding_window") }
        return keys
    }
}

public enum FeedForward: Sendable { case swiglu, geglu }

/// Hyperparameters of a transformer of the llama, qwen2, qwen3 or gemma3 family, read from GGUF keys `<arch>.*`.
/// Any key of the family that would change the computation and is not implemented is refused
/// (`ModelError.unsupportedFeature`), never ignored.
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
    /// Positions are multiplied by this before RoPE (linear scaling: 1 / factor).
    public var ropeScale: Float
    public var rmsEps: Float
    public var contextLength: Int
    public var vocabSize: Int
    /// Sliding-window attention: the layers that have it see only the last `slidingWindow` positions.
    public var slidingWindow: Int?
    /// Layer l has a sliding window when l % slidingPattern < slidingPattern − 1 (Gemma 3: five of six).
    public var slidingPattern: Int
    /// The RoPE base of sliding-window layers (Gemma 3: 10,000; the global layers use `ropeBase`).
    public var slidingRopeBase: Float
    /// What queries are multiplied by before the dot products.
    public var attentionScale: Float

    public var kvDim: Int { kvHeads * headDim }
    /// Width of the queries and of the attention output (heads × head size; not always `dim`).
    public var qDim: Int { heads * headDim }
    public var ropeOrdering: RoPEOrdering { architecture.ropeOrdering }

    /// Whether layer `l` attends to a sliding window only.
    public func isSliding(layer l: Int) -> Bool {
        slidingWindow != nil && l % slidingPattern < slidingPattern - 1
    }

    /// RoPE base and position scale of layer `l`.
    public func rope(layer l: Int) -> (base: Float, scale: Float) {
        isSliding(layer: l) ? (slidingRopeBase, 1) : (ropeBase, ropeScale)
    }

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
        let prefix = archName + "."
        for key in md.keys.sorted() where key.hasPrefix(prefix) && !arch.knownKeys.contains(String(key.dropFirst(prefix.count))) {
            throw ModelError.unsupportedFeature(key: key, value: md[key]?.description ?? "?")
        }
        if let experts = md[prefix + "expert_count"], experts.int != 0 {
            throw ModelError.unsupportedFeature(key: prefix + "expert_count", value: experts.description)
        }
        layers = try int("block_count")
        dim = try int("embedding_length")
        ffnDim = try int("feed_forward_length")
        heads = try int("attention.head_count")
        kvHeads = try int("attention.head_count_kv", default: heads)
        guard heads % kvHeads == 0 else {
            throw ModelError.badValue(key: "\(archName).attention.head_count", value: "\(heads) (kv \(kvHeads), dim \(dim))")
        }
        if md[prefix + "attention.key_length"] == nil {
            guard dim % heads == 0 else {
                throw ModelError.badValue(key: "\(archName).attention.head_count", value: "\(heads) (kv \(kvHeads), dim \(dim))")
            }
        }
        headDim = try int("attention.key_length", default: dim / heads)
        let valueDim = try int("attention.value_length", default: headDim)
        guard valueDim == headDim else {
            throw ModelError.unsupportedFeature(key: "\(archName).attention.value_length", value: "\(valueDim) (key length \(headDim))")
        }
        ropeDims = try int("rope.dimension_count", default: headDim)
        guard ropeDims <= headDim, ropeDims % 2 == 0 else {
            throw ModelError.badValue(key: "\(archName).rope.dimension_count", value: String(ropeDims))
        }
        ropeBase = try float("rope.freq_base", default: 10000)
        ropeScale = 1
        if let type = md[prefix + "rope.scaling.type"]?.string, type != "none" {
            guard type == "linear" else { throw ModelError.unsupportedFeature(key: prefix + "rope.scaling.type", value: type) }
            ropeScale = 1 / (try float("rope.scaling.factor", default: 1))
        }
        rmsEps = try float("attention.layer_norm_rms_epsilon", default: 1e-6)
        contextLength = try int("context_length", default: 2048)
        if let tokens = md["tokenizer.ggml.tokens"]?.array {
            vocabSize = tokens.count
        } else {
            vocabSize = try int("vocab_size")
        }
        slidingWindow = nil
        slidingPattern = 1
        slidingRopeBase = ropeBase
        attentionScale = 1 / Float(headDim).squareRoot()
        if arch == .gemma3 {
            // As llama.cpp reads Gemma 3: five sliding layers (RoPE base 10,000, unscaled) to one
            // global; queries scaled by 1/√head size, but by 1/√(dim/heads) in the 27B (62 layers).
            if let window = md[prefix + "attention.sliding_window"] {
                guard let w = window.int, w > 0 else { throw ModelError.badValue(key: prefix + "attention.sliding_window", value: window.description) }
                slidingWindow = w
                slidingPattern = 6
                slidingRopeBase = 10000
            }
            attentionScale = 1 / Float(layers == 62 ? dim / heads : headDim).squareRoot()
        }
    }
}

/// GGUF tensor names (llama.cpp's llm_tensor), e.g. `.attnNorm(3)` → "blk.3.attn_norm.weight".
public enum TensorName: Hashable, Sendable {
    case tokenEmbedding, outputNorm, output, ropeFactors
    case attnNorm(Int), attnQ(Int), attnK(Int), attnV(Int), attnOutput(Int)
    case attnQBias(Int), attnKBias(Int), attnVBias(Int)
    case attnQNorm(Int), attnKNorm(Int), attnPostNorm(Int)
    case ffnNorm(Int), ffnGate(Int), ffnUp(Int), ffnDown(Int), ffnPostNorm(Int)

    public var string: String {
        switch self {
        case .tokenEmbedding: return "token_embd.weight"
        case .outputNorm: return "output_norm.weight"
        case .output: return "output.weight"
        case .ropeFactors: return "rope_freqs.weight"
        case let .attnNorm(l): return "blk.\(l).attn_norm.weight"
        case let .attnQ(l): return "blk.\(l).attn_q.weight"
        case let .attnK(l): return "blk.\(l).attn_k.weight"
        case let .attnV(l): return "blk.\(l).attn_v.weight"
        case let .attnOutput(l): return "blk.\(l).attn_output.weight"
        case let .attnQBias(l): return "blk.\(l).attn_q.bias"
        case let .attnKBias(l): return "blk.\(l).attn_k.bias"
        case let .attnVBias(l): return "blk.\(l).attn_v.bias"
        case let .attnQNorm(l): return "blk.\(l).attn_q_norm.weight"
        case let .attnKNorm(l): return "blk.\(l).attn_k_norm.weight"
        case let .attnPostNorm(l): return "blk.\(l).post_attention_norm.weight"
        case let .ffnPostNorm(l): return "blk.\(l).post_ffw_norm.weight"
        case let .ffnNorm(l): return "blk.\(l).ffn_norm.weight"
        case let .ffnGate(l): return "blk.\(l).ffn_gate.weight"
        case let .ffnUp(l): return "blk.\(l).ffn_up.weight"
        case let .ffnDown(l): return "blk.\(l).ffn_down.weight"
        }
    }
}
