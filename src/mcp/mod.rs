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

/// Makes the link acting for one principal.
pub type Scoped = Arc<dyn Fn(crate::users::Principal) -> Arc<dyn Link> + Send + Sync>;

/// The MCP server handler: darkroom's tools and resources over one [`Link`].
#[derive(Clone)]
pub struct McpServer {
    link: Arc<dyn Link>,
    /// Over `/mcp`: the link acting for the caller of each request (their key's
    /// user), made from the principal the API's authentication found.
    scoped: Option<Scoped>,
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
            scoped: None,
            max_wait_seconds,
            tool_router: Self::tool_router(),
        }
    }

    /// A server whose every call acts for the request's principal (`/mcp`).
    #[must_use]
    pub fn acting_for_callers(mut self, scoped: Scoped) -> Self {
        self.scoped = Some(scoped);
        self
    }

    /// This server as the caller of the request in `ctx` sees it: over HTTP, with
    /// their key's rights; a request carrying no principal gets none of the jobs.
    fn acting(&self, ctx: &rmcp::service::RequestContext<rmcp::RoleServer>) -> Self {
        let Some(scoped) = &self.scoped else {
            return self.clone();
        };
        let who = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.extensions.get::<crate::users::Principal>())
            .cloned()
            .unwrap_or_else(|| crate::users::Principal {
                user: String::new(),
                role: crate::users::Role::Viewer,
            });
        Self {
            link: scoped(who),
            ..self.clone()
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
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, rmcp::ErrorData> {
        self.acting(&context).recent_outputs().await
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
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, rmcp::ErrorData> {
        Ok(self.acting(&context).read(&request.uri).await?.into())
    }
}
