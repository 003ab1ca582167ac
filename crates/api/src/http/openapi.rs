//! The routes and the OpenAPI document, built together from the handlers'
//! `#[utoipa::path]` attributes, so a route cannot exist without its
//! documentation or differ from it. Swagger UI (`/docs`) is compiled in,
//! so it works without a network.

use utoipa::{IntoResponses, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

use super::responses::{EdgeErrors, RefusalErrors};
use super::{Gateway, batch, health, records, rows, scan, status_page};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ConsensusDB JSON gateway",
        description = "Every records operation of the gRPC API (consensusdb.v1.Records) over JSON. \
            Errors are `{code, message, field}` with the HTTP status of the shared error code. \
            See docs/http-api.md.",
    ),
    tags(
        (name = "records", description = "One record at a time, and batches."),
        (name = "rows", description = "A row's timed records: the newest, or a page."),
        (name = "scans", description = "A row, region or tenant streamed as NDJSON."),
        (name = "operations", description = "Status, metrics and health."),
    )
)]
struct ApiDoc;

fn documented() -> OpenApiRouter<Gateway> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(
            records::get_untimed,
            records::put_untimed,
            records::post_event,
            records::touch_untimed,
            records::remove_untimed
        ))
        .routes(routes!(records::get_timed, records::put_timed, records::touch_timed, records::remove_timed))
        .routes(routes!(batch::put_batch))
        .routes(routes!(rows::recent))
        .routes(routes!(rows::range))
        .routes(routes!(scan::scan_tenant))
        .routes(routes!(scan::scan_region))
        .routes(routes!(scan::scan_row))
        .routes(routes!(status_page::status))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// `document` with [`EdgeErrors`] added to every operation, and
/// [`RefusalErrors`] to every one but the health probes, where the
/// operation does not declare those codes itself.
fn with_edge_errors(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let edge = EdgeErrors::responses();
    let refusals = RefusalErrors::responses();
    for (path, item) in &mut document.paths.paths {
        let open = matches!(path.as_str(), "/healthz" | "/readyz");
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let refused = refusals.iter().filter(|_| !open);
            for (status, response) in edge.iter().chain(refused) {
                operation.responses.responses.entry(status.clone()).or_insert_with(|| response.clone());
            }
        }
    }
    document
}

/// The documented routes, `/openapi.json` and `/docs`.
pub(super) fn routes() -> axum::Router<Gateway> {
    let (router, document) = documented().split_for_parts();
    let document = with_edge_errors(document);
    // SwaggerUi serves the document at the URL it is given, so it is not
    // routed a second time. The validator badge would call out to the
    // internet.
    router.merge(
        SwaggerUi::new("/docs")
            .url("/openapi.json", document)
            .config(utoipa_swagger_ui::Config::default().validator_url("none")),
    )
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    with_edge_errors(documented().into_openapi())
}
