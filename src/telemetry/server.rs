//! The HTTP endpoint of `metrics.listen`: `/metrics` (Prometheus text format 0.0.4), `/healthz`
//! and `/readyz` (Kubernetes probes). A plain HTTP/1 server on hyper: three fixed answers need
//! no web framework.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{BuildError, PrometheusHandle};
use tokio::net::TcpListener;

use super::health::{Readiness, HEALTH};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "cannot serve metrics on {address} (metrics.listen): {source}: set metrics.listen to a free \
         address and port, or to \"\" to turn the server off"
    )]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(#[from] BuildError),
}

/// The Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Histograms keep recent samples until a scrape or an upkeep folds them in: without scrapes,
/// this bounds what they hold.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Installs the process's metrics recorder and serves the endpoints on `address` until the
/// process exits. `/readyz` answers 200 while the loop beat within `ready_window`. Binds before
/// returning: a port in use is an error here, at start, not a log line later.
pub async fn serve(address: SocketAddr, ready_window: Duration) -> Result<(), TelemetryError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| TelemetryError::Listen { address, source })?;
    let metrics = install_recorder()?;
    tracing::info!("metrics on http://{address}/metrics, probes on /healthz and /readyz");
    tokio::spawn(upkeep(metrics.clone()));
    tokio::spawn(accept(
        listener,
        Endpoints {
            metrics,
            ready_window,
        },
    ));
    Ok(())
}

fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let handle = super::prometheus()?.install_recorder()?;
    super::describe();
    Ok(handle)
}

async fn upkeep(metrics: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        every.tick().await;
        metrics.run_upkeep();
    }
}

async fn accept(listener: TcpListener, endpoints: Endpoints) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: the next accept may work again.
                tracing::warn!("metrics server: accepting a connection: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = endpoints.answer(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            // A client that goes away mid-request is its own business.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    ready_window: Duration,
}

impl Endpoints {
    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
        }
        match request.uri().path() {
            "/metrics" => {
                let mut response = text(StatusCode::OK, self.metrics.render());
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match HEALTH.readiness(self.ready_window) {
                Readiness::Ready => text(StatusCode::OK, "ready\n".into()),
                Readiness::NotReady(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: /metrics, /healthz and /readyz are served\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_CONTENT_TYPE));
    response
}
