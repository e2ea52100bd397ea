import MainBrain

/// What `make gate` fitted for one model shape, on public text only: the projection of hidden
/// states to memory keys, the inverted file's centres in that keyspace, and the gate. All depend
/// on the model's hidden states, so another model needs its own fit; without one the token memory
/// stays off (the main brain alone).
/// The fitted values themselves live in the generated FittedKeyspaces.swift.
public struct FittedKeyspace: Sendable {
    public let gate: MemoryGate
    public let projection: KeyProjection
    public let quantizer: CoarseQuantizer?

    init(gate: MemoryGate, projectionInput: Int, projectionOutput: Int, projection encoded: String,
         lists: Int = 0, centres: String = "") {
        self.gate = gate
        // Shipped numbers that do not decode are a build defect, not a run-time condition.
        projection = KeyProjection(inputDimension: projectionInput, outputDimension: projectionOutput, encoded: encoded)!
        quantizer = lists > 0 ? CoarseQuantizer(dimension: projectionOutput, lists: lists, encoded: centres)! : nil
    }

    public init(gate: MemoryGate, projection: KeyProjection, quantizer: CoarseQuantizer? = nil) {
        self.gate = gate
        self.projection = projection
        self.quantizer = quantizer
    }

    public static func shape(_ c: ModelConfig) -> String {
        "\(c.architecture.rawValue) layers=\(c.layers) dim=\(c.dim) ffn=\(c.ffnDim) vocab=\(c.vocabSize)"
    }

    public static func forModel(_ config: ModelConfig) -> FittedKeyspace? { fittedByShape[shape(config)] }
}

extension KNNLanguageModel {
    /// The learning brain as shipped: projected keys and the fitted gate.
    public convenience init(model: Model, fitted: FittedKeyspace) {
        self.init(model: model, projection: fitted.projection)
        gate = fitted.gate
        memory.useInvertedFile(fitted.quantizer)
    }
}
