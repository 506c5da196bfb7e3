//! runtime.v1 over the runtime's unix socket, with k8s-cri's generated tonic client. Every
//! call has a deadline: a runtime that hangs costs the background worker a few seconds, never
//! an alert.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{self as api, runtime_service_client::RuntimeServiceClient};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub type Client = RuntimeServiceClient<Channel>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A ListContainers answer for a few thousand containers is a few MiB.
const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("cannot connect to {socket}: {message}")]
    Connect { socket: PathBuf, message: String },
    #[error("{call}: {code:?}: {message}")]
    Call { call: &'static str, code: tonic::Code, message: String },
    #[error("{0}")]
    Runtime(String),
}

impl CriError {
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            CriError::Call { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn call(call: &'static str, s: tonic::Status) -> CriError {
        // A transport failure comes back as a status whose message is generic; its source says why.
        let mut message = s.message().to_string();
        let mut src = std::error::Error::source(&s);
        while let Some(e) = src {
            let text = e.to_string();
            if !message.contains(&text) {
                message = format!("{message}: {text}");
            }
            src = e.source();
        }
        CriError::Call { call, code: s.code(), message }
    }
}

/// Every cause of an error, joined (tonic's transport error alone says only "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Connect to the runtime at `socket` (HTTP/2 over the unix socket).
pub async fn connect(socket: &Path) -> Result<Client, CriError> {
    Ok(RuntimeServiceClient::new(channel(socket).await?).max_decoding_message_size(MAX_MESSAGE))
}

/// The HTTP/2 channel to `socket`, for any of the CRI services.
pub async fn channel(socket: &Path) -> Result<Channel, CriError> {
    let path = socket.to_path_buf();
    Endpoint::from_static("http://cri.sock")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| CriError::Connect { socket: socket.to_path_buf(), message: chain(&e) })
}

pub async fn version(c: &mut Client) -> Result<api::VersionResponse, CriError> {
    c.version(api::VersionRequest { version: "v1".into() })
        .await
        .map(|r| r.into_inner())
        .map_err(|s| CriError::call("Version", s))
}

pub async fn list_containers(c: &mut Client) -> Result<Vec<api::Container>, CriError> {
    c.list_containers(api::ListContainersRequest { filter: None })
        .await
        .map(|r| r.into_inner().containers)
        .map_err(|s| CriError::call("ListContainers", s))
}

pub async fn list_pod_sandboxes(c: &mut Client) -> Result<Vec<api::PodSandbox>, CriError> {
    c.list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .map_err(|s| CriError::call("ListPodSandbox", s))
}

/// Stop a container now (timeout 0: no grace period, the runtime kills it); `Ok(false)` when
/// the runtime does not know it.
pub async fn stop_container(c: &mut Client, id: &str) -> Result<bool, CriError> {
    match c.stop_container(api::StopContainerRequest { container_id: id.to_string(), timeout: 0 }).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(false),
        Err(s) => Err(CriError::call("StopContainer", s)),
    }
}

/// `None` when the runtime does not know the container (any more).
pub async fn container_status(c: &mut Client, id: &str) -> Result<Option<api::ContainerStatusResponse>, CriError> {
    match c.container_status(api::ContainerStatusRequest { container_id: id.to_string(), verbose: true }).await {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(CriError::call("ContainerStatus", s)),
    }
}

pub async fn pod_sandbox_status(c: &mut Client, id: &str) -> Result<Option<api::PodSandboxStatus>, CriError> {
    match c.pod_sandbox_status(api::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false }).await {
        Ok(r) => Ok(r.into_inner().status),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(CriError::call("PodSandboxStatus", s)),
    }
}

/// The runtime's event stream (containerd ≥ 1.7, CRI-O ≥ 1.26); `Ok(None)` when the runtime
/// does not implement it (poll instead).
pub async fn container_events(
    c: &mut Client,
) -> Result<Option<tonic::Streaming<api::ContainerEventResponse>>, CriError> {
    match c.get_container_events(api::GetEventsRequest {}).await {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == tonic::Code::Unimplemented => Ok(None),
        Err(s) => Err(CriError::call("GetContainerEvents", s)),
    }
}
