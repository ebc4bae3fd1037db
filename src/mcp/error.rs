//! The one place a refused or failed call becomes MCP: a tool's refusal is a
//! tool result with `isError: true` whose text starts with darkroom's error code
//! and names the field at fault (`invalid_request: must be 1..=500 (field
//! limit)`), so an agent can read it and correct itself; a resource that cannot
//! be read is a JSON-RPC error (`resource_not_found`, `invalid_params`). Faults
//! inside the daemon are logged with their cause and answered generically.
//! Malformed arguments and unknown tools never get here: rmcp answers them with
//! JSON-RPC errors (`invalid_params`, `method_not_found`).

use rmcp::ErrorData;
use rmcp::model::{CallToolResult, ContentBlock};

use crate::link::LinkError;

/// `code: message (field f)`, an internal fault's cause left out.
pub fn describe(e: &LinkError) -> String {
    let message = if e.is_internal() {
        tracing::error!(error = %e, "mcp: internal error");
        "internal error".to_owned()
    } else {
        e.message()
    };
    line(e.code(), &message, e.field())
}

fn line(code: &str, message: &str, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{code}: {message} (field {f})"),
        None => format!("{code}: {message}"),
    }
}

/// A refused tool call, as the tool's result.
pub fn refused(e: &LinkError) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(describe(e))])
}

/// A tool argument darkroom refuses before calling anything (a status name
/// that is not one).
pub fn invalid(field: &str, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(line(
        "invalid_request",
        message,
        Some(field),
    ))])
}

/// A resource that cannot be read, as a JSON-RPC error.
pub fn resource_error(uri: &str, e: &LinkError) -> ErrorData {
    let data = Some(serde_json::json!({"uri": uri, "code": e.code()}));
    match e.code() {
        "not_found" => ErrorData::resource_not_found(describe(e), data),
        "invalid_request" => ErrorData::invalid_params(describe(e), data),
        _ => ErrorData::internal_error(describe(e), data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;
    use crate::service::ServiceError;

    fn text(r: &CallToolResult) -> String {
        assert_eq!(r.is_error, Some(true));
        serde_json::to_value(&r.content[0]).unwrap()["text"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn refusals_carry_the_code_and_field() {
        let local = LinkError::Local(ServiceError::invalid("params.width", "must be 1..=4096"));
        assert_eq!(
            text(&refused(&local)),
            "invalid_request: must be 1..=4096 (field params.width)"
        );
        let remote = LinkError::Remote(ClientError::Api {
            status: 404,
            code: "not_found".into(),
            message: "no job 01J".into(),
            field: None,
        });
        assert_eq!(text(&refused(&remote)), "not_found: no job 01J");
        assert_eq!(
            text(&invalid("status", "not a status")),
            "invalid_request: not a status (field status)"
        );
    }

    #[test]
    fn internal_causes_stay_in_the_log() {
        let e = LinkError::Local(ServiceError::Internal("redb: disk on fire".into()));
        assert_eq!(text(&refused(&e)), "internal: internal error");
    }
}
