//! The web dashboard's files (`web/`, built by `npm run build` into
//! `web/dist/`), embedded in the binary and served on the gRPC port: the
//! pages talk gRPC-web to the same services, so there is one API for
//! softphones, dashboards and integrators.

use axum::body::Body;
use http::{header, Response, StatusCode, Uri};

#[derive(rust_embed::RustEmbed)]
#[folder = "../../web/dist/"]
#[allow_missing = true]
struct Assets;

/// `GET /` is the supervisor's page, `/agent` the agent panel.
pub async fn asset(uri: Uri) -> Response<Body> {
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        "agent" => "agent.html",
        p => p,
    };
    match Assets::get(path) {
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
            .body(Body::from(format!("no {path}\n")))
            .expect("static response"),
    }
}
