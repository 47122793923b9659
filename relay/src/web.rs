//! The web app (`www/`): static files with the right MIME types (`application/wasm` included),
//! precompressed `.br`/`.gz` siblings when the build wrote them, and `index.html` for deep links
//! (`/jobs/7`), so the Leptos router can take over. Unknown `/v1/...` paths stay JSON 404s.

use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::path::PathBuf;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_http::services::{ServeDir, ServeFile};

/// Files whose name never changes between builds revalidate on every load (cheap with ETags);
/// the service worker keeps the app working offline.
const CACHE_CONTROL: &str = "no-cache";

pub fn service(dir: PathBuf) -> BoxCloneSyncService<Request<Body>, Response, Infallible> {
    let files = ServeDir::new(&dir)
        .precompressed_br()
        .precompressed_gzip()
        .fallback(ServeFile::new(dir.join("index.html")).precompressed_br().precompressed_gzip());
    BoxCloneSyncService::new(tower::service_fn(move |req: Request<Body>| {
        let files = files.clone();
        async move {
            if req.uri().path().starts_with("/v1/") || req.uri().path() == "/v1" {
                return Ok(super::api_not_found());
            }
            let mut response = match files.oneshot(req).await {
                Ok(r) => r.into_response(),
                Err(e) => match e {},
            };
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
            Ok(response)
        }
    }))
}
