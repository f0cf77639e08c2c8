//! Per-RPC metrics whose labels come from a fixed set: the methods the
//! server serves, read once from the services' descriptor sets. A request to
//! any other path (anyone may send one, without a token) is counted as
//! method `unknown`, so no client can add a series to `/metrics`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use prost::Message;

use crate::pb;

/// The label of a path that is no method of this server.
pub const UNKNOWN: &str = "unknown";

/// The fields of `google/protobuf/descriptor.proto` that name methods.
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(string, optional, tag = "2")]
        pub package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(string, optional, tag = "1")]
        pub name: Option<String>,
    }
}

/// `/package.Service/Method` of every method served: callwatch's
/// services, health and both reflection versions.
static METHODS: LazyLock<HashSet<String>> = LazyLock::new(|| {
    let sets = [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for bytes in sets {
        let set = descriptor::FileDescriptorSet::decode(bytes).expect("compiled-in descriptor sets decode");
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    methods.insert(format!("/{package}.{service_name}/{}", method.name.unwrap_or_default()));
                }
            }
        }
    }
    methods
});

/// The method label for a request path.
pub fn method_label(path: &str) -> &'static str {
    METHODS.get(path).map_or(UNKNOWN, String::as_str)
}

/// Per-RPC request counts (gRPC and gRPC-web) and time to the response's
/// start, by method and the status the response started with (streams
/// report later errors in their trailers, not here).
#[derive(Clone)]
pub struct RpcMetrics<S> {
    pub inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        // Dashboard files are not RPCs.
        let rpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
        if !rpc {
            return Box::pin(self.inner.call(req));
        }
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await;
            let code = match &response {
                Ok(r) => status_label(r),
                Err(_) => "transport",
            };
            metrics::counter!("callwatch_rpc_requests_total", "method" => method, "code" => code).increment(1);
            metrics::histogram!("callwatch_rpc_response_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            response
        })
    }
}

/// The gRPC status a response starts with, as a label from a fixed set:
/// "0" to "16", or `other`.
fn status_label<B>(response: &http::Response<B>) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    match response.headers().get("grpc-status") {
        // No status yet: a stream's status comes in its trailers.
        None => "0",
        Some(v) => CODES
            .iter()
            .find(|c| c.as_bytes() == v.as_bytes())
            .copied()
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_methods_are_labels_and_anything_else_is_unknown() {
        assert_eq!(
            method_label("/callwatch.v1.CallIngest/StreamCall"),
            "/callwatch.v1.CallIngest/StreamCall"
        );
        assert_eq!(
            method_label("/callwatch.v1.Supervisor/WatchAlerts"),
            "/callwatch.v1.Supervisor/WatchAlerts"
        );
        assert_eq!(
            method_label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(
            method_label("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        );
        for stranger in ["/callwatch.v1.Supervisor/Nope", "/x.Y/Z", "/", ""] {
            assert_eq!(method_label(stranger), UNKNOWN, "{stranger}");
        }
    }
}
