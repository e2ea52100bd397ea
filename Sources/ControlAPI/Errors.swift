/// Every error reply: `{"error": {"code", "message", "type"}}`. `code` is stable and documented
/// (docs/api.md); clients branch on it, never on the message. `type` mirrors OpenAI's field.
public struct ErrorBody: Codable, Sendable, Equatable, Error {
    public struct Detail: Codable, Sendable, Equatable {
        public var code: String
        public var message: String
        public var type: String
        public init(code: String, message: String, type: String) { self.code = code; self.message = message; self.type = type }
    }
    public var error: Detail

    public init(code: ErrorCode, message: String) {
        error = Detail(code: code.rawValue, message: message, type: code.openAIType)
    }
}

/// The stable error kinds of the API, with their HTTP status.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badRequest = "bad-request"              // malformed JSON, wrong types, bad values
    case bodyTooLarge = "body-too-large"
    case notFound = "not-found"
    case methodNotAllowed = "method-not-allowed"
    case unknownModel = "unknown-model"
    case contextExceeded = "context-exceeded"    // the prompt does not fit the context
    case forbidden = "forbidden"                 // the caller lacks the group the call needs
    case overloaded = "overloaded"               // the queue is full: retry later (429)
    case loading = "loading"                     // the model is still loading (503)
    case stopping = "stopping"                   // the daemon is shutting down (503)
    case unavailable = "unavailable"             // a part of the daemon cannot work (the extractor is missing) (503)
    case damaged = "store-damaged"               // the store failed its check at start: `twinbrain repair` (503)
    case conflict = "conflict"                   // the request contradicts the daemon's state (removing the serving model) (409)
    case internalError = "internal"

    public var httpStatus: Int {
        switch self {
        case .badRequest, .contextExceeded: return 400
        case .forbidden: return 403
        case .notFound, .unknownModel: return 404
        case .methodNotAllowed: return 405
        case .conflict: return 409
        case .bodyTooLarge: return 413
        case .overloaded: return 429
        case .loading, .stopping, .unavailable, .damaged: return 503
        case .internalError: return 500
        }
    }

    var openAIType: String {
        switch self {
        case .badRequest, .bodyTooLarge, .contextExceeded, .unknownModel, .notFound, .methodNotAllowed, .conflict: return "invalid_request_error"
        case .forbidden: return "permission_error"
        case .overloaded: return "rate_limit_error"
        case .loading, .stopping, .unavailable, .damaged, .internalError: return "server_error"
        }
    }
}
