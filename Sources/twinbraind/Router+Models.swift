import ControlAPI
import Foundation
import Hummingbird
import MainBrain

/// Model management, for admins: the model files the box has, importing one, choosing the one
/// that serves (without a restart), removing one. Every change goes to the audit log.
extension API {
    func addModelRoutes(to router: Router<DaemonContext>) {
        router.get("/v1/admin/models") { _, context in try await installedModels(context) }
        router.post("/v1/admin/models/import") { request, context in try await importModel(request, context) }
        router.get("/v1/admin/models/imports/:id") { _, context in try await importStatus(context) }
        router.post("/v1/admin/models/use") { request, context in try await useModel(request, context) }
        router.delete("/v1/admin/models/:model") { _, context in try await removeModel(context) }
    }

    func installedModels(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .admin)
        let catalog = state.catalog
        let models = try await DaemonState.onThread { catalog.list(serving: self.state.servingPath) }
        return try Self.json(InstalledModels(models: models, directory: catalog.directory))
    }

    func importModel(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let body = try await decode(ModelImportRequest.self, from: request.body)
        guard body.path.hasPrefix("/") else { throw APIError(.badRequest, "path must be absolute (the daemon has its own working directory)") }
        let catalog = state.catalog
        let status: ModelImportStatus
        do {
            status = try await DaemonState.onThread { try catalog.startImport(source: body.path) }
        } catch let refusal as ModelCatalog.Refusal {
            throw APIError(refusal.conflict ? .conflict : .badRequest, refusal.description)
        }
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "model-import", detail: "\(body.path) as \(status.model) (import \(status.id))")
        return try Self.json(status, status: .accepted)
    }

    func importStatus(_ context: DaemonContext) async throws -> Response {
        try await authorize(context, needs: .admin)
        guard let status = state.catalog.importStatus(Int(try id(context))) else {
            throw APIError(.notFound, "no import \(try id(context)) since the daemon started")
        }
        return try Self.json(status)
    }

    func useModel(_ request: Request, _ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        let body = try await decode(ModelUseRequest.self, from: request.body)
        let catalog = state.catalog
        guard let path = catalog.path(ofModel: body.id) else {
            throw APIError(.notFound, "no model \(body.id); `twinbrain models list` shows them")
        }
        if path != state.servingPath {
            do {
                _ = try await DaemonState.onThread { try catalog.check(path) }
            } catch {
                throw APIError(.badRequest, "\(body.id) cannot be served: \(error)")
            }
            do {
                try await state.switchModel(to: path)
            } catch let error as APIError {
                throw error
            } catch {
                throw APIError(.badRequest, "\(body.id) could not be loaded (the model that served before serves again): \(error)")
            }
            state.audit.record(uid: peer.uid, pid: peer.pid, action: "model-use", detail: "\(body.id) (\(path))")
        }
        let models = try await DaemonState.onThread { catalog.list(serving: self.state.servingPath) }
        return try Self.json(InstalledModels(models: models, directory: catalog.directory))
    }

    func removeModel(_ context: DaemonContext) async throws -> Response {
        let (peer, _) = try await authorize(context, needs: .admin)
        guard let id = context.parameters.get("model"), !id.isEmpty else { throw APIError(.badRequest, "name the model to remove") }
        let catalog = state.catalog
        let serving = state.servingPath
        let path: String
        do {
            path = try await DaemonState.onThread { try catalog.remove(id, serving: serving) }
        } catch let refusal as ModelCatalog.Refusal {
            throw APIError(refusal.conflict ? .conflict : .notFound, refusal.description)
        }
        state.audit.record(uid: peer.uid, pid: peer.pid, action: "model-remove", detail: "\(id) (\(path))")
        let models = try await DaemonState.onThread { catalog.list(serving: self.state.servingPath) }
        return try Self.json(InstalledModels(models: models, directory: catalog.directory))
    }
}
