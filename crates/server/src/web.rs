//! The web dashboard's files (`web/`, built by `npm run build` into
//! `web/dist/`), embedded in the binary and served on the gRPC port: the
//! pages talk gRPC-web to the same services, so there is one API for
//! softphones, dashboards and integrators.
//!
//! Every response carries a strict Content-Security-Policy: the pages load
//! only their own bundle and stylesheet and talk only to their own origin
//! (no inline script or style, no framing), with `nosniff` and no referrer.

use axum::body::Body;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode, Uri};

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist/"]
#[allow_missing = true]
struct Assets;

/// What a page may load and where it may connect: its own origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// `GET /` is the supervisor's page, `/agent` the agent panel. A gRPC
/// request that reached here names no method of this server.
pub async fn asset(headers: HeaderMap, uri: Uri) -> Response<Body> {
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return tonic::Status::unimplemented("no such method").into_http();
    }
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        "agent" => "agent.html",
        p => p,
    };
    let mut response = match Assets::get(path) {
        Some(file) => Response::builder()
            .header(header::CONTENT_TYPE, file.metadata.mimetype())
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from(file.data))
            .expect("static response"),
        None if Assets::get("index.html").is_none() => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from(
                "this callwatch was built without its dashboard: run `make build` (it builds web/ with npm)\n",
            ))
            .expect("static response"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("not found\n"))
            .expect("static response"),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
