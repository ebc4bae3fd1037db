//! The OpenAPI 3 document of this API, generated from the handlers' annotations
//! and the response types (utoipa), so it cannot drift from the code; served at
//! `GET /api/v1/openapi.json`. A test checks every answer of the test suite
//! against it.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "darkroom", description = "Jobs, events and status of a darkroom image-generation box"),
    paths(
        super::jobs::submit, super::jobs::get, super::jobs::list, super::jobs::cancel, super::jobs::retry,
        super::pictures::thumbnail, super::pictures::preview,
        super::events::events, super::status::status, document,
        super::templates::list, super::templates::get, super::templates::create,
        super::templates::put, super::templates::delete, super::templates::validate,
        super::browse::objects, super::browse::presign, super::browse::logs,
        super::ops::healthz, super::ops::readyz, super::ops::metrics,
        super::backups::create, super::backups::status, super::models::models, super::inbox::list,
        super::prompts::list, super::prompts::create, super::prompts::get, super::prompts::edit,
        super::prompts::delete, super::prompts::rate, super::prompts::rating, super::prompts::campaigns,
        super::prompts::create_campaign, super::prompts::report, super::prompts::campaign_action,
        super::prompts::delete_campaign, super::prompts::collections, super::prompts::put_collection,
        super::prompts::delete_collection, super::prompts::export, super::prompts::import,
        super::users::list, super::users::add, super::users::action, super::users::remove,
        super::users::keys, super::users::create_key, super::users::revoke,
        super::usage::usage, super::usage::set_quota,
    ),
    components(schemas(crate::events::Event, crate::events::ResyncNotice)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // A viewer's key is refused (403) on every operation that changes something.
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.post, &mut item.put, &mut item.delete, &mut item.patch]
                .into_iter()
                .flatten()
            {
                op.responses.responses.entry("403".into()).or_insert_with(|| {
                    utoipa::openapi::ResponseBuilder::new()
                        .description(
                            "`forbidden`: the caller's role does not allow it (a viewer changes nothing)",
                        )
                        .content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build()
                        .into()
                });
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event stream's messages and the snapshot's alerts are described by the
    /// same Rust types that serialise them.
    #[test]
    fn events_and_alerts_are_typed_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for name in ["Event", "ResyncNotice", "Alert", "JobEvent", "AlertChange"] {
            assert!(schemas.get(name).is_some(), "no {name} schema");
        }
        let alerts = &schemas["StatusSnapshot"]["properties"]["alerts"]["items"]["$ref"];
        assert_eq!(alerts, "#/components/schemas/Alert");
    }
}
