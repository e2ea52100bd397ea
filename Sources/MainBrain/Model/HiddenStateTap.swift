/// A named intermediate of the forward pass.
public enum TapPoint: Hashable, Sendable, CustomStringConvertible {
    /// The residual stream after layer `layer` (attention and FFN added).
    case residual(layer: Int)
    /// The FFN input of layer `layer`: the ffn_norm output after attention.
    case ffnInput(layer: Int)

    public var description: String {
        switch self {
        case let .residual(l): return "residual.\(l)"
        case let .ffnInput(l): return "ffn_input.\(l)"
        }
    }
}

/// Receives hidden states during `Model.forward`, for every position, in the same pass.
/// The learning brain and the evaluation read the main brain's representations through this.
public protocol HiddenStateTap: AnyObject {
    /// The points this tap wants; the forward pass reports only these.
    var points: Set<TapPoint> { get }
    /// `values` is [positions.count, dim] row-major, valid only during the call.
    func receive(_ point: TapPoint, positions: Range<Int>, values: UnsafeBufferPointer<Float>, dim: Int)
}

/// A tap that keeps copies of the requested points, in position order.
public final class HiddenStateRecorder: HiddenStateTap {
    public let points: Set<TapPoint>
    public private(set) var states: [TapPoint: [Float]] = [:]
    public private(set) var dim = 0

    public init(points: Set<TapPoint>) { self.points = points }

    public func receive(_ point: TapPoint, positions: Range<Int>, values: UnsafeBufferPointer<Float>, dim: Int) {
        self.dim = dim
        states[point, default: []].append(contentsOf: values)
    }

    /// Row `row` of a recorded point (row counts from the first position recorded).
    public func row(_ point: TapPoint, _ row: Int) -> ArraySlice<Float> {
        states[point]![row * dim..<(row + 1) * dim]
    }

    public func reset() { states = [:] }
}

/// Hands one forward pass's states to several taps, each only the points it asked for, so the
/// learning brain's memory and its reader read the same prefill instead of running two.
public final class FanTap: HiddenStateTap {
    public let taps: [HiddenStateTap]
    public let points: Set<TapPoint>

    public init(_ taps: [HiddenStateTap]) {
        self.taps = taps
        points = taps.reduce(into: []) { $0.formUnion($1.points) }
    }

    public func receive(_ point: TapPoint, positions: Range<Int>, values: UnsafeBufferPointer<Float>, dim: Int) {
        for tap in taps where tap.points.contains(point) { tap.receive(point, positions: positions, values: values, dim: dim) }
    }
}
