//! Server reflection in both versions generic tools speak: v1 (grpcurl,
//! grpcui) and v1alpha (Python's grpcio-reflection, older grpcurl,
//! Postman), each listing the services and describing one, from a real
//! server over loopback; it needs a token unless configured open.

mod common;

use callwatch_client::Connection;
use callwatch_server::config::{ServeConfig, TokenEntry};
use callwatch_server::server::Server;
use common::q8_model;

const SERVICES: [&str; 5] = [
    "callwatch.v1.CallIngest",
    "callwatch.v1.Supervisor",
    "callwatch.v1.Admin",
    "callwatch.v1.AgentDesk",
    "grpc.health.v1.Health",
];

type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, callwatch_client::Bearer>;

async fn start(data: &std::path::Path, reflection_open: bool) -> (Server, Authed) {
    let mut cfg = ServeConfig {
        reflection_open,
        listen: "127.0.0.1:0".parse().unwrap(),
        data: data.to_owned(),
        model: Some(q8_model()),
        workers: 1,
        ..ServeConfig::default()
    };
    cfg.auth.tokens = vec![TokenEntry {
        token: "token-admin".into(),
        token_sha256: None,
        role: "admin".into(),
        name: None,
        fast: false,
    }];
    let server = Server::start(cfg).await.expect("the server starts");
    let conn = Connection {
        server: format!("http://{}", server.addr),
        token: "token-admin".into(),
        ca: None,
        identity: None,
    };
    let (channel, bearer) = conn.channel().await.unwrap();
    (server, Authed::new(channel, bearer))
}

/// One reflection exchange per version; the two generated modules have the
/// same shapes under different names.
macro_rules! ask {
    ($version:ident, $channel:expr, $request:ident($arg:expr)) => {{
        use tonic_reflection::pb::$version::{
            server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
            ServerReflectionRequest,
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::$request($arg)),
        };
        ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection is served")
            .into_inner()
            .message()
            .await
            .unwrap()
            .expect("a reply")
            .message_response
            .expect("a response")
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_list_and_describe_the_services() {
    let dir = tempfile::tempdir().unwrap();
    let (server, channel) = start(dir.path(), false).await;

    {
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let MessageResponse::ListServicesResponse(list) = ask!(v1alpha, channel.clone(), ListServices(String::new()))
        else {
            panic!("v1alpha: no service list")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for service in SERVICES {
            assert!(names.contains(&service), "v1alpha: {service} not in {names:?}");
        }
        let MessageResponse::FileDescriptorResponse(files) = ask!(
            v1alpha,
            channel.clone(),
            FileContainingSymbol("callwatch.v1.Supervisor".into())
        ) else {
            panic!("v1alpha: no file for the Supervisor service")
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    {
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let MessageResponse::ListServicesResponse(list) = ask!(v1, channel.clone(), ListServices(String::new())) else {
            panic!("v1: no service list")
        };
        let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
        for service in SERVICES {
            assert!(names.contains(&service), "v1: {service} not in {names:?}");
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_needs_a_token_unless_configured_open() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        ServerReflectionRequest,
    };
    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    for open in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = start(dir.path(), open).await;
        let anonymous = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let reply = ServerReflectionClient::new(anonymous)
            .server_reflection_info(list())
            .await;
        match (open, reply) {
            (false, Err(status)) => assert_eq!(status.code(), tonic::Code::Unauthenticated),
            (true, Ok(mut replies)) => assert!(replies.get_mut().message().await.unwrap().is_some()),
            (open, reply) => panic!("reflection_open = {open}: {:?}", reply.map(|_| "a stream")),
        }
        server.stop().await.unwrap();
    }
}
