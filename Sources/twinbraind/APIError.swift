import ControlAPI
import Foundation
import Hummingbird

/// An error that becomes a JSON reply `{"error": {"code", "message", "type"}}` with its status.
struct APIError: HTTPResponseError {
    let code: ErrorCode
    let message: String
    var retryAfterSeconds: Int?

    init(_ code: ErrorCode, _ message: String, retryAfter: Int? = nil) {
        self.code = code
        self.message = message
        retryAfterSeconds = retryAfter
    }

    var status: HTTPResponse.Status { .init(code: code.httpStatus) }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let retryAfterSeconds { headers[.retryAfter] = String(retryAfterSeconds) }
        let body = try JSONEncoder().encode(ErrorBody(code: code, message: message))
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// A readable message for a JSON decoding failure: which field, what was wrong.
    static func decoding(_ error: Error) -> APIError {
        func path(_ codingPath: [CodingKey]) -> String {
            codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: ["."])
        }
        switch error {
        case let DecodingError.typeMismatch(_, ctx) where ctx.codingPath.isEmpty:
            return APIError(.badRequest, "the body must be a JSON object")
        case let DecodingError.typeMismatch(type, ctx):
            return APIError(.badRequest, "field '\(path(ctx.codingPath))' has the wrong type: expected \(Self.jsonName(type))")
        case let DecodingError.valueNotFound(type, ctx):
            return APIError(.badRequest, "field '\(path(ctx.codingPath))' must not be null: expected \(Self.jsonName(type))")
        case let DecodingError.keyNotFound(key, ctx):
            let parent = path(ctx.codingPath)
            return APIError(.badRequest, "missing field '\(parent.isEmpty ? "" : parent + ".")\(key.stringValue)'")
        case let DecodingError.dataCorrupted(ctx):
            if ctx.codingPath.isEmpty { return APIError(.badRequest, "the body is not valid JSON") }
            return APIError(.badRequest, "field '\(path(ctx.codingPath))': \(ctx.debugDescription)")
        default:
            return APIError(.badRequest, "the body could not be read: \(error)")
        }
    }

    private static func jsonName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is UInt64.Type: return "an integer"
        case is Float.Type, is Double.Type: return "a number"
        default:
            let name = String(describing: type)
            return name.hasPrefix("Array") ? "a list" : name.hasPrefix("Dictionary") ? "an object" : "an object (\(name))"
        }
    }
}

/// Turns every error on the way out into the JSON error shape (unknown routes, body limits,
/// anything unexpected), so clients always get `{"error": …}`.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError {
            let code: ErrorCode
            switch error.status.code {
            case 404: code = .notFound
            case 405: code = .methodNotAllowed
            case 413: code = .bodyTooLarge
            case 400..<500: code = .badRequest
            default: code = .internalError
            }
            let message = error.body ?? (code == .notFound ? "no such endpoint: \(request.method) \(request.uri.path); see docs/api.md"
                                                           : error.status.reasonPhrase)
            return try APIError(code, message).response(from: request, context: context)
        } catch {
            context.logger.error("request failed", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return try APIError(.internalError, "internal error: \(error)").response(from: request, context: context)
        }
    }
}
