//! MCP's Streamable HTTP transport at `/mcp` on the API port: rmcp's
//! `StreamableHttpService` (a tower service) over the in-process services, one
//! [`McpServer`] per session. The API's router mounts it behind the same bearer
//! token as `/api/v1` (`api.token` or a user's key; 401 without it), and every
//! call acts for the key's user: their jobs, their quotas. Sessions end with the
//! daemon's shutdown token.

use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::McpServer;
use crate::api::ApiConfig;
use crate::link::LocalLink;
use crate::service::Services;

/// The `/mcp` service.
pub fn service(
    services: &Services,
    config: &ApiConfig,
    shutdown: &CancellationToken,
) -> StreamableHttpService<McpServer, LocalSessionManager> {
    let mut http = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown.child_token())
        .with_max_request_body_bytes(config.max_body_bytes);
    // rmcp refuses Host headers other than loopback names, against DNS
    // rebinding from a browser. With a token (required off loopback) a page
    // cannot call /mcp anyway, and the API is reached by whatever name the
    // operator gave it.
    if !config.token.is_empty() {
        http = http.disable_allowed_hosts();
    }
    let services = services.clone();
    let max_wait = config.max_wait_seconds;
    StreamableHttpService::new(
        move || {
            let link = LocalLink::new(services.clone());
            let for_caller = services.clone();
            let scoped: super::Scoped =
                Arc::new(move |who| Arc::new(LocalLink::acting_for(for_caller.clone(), who)));
            Ok(McpServer::new(Arc::new(link), max_wait).acting_for_callers(scoped))
        },
        Arc::new(LocalSessionManager::default()),
        http,
    )
}
