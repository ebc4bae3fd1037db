//! An MCP (Model Context Protocol) server, so agents (Claude Desktop, Claude Code
//! and other MCP clients) can generate images and manage darkroom's jobs as
//! tools: `generate_image` (waits, reports progress, returns the job with its
//! output URLs and the first image inline when it is small), `get_job`,
//! `list_jobs`, `cancel_job`, `retry_job`, `list_templates`, `list_outputs` and
//! `get_status` ([`tools`]); jobs and outputs are resources too ([`resources`]).
//!
//! [`McpServer`] works through a [`Link`], like the dashboard: in the daemon it
//! calls the service layer in-process ([`crate::link::LocalLink`]) and is served
//! over Streamable HTTP at `/mcp` on the API port, behind `api.token`
//! ([`http`]); `darkroom mcp --url ... --token ...` serves it over stdio and
//! calls a daemon's HTTP API ([`crate::link::RemoteLink`], [`serve_stdio`]).
//! Every rule stays the jobs service's; a refused call is a tool result with
//! `isError` carrying darkroom's error code and field ([`error`]).

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};

pub mod error;
pub mod http;
pub mod resources;
pub mod tools;

use crate::link::{Link, RemoteLink};

/// What the server tells a client when it connects.
pub const INSTRUCTIONS: &str = "darkroom runs ComfyUI workflows on this box's GPUs as durable jobs and \
stores the images. Call list_templates for the workflow templates and their parameters (and \
list_models for the model catalog, if the daemon has one), then generate_image with a template, params and \
optionally a model (or model \"auto\" with a purpose or urgency); it waits, reporting progress, and returns \
the job with its output URLs and a small first image inline. A job that is still running when the wait ends goes \
on: follow it with get_job. list_jobs, cancel_job and retry_job manage jobs; list_outputs browses \
stored outputs; get_status shows the queue, backends, GPUs and alerts. Jobs (darkroom://jobs/{id}) \
and outputs (darkroom://outputs/{bucket}/{key}) are also resources.";

/// The MCP server handler: darkroom's tools and resources over one [`Link`].
#[derive(Clone)]
pub struct McpServer {
    link: Arc<dyn Link>,
    /// The longest `generate_image` waits, in seconds (`api.max_wait_seconds`).
    max_wait_seconds: u64,
    #[allow(dead_code)] // read by the code #[tool_handler] generates
    tool_router: ToolRouter<Self>,
}

impl McpServer {
    /// A server over `link`; `generate_image` waits at most `max_wait_seconds`.
    pub fn new(link: Arc<dyn Link>, max_wait_seconds: u64) -> Self {
        Self {
            link,
            max_wait_seconds,
            tool_router: Self::tool_router(),
        }
    }

    fn config() -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("darkroom", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }
}

/// The longest a remote `generate_image` waits: the daemon's own limit is not
/// visible over the API, so its default (`api.max_wait_seconds`) is assumed.
pub const REMOTE_MAX_WAIT_SECONDS: u64 = 300;

/// `darkroom mcp`: serves MCP on stdin/stdout, calling the daemon's API at `url`.
/// Nothing else may write to stdout; logs go to stderr.
pub async fn serve_stdio(remote: &crate::cli::Remote) -> anyhow::Result<()> {
    use rmcp::ServiceExt as _;
    let client = remote.client()?;
    let server = McpServer::new(Arc::new(RemoteLink { client }), REMOTE_MAX_WAIT_SECONDS);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
    running.waiting().await?;
    Ok(())
}

#[rmcp::tool_handler(router = self.tool_router)]
impl rmcp::ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        Self::config()
    }

    async fn list_resources(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        self.recent_outputs().await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, rmcp::ErrorData> {
        Ok(Self::resource_templates())
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Ok(self.read(&request.uri).await?.into())
    }
}
