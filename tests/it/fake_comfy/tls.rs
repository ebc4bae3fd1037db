//! The fake ComfyUI over TLS (https:// and wss://), served the way darkroom serves
//! its own API: darkroom's TLS listener (rustls, the handshake in the
//! connection's task) and a hyper-util loop with upgrades for the WebSocket. It
//! counts the handshakes it refused (a client that does not trust its
//! certificate) and the WebSockets opened over TLS.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

use super::{Ctl, FakeComfy, app, run::run_queue};

/// What the TLS side saw.
#[derive(Clone, Default)]
pub struct TlsSeen {
    /// Handshakes that failed (the client refused the certificate).
    pub refused: watch::Sender<u64>,
    /// WebSocket upgrade requests that arrived over TLS.
    pub websockets: watch::Sender<u64>,
}

impl FakeComfy {
    /// A fake at `https://127.0.0.1:port` serving `pair`.
    #[allow(dead_code)] // the benches include the fake without its TLS side
    pub async fn start_tls(pair: &darkroom::tls::CertPair) -> (Self, TlsSeen) {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", tcp.local_addr().unwrap());
        let acceptor = darkroom::tls::server::acceptor(pair, darkroom::tls::Alpn::Http1).unwrap();
        let listener = darkroom::tls::Listener::new(tcp, Some(acceptor));
        let ctl = Arc::new(Ctl::default());
        let seen = TlsSeen::default();
        let counted = seen.websockets.clone();
        let app = app(&ctl).layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let counted = counted.clone();
            async move {
                if req.uri().path().ends_with("/ws") {
                    counted.send_modify(|n| *n += 1);
                }
                let resp: Response = next.run(req).await;
                resp
            }
        }));
        let refused = seen.refused.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok(incoming) = listener.accept().await else {
                    continue;
                };
                let (app, refused) = (app.clone(), refused.clone());
                tokio::spawn(async move {
                    let Ok(stream) = incoming.handshake().await else {
                        refused.send_modify(|n| *n += 1);
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let runner = tokio::spawn(run_queue(ctl.clone()));
        (
            Self {
                url,
                ctl,
                tasks: vec![server, runner],
            },
            seen,
        )
    }
}
