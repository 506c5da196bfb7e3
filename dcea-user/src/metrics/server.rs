//! `/metrics` and `/healthz` over HTTP/1 (hyper), on a thread of its own so a scrape never
//! shares the drain loop's runtime and a busy drain never delays a health check.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Bytes, header, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

use super::Metrics;
use crate::Error;

/// Bind now (a taken or invalid address is a start-up error) and serve on a new thread.
pub fn spawn(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr, Error> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| Error::io(format!("binding --metrics-addr {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the metrics address", e))?;
    listener.set_nonblocking(true).map_err(|e| Error::io("configuring the metrics socket", e))?;
    std::thread::Builder::new()
        .name("dcea-metrics".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!("metrics server: starting its runtime: {e}"),
            };
            rt.block_on(serve(listener, metrics));
        })
        .map_err(|e| Error::io("starting the metrics thread", e))?;
    Ok(local)
}

async fn serve(listener: std::net::TcpListener, metrics: Arc<Metrics>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!("metrics server: {e}"),
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("metrics server: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, metrics.clone()));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!("metrics server: connection: {e}");
            }
        });
    }
}

async fn respond<B>(req: Request<B>, metrics: Arc<Metrics>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", metrics.encode()),
        "/healthz" => match metrics.health.healthy() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("unhealthy: {why}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "dcea serves /metrics and /healthz\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
