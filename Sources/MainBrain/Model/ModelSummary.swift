import Kernels

/// What an administrator sees of a model file, checked as the engine would load it: the
/// header, every tensor's bounds (`GGUFFile`), the configuration and every tensor the engine
/// reads (`ModelConfig`, `Weights`: an unknown tensor or a key that changes the math is
/// refused), without computing anything.
public struct ModelSummary: Sendable, Equatable {
    public let architecture: String
    /// `general.name`, when the file has one.
    public let name: String?
    /// Weights' elements, from the tensors' shapes.
    public let parameters: Int
    /// The type holding most of the weights' bytes ("Q4_K", "Q8_0", …).
    public let quantization: String
    public let fileBytes: Int
    public let contextLength: Int
    public let layers: Int

    public init(gguf: GGUFFile) throws {
        let config = try ModelConfig(gguf: gguf)
        _ = try Weights(gguf: gguf, config: config)
        architecture = config.architecture.rawValue
        name = gguf.metadata["general.name"]?.string
        parameters = gguf.tensors.reduce(0) { $0 + $1.elementCount }
        let bytesByType = Dictionary(grouping: gguf.tensors, by: \.type).mapValues { $0.reduce(0) { $0 + $1.byteCount } }
        quantization = bytesByType.max { $0.value < $1.value }?.key.description ?? "none"
        fileBytes = gguf.file.bytes.count
        contextLength = config.contextLength
        layers = config.layers
    }
}
